/**
 * `readygate status` against a live Envoy fed by readygate's control plane (SotW and Delta): exit 0 in
 * sync; exit 1 naming the cluster once Envoy stops getting readygate's updates and the endpoints change
 * behind its back; exit 1 naming the cluster Envoy rejected; one line and exit 3 (unknown) when an admin
 * is down or accepts and never answers (the built CLI, with GC forced during the wait). With two
 * replicas, each with its own Envoy: every replica is asked, drift is found on either, and an Envoy on
 * a replica that was not asked (or did not answer) is UNKNOWN (exit 3), never "in sync".
 */
import test, { type ExecutionContext } from 'ava';
import { pino } from 'pino';
import { debugRoutes } from '../../src/admin/debug-routes.js';
import { createRegistry } from '../../src/admin/metrics.js';
import { startAdminServer } from '../../src/admin/server.js';
import { main } from '../../src/cli/main.js';
import { DEFAULT_ELIGIBILITY } from '../../src/model/eligibility.js';
import { EndpointStore } from '../../src/model/store.js';
import type { StatusReport } from '../../src/status/compare.js';
import { startControlPlane, type ControlPlane } from '../../src/xds/control-plane.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { startEnvoy, waitUntil, type EnvoyProcess } from '../helpers/envoy-process.js';
import { gatewayBootstrap } from '../helpers/gateway-bootstrap.js';
import { SERVING_TERMINATING, endpoint, service } from '../helpers/model-fixtures.js';
import { freePort } from '../helpers/ports.js';
import { rejectCluster } from '../helpers/rejected-resources.js';
import { runCliUnderGc, startSilentServer } from '../helpers/silent-server.js';

type ApiType = 'GRPC' | 'DELTA_GRPC';

const WEB = 'default/web:http';
const API = 'default/api:http';

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function status(...args: string[]): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await main(['status', ...args], {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    env: {},
    logger: pino({ level: 'silent' }),
  });
  return { code, stdout, stderr };
}

async function statusJson(...args: string[]): Promise<{ code: number; report: StatusReport }> {
  const run = await status(...args, '--json');
  return { code: run.code, report: JSON.parse(run.stdout) as StatusReport };
}

const verdicts = (report: StatusReport): Record<string, string> =>
  Object.fromEntries(report.clusters.map((c) => [c.name, c.verdict]));

/** Until this Envoy has ACKed readygate's current version of every cluster and load assignment. */
async function waitSynced(plane: ControlPlane, nodeId: string): Promise<void> {
  await waitUntil(
    () => {
      const stream = plane.sync.streams.find((s) => s.nodeId === nodeId);
      if (!stream) return false;
      return [TypeUrl.CLUSTER, TypeUrl.ENDPOINT].every((typeUrl) => {
        const acked = stream.types.get(typeUrl)?.versions;
        const current = plane.cache.resources(typeUrl);
        return (
          acked?.ackedCount() === current.size &&
          [...current.values()].every((r) => acked.ackedVersion(r.name) === r.version)
        );
      });
    },
    { timeoutMs: 10_000, description: `${nodeId} to ACK every current resource` },
  );
}

/** `address health` per host of a cluster in Envoy, sorted; undefined when Envoy lacks the cluster. */
async function envoyHosts(envoy: EnvoyProcess, cluster: string): Promise<string[] | undefined> {
  const json = (await envoy.clusters()) as {
    cluster_statuses?: {
      name: string;
      host_statuses?: {
        address: { socket_address: { address: string; port_value: number } };
        health_status?: { eds_health_status?: string };
      }[];
    }[];
  };
  const found = json.cluster_statuses?.find((c) => c.name === cluster);
  return found?.host_statuses
    ?.map(
      (h) =>
        `${h.address.socket_address.address}:${h.address.socket_address.port_value} ${h.health_status?.eds_health_status ?? '?'}`,
    )
    .sort();
}

async function setup(t: ExecutionContext, apiType: ApiType) {
  const store = new EndpointStore();
  store.replaceAll([
    service('web', [endpoint('127.0.0.2'), endpoint('127.0.0.3', SERVING_TERMINATING)], { port: 8080 }),
    service('api', [endpoint('127.0.0.4')], { port: 8081 }),
  ]);
  const plane = await startControlPlane({ store, xdsAddress: '127.0.0.1:0' });
  t.teardown(() => plane.close());
  const admin = await startAdminServer({
    address: '127.0.0.1:0',
    registry: createRegistry(),
    readiness: () => ({ ready: true }),
    routes: debugRoutes({ sync: plane.sync, cache: plane.cache, store, eligibility: DEFAULT_ELIGIBILITY }),
  });
  t.teardown(() => admin.close());
  const nodeId = `status-${apiType.toLowerCase()}`;
  const envoy = await startEnvoy({
    bootstrap: gatewayBootstrap({ xdsPort: plane.port, listenerPort: await freePort(), nodeId, apiType }),
  });
  t.teardown(() => envoy.stop());
  await waitSynced(plane, nodeId);
  return { store, plane, envoy, nodeId, controlPlaneUrl: `http://${admin.address}` };
}

for (const apiType of ['GRPC', 'DELTA_GRPC'] as const) {
  test(`${apiType}: in sync exits 0; endpoints changed behind a disconnected Envoy's back exit 1 naming the cluster`, async (t) => {
    const { store, plane, envoy, nodeId, controlPlaneUrl } = await setup(t, apiType);

    const inSync = await status('--envoy-admin', envoy.adminUrl, '--control-plane', controlPlaneUrl);
    t.is(inSync.code, 0, inSync.stdout + inSync.stderr);
    t.is(inSync.stderr, '');
    const lines = inSync.stdout.split('\n');
    t.true(lines.includes(`${API}  IN_SYNC`), inSync.stdout);
    t.true(lines.includes(`${WEB}  IN_SYNC`), inSync.stdout);
    t.regex(
      inSync.stdout,
      /^ {2}127\.0\.0\.3:8080 +DRAINING +\/eds_status_draining +DRAINING +terminating +pod-127\.0\.0\.3$/m,
    );
    t.is(lines.at(-2), '2 cluster(s), all in sync.');

    const json = await statusJson('--envoy-admin', envoy.adminUrl, '--control-plane', controlPlaneUrl);
    t.is(json.code, 0);
    t.deepEqual(verdicts(json.report), { [API]: 'IN_SYNC', [WEB]: 'IN_SYNC' });
    t.is(json.report.node.id, nodeId);
    t.is(json.report.controlPlane?.stream?.kind, apiType === 'GRPC' ? 'sotw' : 'delta');
    const web = json.report.clusters.find((c) => c.name === WEB)!;
    t.deepEqual(
      web.hosts.map((h) => [h.address, h.envoy?.edsHealth, h.readygate?.health]),
      [
        ['127.0.0.2:8080', 'HEALTHY', 'HEALTHY'],
        ['127.0.0.3:8080', 'DRAINING', 'DRAINING'],
      ],
    );
    t.is(web.versions?.eds.acked, plane.cache.get(TypeUrl.ENDPOINT, WEB)?.version);

    // Drift: readygate's xDS server goes away (its admin and store stay), then web's pods change. Envoy
    // keeps what it last accepted, which is no longer what readygate would send.
    await plane.close();
    await waitUntil(() => plane.sync.streams.length === 0, { description: 'the ADS stream to close' });
    store.upsert(
      service('web', [endpoint('127.0.0.5'), endpoint('127.0.0.3', SERVING_TERMINATING)], { port: 8080 }),
    );
    t.deepEqual(await envoyHosts(envoy, WEB), ['127.0.0.2:8080 HEALTHY', '127.0.0.3:8080 DRAINING']);

    const drift = await status('--envoy-admin', envoy.adminUrl, '--control-plane', controlPlaneUrl);
    t.is(drift.code, 1, drift.stdout + drift.stderr);
    t.is(drift.stderr, '');
    const driftLines = drift.stdout.split('\n');
    t.true(driftLines.includes(`${WEB}  HOSTS_DIFFER  << DRIFT`), drift.stdout);
    // No stream any more: api's hosts agree, but its version cannot be checked, so it is not "in sync".
    t.true(driftLines.includes(`${API}  UNVERIFIED`), drift.stdout);
    t.is(driftLines.at(-2), `2 cluster(s), 1 drifting: ${WEB}.`);
    t.true(
      drift.stdout.includes(`Envoy node "${nodeId}" has no stream on the readygate replica(s) asked`),
      drift.stdout,
    );

    const driftJson = await statusJson('--envoy-admin', envoy.adminUrl, '--control-plane', controlPlaneUrl);
    t.is(driftJson.code, 1);
    t.deepEqual(verdicts(driftJson.report), { [API]: 'UNVERIFIED', [WEB]: 'HOSTS_DIFFER' });
    const differing = driftJson.report.clusters
      .find((c) => c.name === WEB)!
      .hosts.filter((h) => h.differs)
      .map((h) => [h.address, h.envoy?.edsHealth ?? null, h.readygate?.health ?? null]);
    t.deepEqual(differing, [
      ['127.0.0.2:8080', 'HEALTHY', null],
      ['127.0.0.5:8080', null, 'HEALTHY'],
    ]);
  });
}

test('GRPC: a cluster Envoy rejected is NACKED (exit 1), with and without --control-plane', async (t) => {
  const { store, plane, envoy, nodeId, controlPlaneUrl } = await setup(t, 'GRPC');
  // Test-only override: a negative connect timeout fails Envoy's validation.
  plane.cache.setDraftOverride(rejectCluster('default/bad:http'));
  store.upsert(service('bad', [endpoint('127.0.0.6')], { port: 8082 }));
  await waitUntil(
    () =>
      plane.sync.streams.find((s) => s.nodeId === nodeId)?.types.get(TypeUrl.CLUSTER)?.status === 'NACKED',
    { timeoutMs: 10_000, description: 'a CDS NACK' },
  );

  const run = await status('--envoy-admin', envoy.adminUrl, '--control-plane', controlPlaneUrl);
  t.is(run.code, 1, run.stdout + run.stderr);
  const lines = run.stdout.split('\n');
  t.true(lines.includes('default/bad:http  NACKED  << DRIFT'), run.stdout);
  t.true(lines.includes(`${WEB}  IN_SYNC`), run.stdout);
  t.true(lines.includes(`${API}  IN_SYNC`), run.stdout);
  t.regex(
    run.stdout,
    /Envoy rejected readygate's latest CDS response: Invalid duration: Expected positive duration/,
  );
  t.is(lines.at(-2), '3 cluster(s), 1 drifting: default/bad:http.');

  // Envoy alone: its cds.update_rejected counter is the NACK evidence; nothing else is judged.
  const envoyOnly = await statusJson('--envoy-admin', envoy.adminUrl);
  t.is(envoyOnly.code, 1);
  t.deepEqual(verdicts(envoyOnly.report), { [API]: 'NOT_COMPARED', [WEB]: 'NOT_COMPARED' });
  t.true((envoyOnly.report.node.cdsUpdateRejected ?? 0) >= 1);
  t.is(envoyOnly.report.controlPlane, null);
});

test('GRPC: Envoy alone and healthy exits 0 and lists its clusters', async (t) => {
  const { envoy } = await setup(t, 'GRPC');
  const run = await status('--envoy-admin', envoy.adminUrl);
  t.is(run.code, 0, run.stdout + run.stderr);
  const lines = run.stdout.split('\n');
  t.true(lines.includes(`${API}  NOT_COMPARED`), run.stdout);
  t.true(lines.includes(`${WEB}  NOT_COMPARED`), run.stdout);
  t.false(run.stdout.includes('readygate_xds'), "the static xDS cluster is not readygate's");
  t.is(lines.at(-2), '2 cluster(s) in Envoy, no NACKs (not compared with readygate: no --control-plane).');

  // The classic slip: Envoy's admin URL given as readygate's. One line that says what is wrong.
  const swapped = await status('--envoy-admin', envoy.adminUrl, '--control-plane', envoy.adminUrl);
  t.is(swapped.code, 3, 'readygate could not be read: unknown');
  t.is(swapped.stdout, '');
  t.regex(
    swapped.stderr,
    new RegExp(
      `^readygate: readygate's admin at ${envoy.adminUrl} answered /debug/\\S+ with HTTP 404 \\(is ${envoy.adminUrl} really readygate's admin\\?\\)\\n$`,
    ),
  );
});

test('an admin that is down: one line naming it, exit 3 (unknown), nothing on stdout', async (t) => {
  const closed = await freePort();
  const envoyDown = await status('--envoy-admin', `http://127.0.0.1:${closed}`);
  t.deepEqual(envoyDown, {
    code: 3,
    stdout: '',
    stderr: `readygate: cannot reach Envoy's admin at http://127.0.0.1:${closed}: ECONNREFUSED\n`,
  });
  const readygateDown = await status(
    '--envoy-admin',
    `http://127.0.0.1:${closed}`,
    '--control-plane',
    `http://127.0.0.1:${closed}`,
  );
  t.deepEqual(readygateDown, {
    code: 3,
    stdout: '',
    stderr: `readygate: cannot reach readygate's admin at http://127.0.0.1:${closed}: ECONNREFUSED\n`,
  });
});

test('--peers-dns that names no replica: one line, exit 3, within --timeout', async (t) => {
  const started = performance.now();
  const run = await status(
    '--envoy-admin',
    'http://127.0.0.1:1',
    '--peers-dns',
    'no-replica.invalid:9102',
    '--timeout',
    '2s',
  );
  t.is(run.code, 3);
  t.regex(
    run.stderr,
    /^readygate: --peers-dns no-replica\.invalid:9102(?: resolves to no address: no readygate replica to ask|: resolving no-replica\.invalid: no answer within \d+ ms)\n$/,
  );
  t.true(performance.now() - started < 4000);
});

test('an admin that accepts and never answers: the built CLI exits 3 at --timeout 3s, GC forced meanwhile', async (t) => {
  const silent = await startSilentServer();
  t.teardown(() => silent.close());
  for (const args of [
    ['--envoy-admin', silent.url],
    ['--envoy-admin', silent.url, '--control-plane', silent.url],
  ]) {
    const run = await runCliUnderGc(['status', ...args, '--timeout', '3s']);
    t.is(run.code, 3, run.stderr);
    // Node's own start (~0.3-1 s on a loaded machine) is inside elapsedMs; the deadline itself is 3 s.
    t.true(run.elapsedMs >= 3000 && run.elapsedMs < 6000, `exited after ${Math.round(run.elapsedMs)} ms`);
    t.true(run.majorGcs >= 10, `${run.majorGcs} major GCs ran during the wait`);
    t.regex(
      run.stderr,
      /^readygate: cannot reach (Envoy's|readygate's) admin at http:\/\/127\.0\.0\.1:\d+: no complete answer within \d+ ms\n$/,
    );
    t.is(run.stdout, '');
  }
  t.true(silent.accepted() >= 2);
});

/** One readygate replica: its own store, xDS server and admin (/debug/* routes), and one Envoy on it. */
async function replica(t: ExecutionContext, nodeId: string) {
  const store = new EndpointStore();
  store.replaceAll([
    service('web', [endpoint('127.0.0.2'), endpoint('127.0.0.3', SERVING_TERMINATING)], { port: 8080 }),
    service('api', [endpoint('127.0.0.4')], { port: 8081 }),
  ]);
  const plane = await startControlPlane({ store, xdsAddress: '127.0.0.1:0' });
  t.teardown(() => plane.close());
  const admin = await startAdminServer({
    address: '127.0.0.1:0',
    registry: createRegistry(),
    readiness: () => ({ ready: true }),
    routes: debugRoutes({ sync: plane.sync, cache: plane.cache, store, eligibility: DEFAULT_ELIGIBILITY }),
  });
  t.teardown(() => admin.close());
  const envoy = await startEnvoy({
    bootstrap: gatewayBootstrap({
      xdsPort: plane.port,
      listenerPort: await freePort(),
      nodeId,
      apiType: 'GRPC',
    }),
  });
  t.teardown(() => envoy.stop());
  await waitSynced(plane, nodeId);
  return { store, plane, envoy, nodeId, url: `http://${admin.address}` };
}

test('two replicas: every replica is asked, drift is found on either, an Envoy not checked is UNKNOWN', async (t) => {
  const [one, two] = await Promise.all([replica(t, 'gw-on-one'), replica(t, 'gw-on-two')]);
  const both = ['--control-plane', one.url, '--control-plane', two.url];

  for (const r of [one, two]) {
    const run = await statusJson('--envoy-admin', r.envoy.adminUrl, ...both);
    t.is(run.code, 0, `${r.nodeId} in sync, found on its own replica`);
    t.deepEqual(verdicts(run.report), { [API]: 'IN_SYNC', [WEB]: 'IN_SYNC' });
    t.is(run.report.node.id, r.nodeId);
  }
  // The bug this replaces: asking only replica one about replica two's Envoy printed "all in sync".
  const partial = await status('--envoy-admin', two.envoy.adminUrl, '--control-plane', one.url);
  t.is(partial.code, 3, partial.stdout);
  t.is(
    partial.stdout.split('\n').at(-2),
    '2 cluster(s); sync UNKNOWN: this Envoy has no stream on the readygate replica(s) asked.',
  );
  t.false(partial.stdout.includes('in sync.'));
  // A replica that does not answer, when the Envoy is on none of the others: unknown as well.
  const closed = await freePort();
  const unreachable = await status(
    '--envoy-admin',
    two.envoy.adminUrl,
    '--control-plane',
    one.url,
    '--control-plane',
    `http://127.0.0.1:${closed}`,
  );
  t.is(unreachable.code, 3, unreachable.stdout);
  t.true(
    unreachable.stdout.includes(
      `cannot reach readygate's admin at http://127.0.0.1:${closed}: ECONNREFUSED (this Envoy may stream from that replica).`,
    ),
    unreachable.stdout,
  );
  // ... and when the Envoy is on one that answered, the silent one does not matter.
  const notNeeded = await status(
    '--envoy-admin',
    one.envoy.adminUrl,
    '--control-plane',
    one.url,
    '--control-plane',
    `http://127.0.0.1:${closed}`,
  );
  t.is(notNeeded.code, 0, notNeeded.stdout);
  t.true(notNeeded.stdout.includes(`(not needed: this Envoy streams from ${one.url})`), notNeeded.stdout);

  // Drift on replica two: its Envoy rejects a cluster only replica two serves.
  two.plane.cache.setDraftOverride(rejectCluster('default/bad:http'));
  two.store.upsert(service('bad', [endpoint('127.0.0.6')], { port: 8082 }));
  await waitUntil(
    () =>
      two.plane.sync.streams.find((s) => s.nodeId === two.nodeId)?.types.get(TypeUrl.CLUSTER)?.status ===
      'NACKED',
    { timeoutMs: 10_000, description: 'a CDS NACK on replica two' },
  );
  const onTwo = await statusJson('--envoy-admin', two.envoy.adminUrl, ...both);
  t.is(onTwo.code, 1);
  t.is(verdicts(onTwo.report)['default/bad:http'], 'NACKED');
  t.is((await statusJson('--envoy-admin', one.envoy.adminUrl, ...both)).code, 0, 'replica one unaffected');

  // Drift on replica one, asked in the other order: still found.
  one.plane.cache.setDraftOverride(rejectCluster('default/worse:http'));
  one.store.upsert(service('worse', [endpoint('127.0.0.7')], { port: 8083 }));
  await waitUntil(
    () =>
      one.plane.sync.streams.find((s) => s.nodeId === one.nodeId)?.types.get(TypeUrl.CLUSTER)?.status ===
      'NACKED',
    { timeoutMs: 10_000, description: 'a CDS NACK on replica one' },
  );
  const onOne = await statusJson(
    '--envoy-admin',
    one.envoy.adminUrl,
    '--control-plane',
    two.url,
    '--control-plane',
    one.url,
  );
  t.is(onOne.code, 1);
  t.is(verdicts(onOne.report)['default/worse:http'], 'NACKED');
});
