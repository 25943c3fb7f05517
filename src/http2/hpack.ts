/**
 * HPACK header compression (RFC 7541) for an HTTP/2 server that receives requests: a decoder with the
 * full dynamic table for the header blocks clients send, and a stateless encoder for the headers and
 * trailers the server sends back. Strings are latin1 throughout, so one character is one octet and
 * lengths in characters are lengths in octets.
 */
import { HpackError, decodeHuffman } from './huffman.js';

// HpackError lives in huffman.ts, which throws it too, so that huffman.ts need not import this module.
export { HpackError };

export type HeaderField = readonly [name: string, value: string];

/** RFC 7541 Appendix A; index i of the table is STATIC_TABLE[i - 1]. */
const STATIC_TABLE: readonly HeaderField[] = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];

/** RFC 7541 §4.1: an entry costs its octets plus 32 for the bookkeeping a peer is assumed to keep. */
const ENTRY_OVERHEAD = 32;

// Far above any index, string length or table size a sane peer sends, and low enough that the
// arithmetic stays exact; 2^31 - 1 needs at most five continuation octets after an 8-bit prefix.
const MAX_INTEGER = 0x7fffffff;
const MAX_CONTINUATION_OCTETS = 5;

const NO_BLOCK = Buffer.alloc(0);

export class HpackDecoder {
  readonly #maxTableBytes: number;
  /** The limit last set by a dynamic table size update; starts at the limit we advertise. */
  #tableLimit: number;
  /** Oldest first, so that an insertion is a push and an eviction a shift. */
  readonly #entries: HeaderField[] = [];
  #tableBytes = 0;

  #block: Buffer = NO_BLOCK;
  #pos = 0;
  #oversized = false;
  #abandoned = false;

  /** maxTableBytes: the SETTINGS_HEADER_TABLE_SIZE this endpoint advertises (4096 unless changed). */
  constructor(maxTableBytes: number) {
    this.#maxTableBytes = maxTableBytes;
    this.#tableLimit = maxTableBytes;
  }

  /** Octets the dynamic table holds, as RFC 7541 §4.1 counts them. */
  get dynamicTableBytes(): number {
    return this.#tableBytes;
  }

  /** A copy of the dynamic table, newest first: element i has HPACK index 62 + i. */
  dynamicTable(): HeaderField[] {
    return this.#entries.slice().reverse();
  }

  /** The last block decoded had more than its `maxListBytes`: the fields returned are cut short. */
  get oversized(): boolean {
    return this.#oversized;
  }

  /**
   * The last block passed its `abandonListBytes`: decoding stopped there, so the table may be out of
   * step with the peer's and the caller must end the connection.
   */
  get abandoned(): boolean {
    return this.#abandoned;
  }

  /**
   * Decodes one complete header block (HEADERS and CONTINUATION payloads joined, padding removed).
   * Fields past `maxListBytes` (counted as RFC 9113 §6.5.2 does) are decoded, to keep the table in step
   * with the peer's, but not returned: a block of one-byte references to a 4 KB table entry would
   * otherwise make a list of hundreds of megabytes. `oversized` tells the caller.
   * After an HpackError the table may be half-updated; that is fine, since the error ends the connection.
   * Past `abandonListBytes` it stops decoding and sets `abandoned` (the caller ends the connection): a
   * 60 KB block of one-byte references to a 4 KB entry would otherwise cost a pass over every byte.
   */
  decode(block: Buffer, maxListBytes = Infinity, abandonListBytes = Infinity): HeaderField[] {
    this.#block = block;
    this.#pos = 0;
    this.#abandoned = false;
    const fields: HeaderField[] = [];
    let listBytes = 0;
    let dropped = 0;
    const add = (field: HeaderField): void => {
      listBytes += field[0].length + field[1].length + ENTRY_OVERHEAD;
      if (dropped > 0 || listBytes > maxListBytes) dropped += 1;
      else fields.push(field);
    };
    try {
      while (this.#pos < block.length) {
        // Far past the limit no client is honest: stop at once rather than walk the rest of the block.
        if (listBytes > abandonListBytes) {
          this.#abandoned = true;
          break;
        }
        const first = block[this.#pos] ?? 0;
        if (first & 0x80) {
          const index = this.#integer(7);
          if (index === 0) throw new HpackError('hpack: indexed header field with index 0');
          add(this.#lookup(index));
        } else if (first & 0x40) {
          const field = this.#literal(6);
          this.#insert(field);
          add(field);
        } else if (first & 0x20) {
          // RFC 7541 §4.2: size updates may only open a block, before any field.
          // Every field adds at least 32 to listBytes.
          if (listBytes > 0) {
            throw new HpackError('hpack: dynamic table size update after the first header field');
          }
          this.#resize(this.#integer(5));
        } else {
          // 0001xxxx (never indexed) and 0000xxxx (without indexing) decode alike: the difference only
          // binds whoever re-encodes the field, which this server never does.
          add(this.#literal(4));
        }
      }
    } finally {
      // Not to keep a large block alive between requests.
      this.#block = NO_BLOCK;
      this.#oversized = dropped > 0;
    }
    return fields;
  }

  #lookup(index: number): HeaderField {
    const field =
      index <= STATIC_TABLE.length
        ? STATIC_TABLE[index - 1]
        : this.#entries[this.#entries.length - (index - STATIC_TABLE.length)];
    if (field === undefined) {
      throw new HpackError(
        `hpack: index ${index} is beyond the tables (${STATIC_TABLE.length} static + ${this.#entries.length} dynamic)`,
      );
    }
    return field;
  }

  /** A literal representation whose name index has an N-bit prefix; index 0 means a literal name follows. */
  #literal(prefixBits: number): HeaderField {
    const nameIndex = this.#integer(prefixBits);
    const name = nameIndex === 0 ? this.#string() : this.#lookup(nameIndex)[0];
    return [name, this.#string()];
  }

  #insert(field: HeaderField): void {
    const size = field[0].length + field[1].length + ENTRY_OVERHEAD;
    // RFC 7541 §4.4: an entry larger than the table is not an error; it leaves the table empty.
    this.#evictTo(Math.max(0, this.#tableLimit - size));
    if (size <= this.#tableLimit) {
      this.#entries.push(field);
      this.#tableBytes += size;
    }
  }

  #resize(limit: number): void {
    if (limit > this.#maxTableBytes) {
      throw new HpackError(
        `hpack: dynamic table size update to ${limit} exceeds the advertised ${this.#maxTableBytes}`,
      );
    }
    this.#tableLimit = limit;
    this.#evictTo(limit);
  }

  #evictTo(bytes: number): void {
    while (this.#tableBytes > bytes) {
      const oldest = this.#entries.shift();
      if (oldest === undefined) break;
      this.#tableBytes -= oldest[0].length + oldest[1].length + ENTRY_OVERHEAD;
    }
  }

  /** RFC 7541 §5.1: an integer in the low prefixBits bits of the current octet, maybe continued. */
  #integer(prefixBits: number): number {
    const block = this.#block;
    const mask = (1 << prefixBits) - 1;
    let value = (block[this.#pos++] ?? 0) & mask;
    if (value < mask) return value;
    for (let octets = 0, shift = 0; ; octets += 1, shift += 7) {
      if (octets === MAX_CONTINUATION_OCTETS) {
        throw new HpackError(`hpack: integer runs past ${MAX_CONTINUATION_OCTETS} continuation octets`);
      }
      const octet = block[this.#pos++];
      if (octet === undefined) throw new HpackError('hpack: header block ends inside an integer');
      value += (octet & 0x7f) * 2 ** shift;
      if (value > MAX_INTEGER) throw new HpackError(`hpack: integer exceeds ${MAX_INTEGER}`);
      if ((octet & 0x80) === 0) return value;
    }
  }

  /** RFC 7541 §5.2: a length with a 7-bit prefix under the Huffman flag, then that many octets. */
  #string(): string {
    const block = this.#block;
    if (this.#pos >= block.length) throw new HpackError('hpack: header block ends before a string');
    const huffman = ((block[this.#pos] ?? 0) & 0x80) !== 0;
    const length = this.#integer(7);
    const start = this.#pos;
    const end = start + length;
    if (end > block.length) {
      throw new HpackError(
        `hpack: string of ${length} octets runs past the end of the block (${block.length - start} left)`,
      );
    }
    this.#pos = end;
    return huffman ? decodeHuffman(block, start, end) : block.toString('latin1', start, end);
  }
}

/** For each static name: its first index, and the index of each value that has an exact entry. */
const STATIC_INDEX = new Map<string, { nameIndex: number; values: Map<string, number> }>();
STATIC_TABLE.forEach(([name, value], i) => {
  let entry = STATIC_INDEX.get(name);
  if (entry === undefined) {
    entry = { nameIndex: i + 1, values: new Map() };
    STATIC_INDEX.set(name, entry);
  }
  entry.values.set(value, i + 1);
});

function integerSize(value: number, prefixBits: number): number {
  let size = 1;
  const mask = (1 << prefixBits) - 1;
  if (value < mask) return size;
  for (let rest = value - mask; rest >= 0x80; rest = Math.floor(rest / 0x80)) size += 1;
  return size + 1;
}

/** Writes an integer whose prefix lands in the low prefixBits of target[pos], above flag bits `flags`. */
function writeInteger(target: Buffer, pos: number, flags: number, value: number, prefixBits: number): number {
  const mask = (1 << prefixBits) - 1;
  if (value < mask) {
    target[pos++] = flags | value;
    return pos;
  }
  target[pos++] = flags | mask;
  let rest = value - mask;
  while (rest >= 0x80) {
    target[pos++] = (rest % 0x80) | 0x80;
    rest = Math.floor(rest / 0x80);
  }
  target[pos++] = rest;
  return pos;
}

function writeString(target: Buffer, pos: number, value: string): number {
  pos = writeInteger(target, pos, 0x00, value.length, 7);
  return pos + target.write(value, pos, 'latin1');
}

const BEYOND_LATIN1 = /[\u0100-\uffff]/;

/**
 * Encodes a response's headers or trailers. Stateless: it never inserts into the peer's dynamic table,
 * so there is no encoder state to keep in step with the peer's, and no table size update to send
 * whatever SETTINGS_HEADER_TABLE_SIZE the peer advertises. No Huffman either: these blocks are small
 * and sent once per stream. Names must be lowercase; values are latin1.
 */
export function encodeHeaderBlock(fields: readonly HeaderField[]): Buffer {
  // Two passes, sizing then writing, so that the block is one allocation.
  let size = 0;
  for (const [name, value] of fields) {
    if (BEYOND_LATIN1.test(name) || BEYOND_LATIN1.test(value)) {
      throw new RangeError(`hpack: header ${name} has characters beyond latin1, which HPACK cannot carry`);
    }
    const known = STATIC_INDEX.get(name);
    const exact = known?.values.get(value);
    if (exact !== undefined) {
      size += integerSize(exact, 7);
      continue;
    }
    size +=
      known === undefined ? 1 + integerSize(name.length, 7) + name.length : integerSize(known.nameIndex, 4);
    size += integerSize(value.length, 7) + value.length;
  }

  const block = Buffer.allocUnsafe(size);
  let pos = 0;
  for (const [name, value] of fields) {
    const known = STATIC_INDEX.get(name);
    const exact = known?.values.get(value);
    if (exact !== undefined) {
      pos = writeInteger(block, pos, 0x80, exact, 7);
      continue;
    }
    // Literal without indexing (0000xxxx): with the name's static index, or index 0 and the name.
    if (known === undefined) {
      block[pos++] = 0x00;
      pos = writeString(block, pos, name);
    } else {
      pos = writeInteger(block, pos, 0x00, known.nameIndex, 4);
    }
    pos = writeString(block, pos, value);
  }
  return block;
}
