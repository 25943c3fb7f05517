/** The readiness-gate controller with a recording patcher: when it writes, what, and the timeout policy. */
import test from 'ava';
import { Registry } from 'prom-client';
import {
  ReadinessGateController,
  type GateCondition,
} from '../../src/readiness/readiness-gate-controller.js';
import { RoutingHistory } from '../../src/readiness/routing-history.js';
import { PodGateIndex, READINESS_GATE_CONDITION, type GatedPod } from '../../src/sources/kubernetes-pods.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { SyncStatus } from '../../src/xds/sync-status.js';
import { waitUntil } from '../helpers/envoy-process.js';
import { ackVersion } from '../helpers/sync-fixtures.js';

const WEB = 'ns/web:http';

function setup(options: { timeoutMs?: number; flipOnTimeout?: boolean; leader?: { leader: boolean } } = {}) {
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
  }).start();
  pods.upsert({
    metadata: { namespace: 'ns', name: 'p', uid: 'u' },
    spec: { readinessGates: [{ conditionType: READINESS_GATE_CONDITION }] },
    status: { conditions: [{ type: 'ContainersReady', status: 'True' }] },
  });
  history.record(WEB, 'v1', new Map());
  history.record(WEB, 'v2', new Map([['ns/p', 'HEALTHY']]));
  const stream = sync.open('delta', 'peer');
  stream.nodeId = 'envoy-a';
  stream.type(TypeUrl.ENDPOINT).subscribed = new Set([WEB]);
  ackVersion(sync, stream, TypeUrl.ENDPOINT, WEB, 'v1');
  /** The ACK of v2 (sync emits 'ack', which schedules an evaluation). */
  const ackV2 = () => {
    ackVersion(sync, stream, TypeUrl.ENDPOINT, WEB, 'v2');
  };
  return { pods, controller, writes, registry, ackV2 };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('writes True once, only after the ACK of a version routing to the pod', async (t) => {
  const { controller, writes, registry, ackV2 } = setup();
  await sleep(100);
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
