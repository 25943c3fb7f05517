/**
 * readygate.io/slow-start through the real Envoy: a pod added to a running Service gets a small share of
 * requests at first, while the same change to a Service without slow start splits them evenly.
 *
 * Envoy starts a host's slow-start clock when a worker's load balancer first sees the host healthy (there
 * is no active health check to say when), and a worker builds that balancer on the cluster's first request.
 * So the first pod must have served before, and be older than the window, when the second arrives;
 * otherwise both start their clocks together and ramp alike. A 6 s window with aggression 0.1 (weight
 * factor (t/6 s)^10, floored at Envoy's 10 %) keeps the new pod near 10 % for its first ~4.8 s, far longer
 * than 40 requests take even on a contended machine.
 */
import test from 'ava';
import { EndpointStore } from '../../src/model/store.js';
import type { ServiceModel } from '../../src/model/types.js';
import { startControlPlane } from '../../src/xds/control-plane.js';
import { startEnvoy, waitUntil } from '../helpers/envoy-process.js';
import { gatewayBootstrap } from '../helpers/gateway-bootstrap.js';
import { endpoint, service } from '../helpers/model-fixtures.js';
import { freePort } from '../helpers/ports.js';
import { httpUpstream } from '../helpers/upstreams.js';

/** Who answered each of `count` sequential requests: address → count. */
async function servedBy(
  listenerPort: number,
  cluster: string,
  count: number,
): Promise<Record<string, number>> {
  const served: Record<string, number> = {};
  for (let i = 0; i < count; i++) {
    const response = await fetch(`http://127.0.0.1:${listenerPort}/`, {
      headers: { 'x-cluster': cluster },
      signal: AbortSignal.timeout(5_000),
    });
    const body = await response.text();
    const key = response.status === 200 ? body : String(response.status);
    served[key] = (served[key] ?? 0) + 1;
  }
  return served;
}

test('slow-start: a pod added to a running Service gets a small share at first; without it, half', async (t) => {
  const port = await freePort('127.0.0.2');
  const upstreams = await Promise.all(
    ['127.0.0.2', '127.0.0.3'].map((host) =>
      httpUpstream(
        (_request, _body, response) => {
          response.writeHead(200, { 'content-type': 'text/plain' }).end(host);
        },
        { host, port },
      ),
    ),
  );
  const store = new EndpointStore();
  const withSlowStart = (endpoints: string[]): ServiceModel => ({
    ...service(
      'ramped',
      endpoints.map((a) => endpoint(a)),
      { port },
    ),
    annotations: { 'readygate.io/slow-start': '6s', 'readygate.io/slow-start-aggression': '0.1' },
  });
  const control = (endpoints: string[]): ServiceModel =>
    service(
      'control',
      endpoints.map((a) => endpoint(a)),
      { port },
    );
  store.replaceAll([withSlowStart(['127.0.0.2']), control(['127.0.0.2'])]);
  const plane = await startControlPlane({ store, xdsAddress: '127.0.0.1:0' });
  const listenerPort = await freePort();
  const envoy = await startEnvoy({
    bootstrap: gatewayBootstrap({ xdsPort: plane.port, listenerPort, nodeId: 'slow-start', apiType: 'GRPC' }),
  });
  t.teardown(async () => {
    await envoy.stop();
    await plane.close();
    await Promise.all(upstreams.map((u) => u.close()));
  });
  const hostCount = async (cluster: string): Promise<number | undefined> => {
    const json = (await envoy.clusters()) as {
      cluster_statuses?: { name: string; host_statuses?: unknown[] }[];
    };
    return json.cluster_statuses?.find((c) => c.name === cluster)?.host_statuses?.length;
  };
  await waitUntil(
    async () =>
      (await hostCount('default/ramped:http')) === 1 && (await hostCount('default/control:http')) === 1,
    {
      timeoutMs: 10_000,
      description: 'both clusters with one host',
    },
  );
  // The first pod serves (the workers' balancers now know it), then outlives the window.
  t.deepEqual(await servedBy(listenerPort, 'default/ramped:http', 4), { '127.0.0.2': 4 });
  await new Promise((resolve) => setTimeout(resolve, 6_500));
  store.replaceAll([withSlowStart(['127.0.0.2', '127.0.0.3']), control(['127.0.0.2', '127.0.0.3'])]);
  await waitUntil(
    async () =>
      (await hostCount('default/ramped:http')) === 2 && (await hostCount('default/control:http')) === 2,
    {
      timeoutMs: 10_000,
      description: 'both clusters with the new host',
    },
  );
  const started = performance.now();
  const ramped = await servedBy(listenerPort, 'default/ramped:http', 40);
  const elapsedMs = performance.now() - started;
  const plain = await servedBy(listenerPort, 'default/control:http', 40);
  t.log(`ramped ${JSON.stringify(ramped)} in ${Math.round(elapsedMs)} ms; control ${JSON.stringify(plain)}`);
  // Round robin without slow start alternates exactly.
  t.deepEqual(plain, { '127.0.0.2': 20, '127.0.0.3': 20 });
  t.true(elapsedMs < 4_500, `40 requests took ${Math.round(elapsedMs)} ms: past the minimum-weight phase`);
  // At weight 10 % against 100 %, the new pod gets about 1 in 11: 3-4 of 40. 8 is double that.
  t.is((ramped['127.0.0.2'] ?? 0) + (ramped['127.0.0.3'] ?? 0), 40);
  t.true((ramped['127.0.0.3'] ?? 0) >= 1 && (ramped['127.0.0.3'] ?? 0) <= 8, JSON.stringify(ramped));
});
