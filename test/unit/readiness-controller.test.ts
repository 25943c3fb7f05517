/** The readiness-gate controller with a recording patcher: when it writes, what, and the timeout policy. */
import test from 'ava';
import { Registry } from 'prom-client';
import {
  ReadinessGateController,
  type GateCondition,
} from '../../src/readiness/readiness-gate-controller.js';
import { startAdminServer } from '../../src/admin/server.js';
import { readinessAdminRoutes } from '../../src/readiness/admin-routes.js';
import type { PeerList } from '../../src/readiness/peers.js';
import { RoutingHistory } from '../../src/readiness/routing-history.js';
import { PodGateIndex, READINESS_GATE_CONDITION, type GatedPod } from '../../src/sources/kubernetes-pods.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { SyncStatus } from '../../src/xds/sync-status.js';
import { waitUntil } from '../helpers/envoy-process.js';
import { ackVersion } from '../helpers/sync-fixtures.js';

const WEB = 'ns/web:http';

function setup(
  options: {
    timeoutMs?: number;
    flipOnTimeout?: boolean;
    leader?: { leader: boolean };
    minProxies?: number;
    peers?: PeerList;
    /** false: no Envoy is connected to this replica. */
    envoy?: boolean;
  } = {},
) {
  const pods = new PodGateIndex();
  const history = new RoutingHistory();
  const sync = new SyncStatus();
  const registry = new Registry();
  const writes: { pod: string; condition: GateCondition }[] = [];
  const controller = new ReadinessGateController({
    pods,
    history,
    sync,
    registry,
    patcher: (pod: GatedPod, condition) => {
      writes.push({ pod: pod.key, condition });
      return Promise.resolve();
    },
    resyncMs: 20,
    ...(options.leader ? { leadership: options.leader } : {}),
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.flipOnTimeout !== undefined ? { flipOnTimeout: options.flipOnTimeout } : {}),
    ...(options.minProxies !== undefined ? { minProxies: options.minProxies } : {}),
    ...(options.peers ? { peers: options.peers } : {}),
  }).start();
  pods.upsert({
    metadata: { namespace: 'ns', name: 'p', uid: 'u' },
    spec: { readinessGates: [{ conditionType: READINESS_GATE_CONDITION }] },
    status: { conditions: [{ type: 'ContainersReady', status: 'True' }] },
  });
  history.record(WEB, 'v1', new Map());
  history.record(WEB, 'v2', new Map([['ns/p', 'HEALTHY']]));
  /** Connects one more Envoy subscribed to WEB that ACKed v1; returns its ACK of v2. */
  const connect = (nodeId: string) => {
    const stream = sync.open('delta', 'peer');
    stream.nodeId = nodeId;
    stream.type(TypeUrl.ENDPOINT).subscribed = new Set([WEB]);
    ackVersion(sync, stream, TypeUrl.ENDPOINT, WEB, 'v1');
    return () => {
      ackVersion(sync, stream, TypeUrl.ENDPOINT, WEB, 'v2');
    };
  };
  /** The ACK of v2 (sync emits 'ack', which schedules an evaluation). */
  const ackV2 = options.envoy === false ? () => undefined : connect('envoy-a');
  return { pods, controller, writes, registry, ackV2, connect };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('writes True once, only after the ACK of a version routing to the pod', async (t) => {
  const { controller, writes, registry, ackV2 } = setup();
  // Evaluation runs on a 20 ms timer; on a busy machine a fixed sleep can end before the first pass.
  await waitUntil(() => controller.views()[0]?.verdict !== undefined, {
    timeoutMs: 3000,
    description: 'a first verdict',
  });
  t.deepEqual(writes, []);
  t.is(controller.views()[0]?.gate, 'pending');
  t.deepEqual(controller.views()[0]?.verdict?.waitingOn, ['envoy-a']);
  ackV2();
  await waitUntil(() => writes.length === 1, { timeoutMs: 2000, description: 'one write' });
  await sleep(100);
  t.is(writes.length, 1, 'never written twice');
  t.is(writes[0]?.condition.status, 'True');
  t.is(writes[0]?.condition.reason, 'EnvoysSynced');
  t.regex(await registry.metrics(), /readygate_readiness_gate_flips_total\{reason="EnvoysSynced"\} 1/);
  t.regex(await registry.metrics(), /readygate_readiness_gate_seconds_count 1/);
  controller.close();
});

test('not the leader: evaluates but never writes; becoming leader writes at once', async (t) => {
  const leadership = { leader: false };
  const { controller, writes, ackV2 } = setup({ leader: leadership });
  ackV2();
  await sleep(100);
  t.deepEqual(writes, []);
  leadership.leader = true;
  await waitUntil(() => writes.length === 1, { timeoutMs: 2000, description: 'write after leadership' });
  t.is(writes[0]?.condition.status, 'True');
  controller.close();
});

test('timeout (default policy): counted, written False with the Envoys named, then True when they catch up', async (t) => {
  const { controller, writes, registry, ackV2 } = setup({ timeoutMs: 50 });
  await waitUntil(() => writes.length === 1, { timeoutMs: 2000, description: 'timeout write' });
  t.is(writes[0]?.condition.status, 'False');
  t.is(writes[0]?.condition.reason, 'EnvoySyncTimeout');
  t.regex(writes[0]?.condition.message ?? '', /envoy-a/);
  t.regex(await registry.metrics(), /readygate_readiness_gate_timeouts_total 1/);
  t.regex(await registry.metrics(), /readygate_readiness_gate_pending_pods 1/);
  await sleep(100);
  t.is(writes.length, 1, 'False is written once');
  ackV2();
  await waitUntil(() => writes.length === 2, { timeoutMs: 2000, description: 'True after catching up' });
  t.is(writes[1]?.condition.status, 'True');
  controller.close();
});

test('timeout with flipOnTimeout: written True with reason EnvoySyncTimeout', async (t) => {
  const { controller, writes } = setup({ timeoutMs: 50, flipOnTimeout: true });
  await waitUntil(() => writes.length === 1, { timeoutMs: 2000, description: 'flip' });
  t.deepEqual(
    { status: writes[0]?.condition.status, reason: writes[0]?.condition.reason },
    { status: 'True', reason: 'EnvoySyncTimeout' },
  );
  controller.close();
});

test('no Envoy connected: the gate stays False (too-few-proxies), and turns True once one ACKs', async (t) => {
  const { controller, writes, connect } = setup({ envoy: false, timeoutMs: 150 });
  await waitUntil(() => writes.length === 1, { timeoutMs: 2000, description: 'timeout write' });
  t.is(writes[0]?.condition.status, 'False', 'no Envoy is never agreement');
  t.regex(
    writes[0]?.condition.message ?? '',
    /0 connected Envoy\(s\) ACKed the pod, --gate-min-proxies wants 1/,
  );
  t.is(controller.views()[0]?.verdict?.reason, 'too-few-proxies');
  connect('envoy-late')();
  await waitUntil(() => writes.length === 2, { timeoutMs: 2000, description: 'True after one ACK' });
  t.is(writes[1]?.condition.status, 'True');
  controller.close();
});

test('--gate-min-proxies 2: one ACK is not enough; a second Envoy ACKing turns it True', async (t) => {
  const { controller, writes, ackV2, connect } = setup({ minProxies: 2 });
  const ackB = connect('envoy-b');
  ackV2();
  await waitUntil(() => controller.views()[0]?.verdict?.waitingOn.join() === 'envoy-b', {
    timeoutMs: 3000,
    description: 'a verdict that saw envoy-a ACK and waits on envoy-b only',
  });
  t.deepEqual(writes, [], 'one of two Envoys ACKed');
  ackB();
  await waitUntil(() => writes.length === 1, { timeoutMs: 2000, description: 'True after the second ACK' });
  t.is(writes[0]?.condition.status, 'True');
  t.regex(writes[0]?.condition.message ?? '', /every subscribed Envoy \(2\) ACKed/);
  controller.close();
});

test('the minimum counts Envoys across replicas: none here, one ACKed on a peer → True', async (t) => {
  // The peer is a real admin server with readygate's routes over its own sync state and history.
  const peerSync = new SyncStatus();
  const peerHistory = new RoutingHistory();
  peerHistory.record(WEB, 'v2', new Map([['ns/p', 'HEALTHY']]));
  const peer = await startAdminServer({
    address: '127.0.0.1:0',
    registry: new Registry(),
    readiness: () => ({ ready: true }),
    routes: readinessAdminRoutes({ sync: peerSync, history: peerHistory }),
  });
  // Closed even when an assertion fails: a listening server left open keeps the AVA worker alive forever.
  t.teardown(() => peer.close());
  const peers: PeerList = () => Promise.resolve([`http://127.0.0.1:${peer.port}`]);
  const { controller, writes } = setup({ envoy: false, peers });
  // The verdict needs the peer's answer over HTTP, fresh within two resync periods (40 ms here); on a
  // busy machine a fixed sleep raced it, so wait for the verdict built from a fresh answer.
  await waitUntil(() => controller.views()[0]?.verdict?.reason === 'too-few-proxies', {
    timeoutMs: 3000,
    description: 'too-few-proxies from a fresh peer answer',
  });
  t.deepEqual(writes, [], 'no Envoy on either replica');
  const remote = peerSync.open('sotw', 'peer');
  remote.nodeId = 'envoy-remote';
  remote.type(TypeUrl.ENDPOINT).subscribed = new Set([WEB]);
  ackVersion(peerSync, remote, TypeUrl.ENDPOINT, WEB, 'v2');
  await waitUntil(() => writes.length === 1, { timeoutMs: 3000, description: 'True via the peer' });
  t.is(writes[0]?.condition.status, 'True');
  t.regex(writes[0]?.condition.message ?? '', /every subscribed Envoy \(1\) ACKed/);
  controller.close();
});
