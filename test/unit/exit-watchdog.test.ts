/**
 * test/helpers/exit-watchdog.ts, which every AVA worker loads: a test file that passes but leaves
 * something open must fail the run, naming the file and what it left open, instead of holding it up
 * (or, for what never closes, hanging it). Runs a real AVA on three fixture files with the
 * repository's worker settings: one leaves a server listening, one a timer pending, one closes what it opened.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';

const root = fileURLToPath(new URL('../../', import.meta.url));
const avaPackage = path.join(root, 'node_modules', 'ava');
const avaCli = path.join(
  avaPackage,
  (JSON.parse(readFileSync(path.join(avaPackage, 'package.json'), 'utf8')) as { bin: { ava: string } }).bin
    .ava,
);

function runFixtures(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [avaCli, '--tap', '--config', 'test/fixtures/exit-watchdog/ava.config.mjs'],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    // The watchdog acts after 10 s; without it the leaking fixture would never end.
    const timer = setTimeout(() => child.kill('SIGKILL'), 40_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

test('a test file that leaves a server listening or a timer pending fails, named with what it left; a tidy one passes', async (t) => {
  t.timeout(60_000);
  const { code, stdout, stderr } = await runFixtures();
  const tap = stdout.split('\n');
  t.is(code, 1, stdout + stderr);
  for (const title of [
    'tidy.fixture › passes, and closes its server',
    'leaks-a-server.fixture › passes, and leaves a server listening',
    'leaks-a-timer.fixture › passes, and leaves a timer pending',
  ]) {
    t.true(
      tap.some((line) => line.startsWith('ok ') && line.endsWith(` - ${title}`)),
      `${title}\n${stdout}`,
    );
  }
  t.deepEqual(
    tap
      .filter((line) => line.startsWith('not ok'))
      .map((line) => line.replace(/^not ok \d+ - /, ''))
      .sort(),
    [
      'test/fixtures/exit-watchdog/leaks-a-server.fixture.ts exited with a non-zero exit code: 1',
      'test/fixtures/exit-watchdog/leaks-a-timer.fixture.ts exited with a non-zero exit code: 1',
    ],
  );
  const watchdogLines = stderr
    .split('\n')
    .filter((line) => line.startsWith('exit-watchdog:'))
    .sort();
  t.is(watchdogLines.length, 2, stderr);
  t.regex(
    watchdogLines[0] ?? '',
    /^exit-watchdog: test\/fixtures\/exit-watchdog\/leaks-a-server\.fixture\.ts is still running 10000 ms after its tests finished; held by: .*Server listening on \{"address":"127\.0\.0\.1","family":"IPv4","port":\d+\}; resources: .*TCPServerWrap × 1/,
  );
  t.regex(
    watchdogLines[1] ?? '',
    /^exit-watchdog: test\/fixtures\/exit-watchdog\/leaks-a-timer\.fixture\.ts is still running 10000 ms after its tests finished; held by: .*resources: .*Timeout × 1/,
  );
});
