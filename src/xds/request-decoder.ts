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

export function decodeDiscoveryRequest(
  bytes: Buffer,
  recentNames: readonly Buffer[] = [],
): LazyDiscoveryRequest {
  let offset = 0;
  /** The previous names bytes found verbatim at the first name field, if any. */
  let reused: Buffer | undefined;
  const readVarint = (): number => {
    // Tags and lengths below 128 are one byte: the common case, kept cheap.
    const first = bytes[offset];
    if (first !== undefined && first < 0x80) {
      offset += 1;
      return first;
    }
    let result = 0;
    let shift = 0;
    for (let i = 0; i < 10; i++) {
      if (offset >= bytes.length) throw new RangeError('truncated varint');
      const b = bytes[offset++] ?? 0;
      result += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return result;
      shift += 7;
    }
    throw new RangeError('varint too long');
  };
  let versionInfo: string | undefined;
  let typeUrl: string | undefined;
  let nonce: string | undefined;
  let node: EnvoyNode | undefined;
  let errorDetail: RpcStatus | undefined;
  let namesStart = -1;
  let namesEnd = -1;

  while (offset < bytes.length) {
    const fieldStart = offset;
    const tag = readVarint();
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (field === 0) throw new RangeError('invalid field number 0');
    if (wire === WIRE_LEN) {
      const length = readVarint();
      const start = offset;
      const end = start + length;
      if (end > bytes.length) throw new RangeError(`field ${field} overruns the message`);
      offset = end;
      switch (field) {
        case VERSION_INFO:
          versionInfo = bytes.toString('utf8', start, end);
          break;
        case NODE:
          node = codecFor<EnvoyNode>('envoy.config.core.v3.Node').decode(bytes.subarray(start, end));
          break;
        case RESOURCE_NAMES:
          if (namesStart < 0) {
            namesStart = fieldStart;
            // A previous request's names are whole, validated fields: equal bytes can be skipped.
            reused = recentNames.find(
              (names) =>
                names.length >= end - fieldStart &&
                fieldStart + names.length <= bytes.length &&
                bytes.compare(names, 0, names.length, fieldStart, fieldStart + names.length) === 0,
            );
            if (reused) {
              offset = fieldStart + reused.length;
              namesEnd = offset;
              break;
            }
          }
          namesEnd = end;
          break;
        case TYPE_URL:
          typeUrl = bytes.toString('utf8', start, end);
          break;
        case RESPONSE_NONCE:
          nonce = bytes.toString('utf8', start, end);
          break;
        case ERROR_DETAIL:
          errorDetail = codecFor<RpcStatus>('google.rpc.Status').decode(bytes.subarray(start, end));
          break;
        default:
          break; // resource_locators and fields from newer protos: not used here
      }
    } else if (wire === WIRE_VARINT) {
      readVarint();
    } else if (wire === WIRE_I64) {
      offset += 8;
    } else if (wire === WIRE_I32) {
      offset += 4;
    } else {
      throw new RangeError(`unsupported wire type ${wire} for field ${field}`);
    }
    if (offset > bytes.length) throw new RangeError('message truncated');
  }

  const resourceNamesBytes =
    namesStart < 0
      ? Buffer.alloc(0)
      : reused?.length === namesEnd - namesStart
        ? reused
        : bytes.subarray(namesStart, namesEnd);
  let names: string[] | undefined;
  const request: LazyDiscoveryRequest = {
    resourceNamesBytes,
    get resource_names(): string[] {
      names ??= namesIn(bytes, namesStart, namesEnd);
      return names;
    },
    ...(versionInfo === undefined ? {} : { version_info: versionInfo }),
    ...(typeUrl === undefined ? {} : { type_url: typeUrl }),
    ...(nonce === undefined ? {} : { response_nonce: nonce }),
    ...(node === undefined ? {} : { node }),
    ...(errorDetail === undefined ? {} : { error_detail: errorDetail }),
  };
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
  const readVarint = (): number => {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = bytes[offset++] ?? 0;
      result += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return result;
      shift += 7;
    }
  };
  while (offset < end) {
    const tag = readVarint();
    const wire = tag & 7;
    if (wire === WIRE_LEN) {
      const length = readVarint();
      if (Math.floor(tag / 8) === RESOURCE_NAMES) names.push(bytes.toString('utf8', offset, offset + length));
      offset += length;
    } else if (wire === WIRE_VARINT) readVarint();
    else offset += wire === WIRE_I64 ? 8 : 4;
  }
  return names;
}
