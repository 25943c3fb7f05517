/**
 * Two readygate replicas, each with its own Envoy (each Envoy streams from one replica only), fed by the
 * same model as two replicas watching one cluster would be. The leader must not turn a gate True, and
 * /drain-wait must not answer "drained", while an Envoy on the OTHER replica disagrees.
 */
import anyTest, { type TestFn } from 'ava';
import { Registry } from 'prom-client';
import { startAdminServer, type AdminServer } from '../../src/admin/server.js';
import { EndpointStore } from '../../src/model/store.js';
import type { EndpointModel } from '../../src/model/types.js';
import { startReadiness, type Readiness } from '../../src/readiness/index.js';
import {
  ReadinessGateController,
  type GateCondition,
} from '../../src/readiness/readiness-gate-controller.js';
import { PodGateIndex, READINESS_GATE_CONDITION } from '../../src/sources/kubernetes-pods.js';
import { startControlPlane, type ControlPlane } from '../../src/xds/control-plane.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { startEnvoy, waitUntil, type EnvoyProcess } from '../helpers/envoy-process.js';
import { gatewayBootstrap } from '../helpers/gateway-bootstrap.js';
import { READY, SERVING_TERMINATING, endpoint, service } from '../helpers/model-fixtures.js';
import { freePort } from '../helpers/ports.js';
import { rejectAssignment } from '../helpers/rejected-resources.js';

interface Replica {
  plane: ControlPlane;
  readiness: Readiness;
  admin: AdminServer;
  envoy: EnvoyProcess;
  nodeId: string;
  /** Admin URLs this replica treats as its peers (filled in once all are listening). */
  peers: string[];
}

interface Context {
  store: EndpointStore;
  a: Replica;
  b: Replica;
  port: number;
}
const test = anyTest as TestFn<Context>;
const WEB = 'default/web:http';

async function replica(
  store: EndpointStore,
  nodeId: string,
  apiType: 'GRPC' | 'DELTA_GRPC',
): Promise<Replica> {
  const plane = await startControlPlane({ store, xdsAddress: '127.0.0.1:0' });
  const peers: string[] = [];
  const readiness = await startReadiness({
    cache: plane.cache,
    sync: plane.sync,
    peers: () => Promise.resolve(peers),
  });
  const admin = await startAdminServer({
    address: '127.0.0.1:0',
    registry: new Registry(),
    readiness: () => ({ ready: true }),
    routes: readiness.routes,
  });
  const envoy = await startEnvoy({
    bootstrap: gatewayBootstrap({ xdsPort: plane.port, listenerPort: await freePort(), nodeId, apiType }),
  });
  return { plane, readiness, admin, envoy, nodeId, peers };
}

test.before(async (t) => {
  const port = await freePort('127.0.0.2');
  const store = new EndpointStore();
  store.replaceAll([service('web', [endpoint('127.0.0.2', READY, 'old')], { port })]);
  const a = await replica(store, 'envoy-on-a', 'GRPC');
  const b = await replica(store, 'envoy-on-b', 'DELTA_GRPC');
  a.peers.push(`http://127.0.0.1:${b.admin.port}`);
  b.peers.push(`http://127.0.0.1:${a.admin.port}`);
  t.context = { store, a, b, port };
  await waitForAck(a);
  await waitForAck(b);
});

test.after.always(async (t) => {
  for (const r of [t.context.a as Replica | undefined, t.context.b as Replica | undefined]) {
    await r?.envoy.stop();
    await r?.admin.close();
    await r?.readiness.close();
    await r?.plane.close();
  }
});

function acked(r: Replica): string | undefined {
  return r.plane.sync.streams
    .find((s) => s.nodeId === r.nodeId)
    ?.types.get(TypeUrl.ENDPOINT)
    ?.versions.ackedVersion(WEB);
}

async function waitForAck(r: Replica): Promise<void> {
  await waitUntil(
    () => acked(r) !== undefined && acked(r) === r.plane.cache.get(TypeUrl.ENDPOINT, WEB)?.version,
    {
      timeoutMs: 10_000,
      description: `ACK of ${WEB} from ${r.nodeId}`,
    },
  );
}

/** Makes the replica's Envoy reject every new version of web (NACK), or stops doing so. */
function breakWeb(r: Replica, broken: boolean): void {
  r.plane.cache.setDraftOverride(broken ? rejectAssignment(WEB) : undefined);
}

test.serial(
  'the leader holds a gate while an Envoy on the other replica has not ACKed the pod',
  async (t) => {
    const { store, a, b, port } = t.context;
    const pods = new PodGateIndex();
    pods.upsert({
      metadata: { namespace: 'default', name: 'new', uid: 'u-new' },
      spec: { readinessGates: [{ conditionType: READINESS_GATE_CONDITION }] },
      status: { conditions: [{ type: 'ContainersReady', status: 'True' }] },
    });
    const writes: { condition: GateCondition; bAcked: string | undefined }[] = [];
    const controller = new ReadinessGateController({
      pods,
      history: a.readiness.history,
      sync: a.plane.sync,
      peers: () => Promise.resolve(a.peers),
      resyncMs: 100,
      patcher: (_pod, condition) => {
        writes.push({ condition, bAcked: acked(b) });
        return Promise.resolve();
      },
    }).start();
    t.teardown(() => {
      controller.close();
    });

    breakWeb(b, true);
    const gatePending: EndpointModel = {
      ...endpoint('127.0.0.3', { ready: false }, 'new'),
      gatePending: true,
    };
    store.upsert(service('web', [endpoint('127.0.0.2', READY, 'old'), gatePending], { port }));
    await waitForAck(a);
    await waitUntil(() => controller.views()[0]?.verdict?.nackedBy.includes('envoy-on-b'), {
      timeoutMs: 10_000,
      description: 'the leader learns that envoy-on-b rejects web',
    });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    t.deepEqual(writes, [], 'its own Envoy ACKed, but the other replica’s did not');
    t.deepEqual(controller.views()[0]?.verdict?.waitingOn, ['envoy-on-b']);

    breakWeb(b, false);
    store.upsert(
      service(
        'web',
        [endpoint('127.0.0.2', READY, 'old'), gatePending, endpoint('127.0.0.9', READY, 'other')],
        { port },
      ),
    );
    await waitUntil(() => writes.length === 1, { timeoutMs: 10_000, description: 'gate written' });
    t.is(writes[0]?.condition.status, 'True');
    t.is(
      b.readiness.history.summary(WEB, writes[0]?.bAcked ?? '')?.get('default/new'),
      'HEALTHY',
      'when the leader wrote, envoy-on-b had ACKed a version routing to the pod',
    );
  },
);

test.serial('/drain-wait on one replica waits for the Envoys of the other, and names them', async (t) => {
  const { store, a, b, port } = t.context;
  breakWeb(b, true);
  store.upsert(
    service(
      'web',
      [endpoint('127.0.0.2', SERVING_TERMINATING, 'old'), endpoint('127.0.0.9', READY, 'other')],
      { port },
    ),
  );
  await waitForAck(a);
  const url = `http://127.0.0.1:${a.admin.port}/drain-wait?pod=default/old`;
  const held = await fetch(`${url}&timeout=1500ms`);
  t.is(held.status, 504);
  const body = (await held.json()) as { waitingOn: string[]; nackedBy: string[] };
  t.deepEqual(body.waitingOn, ['envoy-on-b']);
  t.deepEqual(body.nackedBy, ['envoy-on-b']);

  breakWeb(b, false);
  store.upsert(
    service(
      'web',
      [endpoint('127.0.0.2', SERVING_TERMINATING, 'old'), endpoint('127.0.0.10', READY, 'other')],
      { port },
    ),
  );
  const drained = await fetch(`${url}&timeout=10s`);
  t.is(drained.status, 200);
  t.true(((await drained.json()) as { drained: boolean }).drained);

  // A peer that cannot be asked is never taken as agreeing.
  a.peers.push('http://127.0.0.1:1');
  const unreachable = await fetch(`${url}&timeout=1500ms`);
  t.is(unreachable.status, 504);
  t.deepEqual(((await unreachable.json()) as { waitingOn: string[] }).waitingOn, ['peer http://127.0.0.1:1']);
  a.peers.pop();
});
