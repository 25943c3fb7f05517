/**
 * The failure table: what readygate does with a 5xx that Envoy is about to send downstream. Pure — no I/O,
 * no clock — so every row can be tested without Envoy and the server stays a thin protocol shell.
 *
 * Inputs are the facts Envoy hands ext_proc with the response headers (`:status`, `response.flags`,
 * `response.code_details`, the upstream host's readygate metadata). Envoy's flag bits and detail strings are
 * matched both ways: flags when present, detail prefixes when the flags are missing or zero, so an attribute
 * that failed to evaluate does not turn a connect failure into a pass-through.
 */
import { EndpointState } from '../model/metadata.js';

/**
 * Bit positions of `response.flags` (`StreamInfo::legacyResponseFlags()`: bit n = `CoreResponseFlag` n).
 * Verified against Envoy 1.36.4 by test/integration/extproc-causes.test.ts, which records what arrives.
 */
export const ResponseFlagBit = {
  /** LH: failed local health check. */
  FAILED_LOCAL_HEALTH_CHECK: 1 << 0,
  /** UH: no healthy upstream host. */
  NO_HEALTHY_UPSTREAM: 1 << 1,
  /** UT: upstream request timeout (route or per-try). */
  UPSTREAM_REQUEST_TIMEOUT: 1 << 2,
  /** LR: local reset. */
  LOCAL_RESET: 1 << 3,
  /** UR: upstream remote reset. */
  UPSTREAM_REMOTE_RESET: 1 << 4,
  /** UF: upstream connection failure. */
  UPSTREAM_CONNECTION_FAILURE: 1 << 5,
  /** UC: upstream connection termination. */
  UPSTREAM_CONNECTION_TERMINATION: 1 << 6,
  /** UO: upstream overflow (circuit breaker). */
  UPSTREAM_OVERFLOW: 1 << 7,
  /** NR: no route found. */
  NO_ROUTE_FOUND: 1 << 8,
  /** URX: retry limit exceeded. */
  UPSTREAM_RETRY_LIMIT_EXCEEDED: 1 << 15,
  /** UMSDR: upstream max stream duration reached. */
  UPSTREAM_MAX_STREAM_DURATION_REACHED: 1 << 19,
  /** UPE: upstream protocol error. */
  UPSTREAM_PROTOCOL_ERROR: 1 << 23,
  /** NC: no cluster found. */
  NO_CLUSTER_FOUND: 1 << 24,
} as const;

/** Envoy's short names for the flags above, for logs and docs. */
const SHORT_FLAG_NAMES: readonly (readonly [number, string])[] = [
  [ResponseFlagBit.FAILED_LOCAL_HEALTH_CHECK, 'LH'],
  [ResponseFlagBit.NO_HEALTHY_UPSTREAM, 'UH'],
  [ResponseFlagBit.UPSTREAM_REQUEST_TIMEOUT, 'UT'],
  [ResponseFlagBit.LOCAL_RESET, 'LR'],
  [ResponseFlagBit.UPSTREAM_REMOTE_RESET, 'UR'],
  [ResponseFlagBit.UPSTREAM_CONNECTION_FAILURE, 'UF'],
  [ResponseFlagBit.UPSTREAM_CONNECTION_TERMINATION, 'UC'],
  [ResponseFlagBit.UPSTREAM_OVERFLOW, 'UO'],
  [ResponseFlagBit.NO_ROUTE_FOUND, 'NR'],
  [ResponseFlagBit.UPSTREAM_RETRY_LIMIT_EXCEEDED, 'URX'],
  [ResponseFlagBit.UPSTREAM_MAX_STREAM_DURATION_REACHED, 'UMSDR'],
  [ResponseFlagBit.UPSTREAM_PROTOCOL_ERROR, 'UPE'],
  [ResponseFlagBit.NO_CLUSTER_FOUND, 'NC'],
];

/** The short flags set in a bit-vector, in Envoy's order; unknown bits are shown as `bit<n>`. */
export function shortFlagNames(flags: number): string[] {
  const names: string[] = [];
  let known = 0;
  for (const [bit, name] of SHORT_FLAG_NAMES) {
    known |= bit;
    if ((flags & bit) !== 0) names.push(name);
  }
  const unknown = flags & ~known;
  for (let bit = 0; bit < 31; bit++) {
    if ((unknown & (1 << bit)) !== 0) names.push(`bit${bit}`);
  }
  return names;
}

/** Every cause readygate names; the values are the stable slugs used in problem `type` URIs and metrics. */
export const FailureCause = {
  NO_HEALTHY_UPSTREAM: 'no-healthy-upstream',
  CLUSTER_NOT_FOUND: 'cluster-not-found',
  UPSTREAM_OVERFLOW: 'upstream-overflow',
  UPSTREAM_CONNECT_FAILURE: 'upstream-connect-failure',
  ENDPOINT_TERMINATING: 'endpoint-terminating',
  UPSTREAM_PROTOCOL_ERROR: 'upstream-protocol-error',
  UPSTREAM_CONNECTION_TERMINATION: 'upstream-connection-termination',
  UPSTREAM_RESET: 'upstream-reset',
  UPSTREAM_LOCAL_RESET: 'upstream-local-reset',
  UPSTREAM_TIMEOUT: 'upstream-timeout',
  UPSTREAM_PER_TRY_TIMEOUT: 'upstream-per-try-timeout',
  UPSTREAM_MAX_STREAM_DURATION: 'upstream-max-stream-duration',
} as const;
export type FailureCause = (typeof FailureCause)[keyof typeof FailureCause];

/** Why a response is left alone; for logs and the pass-through metric. */
export const PassReason = {
  /** Not a 5xx: nothing to map. */
  NOT_5XX: 'not-5xx',
  /** The status is missing or not a number; changing what we cannot read would be guessing. */
  NO_STATUS: 'no-status',
  /** A 5xx from a healthy upstream: the application's own answer, never masked. */
  UPSTREAM_ANSWER: 'upstream-answer',
  /** A local reply readygate has no row for (another filter's, a direct response, ext_proc's own). */
  UNRECOGNISED_LOCAL_REPLY: 'unrecognised-local-reply',
  /** A timeout reply that is the client's fault (408: request not fully received). */
  CLIENT_TIMEOUT: 'client-timeout',
} as const;
export type PassReason = (typeof PassReason)[keyof typeof PassReason];

/** What Envoy told us about one response. Fields are absent when Envoy did not send them. */
export interface ResponseFacts {
  /** `:status` of the response headers. */
  readonly status?: number;
  /** `response.flags` bit-vector. */
  readonly responseFlags?: number;
  /** `response.code_details`, e.g. `via_upstream`, `no_healthy_upstream`. */
  readonly codeDetails?: string;
  /** `state` from the upstream host's `readygate` filter metadata. */
  readonly hostState?: string;
  readonly clusterName?: string;
  readonly upstreamAddress?: string;
  readonly pod?: string;
  readonly requestId?: string;
  /** The request's W3C `traceparent` header as sent; problem.ts validates it before using its trace id. */
  readonly traceparent?: string;
  /** `request.method` (methods are case-sensitive: only `HEAD` is HEAD); decides whether the replacement has a body. */
  readonly method?: string;
}

export type Decision =
  | { readonly action: 'pass'; readonly reason: PassReason }
  | {
      readonly action: 'replace';
      readonly status: 502 | 503 | 504;
      readonly cause: FailureCause;
      /** Seconds for `Retry-After`; set on every 503 (the condition is expected to clear soon). */
      readonly retryAfterSeconds?: number;
    };

/** How long clients should wait before retrying a 503: endpoints come back or move within seconds. */
export const RETRY_AFTER_SECONDS = 1;

const TERMINATING_STATES: ReadonlySet<string> = new Set([
  EndpointState.TERMINATING,
  EndpointState.TERMINATING_FALLBACK,
]);

const RESET_BEFORE_RESPONSE = 'upstream_reset_before_response_started';

/** Envoy joins reset reasons into details as `prefix{reason}`; older versions used `prefix{reason,...}`. */
function resetReason(codeDetails: string | undefined): string | undefined {
  if (codeDetails?.startsWith(RESET_BEFORE_RESPONSE) !== true) return undefined;
  const open = codeDetails.indexOf('{');
  if (open < 0) return '';
  const close = codeDetails.lastIndexOf('}');
  return codeDetails.slice(open + 1, close > open ? close : undefined);
}

function unavailable(cause: FailureCause): Decision {
  return { action: 'replace', status: 503, cause, retryAfterSeconds: RETRY_AFTER_SECONDS };
}

function replace(status: 502 | 504, cause: FailureCause): Decision {
  return { action: 'replace', status, cause };
}

/** The failure a router local reply stands for, from flags first and code details second. */
function routerFailure(facts: ResponseFacts): Decision | undefined {
  const flags = facts.responseFlags ?? 0;
  const details = facts.codeDetails ?? '';
  const has = (bit: number): boolean => (flags & bit) !== 0;
  const reason = resetReason(facts.codeDetails);

  // Order matters when Envoy sets several flags (retries accumulate them): a failure that means "no
  // upstream could even be picked" outranks what an earlier attempt ran into.
  if (has(ResponseFlagBit.NO_CLUSTER_FOUND) || details === 'cluster_not_found') {
    return unavailable(FailureCause.CLUSTER_NOT_FOUND);
  }
  if (has(ResponseFlagBit.NO_HEALTHY_UPSTREAM) || details === 'no_healthy_upstream') {
    return unavailable(FailureCause.NO_HEALTHY_UPSTREAM);
  }
  if (has(ResponseFlagBit.UPSTREAM_OVERFLOW) || reason?.startsWith('overflow') === true) {
    return unavailable(FailureCause.UPSTREAM_OVERFLOW);
  }
  if (details === 'maintenance_mode') return unavailable(FailureCause.UPSTREAM_OVERFLOW);
  if (has(ResponseFlagBit.UPSTREAM_REQUEST_TIMEOUT) || details.startsWith('upstream_per_try')) {
    if (details.startsWith('upstream_per_try')) return replace(504, FailureCause.UPSTREAM_PER_TRY_TIMEOUT);
    return replace(504, FailureCause.UPSTREAM_TIMEOUT);
  }
  // 1.36 reports a route timeout as `response_timeout`; older docs say `upstream_response_timeout`.
  if (details === 'response_timeout' || details === 'upstream_response_timeout') {
    return replace(504, FailureCause.UPSTREAM_TIMEOUT);
  }
  if (
    has(ResponseFlagBit.UPSTREAM_MAX_STREAM_DURATION_REACHED) ||
    details === 'upstream_max_stream_duration_reached'
  ) {
    // Envoy answers 408 when the request body had not fully arrived: the client was slow, not the upstream.
    if (facts.status === 408) return { action: 'pass', reason: PassReason.CLIENT_TIMEOUT };
    return replace(504, FailureCause.UPSTREAM_MAX_STREAM_DURATION);
  }
  // Connection-level outcomes of the latest attempt. A connect failure never reached the application, so
  // a retry elsewhere is safe (503); the others reached it and it broke mid-request (502).
  if (
    has(ResponseFlagBit.UPSTREAM_CONNECTION_FAILURE) ||
    reason?.includes('connection_failure') === true ||
    reason?.includes('connect_error') === true ||
    reason?.includes('connection_timeout') === true
  ) {
    return unavailable(FailureCause.UPSTREAM_CONNECT_FAILURE);
  }
  if (has(ResponseFlagBit.UPSTREAM_PROTOCOL_ERROR) || reason?.startsWith('protocol_error') === true) {
    return replace(502, FailureCause.UPSTREAM_PROTOCOL_ERROR);
  }
  if (
    has(ResponseFlagBit.UPSTREAM_CONNECTION_TERMINATION) ||
    reason?.startsWith('connection_termination') === true
  ) {
    return replace(502, FailureCause.UPSTREAM_CONNECTION_TERMINATION);
  }
  if (has(ResponseFlagBit.UPSTREAM_REMOTE_RESET) || reason?.startsWith('remote') === true) {
    return replace(502, FailureCause.UPSTREAM_RESET);
  }
  // LR is also set for resets that never involved an upstream; only the router's "reset before the
  // response started" means the request was forwarded and the upstream side went away.
  if (
    reason !== undefined &&
    (has(ResponseFlagBit.LOCAL_RESET) ||
      reason === '' ||
      reason.startsWith('local_reset') ||
      reason.startsWith('http1_premature'))
  ) {
    return replace(502, FailureCause.UPSTREAM_LOCAL_RESET);
  }
  return undefined;
}

/** Decides what to do with one response. Total: every input yields a decision, never a throw. */
export function classify(facts: ResponseFacts): Decision {
  const status = facts.status;
  if (status === undefined || !Number.isInteger(status))
    return { action: 'pass', reason: PassReason.NO_STATUS };
  const failure = routerFailure(facts);
  if (failure?.action === 'pass') return failure;
  // Local replies are the only place flags + details describe a failure; an upstream's own 5xx carries
  // `via_upstream` (plus URX after retries), never a router failure flag.
  if (failure !== undefined && facts.codeDetails !== 'via_upstream') {
    return status >= 500 && status < 600 ? failure : { action: 'pass', reason: PassReason.NOT_5XX };
  }
  if (status < 500 || status > 599) return { action: 'pass', reason: PassReason.NOT_5XX };
  if (facts.hostState !== undefined && TERMINATING_STATES.has(facts.hostState)) {
    // The pod was shutting down: its 5xx is the shutdown talking, not the application. Tell the client
    // to retry, which lands on a ready endpoint.
    return unavailable(FailureCause.ENDPOINT_TERMINATING);
  }
  if (failure === undefined && facts.codeDetails !== undefined && facts.codeDetails !== 'via_upstream') {
    return { action: 'pass', reason: PassReason.UNRECOGNISED_LOCAL_REPLY };
  }
  return { action: 'pass', reason: PassReason.UPSTREAM_ANSWER };
}
