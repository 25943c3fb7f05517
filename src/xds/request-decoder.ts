/**
 * A DiscoveryRequest decoder for the hot path. Envoy repeats its whole EDS subscription (every cluster
 * name) in every SotW ACK; with 1000 clusters and 1000 Envoys that is a million strings per change.
 * This decoder keeps `resource_names` as the raw bytes they arrived in and decodes them only when a
 * stream's subscription actually differs from its previous request. Other fields go through protobufjs.
 *
 * Even walking the name fields costs a million steps per change at that scale, so the caller passes the
 * `resource_names` bytes of the stream's previous requests: when the message holds the same bytes at the
 * same place, one memcmp skips them, and the result shares the previous buffer.
 *
 * The result may view `bytes`, which the transport reuses for its next message (grpc-transport.ts): use
 * it before then, and copy whatever is kept (sotw.ts copies the names bytes it holds on to).
 */
import { codecFor } from '../protos/envoy-protos.js';
import type { DiscoveryRequest, EnvoyNode, RpcStatus } from './messages.js';
import { SERVED_TYPE_URLS } from './resource-types.js';

const VERSION_INFO = 1;
const NODE = 2;
const RESOURCE_NAMES = 3;
const TYPE_URL = 4;
const RESPONSE_NONCE = 5;
const ERROR_DETAIL = 6;

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

/** A decoded request whose `resource_names` are materialised on first access. */
export interface LazyDiscoveryRequest extends DiscoveryRequest {
  /** The encoded `resource_names` fields exactly as received: equal bytes, equal subscription. */
  readonly resourceNamesBytes: Buffer;
}

/**
 * A class rather than an object literal with a getter: one is made for every request of every stream,
 * and V8 builds a literal with a getter and optional fields as a slow, larger object each time.
 */
class DecodedDiscoveryRequest implements LazyDiscoveryRequest {
  version_info: string | undefined = undefined;
  type_url: string | undefined = undefined;
  response_nonce: string | undefined = undefined;
  node: EnvoyNode | undefined = undefined;
  error_detail: RpcStatus | undefined = undefined;
  resourceNamesBytes: Buffer = NO_BYTES;
  readonly #bytes: Buffer;
  #namesStart = -1;
  #namesEnd = -1;
  #names: string[] | undefined;

  constructor(bytes: Buffer) {
    this.#bytes = bytes;
  }

  get resource_names(): string[] {
    this.#names ??= namesIn(this.#bytes, this.#namesStart, this.#namesEnd);
    return this.#names;
  }

  setNames(start: number, end: number, reused: Buffer | undefined): void {
    this.#namesStart = start;
    this.#namesEnd = end;
    this.resourceNamesBytes =
      start < 0 ? NO_BYTES : reused?.length === end - start ? reused : this.#bytes.subarray(start, end);
  }
}

const NO_BYTES = Buffer.alloc(0);

/**
 * Type URLs a client sends: decoded once and shared, not decoded again as a new string for every
 * request (a string, like every allocation on this path, is paid for 1000 times per change).
 */
const KNOWN_TYPE_URLS = [...SERVED_TYPE_URLS].map((url) => ({ url, bytes: Buffer.from(url, 'utf8') }));

function typeUrlAt(bytes: Buffer, start: number, end: number): string {
  for (const known of KNOWN_TYPE_URLS) {
    if (known.bytes.length === end - start && bytes.compare(known.bytes, 0, end - start, start, end) === 0)
      return known.url;
  }
  return bytes.toString('utf8', start, end);
}

/** Where the varint at `at` ends; throws if it runs past the message or over 10 bytes. */
function varintEnd(bytes: Buffer, at: number): number {
  // Tags and lengths below 128 are one byte: the common case, kept cheap.
  if ((bytes[at] ?? 0x80) < 0x80) return at + 1;
  for (let i = at; i < at + 10; i++) {
    const b = bytes[i];
    if (b === undefined) throw new RangeError('truncated varint');
    if (b < 0x80) return i + 1;
  }
  throw new RangeError('varint too long');
}

/** The value of the varint at `at`; where it ends, and whether it is whole, is varintEnd's to say. */
function varintValue(bytes: Buffer, at: number): number {
  const first = bytes[at] ?? 0;
  if (first < 0x80) return first;
  let result = 0;
  let scale = 1;
  for (let i = at; ; i++) {
    const b = bytes[i] ?? 0;
    result += (b & 0x7f) * scale;
    if (b < 0x80) return result;
    scale *= 128;
  }
}

export function decodeDiscoveryRequest(
  bytes: Buffer,
  recentNames: readonly Buffer[] = [],
): LazyDiscoveryRequest {
  const request = new DecodedDiscoveryRequest(bytes);
  let offset = 0;
  /** The previous names bytes found verbatim at the first name field, if any. */
  let reused: Buffer | undefined;
  let namesStart = -1;
  let namesEnd = -1;

  while (offset < bytes.length) {
    const fieldStart = offset;
    const tag = varintValue(bytes, offset);
    offset = varintEnd(bytes, offset);
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (field === 0) throw new RangeError('invalid field number 0');
    if (wire === WIRE_LEN) {
      const length = varintValue(bytes, offset);
      const start = varintEnd(bytes, offset);
      const end = start + length;
      if (end > bytes.length) throw new RangeError(`field ${field} overruns the message`);
      offset = end;
      switch (field) {
        case VERSION_INFO:
          request.version_info = bytes.toString('utf8', start, end);
          break;
        case NODE:
          request.node = codecFor<EnvoyNode>('envoy.config.core.v3.Node').decode(bytes.subarray(start, end));
          break;
        case RESOURCE_NAMES:
          if (namesStart < 0) {
            namesStart = fieldStart;
            // A previous request's names are whole, validated fields: equal bytes can be skipped.
            for (const names of recentNames) {
              if (
                names.length >= end - fieldStart &&
                fieldStart + names.length <= bytes.length &&
                bytes.compare(names, 0, names.length, fieldStart, fieldStart + names.length) === 0
              ) {
                reused = names;
                break;
              }
            }
            if (reused) {
              offset = fieldStart + reused.length;
              namesEnd = offset;
              break;
            }
          }
          namesEnd = end;
          break;
        case TYPE_URL:
          request.type_url = typeUrlAt(bytes, start, end);
          break;
        case RESPONSE_NONCE:
          request.response_nonce = bytes.toString('utf8', start, end);
          break;
        case ERROR_DETAIL:
          request.error_detail = codecFor<RpcStatus>('google.rpc.Status').decode(bytes.subarray(start, end));
          break;
        default:
          break; // resource_locators and fields from newer protos: not used here
      }
    } else if (wire === WIRE_VARINT) {
      offset = varintEnd(bytes, offset);
    } else if (wire === WIRE_I64) {
      offset += 8;
    } else if (wire === WIRE_I32) {
      offset += 4;
    } else {
      throw new RangeError(`unsupported wire type ${wire} for field ${field}`);
    }
    if (offset > bytes.length) throw new RangeError('message truncated');
  }
  request.setNames(namesStart, namesEnd, reused);
  return request;
}

/**
 * The resource names inside [start, end) of an already validated request. Other fields may sit between
 * name fields (protobuf allows any order), so every field is walked and only field 3 is kept.
 */
function namesIn(bytes: Buffer, start: number, end: number): string[] {
  const names: string[] = [];
  if (start < 0) return names;
  let offset = start;
  while (offset < end) {
    const tag = varintValue(bytes, offset);
    offset = varintEnd(bytes, offset);
    const wire = tag & 7;
    if (wire === WIRE_LEN) {
      const length = varintValue(bytes, offset);
      offset = varintEnd(bytes, offset);
      if (Math.floor(tag / 8) === RESOURCE_NAMES) names.push(bytes.toString('utf8', offset, offset + length));
      offset += length;
    } else if (wire === WIRE_VARINT) offset = varintEnd(bytes, offset);
    else offset += wire === WIRE_I64 ? 8 : 4;
  }
  return names;
}
