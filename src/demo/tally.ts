/**
 * What the demo measured, reduced to what it shows: responses by status per phase for each setup, a
 * side-by-side text table, per-bucket counts for the chart, and the checks the acceptance test (and the
 * demo's exit code) rely on. Pure: samples in, numbers and text out.
 */

/** One response (or transport failure) as the load generator saw it. */
export interface Sample {
  /** ms since the run's origin when the request was sent. */
  readonly t: number;
  readonly phase: string;
  /** Which of the setup's gateways carried it (index into its gateway list; 1 is the slow one). */
  readonly via?: number;
  /** HTTP status; 0 when no response arrived (reset, timeout). */
  readonly status: number;
  readonly latencyMs: number;
  /** The response carried Retry-After. */
  readonly retryAfter?: boolean;
  /** readygate's `x-readygate-cause` header, when ext_proc mapped the response. */
  readonly cause?: string;
  /** First line of a non-2xx body (Envoy's local-reply text, the app's answer). */
  readonly body?: string;
  /** Transport error code when status is 0. */
  readonly error?: string;
  /** The pod whose app answered (its `x-pod` header), when one did. */
  readonly pod?: string;
}

export interface PhaseTally {
  readonly phase: string;
  readonly total: number;
  /** Count per status key ('200', '503', …, 'error'). */
  readonly byStatus: Readonly<Record<string, number>>;
  readonly non2xx: number;
  readonly status503: number;
  readonly status503WithRetryAfter: number;
  /** Count per readygate cause header value. */
  readonly causes: Readonly<Record<string, number>>;
  /** Non-2xx count per reason: `<status> <cause header, else body first line, else error code>`. */
  readonly reasons: Readonly<Record<string, number>>;
  /** First and last send time in the phase (ms since origin); 0 when empty. */
  readonly startMs: number;
  readonly endMs: number;
  readonly p99LatencyMs: number;
}

export const ERROR_KEY = 'error';

export function statusKey(status: number): string {
  return status === 0 ? ERROR_KEY : String(status);
}

export function isSuccess(status: number): boolean {
  return status >= 200 && status < 300;
}

/** Tallies in `phases` order; samples of other phases are ignored. */
export function tallyPhases(samples: readonly Sample[], phases: readonly string[]): PhaseTally[] {
  return phases.map((phase) =>
    tallyOne(
      phase,
      samples.filter((sample) => sample.phase === phase),
    ),
  );
}

function tallyOne(phase: string, samples: readonly Sample[]): PhaseTally {
  const byStatus: Record<string, number> = {};
  const causes: Record<string, number> = {};
  const reasons: Record<string, number> = {};
  let non2xx = 0;
  let status503 = 0;
  let status503WithRetryAfter = 0;
  let startMs = Number.POSITIVE_INFINITY;
  let endMs = 0;
  for (const sample of samples) {
    const key = statusKey(sample.status);
    byStatus[key] = (byStatus[key] ?? 0) + 1;
    if (!isSuccess(sample.status)) {
      non2xx++;
      const reason = `${key} ${sample.cause ?? sample.body ?? sample.error ?? ''}`.trimEnd();
      reasons[reason] = (reasons[reason] ?? 0) + 1;
    }
    if (sample.status === 503) {
      status503++;
      if (sample.retryAfter === true) status503WithRetryAfter++;
    }
    if (sample.cause !== undefined) causes[sample.cause] = (causes[sample.cause] ?? 0) + 1;
    startMs = Math.min(startMs, sample.t);
    endMs = Math.max(endMs, sample.t);
  }
  return {
    phase,
    total: samples.length,
    byStatus,
    non2xx,
    status503,
    status503WithRetryAfter,
    causes,
    reasons,
    startMs: samples.length === 0 ? 0 : startMs,
    endMs,
    p99LatencyMs: percentile(
      samples.map((s) => s.latencyMs),
      0.99,
    ),
  };
}

/** Nearest-rank percentile; 0 for no values. */
export function percentile(values: readonly number[], q: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1] ?? 0;
}

/** Status keys in display order: numeric ascending, transport errors last. */
export function statusColumns(tallies: readonly PhaseTally[]): string[] {
  const keys = new Set<string>();
  for (const tally of tallies) for (const key of Object.keys(tally.byStatus)) keys.add(key);
  return [...keys].sort((a, b) => {
    if (a === ERROR_KEY) return 1;
    if (b === ERROR_KEY) return -1;
    return Number(a) - Number(b);
  });
}

export interface SideTallies {
  readonly name: string;
  readonly phases: readonly PhaseTally[];
}

export interface SideBySide {
  /** Setups left to right. */
  readonly sides: readonly SideTallies[];
  /** Row label per phase key. */
  readonly titles: Readonly<Record<string, string>>;
}

/** The table `readygate demo` prints: one row per phase, each setup's counts by status side by side. */
export function renderTable(input: SideBySide): string {
  const all = input.sides.flatMap((side) => side.phases);
  const columns = statusColumns(all);
  const first = input.sides[0]?.phases ?? [];
  const labelWidth = Math.max(5, ...first.map((p) => (input.titles[p.phase] ?? p.phase).length));
  const widthOf = (key: string): number =>
    Math.max(key.length, ...all.map((p) => String(p.byStatus[key] ?? 0).length));
  const totalWidth = Math.max(5, ...all.map((p) => String(p.total).length));
  const group = (cells: (key: string) => string, total: string): string =>
    [total.padStart(totalWidth), ...columns.map((key) => cells(key).padStart(widthOf(key)))].join('  ');
  const header = group((key) => key, 'total');
  const groupWidth = Math.max(header.length, ...input.sides.map((side) => side.name.length));
  const row = (label: string, cells: readonly string[]): string =>
    `${label.padEnd(labelWidth)}   ${cells.map((cell) => cell.padEnd(groupWidth)).join(' │ ')}`.trimEnd();
  const lines: string[] = [];
  lines.push(
    row(
      '',
      input.sides.map((side) => side.name),
    ),
  );
  lines.push(
    row(
      'phase',
      input.sides.map(() => header),
    ),
  );
  lines.push(`${'─'.repeat(labelWidth)}───${input.sides.map(() => '─'.repeat(groupWidth)).join('─┼─')}`);
  first.forEach((tally, index) => {
    const cells = input.sides.map((side) => {
      const phase = side.phases[index];
      return phase === undefined ? '' : group((key) => String(phase.byStatus[key] ?? 0), String(phase.total));
    });
    lines.push(row(input.titles[tally.phase] ?? tally.phase, cells));
  });
  const retryAfter = (phases: readonly PhaseTally[]): string => {
    const count = phases.reduce((n, p) => n + p.status503, 0);
    const withHeader = phases.reduce((n, p) => n + p.status503WithRetryAfter, 0);
    return `${withHeader}/${count}`;
  };
  lines.push(
    `503s carrying Retry-After: ${input.sides.map((side) => `${side.name} ${retryAfter(side.phases)}`).join(', ')}`,
  );
  return lines.join('\n');
}

/** Longest reason text printed; the JSON keeps them whole. */
const REASON_WIDTH = 100;

const ENVOY_RESET_PREFIX = 'upstream connect error or disconnect/reset before headers. ';

/**
 * Envoy's reset local reply shortened for a terminal line: `reset before headers: <reason> (<transport
 * failure>)`. Other reasons are returned unchanged.
 */
export function compactReason(reason: string): string {
  const at = reason.indexOf(ENVOY_RESET_PREFIX);
  if (at < 0) return reason;
  const rest = reason
    .slice(at + ENVOY_RESET_PREFIX.length)
    .replace(/^retried and the latest /, '')
    .replace(/^reset reason: /, '');
  const [resetReason, transport] = rest.split(', transport failure reason: ');
  const suffix = transport === undefined ? '' : ` (${transport})`;
  return `${reason.slice(0, at)}reset before headers: ${resetReason ?? ''}${suffix}`;
}

/** Per setup and phase, what the non-2xx responses were: the lines under the table. */
export function renderReasons(input: SideBySide): string {
  const lines: string[] = [];
  for (const side of input.sides) {
    for (const tally of side.phases) {
      // Reasons that read the same once shortened (Envoy's "retried and the latest reset reason" and
      // "reset reason") are one line.
      const merged = new Map<string, number>();
      for (const [reason, count] of Object.entries(tally.reasons)) {
        const short = compactReason(reason);
        merged.set(short, (merged.get(short) ?? 0) + count);
      }
      const entries = [...merged].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
      if (entries.length === 0) continue;
      lines.push(`${side.name}, ${input.titles[tally.phase] ?? tally.phase}:`);
      for (const [short, count] of entries) {
        const text = short.length > REASON_WIDTH ? `${short.slice(0, REASON_WIDTH - 1)}…` : short;
        lines.push(`  ${String(count).padStart(5)} × ${text}`);
      }
    }
  }
  return lines.join('\n');
}

/** One preStop hook run as the demo reports it. */
export interface PreStopSample {
  readonly phase: string;
  readonly ms: number;
}

/** How long the preStop hooks held the deleted pods, per setup and phase: `min–max ms (count)`. */
export function renderPreStops(
  sides: readonly { readonly name: string; readonly preStops: readonly PreStopSample[] }[],
  titles: Readonly<Record<string, string>>,
): string {
  const lines: string[] = [];
  for (const side of sides) {
    const byPhase = new Map<string, number[]>();
    for (const run of side.preStops) byPhase.set(run.phase, [...(byPhase.get(run.phase) ?? []), run.ms]);
    const parts = [...byPhase].map(([phase, values]) => {
      const low = Math.min(...values);
      const high = Math.max(...values);
      const range = low === high ? `${low} ms` : `${low}–${high} ms`;
      return `${titles[phase] ?? phase} ${range} (${values.length})`;
    });
    lines.push(`  ${side.name}: ${parts.length === 0 ? 'none' : parts.join('; ')}`);
  }
  return lines.join('\n');
}

export interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

function phaseOf(phases: readonly PhaseTally[], name: string): PhaseTally | undefined {
  return phases.find((p) => p.phase === name);
}

function describe(tally: PhaseTally | undefined): string {
  if (!tally) return 'phase missing';
  const parts = Object.entries(tally.byStatus).map(([key, count]) => `${key}×${count}`);
  return parts.length === 0 ? 'no requests' : parts.join(' ');
}

export interface ExpectationInput {
  readonly naive: readonly PhaseTally[];
  readonly readyOnly: readonly PhaseTally[];
  readonly readygate: readonly PhaseTally[];
  /** App requests readygate's crashing container received and never answered. */
  readonly readygateCrashHeld: number;
  /** readygate's drain-wait runs (preStop) in the slow-propagation phase, in ms. */
  readonly readygateSlowDrainMs: readonly number[];
  /** The slow gateway's delay and drain-wait's timeout in this run. */
  readonly slowPropagationMs: number;
  readonly drainWaitTimeoutMs: number;
  /** readygate's slow-start replica's cold periods: without, then with `readygate.io/slow-start`. */
  readonly readygateColdWithout: ColdPeriodTally | undefined;
  readonly readygateColdWith: ColdPeriodTally | undefined;
}

/** The phases where every pod change has a ready alternative: readygate must answer every request 2xx. */
export const NO_FAILURE_PHASES = [
  'baseline',
  'rollout',
  'slow-start',
  'slow-start-ramped',
  'slow-propagation',
] as const;

/** What the demo claims; the integration test asserts each, and the command exits 1 if one fails. */
export function checkExpectations(input: ExpectationInput): Check[] {
  const { readygate, naive, readyOnly } = input;
  const checks: Check[] = [];
  for (const name of NO_FAILURE_PHASES) {
    const tally = phaseOf(readygate, name);
    checks.push({
      name: `readygate: no non-2xx in the ${name} phase`,
      ok: tally !== undefined && tally.total > 0 && tally.non2xx === 0,
      detail: describe(tally),
    });
  }
  const rgCrash = phaseOf(readygate, 'crash');
  const crashOther =
    rgCrash === undefined
      ? 1
      : Object.entries(rgCrash.byStatus)
          .filter(([key]) => key !== '502' && !(key !== ERROR_KEY && isSuccess(Number(key))))
          .reduce((n, [, count]) => n + count, 0);
  const crash502 = rgCrash?.byStatus['502'] ?? 0;
  checks.push({
    name: 'readygate: in the crash, 502 for exactly the requests the app received, no new request lost',
    ok: rgCrash !== undefined && crash502 > 0 && crash502 === input.readygateCrashHeld && crashOther === 0,
    detail: `${describe(rgCrash)}; the crashing app held ${input.readygateCrashHeld}`,
  });
  const rgOutage = phaseOf(readygate, 'outage');
  const outageNon503 =
    rgOutage === undefined
      ? 1
      : Object.entries(rgOutage.byStatus)
          .filter(([key]) => key !== '503' && !(key !== ERROR_KEY && isSuccess(Number(key))))
          .reduce((n, [, count]) => n + count, 0);
  checks.push({
    name: 'readygate: the outage answers only 503, each with Retry-After',
    ok:
      rgOutage !== undefined &&
      rgOutage.status503 > 0 &&
      outageNon503 === 0 &&
      rgOutage.status503WithRetryAfter === rgOutage.status503,
    detail: `${describe(rgOutage)}; with Retry-After ${rgOutage?.status503WithRetryAfter ?? 0}/${rgOutage?.status503 ?? 0}`,
  });
  const all503 = readygate.reduce((n, p) => n + p.status503, 0);
  const all503WithHeader = readygate.reduce((n, p) => n + p.status503WithRetryAfter, 0);
  checks.push({
    name: 'readygate: every 503 carries Retry-After',
    ok: all503WithHeader === all503,
    detail: `${all503WithHeader}/${all503}`,
  });
  const drains = input.readygateSlowDrainMs;
  checks.push({
    name: `readygate: drain-wait held each pod as long as the slow gateway needed (≥ ${input.slowPropagationMs} ms), within its timeout`,
    ok:
      drains.length > 0 &&
      drains.every((ms) => ms >= input.slowPropagationMs && ms < input.drainWaitTimeoutMs),
    detail: drains.length === 0 ? 'no drain-wait ran' : `${drains.join(', ')} ms`,
  });
  const coldWithout = input.readygateColdWithout;
  const coldWith = input.readygateColdWith;
  const shareText = (tally: ColdPeriodTally | undefined): string =>
    tally === undefined
      ? 'no cold period'
      : `${tally.toColdPod}/${tally.answered} across ${tally.pods} pods (${relativeColdShare(tally).toFixed(2)} × fair)`;
  checks.push({
    name: 'readygate: with readygate.io/slow-start the cold replica gets a smaller share of the requests than without',
    ok:
      coldWithout !== undefined &&
      coldWith !== undefined &&
      coldWithout.toColdPod > 0 &&
      coldWith.toColdPod > 0 &&
      relativeColdShare(coldWith) < relativeColdShare(coldWithout),
    detail: `without ${shareText(coldWithout)}, with ${shareText(coldWith)}`,
  });
  const roSlow = phaseOf(readyOnly, 'slow-propagation');
  checks.push({
    name: 'ready-only + preStop sleep: non-2xx when a gateway is slower than the sleep',
    ok: roSlow !== undefined && roSlow.non2xx > 0,
    detail: describe(roSlow),
  });
  for (const name of ['rollout', 'slow-propagation']) {
    const tally = phaseOf(naive, name);
    checks.push({
      name: `naive: non-2xx in the ${name} phase`,
      ok: tally !== undefined && tally.non2xx > 0,
      detail: describe(tally),
    });
  }
  return checks;
}

/** A cold pod's cold period (as the simulated cluster records it). */
export interface ColdPeriod {
  readonly pod: string;
  readonly startMs: number;
  readonly endMs: number;
}

/** An answer at least this slow counts as slow in the slow-start comparison. */
export const SLOW_ANSWER_MS = 100;

/** What the requests sent during a slow-start replica's cold period got. */
export interface ColdPeriodTally {
  readonly pod: string;
  /** Requests sent in the period. */
  readonly total: number;
  /** Of those, answered by an app (any pod). */
  readonly answered: number;
  /** Of those, answered by the cold pod. */
  readonly toColdPod: number;
  /** Pods that answered at least one of them: the cold pod's fair share is 1/pods. */
  readonly pods: number;
  readonly p50LatencyMs: number;
  readonly p99LatencyMs: number;
  /** Answers that took at least SLOW_ANSWER_MS. */
  readonly slow: number;
  readonly status504: number;
  readonly non2xx: number;
}

/** The requests sent during `period`, by who answered and how fast. */
export function tallyColdPeriod(samples: readonly Sample[], period: ColdPeriod): ColdPeriodTally {
  const inside = samples.filter((s) => s.t >= period.startMs && s.t < period.endMs);
  const answered = inside.filter((s) => s.pod !== undefined);
  const latencies = inside.map((s) => s.latencyMs);
  return {
    pod: period.pod,
    total: inside.length,
    answered: answered.length,
    toColdPod: answered.filter((s) => s.pod === period.pod).length,
    pods: new Set(answered.map((s) => s.pod)).size,
    p50LatencyMs: percentile(latencies, 0.5),
    p99LatencyMs: percentile(latencies, 0.99),
    slow: inside.filter((s) => s.latencyMs >= SLOW_ANSWER_MS).length,
    status504: inside.filter((s) => s.status === 504).length,
    non2xx: inside.filter((s) => !isSuccess(s.status)).length,
  };
}

/**
 * The cold pod's share of the answers relative to its fair share (1 = an equal part, as round-robin gives
 * a new host without slow start; below 1 = spared while cold). 0 when nothing was answered.
 */
export function relativeColdShare(tally: ColdPeriodTally): number {
  if (tally.answered === 0 || tally.pods === 0) return 0;
  return (tally.toColdPod / tally.answered) * tally.pods;
}

/** Without and with `readygate.io/slow-start`, per setup: the lines under the preStop summary. */
export function renderColdPeriods(
  sides: readonly {
    readonly name: string;
    readonly without: ColdPeriodTally | undefined;
    readonly with: ColdPeriodTally | undefined;
  }[],
): string {
  const pct = (part: number, whole: number): string =>
    whole === 0 ? '–' : `${Math.round((100 * part) / whole)} %`;
  const line = (label: string, tally: ColdPeriodTally | undefined): string => {
    if (!tally) return `${label}: no cold period recorded`;
    return (
      `${label}: ${tally.toColdPod} of ${tally.answered} answers (${pct(tally.toColdPod, tally.answered)}, ` +
      `fair ${pct(1, tally.pods)}), p50 ${tally.p50LatencyMs} ms, p99 ${tally.p99LatencyMs} ms, ` +
      `${tally.slow} ≥ ${SLOW_ANSWER_MS} ms, ${tally.status504} × 504, ${tally.non2xx} non-2xx`
    );
  };
  const width = Math.max(...sides.map((side) => side.name.length));
  const lines: string[] = [];
  for (const side of sides) {
    lines.push(`  ${side.name.padEnd(width)}  ${line('without', side.without)}`);
    lines.push(`  ${''.padEnd(width)}  ${line('with   ', side.with)}`);
  }
  return lines.join('\n');
}

export interface Bucket {
  /** Bucket start, ms since origin. */
  readonly t: number;
  readonly counts: Readonly<Record<string, number>>;
}

/** Counts per status key in fixed time buckets from 0 to the last sample, empty buckets included. */
export function timeSeries(samples: readonly Sample[], bucketMs: number): Bucket[] {
  if (samples.length === 0) return [];
  const last = samples.reduce((max, s) => Math.max(max, s.t), 0);
  const buckets: Record<string, number>[] = Array.from(
    { length: Math.floor(last / bucketMs) + 1 },
    () => ({}),
  );
  for (const sample of samples) {
    const bucket = buckets[Math.floor(Math.max(0, sample.t) / bucketMs)];
    if (!bucket) continue;
    const key = statusKey(sample.status);
    bucket[key] = (bucket[key] ?? 0) + 1;
  }
  return buckets.map((counts, index) => ({ t: index * bucketMs, counts }));
}

/** One bucket's p99 latency (ms) of the requests sent in it; empty buckets are left out. */
export interface LatencyPoint {
  readonly t: number;
  readonly p99Ms: number;
}

/** p99 latency per fixed time bucket of send time: the chart's latency line (what slow start lowers). */
export function latencySeries(samples: readonly Sample[], bucketMs: number): LatencyPoint[] {
  const byBucket = new Map<number, number[]>();
  for (const sample of samples) {
    const index = Math.floor(Math.max(0, sample.t) / bucketMs);
    const list = byBucket.get(index);
    if (list) list.push(sample.latencyMs);
    else byBucket.set(index, [sample.latencyMs]);
  }
  return [...byBucket]
    .sort((a, b) => a[0] - b[0])
    .map(([index, latencies]) => ({ t: index * bucketMs, p99Ms: percentile(latencies, 0.99) }));
}
