/**
 * `readygate demo`: the same Kubernetes script, under the same constant load, against three setups side
 * by side — (a) naive (every address HEALTHY, Envoy's defaults), (b) ready-only (a control plane that
 * sends only ready endpoints, `preStop: sleep`) and (c) readygate (conditions-aware EDS, readiness gate,
 * drain-wait, ext_proc) — then the table, the timeline chart and a JSON of the results. Exit 0 when every
 * claim in tally.ts's checks held, 1 when one did not.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { CommandContext } from '../cli/context.js';
import type { DemoConfig } from '../config.js';
import { silentLogger } from '../log.js';
import { renderChart } from './chart.js';
import { findEnvoyBinary } from './envoy-runner.js';
import { startGateway, type Gateway } from './gateway.js';
import { runScenario, type ScenarioRun } from './scenario.js';
import { GATEWAY_KINDS, type GatewayKind } from './slice.js';
import {
  checkExpectations,
  isSuccess,
  latencySeries,
  renderColdPeriods,
  renderPreStops,
  renderReasons,
  renderTable,
  tallyColdPeriod,
  tallyPhases,
  timeSeries,
  type Check,
  type ColdPeriodTally,
  type PhaseTally,
} from './tally.js';
import { FULL_TIMING, PHASES, PHASE_TITLES, SHORT_TIMING, type DemoTiming } from './timing.js';

export const RESULTS_FILE = 'demo-results.json';
export const CHART_FILE = 'demo-timeline.svg';
/** Chart resolution. */
export const BUCKET_MS = 250;
/** Failures listed one by one in the JSON, per setup (the counts are complete either way). */
const MAX_FAILURES_LISTED = 2000;

const KINDS = GATEWAY_KINDS;

/** Names in the table, the chart and the JSON. */
export const SETUP_TITLES: Readonly<Record<GatewayKind, string>> = {
  naive: '(a) naive',
  'ready-only': '(b) ready-only + sleep',
  readygate: '(c) readygate',
};

const PANEL_TITLES: Readonly<Record<GatewayKind, string>> = {
  naive: '(a) naive: every address HEALTHY, no retry',
  'ready-only': '(b) ready-only control plane, preStop sleep, retries',
  readygate: '(c) readygate: conditions, readiness gate, drain-wait, ext_proc, retries',
};
export interface SideResult {
  readonly kind: GatewayKind;
  readonly run: ScenarioRun;
  readonly phases: PhaseTally[];
  /** The slow-start replica's cold period without, then with `readygate.io/slow-start`. */
  readonly coldPeriods: {
    readonly without: ColdPeriodTally | undefined;
    readonly with: ColdPeriodTally | undefined;
  };
  /** ext_proc's own count of the responses it replaced, by cause (readygate only). */
  readonly extprocMapped: Readonly<Record<string, number>>;
}

export interface DemoResult {
  readonly mode: 'short' | 'full';
  readonly timing: DemoTiming;
  readonly sides: Readonly<Record<GatewayKind, SideResult>>;
  readonly checks: readonly Check[];
  readonly table: string;
  /** The non-2xx responses by reason, per setup and phase. */
  readonly reasons: string;
  /** How long each setup's preStop hooks held its pods, per phase. */
  readonly preStops: string;
  /** The slow-start replica's cold periods, without and with the annotation, per setup. */
  readonly coldPeriods: string;
  readonly outDir: string;
  readonly files: readonly string[];
}

export interface DemoRunOptions {
  readonly short: boolean;
  readonly outDir: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly signal: AbortSignal;
  /** Progress lines (stdout for the CLI). */
  readonly progress: (line: string) => void;
  readonly logger?: CommandContext['logger'];
}

/** The demo as a function: what the CLI command and the integration test both run. */
export async function runDemoScenario(options: DemoRunOptions): Promise<DemoResult> {
  const timing = options.short ? SHORT_TIMING : FULL_TIMING;
  const logger = options.logger ?? silentLogger;
  const started = performance.now();
  options.progress('readygate demo: finding the pinned Envoy…');
  const binary = await findEnvoyBinary(options.env);

  // One failure stops both sides; every gateway started is closed, whatever happened.
  const abort = new AbortController();
  const onOuterAbort = (): void => {
    abort.abort(options.signal.reason);
  };
  options.signal.addEventListener('abort', onOuterAbort, { once: true });
  const gateways: Gateway[] = [];
  const runs = new Map<GatewayKind, ScenarioRun>();
  const extprocMapped: Record<string, number> = {};
  // The side that failed first holds the cause; the other then fails with an abort that would hide it.
  let firstError: unknown;
  try {
    options.progress(
      'starting three control planes (one is readygate with ext_proc), six Envoys and the backends on 127.0.0.x…',
    );
    const startedGateways = await Promise.allSettled(
      KINDS.map((kind) => startGateway({ kind, timing, envoyBinary: binary, logger, signal: abort.signal })),
    );
    for (const result of startedGateways) if (result.status === 'fulfilled') gateways.push(result.value);
    const failedStart = startedGateways.find((r) => r.status === 'rejected');
    if (failedStart) throw failedStart.reason;

    const maxLoadMs = options.short ? 120_000 : 240_000;
    options.progress(
      `running the script against the three setups at ${timing.rate} requests/s each (${options.short ? 'short' : 'full'} mode)…`,
    );
    const results = await Promise.allSettled(
      gateways.map(async (gateway) => {
        try {
          const run = await runScenario({
            gateway,
            timing,
            signal: abort.signal,
            maxLoadMs,
            ...(gateway.kind === 'readygate'
              ? {
                  onPhase: (phase) => {
                    options.progress(`  phase: ${PHASE_TITLES[phase]}`);
                  },
                }
              : {}),
          });
          runs.set(gateway.kind, run);
        } catch (error) {
          firstError ??= error;
          abort.abort(error);
          throw error;
        }
      }),
    );
    if (results.some((r) => r.status === 'rejected')) throw firstError;
    const readygate = gateways.find((g) => g.kind === 'readygate');
    if (readygate) Object.assign(extprocMapped, await mappedByCause(readygate));
  } finally {
    options.signal.removeEventListener('abort', onOuterAbort);
    await Promise.allSettled(gateways.map((gateway) => gateway.close()));
  }

  const side = (kind: GatewayKind): SideResult => {
    const run = runs.get(kind);
    if (!run) throw new Error(`demo: no result for ${kind}`);
    const [without, withAnnotation] = run.coldWindows.map((window) => tallyColdPeriod(run.samples, window));
    return {
      kind,
      run,
      phases: tallyPhases(run.samples, PHASES),
      coldPeriods: { without, with: withAnnotation },
      extprocMapped: kind === 'readygate' ? extprocMapped : {},
    };
  };
  const sides = {
    naive: side('naive'),
    'ready-only': side('ready-only'),
    readygate: side('readygate'),
  };
  const checks = checkExpectations({
    naive: sides.naive.phases,
    readyOnly: sides['ready-only'].phases,
    readygate: sides.readygate.phases,
    readygateCrashHeld: sides.readygate.run.crashHeldRequests,
    readygateSlowDrainMs: sides.readygate.run.preStops
      .filter((run) => run.phase === 'slow-propagation')
      .map((run) => run.ms),
    slowPropagationMs: timing.slowPropagationMs,
    drainWaitTimeoutMs: timing.drainWaitTimeoutMs,
    readygateColdWithout: sides.readygate.coldPeriods.without,
    readygateColdWith: sides.readygate.coldPeriods.with,
  });
  const sideBySide = {
    sides: KINDS.map((kind) => ({ name: SETUP_TITLES[kind], phases: sides[kind].phases })),
    titles: PHASE_TITLES,
  };
  const table = renderTable(sideBySide);
  const reasons = renderReasons(sideBySide);
  const preStops = renderPreStops(
    KINDS.map((kind) => ({ name: SETUP_TITLES[kind], preStops: sides[kind].run.preStops })),
    PHASE_TITLES,
  );
  const coldPeriods = renderColdPeriods(
    KINDS.map((kind) => ({ name: SETUP_TITLES[kind], ...sides[kind].coldPeriods })),
  );
  const files = await writeOutputs(options.outDir, timing, sides, checks, options.short, started);
  return {
    mode: options.short ? 'short' : 'full',
    timing,
    sides,
    checks,
    table,
    reasons,
    preStops,
    coldPeriods,
    outDir: options.outDir,
    files,
  };
}

async function mappedByCause(gateway: Gateway): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const metric = gateway.registry.getSingleMetric('readygate_extproc_mapped_responses_total');
  if (!metric) return out;
  for (const value of (await metric.get()).values) {
    const cause = String(value.labels['cause'] ?? 'unknown');
    out[cause] = (out[cause] ?? 0) + value.value;
  }
  return out;
}

async function writeOutputs(
  outDir: string,
  timing: DemoTiming,
  sides: Readonly<Record<GatewayKind, SideResult>>,
  checks: readonly Check[],
  short: boolean,
  started: number,
): Promise<string[]> {
  await mkdir(outDir, { recursive: true });
  const chart = renderChart({
    title: `readygate demo: responses per second by status (${short ? 'short' : 'full'} run, ${timing.rate} req/s per setup, alternating over its two gateways)`,
    bucketMs: BUCKET_MS,
    panels: KINDS.map((kind) => ({
      name: PANEL_TITLES[kind],
      buckets: timeSeries(sides[kind].run.samples, BUCKET_MS),
      latency: latencySeries(sides[kind].run.samples, BUCKET_MS),
      phases: sides[kind].run.marks.map((mark) => ({
        title: PHASE_TITLES[mark.phase],
        startMs: mark.startMs,
        endMs: mark.endMs,
      })),
    })),
  });
  const results = {
    mode: short ? 'short' : 'full',
    generatedAt: new Date().toISOString(),
    durationMs: Math.round(performance.now() - started),
    timing,
    checks,
    setups: Object.fromEntries(
      KINDS.map((kind) => {
        const s = sides[kind];
        return [
          kind,
          {
            phases: s.phases,
            marks: s.run.marks,
            skipped: s.run.skipped,
            preStops: s.run.preStops,
            crashHeldRequests: s.run.crashHeldRequests,
            coldPeriods: s.coldPeriods,
            extprocMapped: s.extprocMapped,
            series: { bucketMs: BUCKET_MS, buckets: timeSeries(s.run.samples, BUCKET_MS) },
            // Each failure with its send time and gateway (0 fast, 1 slow), to line up with the events.
            failures: s.run.samples
              .filter((sample) => !isSuccess(sample.status))
              .slice(0, MAX_FAILURES_LISTED)
              .map(({ t, latencyMs, via, phase, status, cause, body, error }) => ({
                t,
                // Send time plus this is when it failed: what lines up with a pod's events.
                latencyMs,
                via,
                phase,
                status,
                reason: cause ?? body ?? error,
              })),
            events: s.run.events,
          },
        ];
      }),
    ),
  };
  const chartPath = path.join(outDir, CHART_FILE);
  const resultsPath = path.join(outDir, RESULTS_FILE);
  await writeFile(chartPath, chart);
  await writeFile(resultsPath, `${JSON.stringify(results, null, 2)}\n`);
  return [resultsPath, chartPath];
}

/** The CLI entry (src/cli/commands.ts). */
export async function runDemo(config: DemoConfig, context: CommandContext): Promise<number> {
  const verbose = config.logLevel === 'debug' || config.logLevel === 'trace';
  const write = (line: string): void => {
    context.stdout.write(`${line}\n`);
  };
  let result: DemoResult;
  try {
    result = await runDemoScenario({
      short: config.short,
      outDir: config.out,
      env: context.env,
      signal: context.shutdown,
      progress: write,
      ...(verbose ? { logger: context.logger } : {}),
    });
  } catch (error) {
    if (context.shutdown.aborted) {
      context.stderr.write('readygate demo: interrupted; everything it started is stopped\n');
      return 130;
    }
    throw error;
  }
  write('');
  write(result.table);
  write('');
  write('Non-2xx responses by reason (status, then readygate’s cause or the response body):');
  write(result.reasons);
  write('');
  write('How long the preStop hook held each deleted pod (sleep, or drain-wait until the last Envoy ACKed):');
  write(result.preStops);
  write('');
  write(
    `The slow-start replica's cold period (${result.timing.coldMs} ms after its warm-up, answers up to ${result.timing.coldLatencyMs} ms slower), ` +
      `requests sent in it: without, then with readygate.io/slow-start: ${result.timing.coldMs}ms (only (c)'s CDS carries it):`,
  );
  write(result.coldPeriods);
  write('');
  for (const check of result.checks) write(`${check.ok ? '✓' : '✗'} ${check.name} (${check.detail})`);
  write('');
  write(`wrote ${result.files.join(' and ')}`);
  const failed = result.checks.filter((check) => !check.ok);
  if (failed.length > 0) {
    context.stderr.write(
      `readygate demo: ${failed.length} expectation(s) did not hold: ${failed.map((c) => c.name).join('; ')}\n`,
    );
    return 1;
  }
  return 0;
}
