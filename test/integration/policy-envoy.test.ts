/**
 * What readygate.io/* policies do to traffic through the real Envoy, with the store fed directly (the
 * apiserver refuses the loopback addresses local upstreams need; policy-kubernetes-envoy.test.ts covers the
 * Kubernetes path to config_dump). The breaker's 503 is the same UO overflow ext_proc maps to
 * `upstream-overflow` (extproc-causes.test.ts, "overflowed circuit breaker").
 */
import test, { type ExecutionContext } from 'ava';
import { EndpointStore } from '../../src/model/store.js';
import type { ServiceModel } from '../../src/model/types.js';
import { startControlPlane } from '../../src/xds/control-plane.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { startEnvoy, waitUntil, type EnvoyProcess } from '../helpers/envoy-process.js';
import { gatewayBootstrap } from '../helpers/gateway-bootstrap.js';
import { endpoint, service } from '../helpers/model-fixtures.js';
import { freePort } from '../helpers/ports.js';
import { okUpstream, sleepyUpstream, type Upstream } from '../helpers/upstreams.js';

const NODE_ID = 'envoy-policy';

async function setup(t: ExecutionContext, upstream: Upstream, annotations: Record<string, string>) {
  const store = new EndpointStore();
  const model: ServiceModel = {
    ...service('web', [endpoint(upstream.host)], { port: upstream.port }),
    annotations,
  };
  store.replaceAll([model]);
  const plane = await startControlPlane({ store, xdsAddress: '127.0.0.1:0' });
  const listenerPort = await freePort();
  const envoy = await startEnvoy({
    bootstrap: gatewayBootstrap({ xdsPort: plane.port, listenerPort, nodeId: NODE_ID, apiType: 'GRPC' }),
  });
  t.teardown(async () => {
    await envoy.stop();
    await plane.close();
    await upstream.close();
  });
  await waitUntil(
    async () => {
      const json = (await envoy.clusters()) as {
        cluster_statuses?: { name: string; host_statuses?: unknown[] }[];
      };
      return json.cluster_statuses?.find((c) => c.name === 'default/web:http')?.host_statuses?.length === 1;
    },
    { timeoutMs: 10_000, description: 'Envoy to know the host of default/web:http' },
  );
  return { envoy, plane, listenerPort };
}

async function get(listenerPort: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${listenerPort}/`, {
    headers: { 'x-cluster': 'default/web:http' },
    signal: AbortSignal.timeout(10_000),
  });
  await response.arrayBuffer();
  return `${response.status}${response.headers.get('x-envoy-overloaded') === 'true' ? ' overloaded' : ''}`;
}

/** Envoy's stat names replace the ':' of a cluster name with '_'. */
const clusterStat = async (envoy: EnvoyProcess, name: string): Promise<number | undefined> =>
  envoy.stat(`cluster.default/web_http.${name}`);

test('max-connections 1 + max-pending-requests 1: of three concurrent requests the third overflows', async (t) => {
  // Each request holds the one connection for a second, so the three really overlap.
  const upstream = await sleepyUpstream(1_000, { host: '127.0.0.2' });
  const { envoy, listenerPort } = await setup(t, upstream, {
    'readygate.io/max-connections': '1',
    'readygate.io/max-pending-requests': '1',
  });
  // The first request must hold the connection before the others come: while Envoy is still opening
  // it, the first request is itself pending, and the second would overflow (seen on a busy machine).
  const first = get(listenerPort);
  await waitUntil(() => upstream.hits() === 1, {
    timeoutMs: 10_000,
    description: 'the first request upstream',
  });
  const rest = Promise.all([0, 1].map(() => get(listenerPort)));
  const results = [await first, ...(await rest)];
  t.deepEqual(results.sort(), ['200', '200', '503 overloaded']);
  t.is(await clusterStat(envoy, 'upstream_rq_pending_overflow'), 1);
  t.is(upstream.hits(), 2);
});

test('idle-timeout closes the upstream connection before the app would (keep-alive race)', async (t) => {
  // The upstream keeps idle connections 30 s (upstreams.ts); the annotation makes Envoy close at 300 ms.
  const upstream = await okUpstream({ host: '127.0.0.2' });
  const { envoy, listenerPort } = await setup(t, upstream, { 'readygate.io/idle-timeout': '300ms' });
  t.is(await get(listenerPort), '200');
  await waitUntil(async () => (await clusterStat(envoy, 'upstream_cx_idle_timeout')) === 1, {
    timeoutMs: 10_000,
    description: 'Envoy to close the idle upstream connection',
  });
  t.is(await clusterStat(envoy, 'upstream_cx_active'), 0);
  // The next request opens a new connection and is served.
  t.is(await get(listenerPort), '200');
  t.is(await clusterStat(envoy, 'upstream_cx_total'), 2);
});

test('a bad value next to a good one: the good one applies, the Service is served, no NACK', async (t) => {
  const upstream = await sleepyUpstream(1_000, { host: '127.0.0.2' });
  const { envoy, plane, listenerPort } = await setup(t, upstream, {
    'readygate.io/connect-timeout': 'banana',
    'readygate.io/max-requests': '1',
  });
  // max-requests 1 applied: the second concurrent request overflows; connect-timeout stayed 1 s.
  const first = get(listenerPort);
  await waitUntil(() => upstream.hits() === 1, {
    timeoutMs: 10_000,
    description: 'the first request upstream',
  });
  const second = get(listenerPort);
  const results = [await first, await second];
  t.deepEqual(results.sort(), ['200', '503 overloaded']);
  t.is(await clusterStat(envoy, 'upstream_rq_pending_overflow'), 1);
  const dump = (await envoy.configDump('?resource=dynamic_active_clusters')) as {
    configs: { cluster: Record<string, unknown> }[];
  };
  t.is(dump.configs.find((c) => c.cluster['name'] === 'default/web:http')?.cluster['connect_timeout'], '1s');
  const syncz = plane.sync.toJSON().find((s) => s.nodeId === NODE_ID)!;
  t.is(syncz.types[TypeUrl.CLUSTER]!.lastNack, null);
});
