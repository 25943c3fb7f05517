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
import type { PhaseTally } from '../../src/demo/tally.js';

interface Results {
  mode: string;
  durationMs: number;
  checks: { name: string; ok: boolean; detail: string }[];
  setups: Record<'readygate' | 'naive', { phases: PhaseTally[]; skipped: number }>;
}

const phase = (results: Results, kind: 'readygate' | 'naive', name: string): PhaseTally => {
  const found = results.setups[kind].phases.find((p) => p.phase === name);
  if (!found) throw new Error(`no ${name} phase for ${kind}`);
  return found;
};

test('demo --short: readygate has no non-2xx in the rollout, naive does; crash → 502, outage → only 503 + Retry-After', async (t) => {
  t.timeout(110_000);
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
  t.true(Date.now() - started < 100_000, 'the short demo stays well inside the test timeout');

  // Enough load that the counts mean something: 200 requests/s offered. What was sent can be lower only
  // when the client itself stalled with 128 requests in flight (a heavily shared machine): logged.
  const rollout = phase(results, 'readygate', 'rollout');
  const seconds = (rollout.endMs - rollout.startMs) / 1000;
  t.log(`rollout: ${rollout.total} requests in ${seconds} s; skipped ${results.setups.readygate.skipped}`);
  t.true(rollout.total >= 150 * seconds, `${rollout.total} requests in ${seconds} s`);

  t.is(rollout.non2xx, 0, 'readygate: no non-2xx during the rolling update');
  t.true(phase(results, 'naive', 'rollout').non2xx > 0, 'naive: errors during the rolling update');
  t.true(phase(results, 'readygate', 'slow-start').non2xx === 0, 'readygate: slow start without errors');
  t.true(phase(results, 'naive', 'slow-start').non2xx > 0, 'naive: the slow starter gets traffic too early');

  const crash = phase(results, 'readygate', 'crash');
  t.true((crash.byStatus['502'] ?? 0) > 0, 'readygate: the requests the crash cut off are 502');
  // Anything else in the crash is a refused connect before the kubelet noticed: 503 + Retry-After.
  t.deepEqual(
    Object.keys(crash.byStatus).filter((key) => !['200', '502', '503'].includes(key)),
    [],
  );
  t.is(crash.status503WithRetryAfter, crash.status503);

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
  t.true(svg.startsWith('<svg') && svg.includes('naive') && svg.includes('readygate'));
});
