/**
 * readygate's ADS server against the real Envoy, SotW and Delta: what Envoy's admin shows, where requests
 * go, how edits propagate, and that a rejected resource is a NACK that does not stall other clusters.
 */
import test, { type ExecutionContext } from 'ava';
import { EndpointStore } from '../../src/model/store.js';
import { startControlPlane, type ControlPlane } from '../../src/xds/control-plane.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { startEnvoy, waitUntil, type EnvoyProcess } from '../helpers/envoy-process.js';
import { gatewayBootstrap } from '../helpers/gateway-bootstrap.js';
import { NOT_SERVING, READY, SERVING_TERMINATING, endpoint, service } from '../helpers/model-fixtures.js';
import { freePort } from '../helpers/ports.js';
import { httpUpstream, type Upstream } from '../helpers/upstreams.js';
import { rejectCluster } from '../helpers/rejected-resources.js';

type ApiType = 'GRPC' | 'DELTA_GRPC';

interface HostStatus {
  address: { socket_address: { address: string; port_value: number } };
  health_status?: { eds_health_status?: string };
}
interface ClustersJson {
  cluster_statuses?: { name: string; host_statuses?: HostStatus[] }[];
}

/** `address:port HEALTH` per host of a cluster in Envoy, or undefined if Envoy has no such cluster. */
async function envoyHosts(envoy: EnvoyProcess, cluster: string): Promise<string[] | undefined> {
  const json = (await envoy.clusters()) as ClustersJson;
  const status = json.cluster_statuses?.find((c) => c.name === cluster);
  if (!status) return undefined;
  return (status.host_statuses ?? [])
    .map(
      (h) =>
        `${h.address.socket_address.address}:${h.address.socket_address.port_value} ${h.health_status?.eds_health_status ?? 'HEALTHY'}`,
    )
    .sort();
}

async function waitForHosts(
  envoy: EnvoyProcess,
  cluster: string,
  expected: string[] | undefined,
): Promise<void> {
  const want = JSON.stringify(expected);
  let last = '';
  await waitUntil(
    async () => {
      last = JSON.stringify(await envoyHosts(envoy, cluster));
      return last === want;
    },
    { timeoutMs: 10_000, description: `Envoy cluster ${cluster} to be ${want} (last: ${last})` },
  );
}

/** An upstream that answers 200 with its own address, so a test sees which host served a request. */
function namedUpstream(host: string, port: number): Promise<Upstream> {
  return httpUpstream(
    (_request, _body, response) => {
      response.writeHead(200, { 'content-type': 'text/plain' });
      response.end(host);
    },
    { host, port },
  );
}

/** Sends `count` requests to `cluster` through Envoy; returns status → count and who answered. */
async function drive(
  listenerPort: number,
  cluster: string,
  count: number,
): Promise<{ statuses: Record<number, number>; served: string[] }> {
  const statuses: Record<number, number> = {};
  const served = new Set<string>();
  for (let i = 0; i < count; i++) {
    const response = await fetch(`http://127.0.0.1:${listenerPort}/`, {
      headers: { 'x-cluster': cluster },
      signal: AbortSignal.timeout(5000),
    });
    const body = await response.text();
    statuses[response.status] = (statuses[response.status] ?? 0) + 1;
    if (response.status === 200) served.add(body);
  }
  return { statuses, served: [...served].sort() };
}

/** Waits until readygate has an ACK from `nodeId` for the cache's current version of an EDS resource. */
async function waitForAck(plane: ControlPlane, nodeId: string, cluster: string): Promise<void> {
  await waitUntil(
    () => {
      const current = plane.cache.get(TypeUrl.ENDPOINT, cluster)?.version;
      const stream = plane.sync.streams.find((s) => s.nodeId === nodeId);
      return (
        current !== undefined &&
        stream?.types.get(TypeUrl.ENDPOINT)?.versions.ackedVersion(cluster) === current
      );
    },
    { timeoutMs: 10_000, description: `ACK of ${cluster} from ${nodeId}` },
  );
}

async function setup(t: ExecutionContext, apiType: ApiType) {
  const port = await freePort('127.0.0.2');
  const upstreams = await Promise.all(
    ['127.0.0.2', '127.0.0.3', '127.0.0.4'].map((h) => namedUpstream(h, port)),
  );
  const store = new EndpointStore();
  store.replaceAll([
    service(
      'web',
      [
        endpoint('127.0.0.2', READY),
        endpoint('127.0.0.3', SERVING_TERMINATING),
        endpoint('127.0.0.4', { ready: false, serving: false, terminating: false }),
      ],
      { port },
    ),
  ]);
  const plane = await startControlPlane({ store, xdsAddress: '127.0.0.1:0' });
  const listenerPort = await freePort();
  const nodeId = `envoy-${apiType.toLowerCase()}`;
  const envoy = await startEnvoy({
    bootstrap: gatewayBootstrap({ xdsPort: plane.port, listenerPort, nodeId, apiType }),
  });
  t.teardown(async () => {
    await envoy.stop();
    await plane.close();
    await Promise.all(upstreams.map((u) => u.close()));
  });
  return { store, plane, envoy, listenerPort, nodeId, port };
}

const modes: ApiType[] = ['GRPC', 'DELTA_GRPC'];

for (const apiType of modes) {
  test(`${apiType}: Envoy gets exactly the eligible hosts, routes only to HEALTHY ones, and follows edits`, async (t) => {
    const { store, plane, envoy, listenerPort, nodeId, port } = await setup(t, apiType);
    const web = 'default/web:http';
    await waitForHosts(envoy, web, [`127.0.0.2:${port} HEALTHY`, `127.0.0.3:${port} DRAINING`]);
    await waitForAck(plane, nodeId, web);
    t.deepEqual(await drive(listenerPort, web, 20), { statuses: { 200: 20 }, served: ['127.0.0.2'] });

    // The not-ready pod becomes ready.
    store.upsert(
      service(
        'web',
        [endpoint('127.0.0.2'), endpoint('127.0.0.3', SERVING_TERMINATING), endpoint('127.0.0.4')],
        { port },
      ),
    );
    await waitForHosts(envoy, web, [
      `127.0.0.2:${port} HEALTHY`,
      `127.0.0.3:${port} DRAINING`,
      `127.0.0.4:${port} HEALTHY`,
    ]);
    await waitForAck(plane, nodeId, web);
    t.deepEqual(await drive(listenerPort, web, 20), {
      statuses: { 200: 20 },
      served: ['127.0.0.2', '127.0.0.4'],
    });

    // .2 starts terminating (still serving) and .3 stops serving: .2 drains, .3 is gone.
    store.upsert(
      service(
        'web',
        [
          endpoint('127.0.0.2', SERVING_TERMINATING),
          endpoint('127.0.0.3', NOT_SERVING),
          endpoint('127.0.0.4'),
        ],
        { port },
      ),
    );
    await waitForHosts(envoy, web, [`127.0.0.2:${port} DRAINING`, `127.0.0.4:${port} HEALTHY`]);
    t.deepEqual(await drive(listenerPort, web, 20), { statuses: { 200: 20 }, served: ['127.0.0.4'] });

    // Nothing ready but .2 still serving: the KEP-1669 fallback sends it HEALTHY.
    store.upsert(service('web', [endpoint('127.0.0.2', SERVING_TERMINATING)], { port }));
    await waitForHosts(envoy, web, [`127.0.0.2:${port} HEALTHY`]);
    t.deepEqual(await drive(listenerPort, web, 5), { statuses: { 200: 5 }, served: ['127.0.0.2'] });

    // All endpoints gone: the cluster stays, empty, and Envoy answers 503 itself.
    store.upsert(service('web', [], { port }));
    await waitForHosts(envoy, web, []);
    await waitForAck(plane, nodeId, web);
    t.deepEqual(await drive(listenerPort, web, 3), { statuses: { 503: 3 }, served: [] });

    // A new service appears and is routable; deleting it removes the cluster from Envoy.
    store.upsert(service('api', [endpoint('127.0.0.3')], { port }));
    await waitForHosts(envoy, 'default/api:http', [`127.0.0.3:${port} HEALTHY`]);
    t.deepEqual(await drive(listenerPort, 'default/api:http', 5), {
      statuses: { 200: 5 },
      served: ['127.0.0.3'],
    });
    store.delete('default/api');
    await waitForHosts(envoy, 'default/api:http', undefined);
    t.is(await envoy.stat('cluster_manager.active_clusters'), 2); // web + readygate_xds
    const syncz = plane.sync.toJSON().find((s) => s.nodeId === nodeId)!;
    t.is(syncz.stream, apiType === 'GRPC' ? 'sotw' : 'delta');
    t.is(syncz.types[TypeUrl.CLUSTER]!.lastNack, null);
    t.is(syncz.types[TypeUrl.ENDPOINT]!.lastNack, null);
  });

  test(`${apiType}: a resource Envoy rejects is a NACK with Envoy's text, and other clusters keep updating`, async (t) => {
    const { store, plane, envoy, nodeId, port } = await setup(t, apiType);
    // Test-only override: one cluster gets a negative connect timeout, which Envoy's validation rejects.
    plane.cache.setDraftOverride(rejectCluster('default/bad:http'));
    store.upsert(service('bad', [endpoint('127.0.0.3')], { port }));
    const nack = await waitUntil(
      () =>
        plane.sync.toJSON().find((s) => s.nodeId === nodeId)?.types[TypeUrl.CLUSTER]?.lastNack ?? undefined,
      { timeoutMs: 10_000, description: 'a CDS NACK' },
    );
    t.regex(nack.error, /Invalid duration: Expected positive duration: seconds: -1/);
    t.true((await envoy.stat('cluster_manager.cds.update_rejected'))! >= 1);
    t.is(await envoyHosts(envoy, 'default/bad:http'), undefined);
    // The healthy cluster still follows changes.
    store.upsert(service('web', [endpoint('127.0.0.4')], { port }));
    await waitForHosts(envoy, 'default/web:http', [`127.0.0.4:${port} HEALTHY`]);
    await waitForAck(plane, nodeId, 'default/web:http');
  });
}
