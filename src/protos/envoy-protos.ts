/**
 * Loads Envoy's message types from the descriptor bundle `npm run build` compiles out of the pinned
 * @grpc/grpc-js-xds protos, and offers encode/decode per message. The only module that touches protobufjs
 * reflection, so a codec swap stays local.
 */
import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';
import { ErrorCode, ReadygateError } from '../errors.js';

const BUNDLE_URL = new URL('../../generated/envoy-protos.json', import.meta.url);

/** Decode options: snake_case names as in the protos, enums as names, 64-bit ints as numbers. */
const DECODE_OPTIONS: protobuf.IConversionOptions = {
  longs: Number,
  enums: String,
  bytes: Buffer,
  defaults: false,
  arrays: true,
  objects: false,
  oneofs: false,
};

let cachedRoot: protobuf.Root | undefined;

export function envoyRoot(): protobuf.Root {
  if (cachedRoot) return cachedRoot;
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(BUNDLE_URL, 'utf8'));
  } catch (error) {
    throw new ReadygateError(
      ErrorCode.PROTOS_MISSING,
      `Envoy descriptor bundle not found at ${BUNDLE_URL.pathname}; run \`npm run build\``,
      { cause: error },
    );
  }
  cachedRoot = protobuf.Root.fromJSON(json as protobuf.INamespace);
  return cachedRoot;
}

const typeCache = new Map<string, protobuf.Type>();

/** A message type by its full name, e.g. `envoy.config.cluster.v3.Cluster`. */
export function messageType(fullName: string): protobuf.Type {
  let type = typeCache.get(fullName);
  if (!type) {
    type = envoyRoot().lookupType(fullName);
    typeCache.set(fullName, type);
  }
  return type;
}

export interface MessageCodec<T> {
  readonly fullName: string;
  /** Encodes a plain object; throws a descriptive error if a field does not fit the schema. */
  encode(value: T): Buffer;
  decode(bytes: Uint8Array): T;
}

export function codecFor<T>(fullName: string): MessageCodec<T> {
  const type = messageType(fullName);
  return {
    fullName,
    encode(value: T): Buffer {
      const bytes = type.encode(type.fromObject(value as Record<string, unknown>)).finish();
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    },
    decode(bytes: Uint8Array): T {
      return type.toObject(type.decode(bytes), DECODE_OPTIONS) as T;
    },
  };
}

/** `type.googleapis.com/<full name>`: the type URL Envoy expects in Any and in xDS requests. */
export function typeUrlOf(fullName: string): string {
  return `type.googleapis.com/${fullName}`;
}

/** An Any as protobufjs wants it for encoding: the type URL plus already-encoded bytes. */
export interface AnyMessage {
  type_url: string;
  value: Uint8Array;
}

/** Packs a plain object into an Any by encoding it with its own type. */
export function packAny(fullName: string, value: object): AnyMessage {
  return { type_url: typeUrlOf(fullName), value: codecFor<object>(fullName).encode(value) };
}
