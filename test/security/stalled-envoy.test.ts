/**
 * Isolation with real Envoys (issue 16): one Envoy is SIGSTOPped, as a hung or frozen proxy would be.
 * It stops reading, so what readygate sends it sits in socket buffers and nothing is acknowledged;
 * the other Envoy must keep getting every update, readygate must close the stopped one's connection
 * at the stall bound, and once it runs again it must reconnect and end with the full current state,
 * including what changed while it was stopped.
 */
import test from 'ava';
import { EndpointStore } from '../../src/model/store.js';
import { startControlPlane } from '../../src/xds/control-plane.js';
import type { ConnectionClosedEvent } from '../../src/xds/server.js';
import { startEnvoy, waitUntil, type EnvoyProcess } from '../helpers/envoy-process.js';
import { gatewayBootstrap } from '../helpers/gateway-bootstrap.js';
import { endpoint, service } from '../helpers/model-fixtures.js';
import { freePort } from '../helpers/ports.js';

const STALL_MS = 2000;
const WEB = 'default/web:http';
const API = 'default/api:http';

interface ClustersJson {
  cluster_statuses?: {
    name: string;
    host_statuses?: { address: { socket_address: { address: string } } }[];
  }[];
}

/** Cluster name → sorted host addresses, for the clusters readygate sends (those named ns/svc:port). */
async function envoyClusters(envoy: EnvoyProcess): Promise<Record<string, string[]>> {
  const json = (await envoy.clusters()) as ClustersJson;
  const out: Record<string, string[]> = {};
  for (const cluster of json.cluster_statuses ?? []) {
    if (!cluster.name.includes('/')) continue;
    out[cluster.name] = (cluster.host_statuses ?? []).map((h) => h.address.socket_address.address).sort();
  }
  return out;
}

async function waitForClusters(
  envoy: EnvoyProcess,
  expected: Record<string, string[]>,
  timeoutMs: number,
): Promise<void> {
  const want = JSON.stringify(expected);
  let last = '';
  await waitUntil(
    async () => {
      last = JSON.stringify(await envoyClusters(envoy));
      return last === want;
    },
    { timeoutMs, intervalMs: 20, description: `Envoy clusters ${want} (last: ${last})` },
  );
}

test('a SIGSTOPped Envoy delays no other Envoy, is cut off at the stall bound, and resyncs fully after SIGCONT', async (t) => {
  const store = new EndpointStore();
  store.replaceAll([service('web', [endpoint('127.0.1.0')])]);
  store.markSynced();
  const plane = await startControlPlane({ store, xdsAddress: '127.0.0.1:0', maxStallMs: STALL_MS });
  const start = async (nodeId: string): Promise<EnvoyProcess> =>
    startEnvoy({
      bootstrap: gatewayBootstrap({
        xdsPort: plane.port,
        listenerPort: await freePort(),
        nodeId,
        apiType: 'GRPC',
      }),
    });
  const [stopped, running] = await Promise.all([start('envoy-stopped'), start('envoy-running')]);
  t.teardown(async () => {
    process.kill(stopped.pid, 'SIGCONT');
    await Promise.all([stopped.stop(), running.stop()]);
    await plane.close();
  });
  const closed: ConnectionClosedEvent[] = [];
  plane.connections.on('closed', (e) => closed.push(e));
  await waitForClusters(stopped, { [WEB]: ['127.0.1.0'] }, 10_000);
  await waitForClusters(running, { [WEB]: ['127.0.1.0'] }, 10_000);
  const before = plane.sync.streams.find((s) => s.nodeId === 'envoy-stopped')!.streamId;

  process.kill(stopped.pid, 'SIGSTOP');
  const stoppedAt = performance.now();
  // Updates keep coming while it is stopped: each must reach the running Envoy.
  const delays: number[] = [];
  let i = 0;
  while (closed.length === 0 && performance.now() - stoppedAt < STALL_MS + 3000) {
    i += 1;
    const changeStarted = performance.now();
    store.upsert(service('web', [endpoint(`127.0.1.${i}`)]));
    await waitForClusters(running, { [WEB]: [`127.0.1.${i}`] }, 2000);
    delays.push(performance.now() - changeStarted);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const closedAfter = performance.now() - stoppedAt;
  t.deepEqual(
    closed.map((e) => [e.reason, e.nodes]),
    [['stalled', ['envoy-stopped']]],
  );
  // The bound, plus one probe interval and one look (a quarter and a tenth of it), plus the loop's step.
  t.true(closedAfter >= STALL_MS && closedAfter <= STALL_MS * 1.35 + 500, `closed after ${closedAfter} ms`);
  t.true(
    delays.every((d) => d <= 1000),
    `the running Envoy's update delays (ms): ${delays.map((d) => d.toFixed(0)).join(' ')}`,
  );

  // While it is still stopped, a cluster appears and the endpoints change once more.
  store.upsert(service('api', [endpoint('127.0.2.1')]));
  store.upsert(service('web', [endpoint('127.0.1.200'), endpoint('127.0.1.201')]));
  const current = { [API]: ['127.0.2.1'], [WEB]: ['127.0.1.200', '127.0.1.201'] };
  await waitForClusters(running, current, 5000);

  process.kill(stopped.pid, 'SIGCONT');
  const resumedAt = performance.now();
  await waitForClusters(stopped, current, 8000);
  const after = plane.sync.streams.find((s) => s.nodeId === 'envoy-stopped');
  t.truthy(after, 'the stopped Envoy reconnected');
  t.not(after!.streamId, before, 'on a new stream');
  t.log(
    `closed ${closedAfter.toFixed(0)} ms after SIGSTOP; running Envoy's worst delay ${Math.max(...delays).toFixed(0)} ms over ${delays.length} updates; full state ${(performance.now() - resumedAt).toFixed(0)} ms after SIGCONT`,
  );
});
