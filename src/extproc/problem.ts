/**
 * The RFC 9457 problem document and headers readygate answers with when it replaces a response. Pure, so
 * the exact bytes clients see are unit-tested; upstream addresses and pod names appear only in debug mode
 * because they describe the inside of the cluster.
 */
import { FailureCause, type ResponseFacts } from './classify.js';

export const PROBLEM_TYPE_BASE = 'https://readygate.dev/problems/';
export const PROBLEM_CONTENT_TYPE = 'application/problem+json';
export const CAUSE_HEADER = 'x-readygate-cause';

interface CauseText {
  readonly title: string;
  readonly detail: string;
}

const CAUSE_TEXT: Readonly<Record<FailureCause, CauseText>> = {
  [FailureCause.NO_HEALTHY_UPSTREAM]: {
    title: 'No ready endpoint',
    detail: 'The service has no endpoint ready to take this request right now.',
  },
  [FailureCause.CLUSTER_NOT_FOUND]: {
    title: 'Service not configured',
    detail: 'The route points at a service the gateway does not know (yet).',
  },
  [FailureCause.UPSTREAM_OVERFLOW]: {
    title: 'Service overloaded',
    detail: 'The gateway’s limit of concurrent requests to the service was reached.',
  },
  [FailureCause.UPSTREAM_CONNECT_FAILURE]: {
    title: 'Endpoint unreachable',
    detail: 'The gateway could not connect to an endpoint of the service; the request was not delivered.',
  },
  [FailureCause.ENDPOINT_TERMINATING]: {
    title: 'Endpoint shutting down',
    detail: 'The endpoint that took the request is shutting down and failed it; a retry reaches another one.',
  },
  [FailureCause.UPSTREAM_PROTOCOL_ERROR]: {
    title: 'Invalid upstream response',
    detail: 'The service answered with something that is not a valid HTTP response.',
  },
  [FailureCause.UPSTREAM_CONNECTION_TERMINATION]: {
    title: 'Upstream closed the connection',
    detail: 'The service closed the connection before sending a response.',
  },
  [FailureCause.UPSTREAM_RESET]: {
    title: 'Upstream reset the request',
    detail: 'The service reset the request before sending a response.',
  },
  [FailureCause.UPSTREAM_LOCAL_RESET]: {
    title: 'Upstream request reset',
    detail: 'The request to the service was reset before a response arrived.',
  },
  [FailureCause.UPSTREAM_TIMEOUT]: {
    title: 'Upstream timed out',
    detail: 'The service did not answer within the route’s timeout.',
  },
  [FailureCause.UPSTREAM_PER_TRY_TIMEOUT]: {
    title: 'Upstream timed out',
    detail: 'The service did not answer within the per-try timeout, and no retry was left.',
  },
  [FailureCause.UPSTREAM_MAX_STREAM_DURATION]: {
    title: 'Upstream timed out',
    detail: 'The request to the service exceeded its maximum stream duration.',
  },
};

export interface ProblemDocument {
  type: string;
  title: string;
  status: number;
  detail: string;
  request_id?: string;
  /** W3C trace id from the request's `traceparent`, to find the failed request's trace. */
  trace_id?: string;
  cluster?: string;
  upstream?: string;
  pod?: string;
}

export interface ProblemResponse {
  readonly status: number;
  /** Lower-case header names; values are final (no appending). */
  readonly headers: Readonly<Record<string, string>>;
  /** The problem document; undefined when the response must not have content (see hasNoContent). */
  readonly body: Buffer | undefined;
}

/**
 * RFC 9110 §6.4.1: the response to HEAD, and every 1xx, 204 and 304, has no content. A body added to one
 * is read by an HTTP/1.1 client as the start of the next response on the connection, and makes an
 * HTTP/2 client reset the stream (PROTOCOL_ERROR). readygate only ever sends 502/503/504, so in practice
 * this is HEAD; the status rule keeps the function true to its name. An unknown method (the attribute
 * missing from the bootstrap) keeps the body: every other method's 5xx has one.
 */
export function hasNoContent(method: string | undefined, status: number): boolean {
  return method === 'HEAD' || (status >= 100 && status < 200) || status === 204 || status === 304;
}

/**
 * W3C Trace Context `traceparent`: version-traceid-parentid-flags, lowercase hex. Version ff is invalid;
 * version 00 has exactly these four fields, later versions may append more after a '-'.
 */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ALL_ZERO = /^0+$/;

/**
 * The trace id of a valid `traceparent`, or undefined. An invalid header (or an all-zero trace or parent
 * id, which the spec says to treat as invalid) gives none: a wrong id would send someone to the wrong trace.
 */
export function traceIdOf(traceparent: string | undefined): string | undefined {
  if (traceparent === undefined) return undefined;
  const match = TRACEPARENT.exec(traceparent.trim());
  if (!match) return undefined;
  const [, version, traceId, parentId, , rest] = match;
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (traceId === undefined || ALL_ZERO.test(traceId) || parentId === undefined || ALL_ZERO.test(parentId)) {
    return undefined;
  }
  return traceId;
}

export function problemTypeUri(cause: FailureCause): string {
  return `${PROBLEM_TYPE_BASE}${cause}`;
}

export function problemResponse(
  decision: { status: number; cause: FailureCause; retryAfterSeconds?: number },
  facts: ResponseFacts,
  options: { debug: boolean },
): ProblemResponse {
  const text = CAUSE_TEXT[decision.cause];
  const document: ProblemDocument = {
    type: problemTypeUri(decision.cause),
    title: text.title,
    status: decision.status,
    detail: text.detail,
  };
  if (facts.requestId !== undefined) document.request_id = facts.requestId;
  const traceId = traceIdOf(facts.traceparent);
  if (traceId !== undefined) document.trace_id = traceId;
  if (options.debug) {
    if (facts.clusterName !== undefined) document.cluster = facts.clusterName;
    if (facts.upstreamAddress !== undefined) document.upstream = facts.upstreamAddress;
    if (facts.pod !== undefined) document.pod = facts.pod;
  }
  const headers: Record<string, string> = {
    'content-type': PROBLEM_CONTENT_TYPE,
    [CAUSE_HEADER]: decision.cause,
    // The upstream's caching headers described its own body, not this one.
    'cache-control': 'no-store',
  };
  if (decision.retryAfterSeconds !== undefined) headers['retry-after'] = String(decision.retryAfterSeconds);
  if (hasNoContent(facts.method, decision.status)) {
    // Same headers as the GET would get (RFC 9110 §9.3.2), without the content.
    return { status: decision.status, headers, body: undefined };
  }
  return { status: decision.status, headers, body: Buffer.from(JSON.stringify(document), 'utf8') };
}
