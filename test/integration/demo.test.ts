/**
 * The acceptance test of `readygate demo`: the short mode, run in-process through the CLI exactly as
 * `npm run demo -- --short` would run it, against the real Envoy. Asserts on the JSON it writes, so the
 * claims checked here are the ones a user reads in demo-output/.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { main } from '../../src/cli/main.js';
import { CHART_FILE, RESULTS_FILE } from '../../src/demo/command.js';
import { relativeColdShare, type ColdPeriodTally, type PhaseTally } from '../../src/demo/tally.js';

type Setup = 'naive' | 'ready-only' | 'readygate';

interface Results {
  mode: string;
  durationMs: number;
  timing: { slowPropagationMs: number; drainWaitTimeoutMs: number; preStopSleepMs: number };
  checks: { name: string; ok: boolean; detail: string }[];
  setups: Record<
    Setup,
    {
      phases: PhaseTally[];
      skipped: number;
      crashHeldRequests: number;
      preStops: { pod: string; phase: string; ms: number }[];
      coldPeriods: { without?: ColdPeriodTally; with?: ColdPeriodTally };
    }
  >;
}

const phase = (results: Results, kind: Setup, name: string): PhaseTally => {
  const found = results.setups[kind].phases.find((p) => p.phase === name);
  if (!found) throw new Error(`no ${name} phase for ${kind}`);
  return found;
};

test('demo --short: readygate answers 2xx through rollouts and a slow gateway; ready-only + sleep fails there, naive in every rollout', async (t) => {
  t.timeout(170_000);
  const out = mkdtempSync(path.join(tmpdir(), 'readygate-demo-test-'));
  t.teardown(() => {
    rmSync(out, { recursive: true, force: true });
  });
  let stdout = '';
  let stderr = '';
  const started = Date.now();
  const code = await main(['demo', '--short', '--out', out], {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    env: process.env,
  });
  t.log(stdout);
  if (stderr !== '') t.log(stderr);
  const results = JSON.parse(readFileSync(path.join(out, RESULTS_FILE), 'utf8')) as Results;
  t.is(results.mode, 'short');
  // ~50 s on an idle 2-core machine; the bound is for a heavily shared one, inside the test timeout.
  const elapsed = Date.now() - started;
  t.log(`demo --short took ${elapsed} ms`);
  t.true(elapsed < 150_000, 'the short demo stays well inside the test timeout');

  // Enough load that the counts mean something: 100 requests/s offered per setup. What was sent can be
  // lower only when the client itself stalled with 128 requests in flight (a heavily shared machine): logged.
  const rollout = phase(results, 'readygate', 'rollout');
  const seconds = (rollout.endMs - rollout.startMs) / 1000;
  t.log(`rollout: ${rollout.total} requests in ${seconds} s; skipped ${results.setups.readygate.skipped}`);
  t.true(rollout.total >= 75 * seconds, `${rollout.total} requests in ${seconds} s`);

  // (c) readygate: every request 2xx wherever a ready alternative exists.
  for (const name of ['baseline', 'rollout', 'slow-start', 'slow-start-ramped', 'slow-propagation']) {
    const tally = phase(results, 'readygate', name);
    t.true(tally.total > 0, `readygate ${name}: requests sent`);
    t.is(tally.non2xx, 0, `readygate: no non-2xx in ${name} (${JSON.stringify(tally.byStatus)})`);
  }
  // Slow start: the same cold replica under the same load, without and then with readygate.io/slow-start.
  // Round-robin gives a new host its equal part (relative share 1); Envoy's ramp gives it less while it is
  // cold. Which requests land on it is deterministic enough for the direction; the latencies are not
  // (the machine's load adds to them): logged.
  const { without, with: ramped } = results.setups.readygate.coldPeriods;
  if (!without || !ramped) throw new Error('readygate: no cold period recorded');
  for (const kind of ['naive', 'ready-only', 'readygate'] as const) {
    const periods = results.setups[kind].coldPeriods;
    t.log(
      `${kind} cold replica: without ${JSON.stringify(periods.without)}; with ${JSON.stringify(periods.with)}`,
    );
  }
  t.true(without.toColdPod > 0 && ramped.toColdPod > 0, 'the cold replica answered in both periods');
  t.is(without.non2xx + ramped.non2xx, 0);
  t.true(
    relativeColdShare(ramped) < relativeColdShare(without),
    `with slow-start ${relativeColdShare(ramped).toFixed(2)} × fair, without ${relativeColdShare(without).toFixed(2)} × fair`,
  );

  // (b) ready-only + preStop sleep: the slow gateway still routes to pods that exited after their sleep.
  t.true(
    phase(results, 'ready-only', 'slow-propagation').non2xx > 0,
    'ready-only: errors behind the slow gateway',
  );
  // (a) naive: errors in every phase that starts or stops pods.
  for (const name of ['rollout', 'slow-start', 'slow-propagation']) {
    t.true(phase(results, 'naive', name).non2xx > 0, `naive: errors in ${name}`);
  }

  // drain-wait held each old pod exactly until the slow gateway had ACKed: at least its delay, well
  // below its timeout; in the ordinary rollout, far less than the sleep the other setups use.
  const { slowPropagationMs, drainWaitTimeoutMs, preStopSleepMs } = results.timing;
  const drains = results.setups.readygate.preStops;
  const slowDrains = drains.filter((run) => run.phase === 'slow-propagation');
  t.true(slowDrains.length > 0);
  for (const run of slowDrains) {
    t.true(run.ms >= slowPropagationMs && run.ms < drainWaitTimeoutMs, `${run.pod}: ${run.ms} ms`);
  }
  for (const run of drains.filter((r) => r.phase === 'rollout')) {
    t.true(run.ms < preStopSleepMs, `${run.pod}: drain-wait ${run.ms} ms in the rollout`);
  }

  // The crash: 502 for exactly the requests the app received before it died; no new request lost (the
  // connect failures after it were retried on another pod).
  const crash = phase(results, 'readygate', 'crash');
  t.is(crash.byStatus['502'] ?? 0, results.setups.readygate.crashHeldRequests);
  t.true(results.setups.readygate.crashHeldRequests > 0);
  t.deepEqual(
    Object.keys(crash.byStatus).sort(),
    ['200', '502'],
    'readygate: nothing but 200 and the cut requests’ 502 in the crash',
  );

  const outage = phase(results, 'readygate', 'outage');
  t.true(outage.status503 > 0);
  t.deepEqual(
    Object.keys(outage.byStatus).sort(),
    ['200', '503'],
    'readygate: only 503 (and the 200s before and after)',
  );
  t.is(outage.status503WithRetryAfter, outage.status503, 'every outage 503 carries Retry-After');
  t.true((outage.causes['no-healthy-upstream'] ?? 0) > 0, 'ext_proc mapped them (problem+json cause)');

  t.true(
    results.checks.every((c) => c.ok),
    JSON.stringify(results.checks),
  );
  t.is(code, 0);
  t.regex(stdout, /rolling update\s+\d+\s+\d+/);
  const svg = readFileSync(path.join(out, CHART_FILE), 'utf8');
  t.true(
    svg.startsWith('<svg') &&
      svg.includes('naive') &&
      svg.includes('ready-only') &&
      svg.includes('readygate'),
  );
});
