/**
 * `serve` wires policy reporting for the file source: a bad readygate.io/ annotation in the endpoints file is
 * shown on /debug/policy and in /metrics, the service is still served, and fixing the file clears both.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { pino } from 'pino';
import { main } from '../../src/cli/main.js';

interface Line {
  event?: string;
  admin?: string;
}

function endpointsFile(annotations: Record<string, string>): string {
  return JSON.stringify({
    services: [
      {
        namespace: 'shop',
        name: 'web',
        annotations,
        ports: [{ name: 'http', port: 8080 }],
        endpoints: [{ addresses: ['10.0.0.1'] }],
      },
    ],
  });
}

async function until<T>(check: () => Promise<T | undefined>, what: string): Promise<T> {
  const deadline = performance.now() + 15_000;
  while (performance.now() < deadline) {
    const value = await check();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('serve: /debug/policy and /metrics show a bad annotation from the file; fixing the file clears them', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'readygate-policy-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'endpoints.json');
  await writeFile(
    file,
    endpointsFile({ 'readygate.io/connect-timeout': 'banana', 'readygate.io/max-requests': '9' }),
  );
  const lines: Line[] = [];
  const logger = pino(
    { level: 'info', base: null },
    { write: (line: string) => lines.push(JSON.parse(line) as Line) },
  );
  const controller = new AbortController();
  const running = main(
    ['serve', '--source', `file:${file}`, '--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0'],
    {
      stdout: { write: () => true },
      stderr: { write: () => true },
      env: {},
      signal: controller.signal,
      logger,
    },
  );
  t.teardown(async () => {
    controller.abort();
    await running;
  });
  const started = await until(
    () => Promise.resolve(lines.find((l) => l.event === 'serve.started')),
    'serve.started',
  );
  const admin = `http://${started.admin!}`;
  const policy = async () =>
    (await (await fetch(`${admin}/debug/policy`)).json()) as {
      service: string;
      problems: { key: string }[];
    }[];
  const gauge = async () => {
    const text = await (await fetch(`${admin}/metrics`)).text();
    return /readygate_policy_invalid_annotations\{key="readygate.io\/connect-timeout"\} (\d+)/.exec(
      text,
    )?.[1];
  };

  t.deepEqual(
    (await policy()).map((entry) => [entry.service, entry.problems.map((p) => p.key)]),
    [['shop/web', ['readygate.io/connect-timeout']]],
  );
  t.is(await gauge(), '1');
  t.true(lines.some((l) => l.event === 'policy.invalid-annotation'));
  const endpoints = (await (await fetch(`${admin}/debug/endpoints`)).json()) as { cluster: string }[];
  t.deepEqual(
    endpoints.map((e) => e.cluster),
    ['shop/web:http'],
  );

  await writeFile(file, endpointsFile({ 'readygate.io/connect-timeout': '2s' }));
  await until(async () => ((await policy()).length === 0 ? true : undefined), 'the problem to clear');
  t.is(await gauge(), '0');
});
