/**
 * scripts/progress.sh and the cache lock message: what a first `npm test` prints while it installs and
 * builds the test binaries. Run through real bash with a 1 s tick, so the "still ..." lines are seen.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';

const scripts = fileURLToPath(new URL('../../scripts/', import.meta.url));

function bash(
  script: string,
  env: Record<string, string> = {},
): { status: number | null; stderr: string; ms: number } {
  const started = performance.now();
  // A ticker that outlived the script would hold stderr open and spawnSync would wait for it: the timeout
  // turns that bug into a failure instead of a hang.
  const result = spawnSync(
    'bash',
    // bash reads ~/.bashrc when stdin is a socket (as Node's pipes are), even with -c: --norc, stdin ignored.
    [
      '--norc',
      '-c',
      `set -Eeuo pipefail; source ${scripts}progress.sh; source ${scripts}cache-dir.sh; ${script}`,
    ],
    {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      // cache-dir.sh needs a cache root; these tests only use it for lock_cache_dir on their own directory.
      env: {
        PATH: process.env['PATH'] ?? '',
        READYGATE_PROGRESS_SECONDS: '1',
        READYGATE_CACHE_DIR: tmpdir(),
        ...env,
      },
      timeout: 20_000,
    },
  );
  return { status: result.status, stderr: result.stderr, ms: performance.now() - started };
}

test('a long step prints what it does, "still ..." every tick, and how long it took', (t) => {
  const { status, stderr } = bash(
    'PROGRESS_NAME=k8s-binaries; progress_start "building kube-apiserver v1.34.10"; sleep 3.5; progress_done',
  );
  t.is(status, 0);
  const lines = stderr.trim().split('\n');
  t.is(lines[0], 'k8s-binaries: building kube-apiserver v1.34.10 ...');
  const still = lines.slice(1, -1);
  // One per 1 s tick over 3.5 s: 3, or 2 when a loaded machine delays the ticks.
  t.true(still.length >= 2 && still.length <= 3, stderr);
  const elapsed = still.map((line) => {
    const match = /^k8s-binaries: still building kube-apiserver v1\.34\.10 \((\d+)s elapsed\)$/.exec(line);
    t.truthy(match, line);
    return Number(match?.[1]);
  });
  t.deepEqual(
    elapsed,
    [...elapsed].sort((a, b) => a - b),
  );
  t.regex(lines.at(-1) ?? '', /^k8s-binaries: building kube-apiserver v1\.34\.10: done in [3-9]s$/);
});

test('a step that fails stops its ticker with the script (no line after the exit, no hang)', (t) => {
  const { status, stderr } = bash(
    'PROGRESS_NAME=h2spec-binary; progress_start "building h2spec"; sleep 1.5; false; progress_done',
  );
  t.is(status, 1);
  // At most the one tick inside the 1.5 s; that spawnSync returned at all (no timeout) shows the ticker
  // died with the script instead of holding stderr open.
  t.true(stderr.split('\n').filter((line) => line.includes('still building h2spec')).length <= 1, stderr);
  t.false(stderr.includes('done in'));
});

test('stopping the ticker does not wait out its interval', (t) => {
  // A 30 s tick and a 0.3 s step: done must not take anywhere near 30 s (bash defers traps until a
  // foreground sleep ends, which is what progress.sh works around).
  const { status, stderr, ms } = bash(
    'PROGRESS_NAME=x; progress_start "a short step"; sleep 0.3; progress_done',
    {
      READYGATE_PROGRESS_SECONDS: '30',
    },
  );
  t.is(status, 0);
  // Whole seconds from `date +%s`: 0.3 s reads as 0s or 1s.
  t.regex(stderr, /^x: a short step \.\.\.\nx: a short step: done in [01]s\n$/);
  t.true(ms < 10_000, `${ms.toFixed(0)} ms`);
});

test('elapsed times read as minutes and seconds', (t) => {
  const { stderr } = bash('for s in 0 9 60 75 371; do format_elapsed $s; printf " " >&2; done 1>&2');
  t.is(stderr, '0s 9s 1m00s 1m15s 6m11s ');
});

test('a second run waiting for the cache lock says so', async (t) => {
  const cache = await mkdtemp(path.join(tmpdir(), 'readygate-progress-'));
  t.teardown(() => rm(cache, { recursive: true, force: true }));
  const dir = path.join(cache, 'envoy');
  // The first "run" holds the lock for 1.5 s in the background (and says when it has it); the second waits.
  const { status, stderr, ms } = bash(
    `PROGRESS_NAME=envoy-binary; (lock_cache_dir "${dir}"; touch "${cache}/held"; sleep 1.5) & while [ ! -e "${cache}/held" ]; do sleep 0.05; done; lock_cache_dir "${dir}"; echo locked >&2; wait`,
  );
  t.is(status, 0);
  t.is(stderr, `envoy-binary: waiting for another run installing into ${dir}\nlocked\n`);
  t.true(ms >= 1500, `${ms.toFixed(0)} ms`);
  // Uncontended: no line at all.
  t.is(bash(`PROGRESS_NAME=envoy-binary; lock_cache_dir "${dir}"`).stderr, '');
});
