/**
 * Envoy sidecars end to end: `readygate serve --source file:PATH` (the CLI, in-process) and real Envoys
 * started from the shipped envoy/sidecar-ads.yaml, over SotW and Delta. One Envoy may call every Service,
 * one is scoped to a single Service, one has bad metadata and must be served as a gateway. `serve --extproc`
 * answers the served listener's ext_proc filter, as on the gateway.
 */
import http from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { pino } from 'pino';
import { main } from '../../src/cli/main.js';
import type { StatusReport } from '../../src/status/compare.js';
import { UNKNOWN_HOST_PROBLEM } from '../../src/xds/translate-outbound.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import type { SynczEntry } from '../../src/xds/sync-status.js';
import { startEnvoy, waitUntil, type EnvoyProcess } from '../helpers/envoy-process.js';
import { firstEndpointAddress, objectAt, shippedBootstrap } from '../helpers/gateway-bootstrap.js';
import { freePort } from '../helpers/ports.js';
import { httpUpstream, type Upstream } from '../helpers/upstreams.js';

interface LogLine {
  readonly event?: string;
  readonly xds?: string;
  readonly admin?: string;
  readonly node?: string;
  readonly problems?: string[];
}

interface Backend {
  readonly namespace: string;
  readonly name: string;
  readonly port: number;
  /** address → ready */
  readonly endpoints: [string, boolean][];
}

function endpointsFile(backends: readonly Backend[]): string {
  const lines = ['services:'];
  for (const b of backends) {
    lines.push(
      `- namespace: ${b.namespace}`,
      `  name: ${b.name}`,
      `  ports: [{name: http, port: ${b.port}}]`,
    );
    lines.push('  endpoints:');
    for (const [address, ready] of b.endpoints)
      lines.push(`  - {addresses: ["${address}"], conditions: {ready: ${String(ready)}}}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The shipped sidecar bootstrap with the test's ports, node id, ADS flavour and metadata. */
function sidecarBootstrap(options: {
  xdsPort: number;
  extprocPort: number;
  nodeId: string;
  apiType: 'GRPC' | 'DELTA_GRPC';
  metadata: Record<string, unknown>;
}): Record<string, unknown> {
  const bootstrap = shippedBootstrap('sidecar-ads.yaml');
  const node = objectAt(bootstrap, 'node');
  node['id'] = options.nodeId;
  node['metadata'] = { ...objectAt(bootstrap, 'node', 'metadata'), ...options.metadata };
  objectAt(bootstrap, 'admin', 'address', 'socket_address')['port_value'] = 0;
  objectAt(bootstrap, 'dynamic_resources', 'ads_config')['api_type'] = options.apiType;
  firstEndpointAddress(objectAt(bootstrap, 'static_resources', 'clusters', 0))['port_value'] =
    options.xdsPort;
  firstEndpointAddress(objectAt(bootstrap, 'static_resources', 'clusters', 1))['port_value'] =
    options.extprocPort;
  return bootstrap;
}

interface Answer {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
}

/** One request to the sidecar's outbound listener; `target` is the request line's target (proxy form). */
function request(port: number, host: string, target = '/'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: target, headers: { host }, agent: false, timeout: 5000 },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          resolve({
            status: response.statusCode ?? 0,
            contentType: response.headers['content-type'] ?? '',
            body: Buffer.concat(chunks).toString('utf8'),
          });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end();
  });
}

/** Who answered `count` requests with this Host (sorted, deduplicated), or the statuses. */
async function answeredBy(port: number, host: string, count: number, target = '/'): Promise<string> {
  const seen = new Set<string>();
  for (let i = 0; i < count; i++) {
    const answer = await request(port, host, target);
    seen.add(answer.status === 200 ? answer.body : String(answer.status));
  }
  return [...seen].sort().join(', ');
}

async function syncz(adminAddress: string): Promise<SynczEntry[]> {
  const response = await fetch(`http://${adminAddress}/debug/syncz`, { signal: AbortSignal.timeout(5000) });
  return (await response.json()) as SynczEntry[];
}

async function dynamicClusters(envoy: EnvoyProcess): Promise<string[]> {
  const json = (await envoy.clusters()) as { cluster_statuses?: { name: string; added_via_api?: boolean }[] };
  return (json.cluster_statuses ?? [])
    .filter((c) => c.added_via_api === true)
    .map((c) => c.name)
    .sort();
}

async function virtualHosts(envoy: EnvoyProcess): Promise<string[]> {
  const dump = (await envoy.configDump('?resource=dynamic_route_configs')) as {
    configs?: { route_config?: { virtual_hosts?: { name: string }[] } }[];
  };
  return (dump.configs ?? []).flatMap((c) => (c.route_config?.virtual_hosts ?? []).map((v) => v.name)).sort();
}

/** The retry policy Envoy holds for each virtual host, by name (from its config_dump). */
async function retryPolicies(envoy: EnvoyProcess): Promise<Map<string, unknown>> {
  const dump = (await envoy.configDump('?resource=dynamic_route_configs')) as {
    configs?: { route_config?: { virtual_hosts?: { name: string; retry_policy?: unknown }[] } }[];
  };
  const hosts = (dump.configs ?? []).flatMap((c) => c.route_config?.virtual_hosts ?? []);
  return new Map(hosts.map((v) => [v.name, v.retry_policy]));
}

async function dynamicListeners(envoy: EnvoyProcess): Promise<string[]> {
  const dump = (await envoy.configDump('?resource=dynamic_listeners')) as { configs?: { name: string }[] };
  return (dump.configs ?? []).map((c) => c.name).sort();
}

/** Nonces of every response readygate sent a node, per type: unchanged = nothing was sent. */
function noncesOf(entries: readonly SynczEntry[], nodeId: string): string {
  const entry = entries.find((e) => e.nodeId === nodeId);
  if (!entry) return 'not connected';
  return [TypeUrl.CLUSTER, TypeUrl.ENDPOINT, TypeUrl.LISTENER, TypeUrl.ROUTE]
    .map((type) => entry.types[type]?.sent?.nonce ?? '-')
    .join(' ');
}

async function scenario(t: ExecutionContext, apiType: 'GRPC' | 'DELTA_GRPC'): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'readygate-sidecar-'));
  const file = path.join(dir, 'endpoints.yaml');
  const [webPort, apiPort, otherPort] = await Promise.all([
    freePort('127.0.0.2'),
    freePort('127.0.0.4'),
    freePort('127.0.0.5'),
  ]);
  const web: Backend = {
    namespace: 'default',
    name: 'web',
    port: webPort,
    endpoints: [
      ['127.0.0.2', true],
      ['127.0.0.3', false],
    ],
  };
  const api: Backend = { namespace: 'default', name: 'api', port: apiPort, endpoints: [['127.0.0.4', true]] };
  // Same name as default/web in another namespace: bare `web` must still mean default/web.
  const otherWeb: Backend = {
    namespace: 'other',
    name: 'web',
    port: otherPort,
    endpoints: [['127.0.0.5', true]],
  };
  const upstreams: Upstream[] = await Promise.all(
    [
      ['127.0.0.2', webPort, 'default/web@127.0.0.2'],
      ['127.0.0.3', webPort, 'default/web@127.0.0.3'],
      ['127.0.0.6', webPort, 'default/web@127.0.0.6'],
      ['127.0.0.4', apiPort, 'default/api@127.0.0.4'],
      ['127.0.0.5', otherPort, 'other/web@127.0.0.5'],
    ].map(([host, port, text]) =>
      httpUpstream(
        (_request, _body, response) => {
          response.writeHead(200, { 'content-type': 'text/plain' });
          response.end(text);
        },
        { host: String(host), port: Number(port) },
      ),
    ),
  );
  // Not one ready endpoint: Envoy's 503 (no healthy upstream) goes through ext_proc, as on the gateway.
  const drained: Backend = {
    namespace: 'default',
    name: 'drained',
    port: webPort,
    endpoints: [['127.0.0.3', false]],
  };
  await writeFile(file, endpointsFile([web, api, otherWeb, drained]));

  const lines: LogLine[] = [];
  const logger = pino(
    { level: 'info', base: null },
    { write: (line: string) => lines.push(JSON.parse(line) as LogLine) },
  );
  // ext_proc in the same process, where the sidecar bootstrap's readygate_extproc cluster points.
  const extprocPort = await freePort();
  const controller = new AbortController();
  const serving = main(
    [
      'serve',
      '--source',
      `file:${file}`,
      '--xds-address',
      '127.0.0.1:0',
      '--admin-address',
      '127.0.0.1:0',
      '--extproc',
      '--extproc-address',
      `127.0.0.1:${extprocPort}`,
    ],
    {
      stdout: { write: () => true },
      stderr: { write: () => true },
      env: {},
      signal: controller.signal,
      logger,
    },
  );
  const envoys: EnvoyProcess[] = [];
  t.teardown(async () => {
    controller.abort();
    await Promise.all(envoys.map((e) => e.stop()));
    await serving;
    await Promise.all(upstreams.map((u) => u.close()));
    await rm(dir, { recursive: true, force: true });
  });
  const started = await waitUntil(() => lines.find((line) => line.event === 'serve.started'), {
    timeoutMs: 30_000, // a cold start of the whole server on a loaded machine
    description: 'serve.started',
  });
  const xdsPort = Number(started.xds?.split(':').pop());
  const adminAddress = String(started.admin);
  const [openPort, scopedPort] = await Promise.all([freePort(), freePort()]);
  const start = async (nodeId: string, metadata: Record<string, unknown>): Promise<EnvoyProcess> => {
    const envoy = await startEnvoy({
      bootstrap: sidecarBootstrap({ xdsPort, extprocPort, nodeId, apiType, metadata }),
      // Not /ready until LDS answers; a Delta gateway (bad metadata) is never answered an empty LDS set.
      waitReady: false,
    });
    envoys.push(envoy);
    return envoy;
  };
  const [open, scoped, broken] = await Promise.all([
    start('open', { 'readygate.io/outbound-port': openPort }),
    start('scoped', {
      'readygate.io/outbound-port': String(scopedPort),
      'readygate.io/egress': 'default/api',
    }),
    start('broken', { 'readygate.io/outbound-port': 'fifteen', 'readygate.io/egress': 'default/api' }),
  ]);

  // The open sidecar: every Service, every Host form, only ready endpoints.
  await open.waitFor(async () => (await dynamicListeners(open)).join() === 'readygate.outbound', {
    timeoutMs: 15_000,
    description: 'the outbound listener in the open sidecar',
  });
  t.deepEqual(await dynamicClusters(open), [
    'default/api:http',
    'default/drained:http',
    'default/web:http',
    'other/web:http',
  ]);
  t.deepEqual(await virtualHosts(open), [
    'default/api:http',
    'default/drained:http',
    'default/web:http',
    'other/web:http',
    'readygate.unknown-host',
  ]);
  // What Envoy accepted: each Service's routes retry as the gateways do; the 404 answer has nothing to retry.
  const policies = await retryPolicies(open);
  t.deepEqual(policies.get('default/web:http'), {
    retry_on: 'connect-failure,refused-stream,reset-before-request',
    num_retries: 2,
    retry_host_predicate: [
      {
        name: 'envoy.retry_host_predicates.previous_hosts',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate',
        },
      },
    ],
    host_selection_retry_max_attempts: '3',
  });
  t.is(policies.get('readygate.unknown-host'), undefined);
  await waitUntil(async () => (await request(openPort, `web:${webPort}`)).status === 200, {
    timeoutMs: 10_000,
    description: 'the first request through the sidecar',
  });
  for (const name of ['web', 'web.default', 'web.default.svc', 'web.default.svc.cluster.local']) {
    for (const host of [name, `${name}:${webPort}`])
      t.is(await answeredBy(openPort, host, 6), 'default/web@127.0.0.2', host);
  }
  t.is(await answeredBy(openPort, `api.default:${apiPort}`, 3), 'default/api@127.0.0.4');
  t.is(await answeredBy(openPort, `web.other:${otherPort}`, 3), 'other/web@127.0.0.5');
  t.is(await answeredBy(openPort, 'web.other.svc.cluster.local', 3), 'other/web@127.0.0.5');
  // As an HTTP proxy (HTTP_PROXY): the request line carries the absolute URL.
  t.is(
    await answeredBy(openPort, `web.default:${webPort}`, 3, `http://web.default:${webPort}/x`),
    'default/web@127.0.0.2',
  );
  // Bare names are the proxy's namespace only; a port no Service has is unknown.
  const unknown = await request(openPort, 'nope.default');
  t.is(unknown.status, 404);
  t.is(unknown.contentType, 'application/problem+json');
  t.is(unknown.body, UNKNOWN_HOST_PROBLEM);
  t.is((await request(openPort, `web.default:${webPort + 1}`)).status, 404);
  // The served listener's ext_proc filter maps Envoy's own 503 into readygate's problem document.
  const noneReady = await request(openPort, 'drained');
  t.is(noneReady.status, 503);
  t.is(noneReady.contentType, 'application/problem+json');
  t.like(JSON.parse(noneReady.body) as Record<string, unknown>, {
    type: 'https://readygate.dev/problems/no-healthy-upstream',
    status: 503,
  });

  // The scoped sidecar: default/api only.
  await scoped.waitFor(async () => (await dynamicListeners(scoped)).join() === 'readygate.outbound', {
    timeoutMs: 15_000,
    description: 'the outbound listener in the scoped sidecar',
  });
  t.deepEqual(await dynamicClusters(scoped), ['default/api:http']);
  t.deepEqual(await virtualHosts(scoped), ['default/api:http', 'readygate.unknown-host']);
  await waitUntil(async () => (await request(scopedPort, `api:${apiPort}`)).status === 200, {
    timeoutMs: 10_000,
    description: 'the first request through the scoped sidecar',
  });
  t.is(await answeredBy(scopedPort, 'api', 3), 'default/api@127.0.0.4');
  t.is(await answeredBy(scopedPort, `web:${webPort}`, 3), '404');

  // Bad metadata: a gateway (every cluster, no listener), the reason in /debug/syncz, one log line.
  await broken.waitFor(async () => (await dynamicClusters(broken)).length === 4, {
    timeoutMs: 15_000,
    description: 'the clusters in the Envoy with bad metadata',
  });
  t.deepEqual(await dynamicListeners(broken), []);
  const before = await syncz(adminAddress);
  const brokenEntry = before.find((e) => e.nodeId === 'broken');
  t.deepEqual(brokenEntry?.proxy, {
    mode: 'gateway',
    problems: ['readygate.io/outbound-port must be a port number 1-65535, got "fifteen"'],
  });
  t.deepEqual(before.find((e) => e.nodeId === 'scoped')?.proxy, {
    mode: 'sidecar',
    outboundPort: scopedPort,
    namespace: 'default',
    extprocCluster: 'readygate_extproc',
    egress: 'default/api',
  });
  t.is(lines.filter((l) => l.event === 'xds.node_metadata_invalid').length, 1);
  for (const entry of before) {
    for (const [type, state] of Object.entries(entry.types)) {
      // The broken node's LDS too: a gateway's wildcard LDS is answered with no listeners, over SotW
      // and Delta alike, so Envoy initialises it and is ready without waiting out initial_fetch_timeout.
      t.is(state.status, 'SYNCED', `${entry.nodeId} ${type}`);
    }
  }

  // A change to default/web only: the open sidecar routes to the new endpoint, the scoped one is sent nothing.
  const scopedNonces = noncesOf(before, 'scoped');
  await writeFile(
    file,
    endpointsFile([
      drained,
      {
        ...web,
        endpoints: [
          ['127.0.0.2', true],
          ['127.0.0.3', false],
          ['127.0.0.6', true],
        ],
      },
      api,
      otherWeb,
    ]),
  );
  await waitUntil(async () => (await answeredBy(openPort, 'web', 8)).includes('127.0.0.6'), {
    timeoutMs: 10_000,
    description: 'the new web endpoint through the open sidecar',
  });
  t.is(await answeredBy(openPort, 'web', 12), 'default/web@127.0.0.2, default/web@127.0.0.6');
  const after = await syncz(adminAddress);
  t.not(noncesOf(after, 'open'), noncesOf(before, 'open'));
  t.is(noncesOf(after, 'scoped'), scopedNonces);

  // A new Service in scope reaches the scoped sidecar's clusters and routes.
  const admin: Backend = {
    namespace: 'default',
    name: 'admin',
    port: apiPort,
    endpoints: [['127.0.0.4', true]],
  };
  await writeFile(file, endpointsFile([web, api, otherWeb, drained, admin]));
  await open.waitFor(async () => (await dynamicClusters(open)).includes('default/admin:http'), {
    timeoutMs: 10_000,
    description: 'default/admin in the open sidecar',
  });
  await waitUntil(async () => (await virtualHosts(open)).includes('default/admin:http'), {
    timeoutMs: 10_000,
    description: 'default/admin routes in the open sidecar',
  });
  t.is(await answeredBy(openPort, `admin.default:${apiPort}`, 3), 'default/api@127.0.0.4');
  t.deepEqual(await dynamicClusters(scoped), ['default/api:http']);
  t.is(noncesOf(await syncz(adminAddress), 'scoped'), scopedNonces);

  // `status` on the scoped sidecar: in sync (the Services outside its scope are not "missing"), and says
  // what it is.
  const report = await statusJson(scoped.adminUrl, `http://${adminAddress}`);
  t.is(report.code, 0, JSON.stringify(report.report.clusters.map((c) => [c.name, c.verdict])));
  t.deepEqual(
    report.report.clusters.map((c) => [c.name, c.verdict]),
    [['default/api:http', 'IN_SYNC']],
  );
  t.true(
    report.report.notes.includes(
      `Sidecar: outbound listener on 127.0.0.1:${scopedPort}, routes SYNCED, Services default/api.`,
    ),
    report.report.notes.join('\n'),
  );
  const brokenReport = await statusJson(broken.adminUrl, `http://${adminAddress}`);
  t.true(
    brokenReport.report.notes.includes(
      `readygate ignored this Envoy's sidecar metadata (readygate.io/outbound-port must be a port number 1-65535, got "fifteen"): served as a gateway.`,
    ),
    brokenReport.report.notes.join('\n'),
  );

  controller.abort();
  t.is(await serving, 0);
}

async function statusJson(
  envoyAdmin: string,
  controlPlane: string,
): Promise<{ code: number; report: StatusReport }> {
  let stdout = '';
  const code = await main(
    ['status', '--envoy-admin', envoyAdmin, '--control-plane', controlPlane, '--json'],
    {
      stdout: { write: (text: string) => (stdout += text) },
      stderr: { write: () => true },
      env: {},
      logger: pino({ level: 'silent' }),
    },
  );
  return { code, report: JSON.parse(stdout) as StatusReport };
}

test('sidecars over SotW: routes by Service name, scoping, bad metadata served as a gateway', async (t) => {
  await scenario(t, 'GRPC');
});

test('sidecars over Delta: routes by Service name, scoping, bad metadata served as a gateway', async (t) => {
  await scenario(t, 'DELTA_GRPC');
});
