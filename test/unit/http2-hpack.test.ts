import test from 'ava';
import type { ExecutionContext } from 'ava';
import { HpackDecoder, HpackError, encodeHeaderBlock } from '../../src/http2/hpack.js';
import type { HeaderField } from '../../src/http2/hpack.js';
import { HUFFMAN_CODES, decodeHuffman } from '../../src/http2/huffman.js';

/** Hex dumps as RFC 7541 Appendix C prints them, spaces and line breaks ignored. */
function hex(dump: string): Buffer {
  return Buffer.from(dump.replace(/\s+/g, ''), 'hex');
}

/** Huffman-codes a latin1 string with the table under test, padding with 1s (the prefix of EOS). */
function huffmanEncode(text: string, padding?: { bits: number; value: number }): Buffer {
  let bits = '';
  for (let i = 0; i < text.length; i += 1) {
    const [code, length] = HUFFMAN_CODES[text.charCodeAt(i)]!;
    bits += code.toString(2).padStart(length, '0');
  }
  if (padding === undefined) bits += '1'.repeat((8 - (bits.length % 8)) % 8);
  else bits += padding.value.toString(2).padStart(padding.bits, '0');
  if (bits.length % 8 !== 0) throw new Error('test bug: padding does not reach an octet boundary');
  const out = Buffer.alloc(bits.length / 8);
  for (let i = 0; i < out.length; i += 1) out[i] = parseInt(bits.slice(i * 8, i * 8 + 8), 2);
  return out;
}

function huffman(bytes: Buffer): string {
  return decodeHuffman(bytes, 0, bytes.length);
}

type Step = {
  block: string;
  fields: HeaderField[];
  table: HeaderField[];
  tableBytes: number;
};

/** Runs consecutive header blocks through one decoder, as Appendix C.3 to C.6 do on one connection. */
function decodeSequence(t: ExecutionContext, maxTableBytes: number, steps: readonly Step[]): void {
  const decoder = new HpackDecoder(maxTableBytes);
  steps.forEach((step, i) => {
    t.deepEqual(decoder.decode(hex(step.block)), step.fields, `block ${i + 1}: header list`);
    t.deepEqual(decoder.dynamicTable(), step.table, `block ${i + 1}: dynamic table`);
    t.is(decoder.dynamicTableBytes, step.tableBytes, `block ${i + 1}: table size`);
  });
}

function throwsHpack(t: ExecutionContext, run: () => unknown, message?: RegExp): void {
  const error = t.throws(run, { instanceOf: HpackError });
  if (message !== undefined) t.regex(error.message, message);
}

// ---- RFC 7541 Appendix C.2: single representations on a fresh 4096-octet table ----

test('C.2.1 literal header field with indexing', (t) => {
  decodeSequence(t, 4096, [
    {
      block: '400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572',
      fields: [['custom-key', 'custom-header']],
      table: [['custom-key', 'custom-header']],
      tableBytes: 55,
    },
  ]);
});

test('C.2.2 literal header field without indexing', (t) => {
  decodeSequence(t, 4096, [
    {
      block: '040c 2f73 616d 706c 652f 7061 7468',
      fields: [[':path', '/sample/path']],
      table: [],
      tableBytes: 0,
    },
  ]);
});

test('C.2.3 literal header field never indexed', (t) => {
  decodeSequence(t, 4096, [
    {
      block: '1008 7061 7373 776f 7264 0673 6563 7265 74',
      fields: [['password', 'secret']],
      table: [],
      tableBytes: 0,
    },
  ]);
});

test('C.2.4 indexed header field', (t) => {
  decodeSequence(t, 4096, [{ block: '82', fields: [[':method', 'GET']], table: [], tableBytes: 0 }]);
});

// ---- C.3 and C.4: three requests on one connection, without and with Huffman coding ----

const REQUEST_FIELDS: HeaderField[][] = [
  [
    [':method', 'GET'],
    [':scheme', 'http'],
    [':path', '/'],
    [':authority', 'www.example.com'],
  ],
  [
    [':method', 'GET'],
    [':scheme', 'http'],
    [':path', '/'],
    [':authority', 'www.example.com'],
    ['cache-control', 'no-cache'],
  ],
  [
    [':method', 'GET'],
    [':scheme', 'https'],
    [':path', '/index.html'],
    [':authority', 'www.example.com'],
    ['custom-key', 'custom-value'],
  ],
];

const REQUEST_TABLES: { table: HeaderField[]; tableBytes: number }[] = [
  { table: [[':authority', 'www.example.com']], tableBytes: 57 },
  {
    table: [
      ['cache-control', 'no-cache'],
      [':authority', 'www.example.com'],
    ],
    tableBytes: 110,
  },
  {
    table: [
      ['custom-key', 'custom-value'],
      ['cache-control', 'no-cache'],
      [':authority', 'www.example.com'],
    ],
    tableBytes: 164,
  },
];

function requestSteps(blocks: string[]): Step[] {
  return blocks.map((block, i) => ({ block, fields: REQUEST_FIELDS[i]!, ...REQUEST_TABLES[i]! }));
}

test('C.3 requests without Huffman coding', (t) => {
  decodeSequence(
    t,
    4096,
    requestSteps([
      '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
      '8286 84be 5808 6e6f 2d63 6163 6865',
      '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65',
    ]),
  );
});

test('C.4 requests with Huffman coding', (t) => {
  decodeSequence(
    t,
    4096,
    requestSteps([
      '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff',
      '8286 84be 5886 a8eb 1064 9cbf',
      '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf',
    ]),
  );
});

// ---- C.5 and C.6: three responses with a 256-octet table, so entries get evicted ----

const DATE_21 = 'Mon, 21 Oct 2013 20:13:21 GMT';
const DATE_22 = 'Mon, 21 Oct 2013 20:13:22 GMT';
const LOCATION = 'https://www.example.com';
const COOKIE = 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1';

const RESPONSE_FIELDS: HeaderField[][] = [
  [
    [':status', '302'],
    ['cache-control', 'private'],
    ['date', DATE_21],
    ['location', LOCATION],
  ],
  [
    [':status', '307'],
    ['cache-control', 'private'],
    ['date', DATE_21],
    ['location', LOCATION],
  ],
  [
    [':status', '200'],
    ['cache-control', 'private'],
    ['date', DATE_22],
    ['location', LOCATION],
    ['content-encoding', 'gzip'],
    ['set-cookie', COOKIE],
  ],
];

const RESPONSE_TABLES: { table: HeaderField[]; tableBytes: number }[] = [
  {
    table: [
      ['location', LOCATION],
      ['date', DATE_21],
      ['cache-control', 'private'],
      [':status', '302'],
    ],
    tableBytes: 222,
  },
  {
    table: [
      [':status', '307'],
      ['location', LOCATION],
      ['date', DATE_21],
      ['cache-control', 'private'],
    ],
    tableBytes: 222,
  },
  {
    table: [
      ['set-cookie', COOKIE],
      ['content-encoding', 'gzip'],
      ['date', DATE_22],
    ],
    tableBytes: 215,
  },
];

function responseSteps(blocks: string[]): Step[] {
  return blocks.map((block, i) => ({ block, fields: RESPONSE_FIELDS[i]!, ...RESPONSE_TABLES[i]! }));
}

test('C.5 responses without Huffman coding, with evictions', (t) => {
  decodeSequence(
    t,
    256,
    responseSteps([
      `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
       2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
       6c65 2e63 6f6d`,
      '4803 3330 37c1 c0bf',
      `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
       54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
       5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
       3d31`,
    ]),
  );
});

test('C.6 responses with Huffman coding, with evictions', (t) => {
  decodeSequence(
    t,
    256,
    responseSteps([
      `4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
       2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3`,
      '4883 640e ffc1 c0bf',
      `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
       77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
       9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
    ]),
  );
});

// ---- The Huffman table itself (RFC 7541 Appendix B) ----

test('the Huffman table has 257 codes, each fitting its length, with the values the RFC spells out', (t) => {
  t.is(HUFFMAN_CODES.length, 257);
  for (const [symbol, [code, length]] of HUFFMAN_CODES.entries()) {
    t.true(length >= 5 && length <= 30, `symbol ${symbol}: length ${length}`);
    t.true(code >= 0 && code < 2 ** length, `symbol ${symbol}: code ${code} fits ${length} bits`);
  }
  // §5.2's worked example and the EOS row: '/' is 011000, EOS is thirty 1s.
  t.deepEqual(HUFFMAN_CODES[47], [0x18, 6]);
  t.deepEqual(HUFFMAN_CODES[256], [0x3fffffff, 30]);
});

test('the Huffman table is a complete prefix code: Kraft sum exactly 1, no code a prefix of another', (t) => {
  // Sum of 2^-length, scaled by 2^30 so that it is an exact integer sum.
  const kraft = HUFFMAN_CODES.reduce((sum, [, length]) => sum + 2 ** (30 - length), 0);
  t.is(kraft, 2 ** 30);

  const codes = HUFFMAN_CODES.map(([code, length]) => code.toString(2).padStart(length, '0'));
  let prefixes = 0;
  for (const [a, codeA] of codes.entries()) {
    for (const [b, codeB] of codes.entries()) if (a !== b && codeB.startsWith(codeA)) prefixes += 1;
  }
  t.is(prefixes, 0);
});

test('the Huffman table is canonical: in (length, symbol) order each code is the previous plus one, shifted', (t) => {
  const bySize = HUFFMAN_CODES.map(([code, length], symbol) => ({ code, length, symbol })).sort(
    (x, y) => x.length - y.length || x.symbol - y.symbol,
  );
  const first = bySize[0]!;
  t.is(first.code, 0, 'the first code is all 0s');
  for (let i = 1; i < bySize.length; i += 1) {
    const previous = bySize[i - 1]!;
    const current = bySize[i]!;
    t.is(
      current.code,
      (previous.code + 1) * 2 ** (current.length - previous.length),
      `symbol ${current.symbol} follows symbol ${previous.symbol}`,
    );
  }
  t.is(bySize.at(-1)!.code, 2 ** 30 - 1, 'the last code (EOS) is all 1s');
});

test('every octet round-trips through Huffman coding, whatever the padding length', (t) => {
  const all = Array.from({ length: 256 }, (_, octet) => String.fromCharCode(octet)).join('');
  t.is(huffman(huffmanEncode(all)), all);
  for (let octet = 0; octet < 256; octet += 1) {
    const text = String.fromCharCode(octet).repeat(3);
    t.is(huffman(huffmanEncode(text)), text, `octet ${octet}`);
  }
  t.is(huffman(Buffer.alloc(0)), '');
  const www = huffmanEncode('www');
  const framed = Buffer.concat([Buffer.from([0x00]), www, Buffer.from([0x00])]);
  t.is(decodeHuffman(framed, 1, 1 + www.length), 'www', 'decodes only [start, end)');
});

test('Huffman decoding rejects EOS, padding over 7 bits, and padding that is not all 1s', (t) => {
  // Thirty 1s are EOS itself, here followed by two 1s of padding.
  throwsHpack(t, () => huffman(Buffer.from([0xff, 0xff, 0xff, 0xff])), /EOS/);
  throwsHpack(
    t,
    () => huffman(Buffer.concat([huffmanEncode('a'), Buffer.from([0xff, 0xff, 0xff, 0xff])])),
    /EOS/,
  );
  // '0' is 00000: three 1s of padding are fine, eleven or a whole octet are not.
  t.is(huffman(Buffer.from([0x07])), '0');
  throwsHpack(t, () => huffman(Buffer.from([0x07, 0xff])), /padding/);
  throwsHpack(t, () => huffman(Buffer.from([0xff])), /padding/);
  throwsHpack(t, () => huffman(huffmanEncode('ab', { bits: 13, value: 0x1fff })), /padding/);
  // Padding with a 0 in it: after '0', the bits 110 and 000 are not prefixes of EOS.
  throwsHpack(t, () => huffman(Buffer.from([0x06])), /padding/);
  throwsHpack(t, () => huffman(Buffer.from([0x00])), /padding/);
  throwsHpack(t, () => huffman(huffmanEncode('ab', { bits: 5, value: 0b11110 })), /padding/);
});

// ---- Decoder rules and errors ----

test('an indexed field with index 0 or beyond both tables is an HpackError', (t) => {
  throwsHpack(t, () => new HpackDecoder(4096).decode(Buffer.from([0x80])), /index 0/);
  throwsHpack(
    t,
    () => new HpackDecoder(4096).decode(Buffer.from([0xbe])),
    /^hpack: index 62 is beyond the tables \(61 static \+ 0 dynamic\)$/,
  );
  const decoder = new HpackDecoder(4096);
  decoder.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'));
  t.deepEqual(decoder.decode(Buffer.from([0xbe])), [['custom-key', 'custom-header']]);
  throwsHpack(
    t,
    () => decoder.decode(Buffer.from([0xbf])),
    /index 63 is beyond the tables \(61 static \+ 1 dynamic\)/,
  );
  // A literal's name index is checked the same way.
  throwsHpack(t, () => decoder.decode(Buffer.from([0x0f, 0x30, 0x00])), /index 63 is beyond/);
});

test('a dynamic table size update may shrink the table, but not above the advertised size', (t) => {
  const decoder = new HpackDecoder(4096);
  decoder.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'));
  t.is(decoder.dynamicTableBytes, 55);
  // 0x3f 0xe1 0x1f is 4096 on a 5-bit prefix: allowed, evicts nothing.
  t.deepEqual(decoder.decode(Buffer.from([0x3f, 0xe1, 0x1f])), []);
  t.is(decoder.dynamicTableBytes, 55);
  // Two updates may open a block: down to 0 (evicting everything), back up to 100, then a field.
  t.deepEqual(decoder.decode(Buffer.from([0x20, 0x3f, 0x45, 0x82])), [[':method', 'GET']]);
  t.deepEqual(decoder.dynamicTable(), []);
  t.is(decoder.dynamicTableBytes, 0);
  // Within 100 octets, a 55-octet entry fits and a second one evicts the first.
  decoder.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'));
  decoder.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65'));
  t.deepEqual(decoder.dynamicTable(), [['custom-key', 'custom-value']]);
  t.is(decoder.dynamicTableBytes, 54);

  // 4097: one more than advertised.
  throwsHpack(
    t,
    () => new HpackDecoder(4096).decode(Buffer.from([0x3f, 0xe2, 0x1f])),
    /4097 exceeds the advertised 4096/,
  );
});

test('a dynamic table size update after a header field is an HpackError (RFC 7541 §4.2)', (t) => {
  throwsHpack(
    t,
    () => new HpackDecoder(4096).decode(Buffer.from([0x82, 0x20])),
    /after the first header field/,
  );
  t.deepEqual(new HpackDecoder(4096).decode(Buffer.from([0x20, 0x82])), [[':method', 'GET']]);
});

test('an entry larger than the whole table empties it without an error', (t) => {
  const decoder = new HpackDecoder(64);
  decoder.decode(Buffer.concat([Buffer.from([0x40, 0x01, 0x61, 0x01, 0x62])]));
  t.deepEqual(decoder.dynamicTable(), [['a', 'b']]);
  t.is(decoder.dynamicTableBytes, 34);
  // 'k' + 31 octets + 32 = 64 fits exactly, evicting a: b; one octet more fits nowhere.
  const exactly = Buffer.concat([Buffer.from([0x40, 0x01, 0x6b, 0x1f]), Buffer.alloc(31, 0x76)]);
  t.deepEqual(decoder.decode(exactly), [['k', 'v'.repeat(31)]]);
  t.deepEqual(decoder.dynamicTable(), [['k', 'v'.repeat(31)]]);
  t.is(decoder.dynamicTableBytes, 64);
  const tooBig = Buffer.concat([Buffer.from([0x40, 0x01, 0x6b, 0x20]), Buffer.alloc(32, 0x76)]);
  t.deepEqual(decoder.decode(tooBig), [['k', 'v'.repeat(32)]]);
  t.deepEqual(decoder.dynamicTable(), []);
  t.is(decoder.dynamicTableBytes, 0);
});

test('truncated integers and strings are HpackErrors', (t) => {
  const decode = (bytes: number[]) => () => new HpackDecoder(4096).decode(Buffer.from(bytes));
  // Prefix all 1s with no continuation octet, or a continuation octet promising another.
  throwsHpack(t, decode([0xff]), /ends inside an integer/);
  throwsHpack(t, decode([0xff, 0x80]), /ends inside an integer/);
  throwsHpack(t, decode([0x3f]), /ends inside an integer/);
  // :path with a 12-octet value of which one octet is there.
  throwsHpack(t, decode([0x04, 0x0c, 0x2f]), /string of 12 octets runs past the end of the block \(1 left\)/);
  // A literal whose name, or whose value, is missing altogether.
  throwsHpack(t, decode([0x40]), /ends before a string/);
  throwsHpack(t, decode([0x00, 0x01, 0x61]), /ends before a string/);
  throwsHpack(t, decode([0x40, 0x7f]), /ends inside an integer/);
  throwsHpack(t, decode([0x04, 0x8c, 0xf1, 0xe3]), /runs past the end/);
});

test('integer overflow and runaway continuation octets are HpackErrors', (t) => {
  const decode = (bytes: number[]) => () => new HpackDecoder(4096).decode(Buffer.from(bytes));
  // 127 + 0x7f + 0x7f<<7 + ... : past 2^31 - 1.
  throwsHpack(t, decode([0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]), /integer exceeds 2147483647/);
  // Zero-valued continuation octets never overflow, but there is a limit to how many may come.
  throwsHpack(t, decode([0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]), /continuation octets/);
  // The largest index the integer coding allows is merely out of range.
  throwsHpack(t, decode([0xff, 0x80, 0xff, 0xff, 0xff, 0x07]), /beyond the tables/);
});

// ---- Encoder ----

test(':status 200 encodes to the single octet 0x88', (t) => {
  t.deepEqual(encodeHeaderBlock([[':status', '200']]), Buffer.from([0x88]));
});

test('the encoder uses static indexes for exact matches and names, literal names otherwise', (t) => {
  t.deepEqual(
    encodeHeaderBlock([
      ['content-type', 'application/grpc'],
      ['grpc-status', '0'],
      [':status', '302'],
      ['accept-encoding', 'gzip, deflate'],
    ]),
    Buffer.concat([
      Buffer.from([0x0f, 0x10, 0x10]),
      Buffer.from('application/grpc'),
      Buffer.from([0x00, 0x0b]),
      Buffer.from('grpc-status'),
      Buffer.from([0x01, 0x30]),
      // :status is name index 8 (its first entry), which fits the 4-bit prefix.
      Buffer.from([0x08, 0x03]),
      Buffer.from('302'),
      Buffer.from([0x90]),
    ]),
  );
});

test('encoded blocks decode to the same fields and leave the dynamic table empty', (t) => {
  const fields: HeaderField[] = [
    [':status', '200'],
    [':status', '503'],
    ['content-type', 'application/grpc'],
    ['grpc-encoding', 'identity'],
    ['grpc-accept-encoding', 'identity,deflate,gzip'],
    ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'],
    ['accept-encoding', 'gzip, deflate'],
    ['grpc-status', '14'],
    ['grpc-message', 'upstream%20unavailable'],
    ['x-latin1', 'caf\u00e9 \u00ff\u0000'],
    ['x-empty', ''],
    ['x-126', 'a'.repeat(126)],
    ['x-127', 'b'.repeat(127)],
    ['x-128', 'c'.repeat(128)],
    ['x-300', 'd'.repeat(300)],
    ['x-70000', 'e'.repeat(70000)],
    ['n'.repeat(200), 'long name'],
  ];
  const decoder = new HpackDecoder(4096);
  t.deepEqual(decoder.decode(encodeHeaderBlock(fields)), fields);
  t.deepEqual(decoder.dynamicTable(), []);
  t.is(decoder.dynamicTableBytes, 0);
  t.deepEqual(decoder.decode(encodeHeaderBlock([])), []);
});

test('the encoder refuses characters that latin1 cannot carry', (t) => {
  t.throws(() => encodeHeaderBlock([['grpc-message', 'caf\u00e9 \u2603']]), { instanceOf: RangeError });
});
