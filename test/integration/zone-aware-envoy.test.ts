/**
 * Zone-aware routing with the real Envoy and the file source (`readygate serve --source file:`): one
 * Envoy declares zone a in its bootstrap (node.locality.zone), one declares none. Both talk to the
 * same readygate, SotW and Delta. Counts are exact: each Envoy runs one worker and the requests are
 * sequential, so round robin over a priority's hosts is deterministic.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { pino } from 'pino';
import { main } from '../../src/cli/main.js';
import type { StatusReport } from '../../src/status/compare.js';
import { startEnvoy, waitUntil, type EnvoyProcess } from '../helpers/envoy-process.js';
import { gatewayBootstrap } from '../helpers/gateway-bootstrap.js';
import { freePort } from '../helpers/ports.js';
import { httpUpstream, type Upstream } from '../helpers/upstreams.js';

const CLUSTER = 'default/web:http';
const ZONE_OF: Readonly<Record<string, string>> = {
  '127.0.0.2': 'a',
  '127.0.0.3': 'a',
  '127.0.0.4': 'b',
  '127.0.0.5': 'b',
};

interface ClustersJson {
  cluster_statuses?: {
    name: string;
    host_statuses?: { address: { socket_address: { address: string } }; priority?: number }[];
  }[];
}

/** Envoy's hosts of the cluster as "address@priority", sorted. */
async function hosts(envoy: EnvoyProcess): Promise<string> {
  const json = (await envoy.clusters()) as ClustersJson;
  const status = json.cluster_statuses?.find((c) => c.name === CLUSTER);
  return (status?.host_statuses ?? [])
    .map((h) => `${h.address.socket_address.address}@${h.priority ?? 0}`)
    .sort()
    .join(' ');
}

async function waitForHosts(envoy: EnvoyProcess, expected: string): Promise<void> {
  let last = '';
  try {
    await waitUntil(
      async () => {
        last = await hosts(envoy);
        return last === expected;
      },
      { timeoutMs: 15_000, intervalMs: 20 },
    );
  } catch {
    throw new Error(`${CLUSTER} in Envoy: wanted [${expected}], last saw [${last}]`);
  }
}

/** `count` sequential requests: answers per zone ("a:20 b:0"), and the hosts that answered. */
async function drive(listenerPort: number, count: number): Promise<{ zones: string; hosts: string }> {
  const perZone = new Map([
    ['a', 0],
    ['b', 0],
  ]);
  const seen = new Set<string>();
  for (let i = 0; i < count; i += 1) {
    const response = await fetch(`http://127.0.0.1:${listenerPort}/`, {
      headers: { 'x-cluster': CLUSTER },
      signal: AbortSignal.timeout(5000),
    });
    const body = await response.text();
    const zone = response.status === 200 ? ZONE_OF[body] : undefined;
    const key = zone ?? String(response.status);
    perZone.set(key, (perZone.get(key) ?? 0) + 1);
    if (zone) seen.add(body);
  }
  return {
    zones: [...perZone].map(([zone, n]) => `${zone}:${n}`).join(' '),
    hosts: [...seen].sort().join(' '),
  };
}

function endpointsFile(
  port: number,
  ready: Readonly<Record<string, boolean>>,
  forZones: Readonly<Record<string, string>> = {},
): string {
  const lines = [
    'services:',
    '- namespace: default',
    '  name: web',
    `  ports: [{name: http, port: ${port}}]`,
    '  annotations: {readygate.io/zone-aware: "true"}',
    '  endpoints:',
  ];
  for (const [address, zone] of Object.entries(ZONE_OF))
    lines.push(
      `  - {addresses: ["${address}"], zone: ${zone}, conditions: {ready: ${ready[address] ?? true}}` +
        `${forZones[address] === undefined ? '' : `, forZones: [${forZones[address]}]`}}`,
    );
  return `${lines.join('\n')}\n`;
}

interface EdsDump {
  configs?: {
    endpoint_config?: {
      cluster_name?: string;
      endpoints?: { locality?: { zone?: string }; priority?: number }[];
    };
  }[];
}

/** The CLA Envoy holds for the cluster, as "zone@priority" per locality. */
async function edsPriorities(envoy: EnvoyProcess): Promise<string> {
  const dump = (await envoy.configDump('?resource=dynamic_endpoint_configs&include_eds')) as EdsDump;
  const cla = dump.configs?.find((c) => c.endpoint_config?.cluster_name === CLUSTER)?.endpoint_config;
  return (cla?.endpoints ?? []).map((l) => `${l.locality?.zone ?? ''}@${l.priority ?? 0}`).join(' ');
}

/** readygate on a file, the four upstreams, and an Envoy in zone a (and, with `zoneless`, one without). */
async function start(
  t: ExecutionContext,
  apiType: 'GRPC' | 'DELTA_GRPC',
  options: { zoneless: boolean; failing?: ReadonlySet<string> },
) {
  const dir = await mkdtemp(path.join(tmpdir(), 'readygate-zone-'));
  const file = path.join(dir, 'endpoints.yaml');
  const port = await freePort('127.0.0.2');
  const upstreams: Upstream[] = await Promise.all(
    Object.keys(ZONE_OF).map((host) =>
      httpUpstream(
        (_request, _body, response) => {
          // A failing pod answers 503 itself: a gateway error outlier detection counts.
          response.writeHead(options.failing?.has(host) === true ? 503 : 200, {
            'content-type': 'text/plain',
          });
          response.end(host);
        },
        { host, port },
      ),
    ),
  );
  await writeFile(file, endpointsFile(port, {}));
  const started: { xds?: string; admin?: string }[] = [];
  const logger = pino(
    { level: 'info', base: null },
    {
      write: (line: string) => {
        const parsed = JSON.parse(line) as { event?: string; xds?: string; admin?: string };
        if (parsed.event === 'serve.started') started.push(parsed);
      },
    },
  );
  const controller = new AbortController();
  const serving = main(
    ['serve', '--source', `file:${file}`, '--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0'],
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
  const { xds, admin } = await waitUntil(() => started[0], {
    timeoutMs: 30_000, // a cold tsx start of the whole server on a loaded machine
    description: 'serve.started',
  });
  const xdsPort = Number(xds?.split(':').pop());
  const [zonedPort, zonelessPort] = [await freePort(), await freePort()];
  const [zoned, zoneless] = await Promise.all([
    startEnvoy({
      bootstrap: gatewayBootstrap({ xdsPort, listenerPort: zonedPort, nodeId: 'zone-a', apiType, zone: 'a' }),
    }),
    options.zoneless
      ? startEnvoy({
          bootstrap: gatewayBootstrap({ xdsPort, listenerPort: zonelessPort, nodeId: 'no-zone', apiType }),
        })
      : undefined,
  ]);
  envoys.push(zoned, ...(zoneless ? [zoneless] : []));
  return { file, port, admin, zoned, zonedPort, zoneless, zonelessPort, upstreams };
}

async function zoneAwareRun(t: ExecutionContext, apiType: 'GRPC' | 'DELTA_GRPC'): Promise<void> {
  const {
    file,
    port,
    admin,
    zoned,
    zonedPort,
    zoneless: maybeZoneless,
    zonelessPort,
  } = await start(t, apiType, { zoneless: true });
  const zoneless = maybeZoneless!;

  // Zone a's endpoints at priority 0, zone b's at 1, for the Envoy in zone a only.
  await waitForHosts(zoned, '127.0.0.2@0 127.0.0.3@0 127.0.0.4@1 127.0.0.5@1');
  await waitForHosts(zoneless, '127.0.0.2@0 127.0.0.3@0 127.0.0.4@0 127.0.0.5@0');
  t.is(await edsPriorities(zoned), 'a@0 b@1');
  t.is(await edsPriorities(zoneless), 'a@0 b@0');
  // /debug/syncz says which zone each stream declared.
  const syncz = (await (await fetch(`http://${admin}/debug/syncz`)).json()) as {
    nodeId: string;
    proxy: { mode: string; zone?: string } | null;
  }[];
  t.deepEqual(syncz.map((s) => [s.nodeId, s.proxy]).sort(), [
    ['no-zone', { mode: 'gateway' }],
    ['zone-a', { mode: 'gateway', zone: 'a' }],
  ]);
  t.deepEqual(await drive(zonedPort, 20), { zones: 'a:20 b:0', hosts: '127.0.0.2 127.0.0.3' });
  t.deepEqual(await drive(zonelessPort, 20), {
    zones: 'a:10 b:10',
    hosts: '127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.5',
  });

  // One of zone a's endpoints not ready: the other still carries all of zone a's traffic.
  await writeFile(file, endpointsFile(port, { '127.0.0.2': false }));
  await waitForHosts(zoned, '127.0.0.3@0 127.0.0.4@1 127.0.0.5@1');
  t.deepEqual(await drive(zonedPort, 20), { zones: 'a:20 b:0', hosts: '127.0.0.3' });

  // Zone a has no ready endpoint: everything spills to zone b, nothing fails.
  await writeFile(file, endpointsFile(port, { '127.0.0.2': false, '127.0.0.3': false }));
  await waitForHosts(zoned, '127.0.0.4@0 127.0.0.5@0');
  t.deepEqual(await drive(zonedPort, 20), { zones: 'a:0 b:20', hosts: '127.0.0.4 127.0.0.5' });
  t.is(await edsPriorities(zoned), 'b@0');

  // Zone a back: the Envoy in zone a returns to it entirely; the zone-less one balances over all.
  await writeFile(file, endpointsFile(port, { '127.0.0.3': false }));
  await waitForHosts(zoned, '127.0.0.2@0 127.0.0.4@1 127.0.0.5@1');
  await waitForHosts(zoneless, '127.0.0.2@0 127.0.0.4@0 127.0.0.5@0');
  t.deepEqual(await drive(zonedPort, 20), { zones: 'a:20 b:0', hosts: '127.0.0.2' });
  t.deepEqual(await drive(zonelessPort, 21), {
    zones: 'a:7 b:14',
    hosts: '127.0.0.2 127.0.0.4 127.0.0.5',
  });

  // Hints on every endpoint: zone b's 127.0.0.4 is hinted for zone a, so it joins zone a's priority 0
  // while 127.0.0.5 stays at 1. Zone b's locality is then in both priorities, which Envoy accepts.
  await writeFile(
    file,
    endpointsFile(
      port,
      { '127.0.0.3': false },
      { '127.0.0.2': 'a', '127.0.0.3': 'a', '127.0.0.4': 'a', '127.0.0.5': 'b' },
    ),
  );
  await waitForHosts(zoned, '127.0.0.2@0 127.0.0.4@0 127.0.0.5@1');
  t.is(await edsPriorities(zoned), 'a@0 b@0 b@1');
  t.deepEqual(await drive(zonedPort, 20), { zones: 'a:10 b:10', hosts: '127.0.0.2 127.0.0.4' });
  const nacks = (await (await fetch(`http://${admin}/debug/syncz`)).json()) as {
    nodeId: string;
    types: Record<string, { lastNack: unknown }>;
  }[];
  t.deepEqual(
    nacks.flatMap((s) => Object.values(s.types).map((type) => type.lastNack)),
    nacks.flatMap((s) => Object.values(s.types).map(() => null)),
  );

  // `readygate status` compares the zone Envoy's ACKed CLA with its zone's variant, not the zone-less one.
  for (const envoy of [zoned, zoneless]) {
    const verdict = await waitUntil(
      async () => {
        const run = await statusJson('--envoy-admin', envoy.adminUrl, '--control-plane', `http://${admin}`);
        return run.code === 0 ? run : undefined;
      },
      { timeoutMs: 10_000, description: `status exit 0 for ${envoy.adminUrl}` },
    );
    t.deepEqual(
      verdict.report.clusters.map((c) => [c.name, c.verdict]),
      [[CLUSTER, 'IN_SYNC']],
    );
  }
}

async function statusJson(...args: string[]): Promise<{ code: number; report: StatusReport }> {
  let stdout = '';
  const code = await main(['status', ...args, '--json'], {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: () => true },
    env: {},
    logger: pino({ level: 'silent' }),
  });
  return { code, report: JSON.parse(stdout) as StatusReport };
}

test('zone-aware (SotW): zone a preferred while it has ready endpoints, spill to b, zone-less balances', (t) =>
  zoneAwareRun(t, 'GRPC'));

test('zone-aware (Delta): zone a preferred while it has ready endpoints, spill to b, zone-less balances', (t) =>
  zoneAwareRun(t, 'DELTA_GRPC'));

test('zone-aware: zone a losing half its healthy hosts keeps 70 % local and spills the rest (priority load)', async (t) => {
  // 127.0.0.2 answers 503: three in a row eject it (consecutive gateway errors, docs/policy.md) for 5 s,
  // leaving zone a 1 healthy host of 2. Envoy keeps min(100, 1.4 × 50) = 70 % at priority 0 and sends
  // 30 % to zone b. Which priority a request goes to is drawn at random per request, so the split is
  // checked against bounds 4.6 standard deviations wide (n = 200, p = 0.7); the ejected host's 0 is exact.
  const { zoned, zonedPort, upstreams } = await start(t, 'GRPC', {
    zoneless: false,
    failing: new Set(['127.0.0.2']),
  });
  await waitForHosts(zoned, '127.0.0.2@0 127.0.0.3@0 127.0.0.4@1 127.0.0.5@1');
  const failing = upstreams.find((u) => u.host === '127.0.0.2')!;
  // Round robin over zone a until the failing host has answered three times.
  for (let i = 0; i < 20 && failing.hits() < 3; i += 1) await drive(zonedPort, 1);
  t.is(failing.hits(), 3);
  await waitUntil(
    async () => (await zoned.stat('cluster.default/web_http.outlier_detection.ejections_active')) === 1,
    {
      timeoutMs: 5_000,
      description: '127.0.0.2 ejected',
    },
  );
  const result = await drive(zonedPort, 200);
  t.log(`200 requests with zone a at half its healthy hosts: ${result.zones}`);
  // Still ejected at the end, so every one of the 200 requests saw the same priority load.
  t.is(await zoned.stat('cluster.default/web_http.outlier_detection.ejections_active'), 1);
  t.is(failing.hits(), 3, 'no request reached the ejected host');
  t.is(result.hosts, '127.0.0.3 127.0.0.4 127.0.0.5');
  const [a, b] = result.zones.split(' ').map((entry) => Number(entry.split(':')[1]));
  t.is(a! + b!, 200, result.zones);
  t.true(a! >= 110 && a! <= 170, `zone a got ${a} of 200 (expected about 140)`);
});
