/**
 * kind/scripts/rollout-check.sh end to end without a cluster (there is no container engine here): a
 * stand-in kubectl answers the script's calls and plays the client pod's sidecar tallies, and a loopback
 * server stands in for the gateway. What is checked is the script's own logic: the gateway path's load
 * and the sidecar path's before/after tally difference decide the exit code.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';

const script = fileURLToPath(new URL('../../kind/scripts/rollout-check.sh', import.meta.url));

interface Tally {
  ok: number;
  non2xx: number;
  failed: number;
}

async function gateway(t: ExecutionContext): Promise<string> {
  const server: Server = createServer((_request, response) => response.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
}

/** Runs the script with a kubectl that reports `before` until `rollout restart`, then `after`. */
async function rolloutCheck(
  t: ExecutionContext,
  url: string,
  before: Tally,
  after: Tally,
): Promise<{ code: number; stderr: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'readygate-rollout-check-'));
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  const line = (tally: Tally) => JSON.stringify({ event: 'client.tally', ...tally });
  writeFileSync(
    path.join(dir, 'kubectl'),
    [
      '#!/bin/sh',
      `case "$*" in`,
      `  *"rollout restart"*) touch '${dir}/restarted' ;;`,
      `  *"-l app.kubernetes.io/name=client -o name"*) echo pod/client-1 ;;`,
      `  *" logs pod/client-1 -c app"*)`,
      `    echo '{"event":"other"}'`,
      `    if [ -e '${dir}/restarted' ]; then echo '${line(after)}'; else echo '${line(before)}'; fi ;;`,
      '  *) ;;',
      'esac',
      '',
    ].join('\n'),
  );
  chmodSync(path.join(dir, 'kubectl'), 0o755);
  return new Promise((resolve) => {
    execFile(
      'bash',
      [script],
      {
        env: {
          ...process.env,
          PATH: `${dir}:${process.env['PATH'] ?? ''}`,
          URL: url,
          RPS: '20',
          MAX_SECONDS: '30',
        },
        timeout: 60_000,
      },
      (error, _stdout, stderr) => {
        resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stderr });
      },
    );
  });
}

test('the sidecar path decides the exit too: its non-2xx during the check fail it, earlier ones do not', async (t) => {
  const url = await gateway(t);
  const [clean, failing] = await Promise.all([
    // Three failures before the check started: not this rollout's.
    rolloutCheck(t, url, { ok: 100, non2xx: 2, failed: 1 }, { ok: 400, non2xx: 2, failed: 1 }),
    rolloutCheck(t, url, { ok: 100, non2xx: 0, failed: 0 }, { ok: 380, non2xx: 1, failed: 1 }),
  ]);
  t.regex(clean.stderr, /sidecar path \(gateway\/client → web\.demo:8080\): 300 2xx, 0 non-2xx or failed/);
  t.is(clean.code, 0, clean.stderr);
  t.regex(failing.stderr, /sidecar path \(gateway\/client → web\.demo:8080\): 280 2xx, 2 non-2xx or failed/);
  t.is(failing.code, 1);
});

test('no request through the sidecar during the check fails it: the client is not running', async (t) => {
  const url = await gateway(t);
  const idle = await rolloutCheck(t, url, { ok: 0, non2xx: 0, failed: 0 }, { ok: 0, non2xx: 0, failed: 0 });
  t.regex(idle.stderr, /no request went through the client's sidecar during the check/);
  t.is(idle.code, 1);
});
