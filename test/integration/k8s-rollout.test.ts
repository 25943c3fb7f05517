/**
 * The seed problem end to end: `kubectl rollout restart` of a 3-replica Deployment (maxSurge 1,
 * maxUnavailable 0, readinessProbe, preStop sleep) under constant load through a real Envoy.
 *
 * Everything Kubernetes is real except the kubelet: kube-apiserver + etcd + kube-controller-manager running
 * the deployment, replicaset and endpointslice controllers; test/helpers/node-agent.ts plays the kubelet
 * (starts each pod as a local process, probes it, patches pod status, runs preStop, SIGTERM, grace period).
 *
 * Two data planes watch the same cluster through the same Kubernetes source:
 * - readygate: the source's model through readygate's control plane unchanged (eligibility: ready →
 *   HEALTHY, terminating-but-serving → DRAINING, not ready → absent);
 * - naive: the same model with every endpoint's conditions overwritten to ready, so the second Envoy gets
 *   every address of every EndpointSlice as HEALTHY: pods that have not started listening yet, and pods that
 *   are terminating, until the controller drops them from the slice. That is what a control plane that copies
 *   slice addresses without reading `conditions` does. With every host HEALTHY, Envoy's panic threshold never
 *   applies, so readygate's `healthy_panic_threshold: 0` on these clusters changes nothing for this mode.
 *
 * Pod IPs are TEST-NET-2 addresses mapped to loopback ones (see node-agent.ts: the apiserver rejects loopback
 * addresses in EndpointSlices); `mirrorPodNetwork` applies that mapping between the source and each control
 * plane, identically for both modes.
 */
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { AppsV1Api, CoreV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { EndpointStore } from '../../src/model/store.js';
import type { ServiceModel } from '../../src/model/types.js';
import { startKubernetesSource, type KubernetesSource } from '../../src/sources/kubernetes.js';
import { startControlPlane, type ControlPlane } from '../../src/xds/control-plane.js';
import { startEnvoy, waitUntil, type EnvoyProcess } from '../helpers/envoy-process.js';
import { gatewayBootstrap } from '../helpers/gateway-bootstrap.js';
import { KubeObjects, startKubeCluster, waitForStore, type KubeCluster } from '../helpers/kube-cluster.js';
import { mirrorPodNetwork, startNodeAgent, type NodeAgent } from '../helpers/node-agent.js';
import { freePort } from '../helpers/ports.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

const NAMESPACE = 'rollout';
const APP = 'web';
const CLUSTER = `${NAMESPACE}/${APP}:http`;
/** The controllers a Deployment rollout needs, and the one that turns pods into EndpointSlices. */
const CONTROLLERS = ['deployment-controller', 'replicaset-controller', 'endpointslice-controller'];
/** Kept small so a rollout takes seconds on a shared 2-core machine, yet longer than xDS propagation. */
const PRESTOP_SLEEP_SECONDS = 2;
const GRACE_SECONDS = 6;
const LOAD_RPS = 150;
const LOAD_CONCURRENCY = 16;

interface DataPlane {
  store: EndpointStore;
  plane: ControlPlane;
  envoy: EnvoyProcess;
  listenerPort: number;
  unmirror: () => void;
}

interface Context {
  cluster: KubeCluster;
  admin: KubeObjects;
  apps: AppsV1Api;
  core: CoreV1Api;
  agent: NodeAgent;
  source: KubernetesSource;
  sourceStore: EndpointStore;
  readygate: DataPlane;
  naive: DataPlane;
  containerPort: number;
  results: Map<string, RolloutResult>;
}
const test = anyTest as TestFn<Context>;

/** The naive control plane's view: every address of every slice, as if ready and not terminating. */
function naiveView(service: ServiceModel): ServiceModel {
  return {
    ...service,
    endpoints: service.endpoints.map((endpoint) => ({
      ...endpoint,
      conditions: { ready: true, serving: true, terminating: false },
      gatePending: undefined,
    })),
  };
}

async function startDataPlane(
  sourceStore: EndpointStore,
  agent: NodeAgent,
  nodeId: string,
  transform?: (service: ServiceModel) => ServiceModel,
): Promise<DataPlane> {
  const store = new EndpointStore();
  const unmirror = mirrorPodNetwork(sourceStore, store, agent, transform);
  const plane = await startControlPlane({ store, xdsAddress: '127.0.0.1:0' });
  const listenerPort = await freePort();
  try {
    const envoy = await startEnvoy({
      bootstrap: gatewayBootstrap({ xdsPort: plane.port, listenerPort, nodeId, apiType: 'GRPC' }),
    });
    return { store, plane, envoy, listenerPort, unmirror };
  } catch (error) {
    unmirror();
    await plane.close();
    throw error;
  }
}

function deployment(containerPort: number): Record<string, unknown> {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { namespace: NAMESPACE, name: APP },
    spec: {
      replicas: 3,
      selector: { matchLabels: { app: APP } },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      template: {
        metadata: { labels: { app: APP } },
        spec: {
          terminationGracePeriodSeconds: GRACE_SECONDS,
          containers: [
            {
              name: APP,
              // Never pulled: the node agent runs test/helpers/pod-backend.ts for every pod.
              image: 'readygate-test/pod-backend:dev',
              ports: [{ name: 'http', containerPort }],
              readinessProbe: {
                httpGet: { path: '/healthz', port: 'http' },
                initialDelaySeconds: 0,
                periodSeconds: 1,
                timeoutSeconds: 1,
                failureThreshold: 1,
              },
              lifecycle: { preStop: { sleep: { seconds: PRESTOP_SLEEP_SECONDS } } },
            },
          ],
        },
      },
    },
  };
}

test.before(async (t) => {
  const cluster = await startKubeCluster({ controllers: CONTROLLERS });
  t.context.cluster = cluster;
  t.context.results = new Map();
  const admin = new KubeObjects(cluster.adminConfig());
  t.context.admin = admin;
  t.context.apps = cluster.adminConfig().makeApiClient(AppsV1Api);
  t.context.core = cluster.adminConfig().makeApiClient(CoreV1Api);
  await admin.namespace(NAMESPACE);

  // readygate reads the cluster as the identity the shipped RBAC manifest grants, nothing more.
  await admin.applyManifest(path.join(repoRoot, 'kind', 'base', 'rbac.yaml'));
  await admin.apply({
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name: 'readygate-rollout-test' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'readygate' },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'readygate' }],
  });
  const readygateUser = (await cluster.userKubeconfig('readygate')).kubeConfig;

  t.context.agent = await startNodeAgent({
    kubeConfig: cluster.adminConfig(),
    nodeName: 'node-a',
    namespaces: [NAMESPACE],
    // The agent outlives this hook, so its lines go to stderr rather than to a finished test's log.
    ...(process.env['READYGATE_TEST_VERBOSE']
      ? { log: (line: string) => process.stderr.write(`node-agent: ${line}\n`) }
      : {}),
  });
  const sourceStore = new EndpointStore();
  t.context.sourceStore = sourceStore;
  t.context.source = await startKubernetesSource({
    store: sourceStore,
    kubeConfig: readygateUser,
    namespaces: [NAMESPACE],
  });
  await waitForStore(sourceStore, (s) => s.synced, 15_000);
  t.context.readygate = await startDataPlane(sourceStore, t.context.agent, 'envoy-readygate');
  t.context.naive = await startDataPlane(sourceStore, t.context.agent, 'envoy-naive', naiveView);

  t.context.containerPort = await freePort();
  await admin.apply({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: NAMESPACE, name: APP },
    spec: {
      selector: { app: APP },
      ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }],
    },
  });
  await admin.apply(deployment(t.context.containerPort));
  await waitRolledOut(t.context.apps, 60_000);
  // Both Envoys see the three pods before any load starts.
  for (const dataPlane of [t.context.readygate, t.context.naive]) {
    await waitUntil(async () => (await healthyHosts(dataPlane.envoy)).length === 3, {
      timeoutMs: 20_000,
      intervalMs: 100,
      description: `3 HEALTHY hosts in ${CLUSTER}`,
    });
  }
});

test.after.always(async (t) => {
  const c = t.context as Partial<Context>;
  for (const dataPlane of [c.readygate, c.naive]) {
    if (!dataPlane) continue;
    await dataPlane.envoy.stop();
    dataPlane.unmirror();
    await dataPlane.plane.close();
  }
  await c.source?.close();
  await c.agent?.stop();
  await c.cluster?.stop();
});

interface HostStatus {
  address: { socket_address: { address: string; port_value: number } };
  health_status?: { eds_health_status?: string };
}

async function healthyHosts(envoy: EnvoyProcess): Promise<string[]> {
  const json = (await envoy.clusters()) as {
    cluster_statuses?: { name: string; host_statuses?: HostStatus[] }[];
  };
  const status = json.cluster_statuses?.find((c) => c.name === CLUSTER);
  return (status?.host_statuses ?? [])
    .filter((h) => (h.health_status?.eds_health_status ?? 'HEALTHY') === 'HEALTHY')
    .map((h) => `${h.address.socket_address.address}:${h.address.socket_address.port_value}`);
}

/** kubectl rollout status's rule: observed, all replicas updated, no old ones left, all available. */
async function waitRolledOut(apps: AppsV1Api, timeoutMs: number): Promise<void> {
  await waitUntil(
    async () => {
      const d = await apps.readNamespacedDeployment({ namespace: NAMESPACE, name: APP });
      const want = d.spec?.replicas ?? 1;
      const s = d.status;
      return (
        (s?.observedGeneration ?? 0) >= (d.metadata?.generation ?? 1) &&
        s?.updatedReplicas === want &&
        s.replicas === want &&
        s.availableReplicas === want &&
        (s.unavailableReplicas ?? 0) === 0
      );
    },
    { timeoutMs, intervalMs: 100, description: `Deployment ${NAMESPACE}/${APP} rolled out` },
  );
}

// ---- Load ----

interface LoadResult {
  sent: number;
  ok: number;
  non2xx: number;
  statuses: Record<string, number>;
  byPod: Record<string, number>;
  /** Requests not sent because LOAD_CONCURRENCY were already in flight (the generator's own limit). */
  skipped: number;
  firstFailures: string[];
  durationMs: number;
}

/**
 * Constant-rate load with keep-alive and capped concurrency, bounded in count and time. Every answer that
 * is not 2xx, and every request that gets no answer, counts as non-2xx.
 */
function startLoad(port: number, maxDurationMs: number): { stop: () => Promise<LoadResult> } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: LOAD_CONCURRENCY });
  const maxRequests = Math.ceil((LOAD_RPS * maxDurationMs) / 1000);
  const started = performance.now();
  const result: LoadResult = {
    sent: 0,
    ok: 0,
    non2xx: 0,
    statuses: {},
    byPod: {},
    skipped: 0,
    firstFailures: [],
    durationMs: 0,
  };
  let inFlight = 0;
  let idle: (() => void) | undefined;
  const count = (key: string, ok: boolean, detail: string): void => {
    result.statuses[key] = (result.statuses[key] ?? 0) + 1;
    if (ok) result.ok++;
    else {
      result.non2xx++;
      if (result.firstFailures.length < 10)
        result.firstFailures.push(`${((performance.now() - started) / 1000).toFixed(2)}s ${key} ${detail}`);
    }
  };
  const send = (): void => {
    result.sent++;
    inFlight++;
    const request = http.get(
      { host: '127.0.0.1', port, path: '/', headers: { 'x-cluster': CLUSTER }, agent, timeout: 5_000 },
      (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', () => {
          const status = response.statusCode ?? 0;
          const ok = status >= 200 && status < 300;
          count(String(status), ok, body.trim().slice(0, 160));
          if (ok) {
            const pod = body.trim();
            result.byPod[pod] = (result.byPod[pod] ?? 0) + 1;
          }
          done();
        });
        response.on('error', (error) => {
          count('response-error', false, error.message);
          done();
        });
      },
    );
    request.on('timeout', () => request.destroy(new Error('client timeout')));
    request.on('error', (error: NodeJS.ErrnoException) => {
      count(error.code ?? 'error', false, error.message);
      done();
    });
  };
  let finished = false;
  const done = (): void => {
    inFlight--;
    if (inFlight === 0) idle?.();
  };
  // A 10 ms tick sends whatever the schedule says is due, so the rate holds even when a tick runs late.
  const timer = setInterval(() => {
    const elapsed = performance.now() - started;
    if (elapsed >= maxDurationMs || result.sent + result.skipped >= maxRequests) {
      clearInterval(timer);
      return;
    }
    const due = Math.floor((elapsed * LOAD_RPS) / 1000) - result.sent - result.skipped;
    for (let i = 0; i < due; i++) {
      if (inFlight >= LOAD_CONCURRENCY) result.skipped++;
      else send();
    }
  }, 10);
  return {
    stop: async () => {
      if (!finished) {
        finished = true;
        clearInterval(timer);
        if (inFlight > 0) {
          await Promise.race([
            new Promise<void>((resolve) => (idle = resolve)),
            new Promise<void>((resolve) => setTimeout(resolve, 6_000)),
          ]);
        }
        agent.destroy();
        result.durationMs = performance.now() - started;
      }
      return result;
    },
  };
}

// ---- Rollout ----

interface RolloutResult {
  load: LoadResult;
  /** From the restart annotation to kubectl's "successfully rolled out". */
  rolloutMs: number;
  /** From the restart annotation until the last old pod was finalised (its process gone, object deleted). */
  oldPodsGoneMs: number;
  oldPods: string[];
  newPods: string[];
}

async function podsOfApp(core: CoreV1Api): Promise<{ name: string; terminating: boolean }[]> {
  const list = await core.listNamespacedPod({ namespace: NAMESPACE, labelSelector: `app=${APP}` });
  return list.items.map((p) => ({
    name: p.metadata?.name ?? '',
    terminating: p.metadata?.deletionTimestamp !== undefined,
  }));
}

async function restartUnderLoad(t: ExecutionContext<Context>, dataPlane: DataPlane): Promise<RolloutResult> {
  const { apps, core } = t.context;
  const oldPods = (await podsOfApp(core)).map((p) => p.name);
  t.is(oldPods.length, 3, `3 pods before the restart: ${oldPods.join(', ')}`);
  const load = startLoad(dataPlane.listenerPort, 90_000);
  // Steady state first: any error here would be the setup's, not the rollout's.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const restartedAt = performance.now();
  // What `kubectl rollout restart` does: stamp the pod template, so the Deployment rolls every pod.
  await apps.patchNamespacedDeployment(
    {
      namespace: NAMESPACE,
      name: APP,
      body: {
        spec: {
          template: {
            metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': new Date().toISOString() } },
          },
        },
      },
    },
    setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
  );
  await waitRolledOut(apps, 60_000);
  const rolloutMs = performance.now() - restartedAt;
  await waitUntil(
    async () => {
      const pods = await podsOfApp(core);
      return pods.every((p) => !oldPods.includes(p.name)) && pods.length === 3;
    },
    { timeoutMs: 30_000, intervalMs: 100, description: 'old pods finalised' },
  );
  const oldPodsGoneMs = performance.now() - restartedAt;
  // Keep the load on a moment longer: errors right after the last removal count too.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const result = await load.stop();
  const newPods = (await podsOfApp(core)).map((p) => p.name);
  return { load: result, rolloutMs, oldPodsGoneMs, oldPods, newPods };
}

function report(t: ExecutionContext<Context>, mode: string, r: RolloutResult): void {
  const { load } = r;
  t.log(
    `${mode}: ${load.sent} requests in ${(load.durationMs / 1000).toFixed(1)} s ` +
      `(${load.skipped} skipped at the concurrency cap), ${load.ok} 2xx, ${load.non2xx} non-2xx; ` +
      `statuses ${JSON.stringify(load.statuses)}`,
  );
  t.log(
    `${mode}: rollout complete after ${(r.rolloutMs / 1000).toFixed(2)} s, old pods gone after ` +
      `${(r.oldPodsGoneMs / 1000).toFixed(2)} s; answers per pod ${JSON.stringify(load.byPod)}`,
  );
  for (const failure of load.firstFailures) t.log(`${mode}: failure at ${failure}`);
}

test.serial('rollout restart through readygate: 0 non-2xx under constant load', async (t) => {
  t.timeout(110_000);
  const r = await restartUnderLoad(t, t.context.readygate);
  t.context.results.set('readygate', r);
  report(t, 'readygate', r);
  t.true(r.load.sent >= LOAD_RPS * 5, 'the load ran through the whole rollout');
  t.is(r.load.non2xx, 0);
  // Traffic really moved: every new pod answered, and the old ones did until they left.
  for (const pod of r.newPods) t.true((r.load.byPod[pod] ?? 0) > 0, `new pod ${pod} served requests`);
  for (const pod of r.oldPods) t.true((r.load.byPod[pod] ?? 0) > 0, `old pod ${pod} served requests`);
});

test.serial('the same rollout through the naive setup: errors (counts printed)', async (t) => {
  t.timeout(110_000);
  const r = await restartUnderLoad(t, t.context.naive);
  t.context.results.set('naive', r);
  report(t, 'naive', r);
  t.true(r.load.sent >= LOAD_RPS * 5, 'the load ran through the whole rollout');
  t.true(r.load.non2xx > 0, 'the naive setup sends requests to pods that are not listening');
  const readygate = t.context.results.get('readygate');
  t.log(
    `non-2xx during one rollout restart: readygate ${readygate?.load.non2xx ?? 'n/a'} of ` +
      `${readygate?.load.sent ?? 'n/a'}, naive ${r.load.non2xx} of ${r.load.sent}`,
  );
});
