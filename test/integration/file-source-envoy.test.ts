/**
 * The file source end to end: `readygate serve --source file:PATH` (the CLI, in-process) with a real
 * Envoy. Edits to the file reach Envoy's /clusters and its routing; an invalid edit is rejected and Envoy
 * keeps the last good endpoints.
 */
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import test from 'ava';
import { pino } from 'pino';
import { main } from '../../src/cli/main.js';
import { startEnvoy, waitUntil, type EnvoyProcess } from '../helpers/envoy-process.js';
import { gatewayBootstrap } from '../helpers/gateway-bootstrap.js';
import { freePort } from '../helpers/ports.js';
import { httpUpstream, type Upstream } from '../helpers/upstreams.js';

interface LogLine {
  readonly event?: string;
  readonly xds?: string;
  readonly reason?: string;
}

interface ClustersJson {
  cluster_statuses?: {
    name: string;
    host_statuses?: {
      address: { socket_address: { address: string; port_value: number } };
      health_status?: { eds_health_status?: string };
    }[];
  }[];
}

async function envoyHosts(envoy: EnvoyProcess, cluster: string): Promise<string> {
  const json = (await envoy.clusters()) as ClustersJson;
  const status = json.cluster_statuses?.find((c) => c.name === cluster);
  if (!status) return 'no such cluster';
  return (status.host_statuses ?? [])
    .map((h) => `${h.address.socket_address.address} ${h.health_status?.eds_health_status ?? 'HEALTHY'}`)
    .sort()
    .join(', ');
}

async function waitForHosts(envoy: EnvoyProcess, cluster: string, expected: string): Promise<void> {
  let last = '';
  try {
    await waitUntil(
      async () => {
        last = await envoyHosts(envoy, cluster);
        return last === expected;
      },
      { timeoutMs: 10_000, intervalMs: 10 },
    );
  } catch {
    throw new Error(`${cluster} in Envoy: wanted [${expected}], last saw [${last}]`);
  }
}

/** Who answers `count` requests for `cluster` through Envoy, and with which statuses. */
async function drive(listenerPort: number, cluster: string, count: number): Promise<string> {
  const seen = new Map<string, number>();
  for (let i = 0; i < count; i += 1) {
    const response = await fetch(`http://127.0.0.1:${listenerPort}/`, {
      headers: { 'x-cluster': cluster },
      signal: AbortSignal.timeout(5000),
    });
    const body = await response.text();
    const key = response.status === 200 ? body : String(response.status);
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  return [...seen.keys()].sort().join(', ');
}

function endpointsFile(port: number, endpoints: [string, string][]): string {
  const lines = [
    'services:',
    '- namespace: default',
    '  name: web',
    `  ports: [{name: http, port: ${port}}]`,
    '  endpoints:',
  ];
  for (const [address, conditions] of endpoints)
    lines.push(`  - {addresses: ["${address}"], conditions: ${conditions}}`);
  return `${lines.join('\n')}\n`;
}

const READY = '{ready: true}';
const TERMINATING = '{ready: false, serving: true, terminating: true}';

test('serve --source file: edits reach Envoy, invalid edits leave it on the last good state', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'readygate-file-envoy-'));
  const file = path.join(dir, 'endpoints.yaml');
  const port = await freePort('127.0.0.2');
  const upstreams: Upstream[] = await Promise.all(
    ['127.0.0.2', '127.0.0.3', '127.0.0.4'].map((host) =>
      httpUpstream(
        (_request, _body, response) => {
          response.writeHead(200, { 'content-type': 'text/plain' });
          response.end(host);
        },
        { host, port },
      ),
    ),
  );
  await writeFile(
    file,
    endpointsFile(port, [
      ['127.0.0.2', READY],
      ['127.0.0.3', READY],
    ]),
  );

  const lines: LogLine[] = [];
  const logger = pino(
    { level: 'info', base: null },
    { write: (line: string) => lines.push(JSON.parse(line) as LogLine) },
  );
  const controller = new AbortController();
  let stderr = '';
  const serving = main(
    ['serve', '--source', `file:${file}`, '--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0'],
    {
      stdout: { write: () => true },
      stderr: { write: (text: string) => (stderr += text) },
      env: {},
      signal: controller.signal,
      logger,
    },
  );
  const running: { envoy?: EnvoyProcess } = {};
  t.teardown(async () => {
    controller.abort();
    await running.envoy?.stop();
    await serving;
    await Promise.all(upstreams.map((u) => u.close()));
    await rm(dir, { recursive: true, force: true });
  });

  const started = await waitUntil(() => lines.find((line) => line.event === 'serve.started'), {
    timeoutMs: 30_000, // a cold tsx start of the whole server on a loaded machine
    description: 'serve.started',
  });
  const xdsPort = Number(started.xds?.split(':').pop());
  const listenerPort = await freePort();
  const envoy = await startEnvoy({
    bootstrap: gatewayBootstrap({ xdsPort, listenerPort, nodeId: 'file-source-e2e', apiType: 'GRPC' }),
  });
  running.envoy = envoy;
  const cluster = 'default/web:http';
  await waitForHosts(envoy, cluster, '127.0.0.2 HEALTHY, 127.0.0.3 HEALTHY');
  t.is(await drive(listenerPort, cluster, 20), '127.0.0.2, 127.0.0.3');

  // A rolling step written in place: .3 terminates (DRAINING, no new requests), .4 joins ready.
  const edited = performance.now();
  await writeFile(
    file,
    endpointsFile(port, [
      ['127.0.0.2', READY],
      ['127.0.0.3', TERMINATING],
      ['127.0.0.4', READY],
    ]),
  );
  await waitForHosts(envoy, cluster, '127.0.0.2 HEALTHY, 127.0.0.3 DRAINING, 127.0.0.4 HEALTHY');
  t.log(`file edit → visible in Envoy's /clusters: ${(performance.now() - edited).toFixed(0)} ms`);
  t.is(await drive(listenerPort, cluster, 20), '127.0.0.2, 127.0.0.4');

  // An invalid edit: rejected, logged, and Envoy keeps serving the last good endpoints.
  await writeFile(file, endpointsFile(port, [['127.0.0.2', '{ready: maybe}']]));
  const rejected = await waitUntil(() => lines.find((line) => line.event === 'source.file.rejected'), {
    timeoutMs: 5000,
    description: 'the rejection log line',
  });
  t.is(rejected.reason, 'services[0].endpoints[0].conditions.ready: expected boolean, received string');
  t.is(await envoyHosts(envoy, cluster), '127.0.0.2 HEALTHY, 127.0.0.3 DRAINING, 127.0.0.4 HEALTHY');
  t.is(await drive(listenerPort, cluster, 10), '127.0.0.2, 127.0.0.4');

  // The fix, written atomically (temp file + rename): .3 is gone, and .2 with it; only .4 serves.
  const temporary = path.join(dir, '.endpoints.yaml.tmp');
  await writeFile(temporary, endpointsFile(port, [['127.0.0.4', READY]]));
  await rename(temporary, file);
  await waitForHosts(envoy, cluster, '127.0.0.4 HEALTHY');
  t.is(await drive(listenerPort, cluster, 10), '127.0.0.4');

  // Every endpoint removed: the cluster stays, empty, and Envoy answers 503 itself.
  await writeFile(file, endpointsFile(port, []));
  await waitForHosts(envoy, cluster, '');
  t.is(await drive(listenerPort, cluster, 3), '503');

  controller.abort();
  t.is(await serving, 0);
  t.is(stderr, '');
});
