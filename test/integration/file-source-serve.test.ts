/**
 * `readygate serve --source file:...` as a process (bin/readygate.js runs dist/: `npm run build` first):
 * the admin port opens before the source loads, the Kubernetes client is never loaded, and a rejected
 * endpoints file shows in /readyz and readygate_file_source_valid while the last good version serves.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import test from 'ava';

const root = fileURLToPath(new URL('../..', import.meta.url));
const hook = fileURLToPath(new URL('../helpers/report-client-node-load.mjs', import.meta.url));
const MARKER = 'test-hook: @kubernetes/client-node resolved';

interface Logged {
  readonly event?: string;
  readonly msg: string;
  readonly address?: string;
  readonly admin?: string;
}

interface Running {
  readonly child: ChildProcessWithoutNullStreams;
  readonly lines: Logged[];
  stderr: string;
  readonly exited: Promise<number | null>;
}

function start(args: string[]): Running {
  const child = spawn(process.execPath, ['--import', hook, 'bin/readygate.js', 'serve', ...args], {
    cwd: root,
    env: { PATH: process.env['PATH'] ?? '' },
  });
  const running: Running = {
    child,
    lines: [],
    stderr: '',
    exited: once(child, 'exit').then(([code]) => code as number | null),
  };
  let partial = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    partial += chunk;
    const complete = partial.split('\n');
    partial = complete.pop() ?? '';
    for (const line of complete) if (line !== '') running.lines.push(JSON.parse(line) as Logged);
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (running.stderr += chunk));
  const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  void running.exited.then(() => {
    clearTimeout(killer);
  });
  return running;
}

async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  ms = 20_000,
): Promise<T> {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await sleep(20);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

async function get(url: string): Promise<{ status: number; body: string }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.text() };
}

function gaugeValue(metrics: string): string | undefined {
  return /^readygate_file_source_valid (\S+)$/m.exec(metrics)?.[1];
}

const good = (address: string): string =>
  `services:\n- namespace: default\n  name: web\n  ports: [{name: http, port: 8080}]\n  endpoints:\n  - addresses: ["${address}"]\n`;

test('file source: admin listens before the source loads, and the Kubernetes client is never loaded', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'readygate-serve-file-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'endpoints.yaml');
  await writeFile(file, good('127.0.0.2'));
  const serve = start([
    '--source',
    `file:${file}`,
    '--xds-address',
    '127.0.0.1:0',
    '--admin-address',
    '127.0.0.1:0',
  ]);
  t.teardown(() => serve.child.kill('SIGKILL'));

  const started = await waitFor('serve.started', () =>
    serve.lines.find((line) => line.event === 'serve.started'),
  );
  const adminListening = serve.lines.findIndex((line) => line.msg === 'admin server listening');
  const applied = serve.lines.findIndex((line) => line.event === 'source.file.applied');
  const xds = serve.lines.findIndex((line) => line.msg === 'xDS server listening');
  t.true(adminListening >= 0 && adminListening < applied && applied < xds, JSON.stringify(serve.lines));
  const admin = `http://${started.admin ?? ''}`;
  t.deepEqual(await get(`${admin}/readyz`), { status: 200, body: 'ready\n' });
  t.is(gaugeValue((await get(`${admin}/metrics`)).body), '1');

  // A bad edit: still ready (the last good version serves), but it says so, and the gauge drops.
  await writeFile(file, 'services:\n- {namespace: default, name: web, ports: []}\n');
  const rejected = await waitFor('the /readyz warning', async () => {
    const readyz = await get(`${admin}/readyz`);
    return readyz.body.includes('warning:') ? readyz : undefined;
  });
  t.is(rejected.status, 200);
  t.regex(
    rejected.body,
    new RegExp(
      `^ready\\nwarning: endpoints file ${file} was rejected: services\\[0\\]\\.ports: needs at least one port; serving its last good version \\(applied [\\dTZ:.-]+\\)\\n$`,
    ),
  );
  t.is(gaugeValue((await get(`${admin}/metrics`)).body), '0');
  const endpoints = JSON.parse((await get(`${admin}/debug/endpoints`)).body) as { cluster: string }[];
  t.deepEqual(
    endpoints.map((entry) => entry.cluster),
    ['default/web:http'],
  );

  await writeFile(file, good('127.0.0.3'));
  await waitFor('the gauge back at 1', async () =>
    gaugeValue((await get(`${admin}/metrics`)).body) === '1' ? true : undefined,
  );
  t.deepEqual(await get(`${admin}/readyz`), { status: 200, body: 'ready\n' });
  t.truthy(serve.lines.find((line) => line.event === 'source.file.valid-again'));

  serve.child.kill('SIGTERM');
  t.is(await serve.exited, 0);
  t.false(serve.stderr.includes(MARKER), serve.stderr);
});

test('the hook does see the Kubernetes client when the kubernetes source loads it (control)', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'readygate-serve-file-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const kubeconfig = path.join(dir, 'kubeconfig');
  await writeFile(kubeconfig, 'not: [a kubeconfig\n');
  const serve = start([
    '--source',
    'kubernetes',
    '--kubeconfig',
    kubeconfig,
    '--xds-address',
    '127.0.0.1:0',
    '--admin-address',
    '127.0.0.1:0',
  ]);
  t.teardown(() => serve.child.kill('SIGKILL'));
  t.is(await serve.exited, 2);
  t.true(serve.stderr.includes(MARKER), serve.stderr);
});
