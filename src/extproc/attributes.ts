/**
 * Turns what Envoy sends with `response_headers` (a header map and a map of CEL attribute Structs) into
 * classify's ResponseFacts. Pure and tolerant: Envoy versions differ in how they print values (numbers as
 * `number_value`, as strings, or as CEL's `2u`), in where header values live (`value` or `raw_value`), and
 * in which filter name keys the attribute map, so nothing here assumes one shape.
 */
import { HOST_METADATA_NAMESPACE, HostMetadataKey } from '../model/metadata.js';
import type { ResponseFacts } from './classify.js';

const hostMetadata = (key: string): string =>
  `xds.upstream_host_metadata.filter_metadata['${HOST_METADATA_NAMESPACE}']['${key}']`;

/** CEL expressions Envoy must evaluate for each response; the bootstraps in envoy/ list exactly these. */
export const ResponseAttribute = {
  CODE_DETAILS: 'response.code_details',
  FLAGS: 'response.flags',
  CLUSTER_NAME: 'xds.cluster_name',
  UPSTREAM_ADDRESS: 'upstream.address',
  REQUEST_ID: 'request.id',
  /** The answer to a HEAD request must not carry a body (problem.ts): only the method says so. */
  REQUEST_METHOD: 'request.method',
  /** W3C trace context of the request, so a mapped error names the trace it belongs to (problem.ts). */
  TRACEPARENT: "request.headers['traceparent']",
  HOST_STATE: hostMetadata(HostMetadataKey.STATE),
  HOST_POD: hostMetadata(HostMetadataKey.POD),
} as const;

export const EXTPROC_RESPONSE_ATTRIBUTES: readonly string[] = Object.values(ResponseAttribute);

/**
 * google.protobuf.Value as protobufjs decodes it: snake_case when the type comes from the descriptor
 * bundle (keepCase), camelCase from protobufjs's built-in well-known types. Both are accepted.
 */
export interface DecodedValue {
  number_value?: number;
  string_value?: string;
  bool_value?: boolean;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
}
export interface DecodedStruct {
  fields?: Record<string, DecodedValue | undefined>;
}
export interface DecodedHeaderValue {
  key?: string;
  value?: string;
  raw_value?: Uint8Array;
}

/** The value of one attribute as text or number, whichever way Envoy printed it. */
export type AttributeValue = string | number | boolean;

/** Merges the per-filter attribute Structs into one flat map (the filter-name key varies with config). */
export function flattenAttributes(
  attributes: Record<string, DecodedStruct | undefined> | undefined,
): Map<string, AttributeValue> {
  const flat = new Map<string, AttributeValue>();
  if (attributes === undefined || typeof attributes !== 'object') return flat;
  for (const struct of Object.values(attributes)) {
    const fields = struct?.fields;
    if (fields === undefined || typeof fields !== 'object') continue;
    for (const [name, value] of Object.entries(fields)) {
      // Decoders may hand over nulls for absent oneofs; the declared type does not admit that.
      if (typeof value !== 'object') continue;
      const text = value.string_value ?? value.stringValue;
      const number = value.number_value ?? value.numberValue;
      const bool = value.bool_value ?? value.boolValue;
      if (typeof text === 'string') flat.set(name, text);
      else if (typeof number === 'number') flat.set(name, number);
      else if (typeof bool === 'boolean') flat.set(name, bool);
    }
  }
  return flat;
}

/**
 * A non-negative integer from a number or its printed forms (`"64"`, `"64u"`, `"0x40"`, `"64.0"`);
 * undefined for anything else, so garbage never becomes a flag.
 */
export function parseUnsigned(value: AttributeValue | undefined): number | undefined {
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  }
  if (typeof value !== 'string') return undefined;
  const text = value.trim().replace(/u$/i, '');
  let parsed: number;
  if (/^0x[0-9a-f]+$/i.test(text)) parsed = Number.parseInt(text.slice(2), 16);
  else if (/^\d+(\.0+)?$/.test(text)) parsed = Number(text);
  else return undefined;
  return Number.isSafeInteger(parsed) ? parsed : undefined;
}

/** A printable string attribute; CEL prints some strings quoted, so one pair of quotes is dropped. */
export function parseText(value: AttributeValue | undefined): string | undefined {
  if (typeof value !== 'string') return undefined;
  const trimmed = value.trim();
  if (trimmed.length >= 2 && trimmed.startsWith('"') && trimmed.endsWith('"')) return trimmed.slice(1, -1);
  return trimmed.length > 0 ? trimmed : undefined;
}

/** Header value by (case-insensitive) name; `raw_value` wins as Envoy ≥ 1.27 sends only that. */
export function headerValue(
  headers: readonly DecodedHeaderValue[] | undefined,
  name: string,
): string | undefined {
  if (headers === undefined) return undefined;
  const wanted = name.toLowerCase();
  for (const header of headers) {
    if (typeof header !== 'object' || header.key?.toLowerCase() !== wanted) continue;
    if (header.raw_value !== undefined && header.raw_value.length > 0) {
      return Buffer.from(header.raw_value).toString('latin1');
    }
    return typeof header.value === 'string' ? header.value : '';
  }
  return undefined;
}

/** Everything classify needs, from one `response_headers` message. */
export function responseFacts(
  headers: readonly DecodedHeaderValue[] | undefined,
  attributes: Record<string, DecodedStruct | undefined> | undefined,
): ResponseFacts {
  const flat = flattenAttributes(attributes);
  const facts: { -readonly [K in keyof ResponseFacts]: ResponseFacts[K] } = {};
  const status = parseUnsigned(headerValue(headers, ':status'));
  if (status !== undefined) facts.status = status;
  const flags = parseUnsigned(flat.get(ResponseAttribute.FLAGS));
  if (flags !== undefined) facts.responseFlags = flags;
  const text = (attribute: string): string | undefined => parseText(flat.get(attribute));
  const codeDetails = text(ResponseAttribute.CODE_DETAILS);
  if (codeDetails !== undefined) facts.codeDetails = codeDetails;
  const hostState = text(ResponseAttribute.HOST_STATE);
  if (hostState !== undefined) facts.hostState = hostState;
  const clusterName = text(ResponseAttribute.CLUSTER_NAME);
  if (clusterName !== undefined) facts.clusterName = clusterName;
  const upstreamAddress = text(ResponseAttribute.UPSTREAM_ADDRESS);
  if (upstreamAddress !== undefined) facts.upstreamAddress = upstreamAddress;
  const pod = text(ResponseAttribute.HOST_POD);
  if (pod !== undefined) facts.pod = pod;
  const method = text(ResponseAttribute.REQUEST_METHOD);
  if (method !== undefined) facts.method = method;
  const traceparent = text(ResponseAttribute.TRACEPARENT);
  if (traceparent !== undefined) facts.traceparent = traceparent;
  const requestId = text(ResponseAttribute.REQUEST_ID);
  if (requestId !== undefined) facts.requestId = requestId;
  // request.id may fail to evaluate in some versions; the header is what clients see anyway.
  if (facts.requestId === undefined) {
    const fromHeader = headerValue(headers, 'x-request-id');
    if (fromHeader !== undefined && fromHeader.length > 0) facts.requestId = fromHeader;
  }
  return facts;
}
