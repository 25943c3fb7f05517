/**
 * The fleet view of `readygate status` (no --envoy-admin) against three real Envoys on two readygate
 * replicas: gw-1 (SotW) and gw-2 (Delta) on replica one, gw-3 (SotW) on replica two. Exact rows, states
 * and exit codes: all SYNCED (0); gw-3 NACKing a cluster only replica two serves (1, the error in wide
 * and json); a replica that does not answer (3 when every listed proxy is synced, 1 when one is not),
 * or that accepts and never answers (3 at --timeout).
 */
import { readFileSync } from 'node:fs';
import test from 'ava';
import { pino } from 'pino';
import { parse as parseYaml } from 'yaml';
import { debugRoutes } from '../../src/admin/debug-routes.js';
import { createRegistry } from '../../src/admin/metrics.js';
import { startAdminServer } from '../../src/admin/server.js';
import { main } from '../../src/cli/main.js';
import { pinnedEnvoyVersion } from '../../src/cli/version.js';
import { DEFAULT_ELIGIBILITY } from '../../src/model/eligibility.js';
import { EndpointStore } from '../../src/model/store.js';
import type { FleetDocument } from '../../src/status/fleet-format.js';
import { startControlPlane, type ControlPlane } from '../../src/xds/control-plane.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { startEnvoy, waitUntil } from '../helpers/envoy-process.js';
import { gatewayBootstrap } from '../helpers/gateway-bootstrap.js';
import { SERVING_TERMINATING, endpoint, service } from '../helpers/model-fixtures.js';
import { freePort } from '../helpers/ports.js';
import { rejectCluster } from '../helpers/rejected-resources.js';
import { startSilentServer } from '../helpers/silent-server.js';

/** The Envoy the tests run (envoy-process.ts installs READYGATE_ENVOY_VERSION, else the pin). */
const ENVOY_VERSION =
  process.env.READYGATE_ENVOY_VERSION ??
  pinnedEnvoyVersion(readFileSync(new URL('../../scripts/envoy-binary.sh', import.meta.url), 'utf8'));

async function status(...args: string[]) {
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

async function fleetJson(...args: string[]) {
  const run = await status(...args, '-o', 'json');
  return { code: run.code, doc: JSON.parse(run.stdout) as FleetDocument, stderr: run.stderr };
}

/**
 * Until every Envoy on `plane` has ACKed readygate's current version of every cluster and load
 * assignment and has nothing in flight: later pushes on this replica come only from the test.
 */
async function waitSynced(plane: ControlPlane, nodeIds: readonly string[]): Promise<void> {
  await waitUntil(
    () =>
      nodeIds.every((nodeId) => {
        const stream = plane.sync.streams.find((s) => s.nodeId === nodeId);
        return (
          stream !== undefined &&
          [TypeUrl.CLUSTER, TypeUrl.ENDPOINT].every((typeUrl) => {
            const type = stream.types.get(typeUrl);
            const current = plane.cache.resources(typeUrl);
            return (
              type?.status === 'SYNCED' &&
              type.versions.ackedCount() === current.size &&
              [...current.values()].every((r) => type.versions.ackedVersion(r.name) === r.version)
            );
          })
        );
      }),
    { timeoutMs: 20_000, description: `${nodeIds.join(', ')} to ACK every current resource` },
  );
}

/** A readygate replica (store, xDS server, admin with /debug/*) and Envoys streaming from it. */
async function replica(
  t: { teardown: (fn: () => unknown) => void },
  envoys: readonly { nodeId: string; apiType: 'GRPC' | 'DELTA_GRPC' }[],
) {
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
  const admins: Record<string, string> = {};
  for (const { nodeId, apiType } of envoys) {
    const envoy = await startEnvoy({
      bootstrap: gatewayBootstrap({ xdsPort: plane.port, listenerPort: await freePort(), nodeId, apiType }),
    });
    t.teardown(() => envoy.stop());
    admins[nodeId] = envoy.adminUrl;
  }
  await waitSynced(
    plane,
    envoys.map((e) => e.nodeId),
  );
  return { store, plane, admins, url: `http://${admin.address}` };
}

/** nodeId → [replica, stream, CDS, EDS, synced, userAgent] */
const rows = (doc: FleetDocument) =>
  Object.fromEntries(
    doc.proxies.map((p) => [
      p.nodeId,
      [p.replica, p.stream, p.types.CDS.state, p.types.EDS.state, p.synced, p.userAgent],
    ]),
  );

test('three Envoys on two replicas: all SYNCED (0), one NACKing (1, error shown), a replica down (3, or 1)', async (t) => {
  const [one, two] = await Promise.all([
    replica(t, [
      { nodeId: 'gw-1', apiType: 'GRPC' },
      { nodeId: 'gw-2', apiType: 'DELTA_GRPC' },
    ]),
    replica(t, [{ nodeId: 'gw-3', apiType: 'GRPC' }]),
  ]);
  const both = ['--control-plane', one.url, '--control-plane', two.url];
  const agent = `envoy/${ENVOY_VERSION}`;

  const synced = await fleetJson(...both);
  t.is(synced.code, 0, synced.stderr);
  t.deepEqual(rows(synced.doc), {
    'gw-1': [one.url, 'sotw', 'SYNCED', 'SYNCED', true, agent],
    'gw-2': [one.url, 'delta', 'SYNCED', 'SYNCED', true, agent],
    'gw-3': [two.url, 'sotw', 'SYNCED', 'SYNCED', true, agent],
  });
  t.deepEqual(synced.doc.summary, { proxies: 3, synced: 3, notSynced: 0, unreachableReplicas: 0 });
  t.deepEqual(
    synced.doc.replicas.map((r) => [r.url, r.reachable, r.proxies]),
    [
      [one.url, true, 2],
      [two.url, true, 1],
    ],
  );
  for (const proxy of synced.doc.proxies) {
    t.false(proxy.types.LDS.requested, 'an Envoy gateway asks for no listeners');
    t.is(proxy.types.CDS.ackedVersion, proxy.types.CDS.sentVersion);
    t.is(proxy.identity, null, 'no TLS');
  }

  const table = await status(...both);
  t.is(table.code, 0);
  t.is(table.stderr, '');
  const lines = table.stdout.trimEnd().split('\n');
  t.is(lines.length, 4);
  t.regex(lines[0]!, /^NAME +CDS +EDS +REPLICA +STREAM +VERSION +LAST ACK$/);
  const cells = lines.slice(1).map((line) => line.split(/ {2,}/));
  t.deepEqual(
    cells.map((c) => c.slice(0, 6)),
    [
      ['gw-1', 'SYNCED', 'SYNCED', one.url, 'ADS SotW', agent],
      ['gw-2', 'SYNCED', 'SYNCED', one.url, 'ADS Delta', agent],
      ['gw-3', 'SYNCED', 'SYNCED', two.url, 'ADS SotW', agent],
    ],
  );
  for (const c of cells) t.regex(c[6]!, /^\d+s ago$/);
  // --json is -o json; -o yaml is the same document.
  const legacy = JSON.parse((await status(...both, '--json')).stdout) as FleetDocument;
  t.deepEqual(rows(legacy), rows(synced.doc));
  const yaml = parseYaml((await status(...both, '-o', 'yaml')).stdout) as FleetDocument;
  t.deepEqual(rows(yaml), rows(synced.doc));

  // gw-3 rejects a cluster only replica two serves.
  two.plane.cache.setDraftOverride(rejectCluster('default/bad:http'));
  two.store.upsert(service('bad', [endpoint('127.0.0.6')], { port: 8082 }));
  await waitUntil(
    () =>
      two.plane.sync.streams.find((s) => s.nodeId === 'gw-3')?.types.get(TypeUrl.CLUSTER)?.status ===
      'NACKED',
    { timeoutMs: 20_000, description: 'gw-3 to NACK the cluster' },
  );
  const nack = await fleetJson(...both);
  t.is(nack.code, 1);
  t.deepEqual(rows(nack.doc), {
    'gw-1': [one.url, 'sotw', 'SYNCED', 'SYNCED', true, agent],
    'gw-2': [one.url, 'delta', 'SYNCED', 'SYNCED', true, agent],
    'gw-3': [two.url, 'sotw', 'NACK', 'SYNCED', false, agent],
  });
  const gw3 = nack.doc.proxies.find((p) => p.nodeId === 'gw-3')!;
  t.regex(gw3.types.CDS.nack?.error ?? '', /Expected positive duration/);
  t.deepEqual(gw3.types.CDS.nack?.resources, ['default/api:http', 'default/bad:http', 'default/web:http']);
  t.is(gw3.types.CDS.nack?.version ?? null, gw3.types.CDS.ackedVersion, 'Envoy reports the version it kept');
  t.not(gw3.types.CDS.sentVersion, gw3.types.CDS.ackedVersion);
  const wide = await status(...both, '-o', 'wide');
  t.is(wide.code, 1);
  const gw3Wide = wide.stdout.split('\n').find((line) => line.startsWith('gw-3 '))!;
  t.regex(gw3Wide, /^gw-3 +NACK +SYNCED +.*CDS: .*Expected positive duration/);
  t.regex(
    wide.stdout.split('\n').find((line) => line.startsWith('gw-1 '))!,
    / -$/,
    'no NACK error on gw-1',
  );

  // With --envoy-admin, the per-Envoy comparison, in every format: wide gives the whole NACK error and
  // the version sent; yaml is the json document.
  const one3 = ['--envoy-admin', two.admins['gw-3']!, ...both];
  const envoyJson = await status(...one3, '-o', 'json');
  t.is(envoyJson.code, 1);
  const envoyYaml = await status(...one3, '-o', 'yaml');
  t.is(envoyYaml.code, 1);
  t.deepEqual(parseYaml(envoyYaml.stdout), JSON.parse(envoyJson.stdout));
  t.deepEqual(JSON.parse((await status(...one3, '--json')).stdout), JSON.parse(envoyJson.stdout));
  const envoyWide = await status(...one3, '-o', 'wide');
  t.is(envoyWide.code, 1);
  const cdsLine = (text: string) => text.split('\n').find((line) => line.startsWith('  CDS '))!;
  t.regex(
    cdsLine(envoyWide.stdout),
    /^ {2}CDS +NACKED +sent \S+ +acked \S+ +last NACK .*Expected positive duration/,
  );
  const envoyTable = await status(...one3);
  t.regex(cdsLine(envoyTable.stdout), /^ {2}CDS +NACKED +acked \S+ +last NACK /);
  t.notRegex(cdsLine(envoyTable.stdout), / sent /);

  // A replica that does not answer: its proxies are unknown. With gw-3 NACKing, the evidence wins (1);
  // asking only replica one and the silent one, every listed proxy is synced: 3.
  const closed = `http://127.0.0.1:${await freePort()}`;
  const withDown = await fleetJson(...both, '--control-plane', closed);
  t.is(withDown.code, 1);
  t.deepEqual(withDown.doc.summary, { proxies: 3, synced: 2, notSynced: 1, unreachableReplicas: 1 });
  const unknown = await status('--control-plane', one.url, '--control-plane', closed);
  t.is(unknown.code, 3);
  t.deepEqual(
    unknown.stdout
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => line.split(/ {2,}/)[0]),
    [
      'NAME',
      'gw-1',
      'gw-2',
      `! cannot reach readygate's admin at ${closed}: ECONNREFUSED: the proxies on that replica are not listed.`,
    ],
  );
  t.is((await status('--control-plane', one.url)).code, 0, 'replica one alone: both its Envoys synced');
});

test('a replica that accepts and never answers: one line and exit 3 at --timeout, in every format', async (t) => {
  const silent = await startSilentServer();
  t.teardown(() => silent.close());
  for (const format of ['table', 'json']) {
    const started = performance.now();
    const run = await status('--control-plane', silent.url, '--timeout', '1500ms', '-o', format);
    const elapsed = performance.now() - started;
    t.is(run.code, 3);
    t.is(run.stdout, '');
    t.regex(
      run.stderr,
      /^readygate: cannot reach readygate's admin at http:\/\/127\.0\.0\.1:\d+: no complete answer within \d+ ms\n$/,
    );
    t.true(elapsed >= 1400 && elapsed < 6000, `${Math.round(elapsed)} ms`);
  }
});
