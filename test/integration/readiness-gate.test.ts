/**
 * The readiness gate end to end: kube-apiserver + etcd, readygate's Kubernetes source with the pod hook,
 * two real Envoys (SotW and Delta) and two readiness-gate controllers sharing a Lease, all running as the
 * `readygate` user under kind/base/rbac.yaml + kind/base/rbac-readiness.yaml (so the RBAC is exact).
 *
 * No kubelet: the test patches pod status the way one would (ContainersReady True, Ready False while
 * readygate's gate is unmet) and writes the EndpointSlices itself (ready=false, as the controller would).
 *
 * One more readygate, alone in its own namespace with no Envoy connected, shows that "every Envoy
 * agrees" with no Envoy at all is not agreement (--gate-min-proxies, default 1): its gate stays False
 * until a real Envoy connects and ACKs.
 */
import anyTest, { type TestFn } from 'ava';
import { CoordinationV1Api, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import { EndpointStore } from '../../src/model/store.js';
import { startPodGateIndex, startReadiness, type Readiness } from '../../src/readiness/index.js';
import {
  kubernetesPodStatusPatcher,
  type GateCondition,
} from '../../src/readiness/readiness-gate-controller.js';
import { READINESS_GATE_CONDITION, type PodGateIndex } from '../../src/sources/kubernetes-pods.js';
import { startKubernetesSource, type KubernetesSource } from '../../src/sources/kubernetes.js';
import { startControlPlane, type ControlPlane } from '../../src/xds/control-plane.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import type { SynczEntry } from '../../src/xds/sync-status.js';
import { startEnvoy, waitUntil, type EnvoyProcess } from '../helpers/envoy-process.js';
import { gatewayBootstrap } from '../helpers/gateway-bootstrap.js';
import {
  KubeObjects,
  endpointSlice,
  service,
  readygateIdentity,
  startKubeCluster,
  waitForStore,
  type KubeCluster,
  type SliceEndpointSpec,
} from '../helpers/kube-cluster.js';
import { freePort } from '../helpers/ports.js';
import { XdsTestClient } from '../helpers/xds-client.js';
import { rejectAssignment } from '../helpers/rejected-resources.js';

const NS = 'e2e';
const ENVOYS = ['envoy-sotw', 'envoy-delta'];

interface Write {
  replica: string;
  pod: string;
  condition: GateCondition;
  /** /debug/syncz (with resources) at the moment the controller decided to write. */
  syncz: SynczEntry[];
}

interface Context {
  cluster: KubeCluster;
  admin: KubeObjects;
  readygate: KubeConfig;
  pods: PodGateIndex;
  source: KubernetesSource;
  plane: ControlPlane;
  envoys: EnvoyProcess[];
  replicas: Record<string, Readiness>;
  writes: Write[];
}
const test = anyTest as TestFn<Context>;

async function startReplica(t: { context: Context }, identity: string): Promise<Readiness> {
  const { plane, readygate, pods, writes } = t.context;
  const real = kubernetesPodStatusPatcher(readygate);
  return startReadiness({
    cache: plane.cache,
    sync: plane.sync,
    kubeConfig: readygate,
    pods,
    identity,
    leaseNamespace: 'readygate',
    leaseDurationMs: 3000,
    renewDeadlineMs: 2000,
    retryPeriodMs: 250,
    startupGraceMs: 0,
    resyncMs: 200,
    patcher: async (pod, condition) => {
      writes.push({
        replica: identity,
        pod: pod.key,
        condition,
        syncz: plane.sync.toJSON({ resources: true }),
      });
      await real(pod, condition);
    },
  });
}

test.before(async (t) => {
  const cluster = await startKubeCluster();
  t.context.cluster = cluster;
  const admin = new KubeObjects(cluster.adminConfig());
  t.context.admin = admin;
  t.context.readygate = await readygateIdentity(cluster, admin, { readiness: true });
  await admin.namespace(NS);

  const store = new EndpointStore();
  t.context.pods = startPodGateIndex({ kubeConfig: t.context.readygate, namespaces: [NS] });
  t.context.source = await startKubernetesSource({
    store,
    kubeConfig: t.context.readygate,
    namespaces: [NS],
    modelDecorator: t.context.pods,
  });
  await waitForStore(store, (s) => s.synced, 15_000);
  t.context.plane = await startControlPlane({ store, xdsAddress: '127.0.0.1:0' });
  t.context.envoys = [];
  for (const [i, nodeId] of ENVOYS.entries()) {
    t.context.envoys.push(
      await startEnvoy({
        bootstrap: gatewayBootstrap({
          xdsPort: t.context.plane.port,
          listenerPort: await freePort(),
          nodeId,
          apiType: i === 0 ? 'GRPC' : 'DELTA_GRPC',
        }),
      }),
    );
  }
  t.context.writes = [];
  t.context.replicas = {};
  t.context.replicas['replica-a'] = await startReplica(t, 'replica-a');
  await waitUntil(() => t.context.replicas['replica-a']?.elector?.leader, {
    timeoutMs: 10_000,
    description: 'replica-a leads',
  });
  t.context.replicas['replica-b'] = await startReplica(t, 'replica-b');
});

test.after.always(async (t) => {
  const { envoys, plane, source, pods, cluster, replicas } = t.context as Partial<Context>;
  for (const replica of Object.values(replicas ?? {})) await replica.close();
  for (const envoy of envoys ?? []) await envoy.stop();
  await plane?.close();
  await source?.close();
  await pods?.close();
  await cluster?.stop();
});

/** Creates a gated pod whose containers are ready (what a kubelet would report) and returns its IP. */
async function gatedPod(admin: KubeObjects, name: string, ip: string): Promise<void> {
  await admin.apply({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace: NS, name, labels: { app: 'web' } },
    spec: {
      containers: [{ name: 'app', image: 'example.invalid/app:1' }],
      readinessGates: [{ conditionType: READINESS_GATE_CONDITION }],
    },
  });
  const now = new Date().toISOString();
  await admin.core.patchNamespacedPodStatus(
    {
      name,
      namespace: NS,
      body: {
        status: {
          phase: 'Running',
          podIP: ip,
          podIPs: [{ ip }],
          conditions: [
            { type: 'ContainersReady', status: 'True', lastTransitionTime: now },
            { type: 'Ready', status: 'False', reason: 'ReadinessGatesNotReady', lastTransitionTime: now },
          ],
        },
      },
    },
    setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
  );
}

async function gateStatus(admin: KubeObjects, name: string): Promise<string | undefined> {
  const pod = await admin.core.readNamespacedPodStatus({ name, namespace: NS });
  return pod.status?.conditions?.find((c) => c.type === READINESS_GATE_CONDITION)?.status;
}

/** A slice as the EndpointSlice controller writes it for a pod whose Ready is False: ready=false. */
function gatedEndpoint(ip: string, pod: string): SliceEndpointSpec {
  return {
    addresses: [ip],
    conditions: { ready: false, serving: false, terminating: false },
    targetRef: { kind: 'Pod', namespace: NS, name: pod },
  };
}

async function webService(admin: KubeObjects, name: string, endpoints: SliceEndpointSpec[]): Promise<void> {
  await admin.apply(service({ namespace: NS, name, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }));
  await admin.apply(
    endpointSlice({
      namespace: NS,
      name: `${name}-1`,
      service: name,
      ports: [{ name: 'http', port: 8080 }],
      endpoints,
    }),
  );
}

/** Every Envoy's ACKed version of `cluster` in a syncz snapshot. */
function ackedVersions(syncz: SynczEntry[], cluster: string): Record<string, string | undefined> {
  return Object.fromEntries(
    ENVOYS.map((nodeId) => [
      nodeId,
      syncz.find((s) => s.nodeId === nodeId)?.types[TypeUrl.ENDPOINT]?.ackedResources?.[cluster],
    ]),
  );
}

test.serial(
  'the gate turns True only once every subscribed Envoy has ACKed a version routing to the pod',
  async (t) => {
    const { admin, replicas, writes, envoys } = t.context;
    const cluster = `${NS}/web:http`;
    await gatedPod(admin, 'web-1', '10.40.0.21');
    await webService(admin, 'web', [gatedEndpoint('10.40.0.21', 'web-1')]);
    await waitUntil(async () => (await gateStatus(admin, 'web-1')) === 'True', {
      timeoutMs: 15_000,
      description: 'gate of web-1 True',
    });
    const write = writes.find((w) => w.pod === `${NS}/web-1`);
    t.truthy(write);
    t.is(write?.replica, 'replica-a', 'only the leader writes');
    t.is(write?.condition.reason, 'EnvoysSynced');
    // At the moment of the write, both Envoys had ACKed a version whose hosts include web-1 as HEALTHY.
    const acked = ackedVersions(write?.syncz ?? [], cluster);
    const history = replicas['replica-a']!.history;
    for (const nodeId of ENVOYS) {
      const version = acked[nodeId];
      t.truthy(version, `${nodeId} ACKed ${cluster}`);
      t.is(
        history.summary(cluster, version ?? '')?.get(`${NS}/web-1`),
        'HEALTHY',
        `${nodeId}'s version routes to web-1`,
      );
    }
    // And the Envoys really have it (sent as a new HEALTHY endpoint while the slice said not ready).
    for (const envoy of envoys) {
      const clusters = (await envoy.clusters()) as {
        cluster_statuses?: {
          name: string;
          host_statuses?: { address: { socket_address: { address: string } } }[];
        }[];
      };
      const hosts = clusters.cluster_statuses?.find((c) => c.name === cluster)?.host_statuses ?? [];
      t.true(hosts.some((h) => h.address.socket_address.address === '10.40.0.21'));
    }
  },
);

test.serial(
  'the gate stays False while the Envoys NACK the pod’s cluster, and turns True after they ACK',
  async (t) => {
    const { admin, plane, writes } = t.context;
    const cluster = `${NS}/web2:http`;
    // Test-only: an out-of-range port makes every Envoy reject this CLA (proto validation), i.e. NACK.
    plane.cache.setDraftOverride(rejectAssignment(cluster));
    await gatedPod(admin, 'web2-1', '10.40.0.22');
    await webService(admin, 'web2', [gatedEndpoint('10.40.0.22', 'web2-1')]);
    const readiness = t.context.replicas['replica-a']!;
    const debug = readiness.routes['/debug/gates']!;
    await waitUntil(
      async () => {
        const response = await debug({} as never, new URL(`http://x/debug/gates?pod=${NS}/web2-1`));
        const body = response.body as { gate: { nackedBy: string[] } };
        return body.gate.nackedBy.length === ENVOYS.length;
      },
      { timeoutMs: 15_000, description: 'both Envoys NACK web2' },
    );
    await new Promise((resolve) => setTimeout(resolve, 1500));
    t.not(await gateStatus(admin, 'web2-1'), 'True', 'held while the Envoys reject the cluster');
    t.false(writes.some((w) => w.pod === `${NS}/web2-1`));

    // Fix the config; a change to the Service re-encodes its CLA, and the Envoys ACK.
    plane.cache.setDraftOverride(undefined);
    await webService(admin, 'web2', [
      gatedEndpoint('10.40.0.22', 'web2-1'),
      { addresses: ['10.40.0.23'], conditions: { ready: true } },
    ]);
    await waitUntil(async () => (await gateStatus(admin, 'web2-1')) === 'True', {
      timeoutMs: 15_000,
      description: 'gate of web2-1 True after the fix',
    });
    const write = writes.find((w) => w.pod === `${NS}/web2-1`);
    for (const [nodeId, version] of Object.entries(ackedVersions(write?.syncz ?? [], cluster)))
      t.is(readiness.history.summary(cluster, version ?? '')?.get(`${NS}/web2-1`), 'HEALTHY', nodeId);
  },
);

test.serial(
  'a stale proxy (no ACK, no NACK) holds the gate and is named; when it leaves, the gate turns True',
  async (t) => {
    const { admin, plane } = t.context;
    const cluster = `${NS}/web3:http`;
    const client = new XdsTestClient(plane.address);
    const stream = client.sotw();
    t.teardown(() => {
      stream.close();
      client.close();
    });
    // Subscribes to web3 before it exists and will never ACK anything it receives.
    stream.send({ node: { id: 'stale-proxy' }, type_url: TypeUrl.ENDPOINT, resource_names: [cluster] });
    await gatedPod(admin, 'web3-1', '10.40.0.25');
    await webService(admin, 'web3', [gatedEndpoint('10.40.0.25', 'web3-1')]);
    const debug = t.context.replicas['replica-a']!.routes['/debug/gates']!;
    let gate: { ok: boolean; waitingOn: string[]; nackedBy: string[] } | undefined;
    await waitUntil(
      async () => {
        const response = await debug({} as never, new URL(`http://x/debug/gates?pod=${NS}/web3-1`));
        gate = (response.body as { gate: typeof gate }).gate;
        // The real Envoys have ACKed; only the stale proxy is left.
        return gate?.waitingOn.join() === 'stale-proxy';
      },
      { timeoutMs: 15_000, description: `only stale-proxy holds web3-1 (last: ${JSON.stringify(gate)})` },
    );
    t.deepEqual(gate?.nackedBy, []);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    t.not(await gateStatus(admin, 'web3-1'), 'True');
    stream.close();
    await waitUntil(async () => (await gateStatus(admin, 'web3-1')) === 'True', {
      timeoutMs: 15_000,
      description: 'gate of web3-1 True once the stale proxy left',
    });
    t.pass();
  },
);

test.serial(
  'the status patch carries the pod UID: a recreated pod of the same name is never touched',
  async (t) => {
    const { readygate, admin } = t.context;
    const patch = kubernetesPodStatusPatcher(readygate);
    const stale = t.context.pods.get(`${NS}/web-1`);
    t.truthy(stale);
    const error = await t.throwsAsync(
      patch(
        { ...stale!, uid: '00000000-0000-0000-0000-000000000000' },
        { status: 'False', reason: 'Test', message: 'must not land' },
      ),
    );
    t.true([409, 422].includes((error as { code?: number }).code ?? 0), String(error));
    t.is(await gateStatus(admin, 'web-1'), 'True');
  },
);

test.serial('survives a leader change: the other replica takes the Lease and finishes the job', async (t) => {
  const { admin, replicas, writes, readygate } = t.context;
  t.false(
    writes.some((w) => w.replica === 'replica-b'),
    'the follower never wrote while replica-a led',
  );
  // "Kill" the leader: it stops without releasing the Lease, so replica-b must wait for it to expire.
  await replicas['replica-a']!.close({ releaseLease: false });
  delete replicas['replica-a'];
  const killedAt = performance.now();
  await gatedPod(admin, 'web-2', '10.40.0.24');
  await webService(admin, 'web', [
    gatedEndpoint('10.40.0.21', 'web-1'),
    gatedEndpoint('10.40.0.24', 'web-2'),
  ]);
  await waitUntil(async () => (await gateStatus(admin, 'web-2')) === 'True', {
    timeoutMs: 20_000,
    description: 'gate of web-2 True after the leader change',
  });
  const tookMs = performance.now() - killedAt;
  t.is(writes.find((w) => w.pod === `${NS}/web-2`)?.replica, 'replica-b');
  const lease = await readygate
    .makeApiClient(CoordinationV1Api)
    .readNamespacedLease({ name: 'readygate-readiness-gates', namespace: 'readygate' });
  t.is(lease.spec?.holderIdentity, 'replica-b');
  t.true((lease.spec?.leaseTransitions ?? 0) >= 1);
  t.log(`gate written by the new leader ${Math.round(tookMs)} ms after the old one died (lease 3 s)`);
});

test.serial(
  'a clean shutdown hands the Lease over within one retry period, not a lease duration',
  async (t) => {
    const { replicas } = t.context;
    replicas['replica-c'] = await startReplica(t, 'replica-c');
    await new Promise((resolve) => setTimeout(resolve, 600));
    t.false(replicas['replica-c'].elector?.leader, 'replica-b still holds a live Lease');
    const started = performance.now();
    await replicas['replica-b']!.close({ releaseLease: true });
    delete replicas['replica-b'];
    await waitUntil(() => replicas['replica-c']?.elector?.leader, {
      timeoutMs: 5000,
      description: 'replica-c leads',
    });
    const tookMs = performance.now() - started;
    t.true(tookMs < 2500, `took over in ${Math.round(tookMs)} ms (retry 250 ms, lease 3 s)`);
  },
);

test.serial(
  'no Envoy connected: the gate stays False (default --gate-min-proxies 1), and turns True once one ACKs',
  async (t) => {
    const { admin, readygate } = t.context;
    const ns = 'e2e-alone';
    await admin.namespace(ns);
    // A readygate of its own: source, pod index, control plane and gate controller for this namespace
    // only, so the Envoys of the replicas above cannot vouch for its pods.
    const store = new EndpointStore();
    const pods = startPodGateIndex({ kubeConfig: readygate, namespaces: [ns] });
    t.teardown(() => pods.close());
    const source = await startKubernetesSource({
      store,
      kubeConfig: readygate,
      namespaces: [ns],
      modelDecorator: pods,
    });
    t.teardown(() => source.close());
    await waitForStore(store, (s) => s.synced, 15_000);
    const plane = await startControlPlane({ store, xdsAddress: '127.0.0.1:0' });
    t.teardown(() => plane.close());
    const writes: GateCondition[] = [];
    const real = kubernetesPodStatusPatcher(readygate);
    const alone = await startReadiness({
      cache: plane.cache,
      sync: plane.sync,
      kubeConfig: readygate,
      pods,
      leaderElection: false,
      startupGraceMs: 0,
      resyncMs: 200,
      gateTimeoutMs: 1500,
      patcher: async (pod, condition) => {
        writes.push(condition);
        await real(pod, condition);
      },
    });
    t.teardown(() => alone.close());

    const pod = { name: 'lonely-1', ip: '10.40.0.31' };
    await admin.apply({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { namespace: ns, name: pod.name, labels: { app: 'lonely' } },
      spec: {
        containers: [{ name: 'app', image: 'example.invalid/app:1' }],
        readinessGates: [{ conditionType: READINESS_GATE_CONDITION }],
      },
    });
    const now = new Date().toISOString();
    await admin.core.patchNamespacedPodStatus(
      {
        name: pod.name,
        namespace: ns,
        body: {
          status: {
            phase: 'Running',
            podIP: pod.ip,
            podIPs: [{ ip: pod.ip }],
            conditions: [
              { type: 'ContainersReady', status: 'True', lastTransitionTime: now },
              { type: 'Ready', status: 'False', reason: 'ReadinessGatesNotReady', lastTransitionTime: now },
            ],
          },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    );
    await admin.apply(
      service({ namespace: ns, name: 'lonely', ports: [{ name: 'http', port: 80, targetPort: 8080 }] }),
    );
    await admin.apply(
      endpointSlice({
        namespace: ns,
        name: 'lonely-1',
        service: 'lonely',
        ports: [{ name: 'http', port: 8080 }],
        endpoints: [
          {
            addresses: [pod.ip],
            conditions: { ready: false, serving: false, terminating: false },
            targetRef: { kind: 'Pod', namespace: ns, name: pod.name },
          },
        ],
      }),
    );
    const cluster = `${ns}/lonely:http`;
    await waitUntil(() => alone.history.currentHealthyClusters(`${ns}/${pod.name}`).includes(cluster), {
      timeoutMs: 15_000,
      description: 'readygate serves the gated pod',
    });
    // The gate timeout (1.5 s) passes with no Envoy: written False, saying why.
    await waitUntil(() => writes.length > 0, { timeoutMs: 15_000, description: 'the timeout write' });
    t.like(writes[0], { status: 'False', reason: 'EnvoySyncTimeout' });
    t.regex(writes[0]?.message ?? '', /0 connected Envoy\(s\) ACKed the pod, --gate-min-proxies wants 1/);
    const read = async (): Promise<{ status?: string; message?: string } | undefined> =>
      (await admin.core.readNamespacedPodStatus({ name: pod.name, namespace: ns })).status?.conditions?.find(
        (c) => c.type === READINESS_GATE_CONDITION,
      );
    await waitUntil(async () => (await read())?.status === 'False', {
      timeoutMs: 10_000,
      description: 'False on the pod',
    });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    t.is((await read())?.status, 'False', 'still False with no Envoy');
    t.false(writes.some((w) => w.status === 'True'));

    // A real Envoy connects and ACKs: the gate turns True, written once.
    const connectedAt = performance.now();
    const envoy = await startEnvoy({
      bootstrap: gatewayBootstrap({
        xdsPort: plane.port,
        listenerPort: await freePort(),
        nodeId: 'envoy-late',
        apiType: 'GRPC',
      }),
    });
    t.teardown(() => envoy.stop());
    await waitUntil(async () => (await read())?.status === 'True', {
      timeoutMs: 20_000,
      description: 'gate True once an Envoy ACKed',
    });
    t.log(`gate True ${Math.round(performance.now() - connectedAt)} ms after starting the Envoy`);
    const trueWrites = writes.filter((w) => w.status === 'True');
    t.is(trueWrites.length, 1);
    t.is(trueWrites[0]?.reason, 'EnvoysSynced');
    t.regex(trueWrites[0]?.message ?? '', /every subscribed Envoy \(1\) ACKed/);
    const version = plane.sync.streams
      .find((st) => st.nodeId === 'envoy-late')
      ?.types.get(TypeUrl.ENDPOINT)
      ?.versions.ackedVersion(cluster);
    t.is(
      alone.history.summary(cluster, version ?? '')?.get(`${ns}/${pod.name}`),
      'HEALTHY',
      'the Envoy ACKed a version routing to the pod',
    );
  },
);
