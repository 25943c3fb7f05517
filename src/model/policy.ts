/**
 * Per-Service traffic policy from `readygate.io/*` annotations (Kubernetes) or the same keys under a
 * service's `annotations` (file source). Pure: strings in, a typed override set and per-key problems out.
 *
 * A bad value never becomes an Envoy field: the key is dropped from the overrides (so translation uses the
 * default) and comes back as a problem the caller reports (log line, Event, metric, /debug). That is the
 * whole point of validating here rather than letting Envoy NACK: a NACK would stall every later update of
 * the cluster, including endpoint changes a rollout depends on.
 */

/** Prefix of every key this module owns; any other key under it is a typo worth telling the user about. */
export const POLICY_ANNOTATION_PREFIX = 'readygate.io/';

export const PolicyKey = {
  CONNECT_TIMEOUT: 'readygate.io/connect-timeout',
  IDLE_TIMEOUT: 'readygate.io/idle-timeout',
  SLOW_START: 'readygate.io/slow-start',
  SLOW_START_AGGRESSION: 'readygate.io/slow-start-aggression',
  MAX_CONNECTIONS: 'readygate.io/max-connections',
  MAX_PENDING_REQUESTS: 'readygate.io/max-pending-requests',
  MAX_REQUESTS: 'readygate.io/max-requests',
  OUTLIER_CONSECUTIVE_GATEWAY_ERRORS: 'readygate.io/outlier-consecutive-gateway-errors',
  OUTLIER_MAX_EJECTION_PERCENT: 'readygate.io/outlier-max-ejection-percent',
  LB_POLICY: 'readygate.io/lb-policy',
  HASH_HEADER: 'readygate.io/hash-header',
  ZONE_AWARE: 'readygate.io/zone-aware',
} as const;
export type PolicyKey = (typeof PolicyKey)[keyof typeof PolicyKey];

const KNOWN_KEYS: ReadonlySet<string> = new Set(Object.values(PolicyKey));

export const LB_POLICIES = ['round-robin', 'least-request', 'random', 'ring-hash'] as const;
export type LbPolicy = (typeof LB_POLICIES)[number];

/** Only the keys that were set and valid; absent fields mean "use the default". */
export interface PolicyOverrides {
  readonly connectTimeoutMs?: number;
  readonly idleTimeoutMs?: number;
  readonly slowStartWindowMs?: number;
  readonly slowStartAggression?: number;
  readonly maxConnections?: number;
  readonly maxPendingRequests?: number;
  readonly maxRequests?: number;
  readonly outlierConsecutiveGatewayErrors?: number;
  readonly outlierMaxEjectionPercent?: number;
  readonly lbPolicy?: LbPolicy;
  readonly hashHeader?: string;
  /** Envoys that declare their zone prefer same-zone endpoints (src/model/zones.ts). */
  readonly zoneAware?: boolean;
}

export interface PolicyProblem {
  /** The full annotation key (a bounded label: unknown keys are reported as `unknown`, see problemLabel). */
  readonly key: string;
  readonly value: string;
  readonly message: string;
}

export interface ParsedPolicy {
  readonly overrides: PolicyOverrides;
  /** Sorted by key, so equal input gives an equal list (logs and Events deduplicate on it). */
  readonly problems: readonly PolicyProblem[];
}

/** Value bounds; every limit is a sanity bound on what a Service author can ask Envoy for. */
export const POLICY_LIMITS = Object.freeze({
  /** Below 1 ms Envoy rounds to 0, which it rejects; above 60 s a dead pod blocks a request for a minute. */
  connectTimeoutMs: { min: 1, max: 60_000 },
  /** Envoy treats 0 as "no idle timeout", which is the 1 h default's opposite of what the key is for. */
  idleTimeoutMs: { min: 100, max: 24 * 3_600_000 },
  slowStartWindowMs: { min: 1_000, max: 3_600_000 },
  /** Envoy requires > 0; above 10 the ramp is a step, which is what no slow start is. */
  slowStartAggression: { min: 0.01, max: 10 },
  /** uint32 in Envoy; 0 would refuse every request, which no one means. */
  breaker: { min: 1, max: 4_294_967_295 },
  outlierConsecutiveGatewayErrors: { min: 1, max: 1_000 },
  outlierMaxEjectionPercent: { min: 0, max: 100 },
});

/** A Go/Kubernetes-style duration with one unit: `250ms`, `1.5s`, `2m`, `1h`. */
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
/** RFC 9110 field-name token, lowercase as HTTP/2 requires (Envoy matches header names lowercased). */
const HEADER_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;

function formatMs(ms: number): string {
  return ms % 3_600_000 === 0
    ? `${ms / 3_600_000}h`
    : ms % 60_000 === 0
      ? `${ms / 60_000}m`
      : ms % 1_000 === 0
        ? `${ms / 1_000}s`
        : `${ms}ms`;
}

type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

/** An annotation value can be 256 KiB; messages (logs, Events) quote at most this much of it. */
const QUOTE_LIMIT = 64;

function quote(text: string): string {
  return JSON.stringify(text.length > QUOTE_LIMIT ? `${text.slice(0, QUOTE_LIMIT)}…` : text);
}

function parseDuration(text: string, bounds: { min: number; max: number }): Parsed<number> {
  if (text.trim().startsWith('-')) return { ok: false, message: `${quote(text)} is negative` };
  const match = DURATION.exec(text.trim());
  if (!match) {
    return {
      ok: false,
      message: `${quote(text)} is not a duration (a number with ms, s, m or h, for example 250ms or 2s)`,
    };
  }
  const ms = Number(match[1]) * (UNIT_MS[match[2] ?? ''] ?? Number.NaN);
  if (!Number.isInteger(ms))
    return { ok: false, message: `${quote(text)} is not a whole number of milliseconds` };
  if (ms < bounds.min || ms > bounds.max) {
    return {
      ok: false,
      message: `${quote(text)} is out of range (${formatMs(bounds.min)} to ${formatMs(bounds.max)})`,
    };
  }
  return { ok: true, value: ms };
}

function parseInteger(text: string, bounds: { min: number; max: number }): Parsed<number> {
  const trimmed = text.trim();
  if (!/^-?\d+$/.test(trimmed)) return { ok: false, message: `${quote(text)} is not a whole number` };
  const value = Number(trimmed);
  if (value < bounds.min || value > bounds.max) {
    return { ok: false, message: `${quote(trimmed)} is out of range (${bounds.min} to ${bounds.max})` };
  }
  return { ok: true, value };
}

function parseDecimal(text: string, bounds: { min: number; max: number }): Parsed<number> {
  const trimmed = text.trim();
  if (!/^-?\d+(?:\.\d+)?$/.test(trimmed)) return { ok: false, message: `${quote(text)} is not a number` };
  const value = Number(trimmed);
  if (value < bounds.min || value > bounds.max) {
    return { ok: false, message: `${quote(trimmed)} is out of range (${bounds.min} to ${bounds.max})` };
  }
  return { ok: true, value };
}

/**
 * Parses the `readygate.io/*` entries of an annotation map; keys outside the prefix are ignored (they
 * belong to someone else). Dependent keys are checked after each key on its own: a hash header without
 * ring-hash, a ring hash without a header, slow start with a balancer that has none.
 */
export function parsePolicy(annotations: Readonly<Record<string, string>> | undefined): ParsedPolicy {
  const overrides: { -readonly [K in keyof PolicyOverrides]: PolicyOverrides[K] } = {};
  const problems: PolicyProblem[] = [];
  if (annotations === undefined) return { overrides, problems };
  const problem = (key: string, message: string): void => {
    problems.push({ key, value: annotations[key] ?? '', message: `${key}: ${message}` });
  };
  const take = <T>(key: PolicyKey, parse: (text: string) => Parsed<T>, assign: (value: T) => void): void => {
    const text = annotations[key];
    if (text === undefined) return;
    const result = parse(text);
    if (result.ok) assign(result.value);
    else problem(key, result.message);
  };

  for (const key of Object.keys(annotations)) {
    if (!key.startsWith(POLICY_ANNOTATION_PREFIX) || KNOWN_KEYS.has(key)) continue;
    problem(key, `unknown readygate.io/ annotation (known: ${[...KNOWN_KEYS].sort().join(', ')})`);
  }
  take(
    PolicyKey.ZONE_AWARE,
    (t) =>
      t === 'true' || t === 'false'
        ? { ok: true, value: t === 'true' }
        : { ok: false, message: `${quote(t)} is not true or false` },
    (v) => {
      // `false` is the default: leaving the field out keeps the overrides (and so the output) as without the key.
      if (v) overrides.zoneAware = true;
    },
  );
  take(
    PolicyKey.CONNECT_TIMEOUT,
    (t) => parseDuration(t, POLICY_LIMITS.connectTimeoutMs),
    (v) => {
      overrides.connectTimeoutMs = v;
    },
  );
  take(
    PolicyKey.IDLE_TIMEOUT,
    (t) => parseDuration(t, POLICY_LIMITS.idleTimeoutMs),
    (v) => {
      overrides.idleTimeoutMs = v;
    },
  );
  take(
    PolicyKey.SLOW_START,
    (t) => parseDuration(t, POLICY_LIMITS.slowStartWindowMs),
    (v) => {
      overrides.slowStartWindowMs = v;
    },
  );
  take(
    PolicyKey.SLOW_START_AGGRESSION,
    (t) => parseDecimal(t, POLICY_LIMITS.slowStartAggression),
    (v) => {
      overrides.slowStartAggression = v;
    },
  );
  take(
    PolicyKey.MAX_CONNECTIONS,
    (t) => parseInteger(t, POLICY_LIMITS.breaker),
    (v) => {
      overrides.maxConnections = v;
    },
  );
  take(
    PolicyKey.MAX_PENDING_REQUESTS,
    (t) => parseInteger(t, POLICY_LIMITS.breaker),
    (v) => {
      overrides.maxPendingRequests = v;
    },
  );
  take(
    PolicyKey.MAX_REQUESTS,
    (t) => parseInteger(t, POLICY_LIMITS.breaker),
    (v) => {
      overrides.maxRequests = v;
    },
  );
  take(
    PolicyKey.OUTLIER_CONSECUTIVE_GATEWAY_ERRORS,
    (t) => parseInteger(t, POLICY_LIMITS.outlierConsecutiveGatewayErrors),
    (v) => {
      overrides.outlierConsecutiveGatewayErrors = v;
    },
  );
  take(
    PolicyKey.OUTLIER_MAX_EJECTION_PERCENT,
    (t) => parseInteger(t, POLICY_LIMITS.outlierMaxEjectionPercent),
    (v) => {
      overrides.outlierMaxEjectionPercent = v;
    },
  );
  take(
    PolicyKey.LB_POLICY,
    (t): Parsed<LbPolicy> =>
      (LB_POLICIES as readonly string[]).includes(t.trim())
        ? { ok: true, value: t.trim() as LbPolicy }
        : { ok: false, message: `${quote(t)} is not one of ${LB_POLICIES.join(', ')}` },
    (v) => {
      overrides.lbPolicy = v;
    },
  );
  take(
    PolicyKey.HASH_HEADER,
    (t): Parsed<string> =>
      HEADER_NAME.test(t.trim())
        ? { ok: true, value: t.trim() }
        : { ok: false, message: `${quote(t)} is not a lowercase HTTP header name` },
    (v) => {
      overrides.hashHeader = v;
    },
  );

  // Cross-key rules. The dependent key is the one dropped: the balancer stays what the user chose when
  // it can stand alone, so one mistake changes as little traffic as possible.
  if (overrides.lbPolicy === 'ring-hash' && overrides.hashHeader === undefined) {
    if (annotations[PolicyKey.HASH_HEADER] === undefined) {
      problem(PolicyKey.LB_POLICY, `ring-hash needs ${PolicyKey.HASH_HEADER} (the header to hash on)`);
    }
    delete overrides.lbPolicy;
  }
  if (overrides.hashHeader !== undefined && overrides.lbPolicy !== 'ring-hash') {
    problem(PolicyKey.HASH_HEADER, `only applies with ${PolicyKey.LB_POLICY}: ring-hash`);
    delete overrides.hashHeader;
  }
  const balancer = overrides.lbPolicy ?? 'round-robin';
  if (
    overrides.slowStartWindowMs !== undefined &&
    balancer !== 'round-robin' &&
    balancer !== 'least-request'
  ) {
    problem(PolicyKey.SLOW_START, `Envoy ramps only round-robin and least-request, not ${balancer}`);
    delete overrides.slowStartWindowMs;
  }
  if (overrides.slowStartAggression !== undefined && overrides.slowStartWindowMs === undefined) {
    if (annotations[PolicyKey.SLOW_START] === undefined) {
      problem(PolicyKey.SLOW_START_AGGRESSION, `only applies with ${PolicyKey.SLOW_START}`);
    }
    delete overrides.slowStartAggression;
  }

  problems.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return { overrides, problems };
}

/** Only `readygate.io/*` entries: what a source keeps of a Service's annotations. */
export function policyAnnotations(
  annotations: Readonly<Record<string, string>> | null | undefined,
): Readonly<Record<string, string>> | undefined {
  if (!annotations) return undefined;
  const kept: Record<string, string> = {};
  for (const key of Object.keys(annotations).sort()) {
    const value = annotations[key];
    if (key.startsWith(POLICY_ANNOTATION_PREFIX) && typeof value === 'string') kept[key] = value;
  }
  return Object.keys(kept).length > 0 ? kept : undefined;
}

/** The metric label for a problem's key: known keys as they are, any other readygate.io/ key as `unknown`. */
export function problemLabel(key: string): string {
  return KNOWN_KEYS.has(key) ? key : 'unknown';
}
