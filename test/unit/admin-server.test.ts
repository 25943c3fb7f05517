import test from 'ava';
import { debugRoutes } from '../../src/admin/debug-routes.js';
import { createRegistry, registerControlPlaneMetrics } from '../../src/admin/metrics.js';
import { startAdminServer } from '../../src/admin/server.js';
import { DEFAULT_ELIGIBILITY } from '../../src/model/eligibility.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import type { SynczEntry } from '../../src/xds/sync-status.js';
import { SERVING_TERMINATING, endpoint, service } from '../helpers/model-fixtures.js';
import { startControlPlaneFixture } from '../helpers/control-plane-fixture.js';
import { waitUntil } from '../helpers/envoy-process.js';

async function setup(t: { teardown: (fn: () => Promise<void> | void) => void }) {
  const { store, plane, client } = await startControlPlaneFixture(t, [
    service('web', [endpoint('127.0.0.2'), endpoint('127.0.0.3', SERVING_TERMINATING)]),
  ]);
  const registry = createRegistry();
  registerControlPlaneMetrics(registry, { sync: plane.sync, cache: plane.cache, store });
  const admin = await startAdminServer({
    address: '127.0.0.1:0',
    registry,
    readiness: () => (store.synced ? { ready: true } : { ready: false, reason: 'source not synced yet' }),
    routes: debugRoutes({ sync: plane.sync, cache: plane.cache, store, eligibility: DEFAULT_ELIGIBILITY }),
  });
  t.teardown(() => admin.close());
  const get = async (path: string) => {
    const response = await fetch(`http://${admin.address}${path}`, { signal: AbortSignal.timeout(3000) });
    return {
      status: response.status,
      type: response.headers.get('content-type'),
      body: await response.text(),
    };
  };
  return { store, plane, client, get };
}

test('/healthz is 200; /readyz is 503 with a reason until the source has synced, then 200', async (t) => {
  const { store, get } = await setup(t);
  t.deepEqual(await get('/healthz'), { status: 200, type: 'text/plain; charset=utf-8', body: 'ok\n' });
  t.deepEqual(await get('/readyz'), {
    status: 503,
    type: 'text/plain; charset=utf-8',
    body: 'not ready: source not synced yet\n',
  });
  store.markSynced();
  t.is((await get('/readyz')).status, 200);
});

test('/debug/syncz and /metrics reflect a push and its ACK', async (t) => {
  const { client, get, plane } = await setup(t);
  const stream = client.sotw();
  stream.send({ node: { id: 'envoy-admin-test' }, type_url: TypeUrl.CLUSTER });
  const response = await stream.next();
  stream.send({
    type_url: TypeUrl.CLUSTER,
    version_info: response.version_info!,
    response_nonce: response.nonce!,
  });
  t.true(await stream.silentFor(100));
  // The ACK is read on the server's next turn; on a busy machine that can come after the silence ended.
  await waitUntil(() => plane.sync.toJSON()[0]?.types[TypeUrl.CLUSTER]?.status === 'SYNCED', {
    timeoutMs: 3000,
    description: 'the ACK recorded',
  });

  const syncz = await get('/debug/syncz');
  t.is(syncz.status, 200);
  t.is(syncz.type, 'application/json');
  const entries = JSON.parse(syncz.body) as SynczEntry[];
  t.is(entries.length, 1);
  t.is(entries[0]!.nodeId, 'envoy-admin-test');
  t.is(entries[0]!.stream, 'sotw');
  const cds = entries[0]!.types[TypeUrl.CLUSTER]!;
  t.is(cds.status, 'SYNCED');
  t.is(cds.sent?.version, response.version_info);
  t.is(cds.sent?.nonce, '1');
  t.is(cds.acked?.version, response.version_info);
  t.is(cds.lastNack, null);
  t.deepEqual(cds.subscribed, '*');

  const metrics = (await get('/metrics')).body;
  t.regex(metrics, /^readygate_xds_connected_proxies\{stream="sotw"\} 1$/m);
  t.regex(metrics, /^readygate_xds_pushes_total\{type="cds"\} 1$/m);
  t.regex(metrics, /^readygate_xds_acks_total\{type="cds"\} 1$/m);
  t.regex(metrics, /^readygate_xds_convergence_seconds_bucket\{le="30",type="cds"\} 1$/m);
  t.regex(metrics, /^readygate_xds_resources\{type="eds"\} 1$/m);

  const endpoints = JSON.parse((await get('/debug/endpoints')).body) as unknown;
  t.deepEqual(endpoints, [
    {
      cluster: 'default/web:http',
      hosts: [
        { address: '127.0.0.2:8080', health: 'HEALTHY', state: 'ready', pod: 'pod-127.0.0.2' },
        { address: '127.0.0.3:8080', health: 'DRAINING', state: 'terminating', pod: 'pod-127.0.0.3' },
      ],
    },
  ]);
  t.is((await get('/nope')).status, 404);
});

test('close() ends open streams with UNAVAILABLE so Envoys reconnect elsewhere', async (t) => {
  const { client, plane } = await setup(t);
  const stream = client.delta();
  stream.send({ node: { id: 'envoy-shutdown' }, type_url: TypeUrl.CLUSTER });
  await stream.next();
  await plane.close();
  const end = await stream.ended();
  t.deepEqual(end, { code: 14, details: 'readygate is shutting down' });
});
