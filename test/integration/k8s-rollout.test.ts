/**
 * The seed problem end to end: `kubectl rollout restart` of a 3-replica Deployment (maxSurge 1,
 * maxUnavailable 0, readinessProbe, preStop sleep) under constant load through a real Envoy.
 *
 * Everything Kubernetes is real except the kubelet: kube-apiserver + etcd + kube-controller-manager running
 * the deployment, replicaset and endpointslice controllers; test/helpers/node-agent.ts plays the kubelet
 * (starts each pod as a local process, probes it, patches pod status, runs preStop, SIGTERM, grace period).
 * The simulated kubelet is the point here: it records when each pod transition happened (terminating,
 * preStop done, containers ready), which pins every failure of the naive gateway to the transition it was
 * not told about in time and times the readiness gate's wait; a real kubelet reports none of that. The same
 * rollout on a real kubelet, with real probes, hooks and signals, is test/integration/real-node.test.ts
 * (docs/e2e.md).
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
 * - gated: readygate with the readiness-gate controller and drain-wait (src/readiness, src/drain) wired as
 *   docs/rollouts.md describes, for a second Deployment whose pods declare the `readygate.io/envoy-synced`
 *   readiness gate and run `readygate drain-wait` as their preStop hook instead of a fixed sleep.
 *
 * Pod IPs are TEST-NET-2 addresses mapped to loopback ones (see node-agent.ts: the apiserver rejects loopback
 * addresses in EndpointSlices); `mirrorPodNetwork` applies that mapping between the source and each control
 * plane, identically for both modes.
 */
import http from 'node:http';
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import {
  AppsV1Api,
  CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
} from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { startAdminServer, type AdminServer } from '../../src/admin/server.js';
import { EndpointStore } from '../../src/model/store.js';
import type { ServiceModel } from '../../src/model/types.js';
import { startKubernetesSource, type KubernetesSource } from '../../src/sources/kubernetes.js';
import { startControlPlane, type ControlPlane } from '../../src/xds/control-plane.js';
import {
  READINESS_GATE_CONDITION,
  startPodGateIndex,
  startReadiness,
  type PodGateIndex,
  type Readiness,
} from '../../src/readiness/index.js';
import { startEnvoy, waitUntil, type EnvoyProcess } from '../helpers/envoy-process.js';
import { gatewayBootstrap } from '../helpers/gateway-bootstrap.js';
import {
  KubeObjects,
  readygateIdentity,
  startKubeCluster,
  waitForStore,
  type KubeCluster,
} from '../helpers/kube-cluster.js';
import { mirrorPodNetwork, startNodeAgent, type NodeAgent, type PodEvent } from '../helpers/node-agent.js';
import { freePort } from '../helpers/ports.js';

const NAMESPACE = 'rollout';
/** The Deployment (and Service) the readygate and naive modes restart. */
const APP = 'web';
/** The Deployment with the readiness gate and preStop drain-wait, restarted in gated mode. */
const GATED_APP = 'web-gated';
const clusterOf = (app: string): string => `${NAMESPACE}/${app}:http`;
/** The controllers a Deployment rollout needs, and the one that turns pods into EndpointSlices. */
const CONTROLLERS = ['deployment-controller', 'replicaset-controller', 'endpointslice-controller'];
/**
 * Small so a rollout takes seconds on a shared 2-core machine, yet longer than xDS propagation plus
 * Envoy's 1 s update_merge_window for health-only changes (see the gated test), with margin for a loaded
 * machine.
 */
const PRESTOP_SLEEP_SECONDS = 3;
const GRACE_SECONDS = 6;
/** drain-wait's own bound; the grace period leaves room after it. */
const DRAIN_TIMEOUT_SECONDS = 10;
const GATED_GRACE_SECONDS = 15;
const LOAD_RPS = 150;
const LOAD_CONCURRENCY = 16;

interface DataPlane {
  store: EndpointStore;
  plane: ControlPlane;
  envoy: EnvoyProcess;
  listenerPort: number;
  unmirror: () => void;
}

/** The gated stack: readygate with the pod watch, the gate controller and the /drain-wait admin route. */
interface GatedStack {
  pods: PodGateIndex;
  source: KubernetesSource;
  sourceStore: EndpointStore;
  readiness: Readiness;
  adminServer: AdminServer;
  dataPlane: DataPlane;
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
  gated: GatedStack;
  /** One Envoy fed by two readygate replicas (both from the same source), for the replica-loss test. */
  replicated: DataPlane & { second: DataPlane['plane']; unmirrorSecond: () => void };
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
    // Without the shipped gateways' retry policy: a refused connect retried on another pod would hide
    // the very requests this test counts (a control plane sending traffic to a pod that is not
    // listening), on both sides. The policy has its own test (gateway-retry.test.ts).
    const bootstrap = gatewayBootstrap({
      xdsPort: plane.port,
      listenerPort,
      nodeId,
      apiType: 'GRPC',
      withoutRetryPolicy: true,
    });
    const envoy = await startEnvoy({ bootstrap: withFailureLog(bootstrap) });
    return { store, plane, envoy, listenerPort, unmirror };
  } catch (error) {
    unmirror();
    await plane.close();
    throw error;
  }
}

interface AppVariant {
  readonly name: string;
  readonly containerPort: number;
  readonly graceSeconds: number;
  /** The container's preStop hook. */
  readonly preStop: Record<string, unknown>;
  readonly readinessGates?: readonly string[];
  readonly env?: readonly Record<string, unknown>[];
}

/**
 * Adds an access log of every non-2xx answer (time, status, flags, upstream host) on Envoy's stdout, so a
 * failure can be pinned to the pod it went to (EnvoyProcess.logTail shows it).
 */
function withFailureLog(bootstrap: Record<string, unknown>): Record<string, unknown> {
  const listeners = (bootstrap['static_resources'] as { listeners: Record<string, unknown>[] }).listeners;
  const chains = listeners[0]!['filter_chains'] as { filters: { typed_config: Record<string, unknown> }[] }[];
  chains[0]!.filters[0]!.typed_config['access_log'] = [
    {
      name: 'envoy.access_loggers.stdout',
      filter: {
        status_code_filter: { comparison: { op: 'GE', value: { default_value: 300, runtime_key: 'x' } } },
      },
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog',
        log_format: {
          text_format_source: {
            inline_string: 'FAILED %START_TIME(%s.%3f)% %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_HOST%\n',
          },
        },
      },
    },
  ];
  return bootstrap;
}

function deployment(app: AppVariant): Record<string, unknown> {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { namespace: NAMESPACE, name: app.name },
    spec: {
      replicas: 3,
      selector: { matchLabels: { app: app.name } },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      template: {
        metadata: { labels: { app: app.name } },
        spec: {
          terminationGracePeriodSeconds: app.graceSeconds,
          ...(app.readinessGates
            ? { readinessGates: app.readinessGates.map((conditionType) => ({ conditionType })) }
            : {}),
          containers: [
            {
              name: 'app',
              // Never pulled: the node agent runs test/helpers/pod-backend.ts for every pod.
              image: 'readygate-test/pod-backend:dev',
              ports: [{ name: 'http', containerPort: app.containerPort }],
              ...(app.env ? { env: app.env } : {}),
              readinessProbe: {
                httpGet: { path: '/healthz', port: 'http' },
                initialDelaySeconds: 0,
                periodSeconds: 1,
                timeoutSeconds: 1,
                failureThreshold: 1,
              },
              lifecycle: { preStop: app.preStop },
            },
          ],
        },
      },
    },
  };
}

function appService(name: string): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: NAMESPACE, name },
    spec: {
      selector: { app: name },
      ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }],
    },
  };
}

/**
 * `readygate …` in a preStop exec hook runs the CLI from source (tsx), so the test needs no build: the
 * command line after `readygate` is passed through unchanged.
 */
function resolveReadygate(argv: readonly string[]): readonly string[] {
  if (argv[0] !== 'readygate') return argv;
  const run =
    "const { main } = await import('./src/cli/main.ts'); process.exitCode = await main(process.argv.slice(1));";
  return [process.execPath, '--import', 'tsx', '--input-type=module', '-e', run, ...argv.slice(1)];
}

/**
 * readygate as `serve` wires it for rollouts (docs/rollouts.md): a pod watch that marks gate-pending
 * endpoints, the source decorated by it, the control plane, the gate controller with Lease leader election,
 * and the admin server with /drain-wait. Its own Envoy.
 */
async function startGatedStack(kubeConfig: KubeConfig, agent: NodeAgent): Promise<GatedStack> {
  const pods = startPodGateIndex({ kubeConfig, namespaces: [NAMESPACE] });
  const sourceStore = new EndpointStore();
  const source = await startKubernetesSource({
    store: sourceStore,
    kubeConfig,
    namespaces: [NAMESPACE],
    modelDecorator: pods,
  });
  await waitForStore(sourceStore, (s) => s.synced, 15_000);
  const dataPlane = await startDataPlane(sourceStore, agent, 'envoy-gated');
  const readiness = await startReadiness({
    cache: dataPlane.plane.cache,
    sync: dataPlane.plane.sync,
    kubeConfig,
    pods,
    leaseNamespace: 'readygate',
    identity: 'readygate-rollout-test',
    // Its Envoy is connected before any gated pod exists; no need to wait for stragglers.
    startupGraceMs: 500,
  });
  const adminServer = await startAdminServer({
    address: '127.0.0.1:0',
    registry: new Registry(),
    readiness: () => ({ ready: true }),
    routes: readiness.routes,
  });
  return { pods, source, sourceStore, readiness, adminServer, dataPlane };
}

/** Two control planes over the same source; Envoy's xDS cluster lists both and streams from one. */
async function startReplicatedDataPlane(
  sourceStore: EndpointStore,
  agent: NodeAgent,
  nodeId: string,
): Promise<Context['replicated']> {
  const storeA = new EndpointStore();
  const storeB = new EndpointStore();
  const unmirror = mirrorPodNetwork(sourceStore, storeA, agent);
  const unmirrorSecond = mirrorPodNetwork(sourceStore, storeB, agent);
  const plane = await startControlPlane({ store: storeA, xdsAddress: '127.0.0.1:0' });
  const second = await startControlPlane({ store: storeB, xdsAddress: '127.0.0.1:0' });
  const listenerPort = await freePort();
  try {
    const bootstrap = gatewayBootstrap({
      xdsPort: plane.port,
      moreXdsPorts: [second.port],
      listenerPort,
      nodeId,
      apiType: 'GRPC',
    });
    const envoy = await startEnvoy({ bootstrap: withFailureLog(bootstrap) });
    return { store: storeA, plane, envoy, listenerPort, unmirror, second, unmirrorSecond };
  } catch (error) {
    unmirror();
    unmirrorSecond();
    await plane.close();
    await second.close();
    throw error;
  }
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

  // readygate reads the cluster (and, gated, writes pod status and its Lease) as the identity the shipped
  // RBAC manifests grant, nothing more.
  const readygateUser = await readygateIdentity(cluster, admin, { readiness: true });

  t.context.agent = await startNodeAgent({
    kubeConfig: cluster.adminConfig(),
    nodeName: 'node-a',
    namespaces: [NAMESPACE],
    resolveExec: resolveReadygate,
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
  t.context.gated = await startGatedStack(readygateUser, t.context.agent);
  t.context.replicated = await startReplicatedDataPlane(sourceStore, t.context.agent, 'envoy-replicated');

  t.context.containerPort = await freePort();
  await admin.apply(appService(APP));
  await admin.apply(
    deployment({
      name: APP,
      containerPort: t.context.containerPort,
      graceSeconds: GRACE_SECONDS,
      preStop: { sleep: { seconds: PRESTOP_SLEEP_SECONDS } },
    }),
  );
  await admin.apply(appService(GATED_APP));
  await admin.apply(
    deployment({
      name: GATED_APP,
      containerPort: t.context.containerPort,
      graceSeconds: GATED_GRACE_SECONDS,
      readinessGates: [READINESS_GATE_CONDITION],
      preStop: { exec: { command: ['readygate', 'drain-wait'] } },
      env: [
        { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
        { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
        // As kind/base/demo-app.yaml does: drain-wait reads its flags from the environment.
        { name: 'READYGATE_POD', value: '$(POD_NAMESPACE)/$(POD_NAME)' },
        { name: 'READYGATE_CONTROL_PLANE', value: `http://127.0.0.1:${t.context.gated.adminServer.port}` },
        { name: 'READYGATE_DRAIN_TIMEOUT', value: `${DRAIN_TIMEOUT_SECONDS}s` },
        { name: 'READYGATE_LOG_LEVEL', value: 'warn' },
      ],
    }),
  );
  await waitRolledOut(t.context.apps, APP, 60_000);
  await waitRolledOut(t.context.apps, GATED_APP, 60_000);
  // Every Envoy sees its three pods before any load starts.
  const expected: [DataPlane, string][] = [
    [t.context.readygate, APP],
    [t.context.naive, APP],
    [t.context.gated.dataPlane, GATED_APP],
    [t.context.replicated, APP],
  ];
  for (const [dataPlane, app] of expected) {
    await waitUntil(async () => (await healthyHosts(dataPlane.envoy, clusterOf(app))).length === 3, {
      timeoutMs: 20_000,
      intervalMs: 100,
      description: `3 HEALTHY hosts in ${clusterOf(app)}`,
    });
  }
});

test.after.always(async (t) => {
  const c = t.context as Partial<Context>;
  if (c.gated) {
    await c.gated.readiness.close();
    await c.gated.adminServer.close();
    await c.gated.source.close();
    await c.gated.pods.close();
  }
  if (c.replicated) {
    c.replicated.unmirrorSecond();
    await c.replicated.second.close();
  }
  for (const dataPlane of [c.readygate, c.naive, c.gated?.dataPlane, c.replicated]) {
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

async function healthyHosts(envoy: EnvoyProcess, cluster: string): Promise<string[]> {
  const json = (await envoy.clusters()) as {
    cluster_statuses?: { name: string; host_statuses?: HostStatus[] }[];
  };
  const status = json.cluster_statuses?.find((c) => c.name === cluster);
  return (status?.host_statuses ?? [])
    .filter((h) => (h.health_status?.eds_health_status ?? 'HEALTHY') === 'HEALTHY')
    .map((h) => `${h.address.socket_address.address}:${h.address.socket_address.port_value}`);
}

/** kubectl rollout status's rule: observed, all replicas updated, no old ones left, all available. */
async function waitRolledOut(apps: AppsV1Api, name: string, timeoutMs: number): Promise<void> {
  await waitUntil(
    async () => {
      const d = await apps.readNamespacedDeployment({ namespace: NAMESPACE, name });
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
    { timeoutMs, intervalMs: 100, description: `Deployment ${NAMESPACE}/${name} rolled out` },
  );
}

// ---- Load ----

interface LoadResult {
  sent: number;
  ok: number;
  non2xx: number;
  statuses: Record<string, number>;
  byPod: Record<string, number>;
  /** When each 2xx answer arrived and from which pod (performance.now()). */
  answers: { at: number; pod: string }[];
  /** Requests not sent because LOAD_CONCURRENCY were already in flight (the generator's own limit). */
  skipped: number;
  /** The first failures, with performance.now() times comparable to the node agent's events. */
  firstFailures: { at: number; what: string }[];
  durationMs: number;
}

/**
 * Constant-rate load with keep-alive and capped concurrency, bounded in count and time. Every answer that
 * is not 2xx, and every request that gets no answer, counts as non-2xx.
 */
function startLoad(
  port: number,
  cluster: string,
  maxDurationMs: number,
): { stop: () => Promise<LoadResult> } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: LOAD_CONCURRENCY });
  const maxRequests = Math.ceil((LOAD_RPS * maxDurationMs) / 1000);
  const started = performance.now();
  const result: LoadResult = {
    sent: 0,
    ok: 0,
    non2xx: 0,
    statuses: {},
    byPod: {},
    answers: [],
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
        result.firstFailures.push({ at: performance.now(), what: `${key} ${detail.slice(0, 100)}` });
    }
  };
  const send = (): void => {
    result.sent++;
    inFlight++;
    const request = http.get(
      { host: '127.0.0.1', port, path: '/', headers: { 'x-cluster': cluster }, agent, timeout: 5_000 },
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
            if (result.answers.length < 100_000) result.answers.push({ at: performance.now(), pod });
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
  /** Per old pod: from deletion seen to preStop done (what the hook held the pod for). */
  preStopMs: number[];
  preStopDetails: string[];
  /** Per new pod: from containers ready to Ready (the readiness gate's wait; ~0 without a gate). */
  gateWaitMs: number[];
  /** Per host address: requests Envoy sent to it while its own /clusters listed it DRAINING. */
  sentWhileDraining: Map<string, number>;
}

async function podsOfApp(core: CoreV1Api, app: string): Promise<{ name: string; terminating: boolean }[]> {
  const list = await core.listNamespacedPod({ namespace: NAMESPACE, labelSelector: `app=${app}` });
  return list.items.map((p) => ({
    name: p.metadata?.name ?? '',
    terminating: p.metadata?.deletionTimestamp !== undefined,
  }));
}

interface HostSample {
  address: string;
  health: string;
  rqTotal: number;
}

/**
 * Samples Envoy's own view of a cluster every 50 ms (bounded by count): per host its EDS health and
 * rq_total. Shows directly whether Envoy keeps sending new requests to a host it lists as DRAINING.
 */
function watchEnvoyHosts(envoy: EnvoyProcess, cluster: string): { stop: () => Promise<Map<string, number>> } {
  const state = { stopped: false };
  /** Per host: rq_total when first seen DRAINING, and the latest rq_total while still DRAINING. */
  const drainingFrom = new Map<string, number>();
  const drainingLast = new Map<string, number>();
  const loop = (async () => {
    // An object field, not a local: TypeScript would otherwise keep `stopped` narrowed to false here.
    for (let i = 0; i < 2_000 && !state.stopped; i++) {
      try {
        const json = (await envoy.clusters()) as {
          cluster_statuses?: {
            name: string;
            host_statuses?: (HostStatus & { stats?: { name: string; value?: string | number }[] })[];
          }[];
        };
        const hosts = json.cluster_statuses?.find((c) => c.name === cluster)?.host_statuses ?? [];
        for (const h of hosts) {
          const sample: HostSample = {
            address: h.address.socket_address.address,
            health: h.health_status?.eds_health_status ?? 'HEALTHY',
            rqTotal: Number(h.stats?.find((x) => x.name === 'rq_total')?.value ?? 0),
          };
          if (process.env['READYGATE_TEST_VERBOSE'] && sample.health === 'DRAINING')
            process.stderr.write(
              `envoy-hosts: ${((performance.timeOrigin + performance.now()) / 1000).toFixed(3)} ` +
                `${sample.address} ${sample.health} rq_total=${sample.rqTotal}\n`,
            );
          if (sample.health !== 'DRAINING') continue;
          if (!drainingFrom.has(sample.address)) drainingFrom.set(sample.address, sample.rqTotal);
          drainingLast.set(sample.address, sample.rqTotal);
        }
      } catch {
        // a slow admin answer; the next sample covers it
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  return {
    stop: async () => {
      state.stopped = true;
      await loop;
      const sent = new Map<string, number>();
      for (const [address, from] of drainingFrom)
        sent.set(address, (drainingLast.get(address) ?? from) - from);
      return sent;
    },
  };
}

/** Milliseconds between two agent events of one pod, when both happened. */
function between(
  agent: NodeAgent,
  pod: string,
  from: PodEvent['what'],
  to: PodEvent['what'],
): number | undefined {
  const start = agent.events.find((e) => e.pod === pod && e.what === from);
  const end = agent.events.find((e) => e.pod === pod && e.what === to);
  return start && end ? end.at - start.at : undefined;
}

async function restartUnderLoad(
  t: ExecutionContext<Context>,
  dataPlane: DataPlane,
  app: string,
  /** Runs once the rollout has started (e.g. losing a control-plane replica), concurrently with it. */
  duringRollout?: () => Promise<void>,
): Promise<RolloutResult> {
  const { apps, core, agent } = t.context;
  const oldPods = (await podsOfApp(core, app)).map((p) => p.name);
  t.is(oldPods.length, 3, `3 pods before the restart: ${oldPods.join(', ')}`);
  const load = startLoad(dataPlane.listenerPort, clusterOf(app), 90_000);
  const hostWatch = watchEnvoyHosts(dataPlane.envoy, clusterOf(app));
  // Steady state first: any error here would be the setup's, not the rollout's.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const restartedAt = performance.now();
  // What `kubectl rollout restart` does: stamp the pod template, so the Deployment rolls every pod.
  await apps.patchNamespacedDeployment(
    {
      namespace: NAMESPACE,
      name: app,
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
  const during = duringRollout?.();
  await waitRolledOut(apps, app, 60_000);
  await during;
  const rolloutMs = performance.now() - restartedAt;
  await waitUntil(
    async () => {
      const pods = await podsOfApp(core, app);
      return pods.every((p) => !oldPods.includes(p.name)) && pods.length === 3;
    },
    { timeoutMs: 30_000, intervalMs: 100, description: 'old pods finalised' },
  );
  const oldPodsGoneMs = performance.now() - restartedAt;
  // Keep the load on a moment longer: errors right after the last removal count too.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const result = await load.stop();
  const sentWhileDraining = await hostWatch.stop();
  const newPods = (await podsOfApp(core, app)).map((p) => p.name);
  const defined = (values: (number | undefined)[]): number[] =>
    values.filter((v): v is number => v !== undefined);
  return {
    load: result,
    rolloutMs,
    oldPodsGoneMs,
    oldPods,
    newPods,
    preStopMs: defined(oldPods.map((pod) => between(agent, pod, 'terminating', 'prestop-done'))),
    preStopDetails: oldPods.map(
      (pod) => agent.events.find((e) => e.pod === pod && e.what === 'prestop-done')?.detail ?? '(none)',
    ),
    gateWaitMs: defined(newPods.map((pod) => between(agent, pod, 'containers-ready', 'ready'))),
    sentWhileDraining,
  };
}

function report(t: ExecutionContext<Context>, mode: string, r: RolloutResult): void {
  const { load } = r;
  const { agent } = t.context;
  t.log(
    `${mode}: ${load.sent} requests in ${(load.durationMs / 1000).toFixed(1)} s ` +
      `(${load.skipped} skipped at the concurrency cap), ${load.ok} 2xx, ${load.non2xx} non-2xx; ` +
      `statuses ${JSON.stringify(load.statuses)}`,
  );
  t.log(
    `${mode}: rollout complete after ${(r.rolloutMs / 1000).toFixed(2)} s, old pods gone after ` +
      `${(r.oldPodsGoneMs / 1000).toFixed(2)} s; answers per pod ${JSON.stringify(load.byPod)}`,
  );
  // Answers from an old pod more than 300 ms after it began terminating: requests Envoy still sent to a
  // host that readygate had marked DRAINING by then (propagation here takes well under 300 ms).
  const late = r.oldPods.map((pod) => {
    const since = agent.events.find((e) => e.pod === pod && e.what === 'terminating')?.at;
    return since === undefined ? 0 : load.answers.filter((a) => a.pod === pod && a.at > since + 300).length;
  });
  t.log(`${mode}: answers from old pods > 300 ms after they began terminating: ${late.join(', ')}`);
  t.log(
    `${mode}: requests Envoy sent to hosts while its /clusters showed them DRAINING: ` +
      JSON.stringify(Object.fromEntries(r.sentWhileDraining)),
  );
  const ms = (values: number[]): string => values.map((v) => `${Math.round(v)} ms`).join(', ');
  t.log(`${mode}: preStop held old pods ${ms(r.preStopMs)}; new pods waited for Ready ${ms(r.gateWaitMs)}`);
  // Each failure next to what the node agent did to the pods just before it: enough to tell which
  // transition (start, SIGTERM, exit) Envoy was not told about in time.
  for (const failure of load.firstFailures) {
    const around = agent.events
      .filter((e) => e.at > failure.at - 1_500 && e.at <= failure.at + 50)
      .map((e) => `${e.pod} ${e.what} ${Math.round(e.at - failure.at)} ms`);
    t.log(`${mode}: ${failure.what}; agent events before it: ${around.join('; ')}`);
  }
}

test.serial('rollout restart through readygate: 0 non-2xx under constant load', async (t) => {
  t.timeout(110_000);
  const r = await restartUnderLoad(t, t.context.readygate, APP);
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
  const r = await restartUnderLoad(t, t.context.naive, APP);
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

// This test found that Envoy's default update_merge_window (1 s) held DRAINING updates back from the load
// balancer after Envoy had ACKed them, so drain-wait released pods still receiving requests; readygate's
// clusters now set it to 0 (src/xds/translate.ts).
test.serial(
  'gate and drain-wait on: 0 non-2xx; old pods leave sooner than with a fixed preStop sleep',
  async (t) => {
    t.timeout(110_000);
    const { gated } = t.context;
    // What the gated Envoy ACKed, when, and what that version did with each pod: the evidence drain-wait
    // and the gate decide on, printed next to any failure.
    const acks: string[] = [];
    const onAck = (event: {
      typeUrl: string;
      entries: readonly (readonly [string, string | null])[];
    }): void => {
      for (const [name, version] of event.entries) {
        if (name !== clusterOf(GATED_APP) || version === null) continue;
        const summary = gated.readiness.history.summary(name, version);
        acks.push(
          `${(Date.now() / 1000).toFixed(3)} ACK ${version.slice(0, 8)} ` +
            JSON.stringify(summary ? Object.fromEntries(summary) : 'unknown'),
        );
      }
    };
    gated.dataPlane.plane.sync.on('ack', onAck);
    const r = await restartUnderLoad(t, gated.dataPlane, GATED_APP);
    gated.dataPlane.plane.sync.off('ack', onAck);
    t.context.results.set('gated', r);
    report(t, 'gated', r);
    if (r.load.non2xx > 0) {
      const epoch = (at: number): string => ((performance.timeOrigin + at) / 1000).toFixed(3);
      for (const line of gated.dataPlane.envoy.logTail(400).split('\n'))
        if (line.includes('FAILED')) t.log(line);
      for (const e of t.context.agent.events.filter((x) => x.pod.startsWith(GATED_APP)))
        t.log(`${epoch(e.at)} ${e.pod} ${e.what} ${e.detail ?? ''}`);
      for (const line of acks) t.log(line);
    }
    const fixed = t.context.results.get('readygate');
    if (fixed) {
      const mean = (values: number[]): number =>
        values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
      t.log(
        `preStop per old pod: fixed sleep ${Math.round(mean(fixed.preStopMs))} ms vs drain-wait ` +
          `${Math.round(mean(r.preStopMs))} ms (mean; drain-wait includes ~0.5-1 s of starting the CLI under tsx)`,
      );
      const sooner = (a: number, b: number): string => {
        const d = (a - b) / 1000;
        return d >= 0 ? `${d.toFixed(2)} s sooner` : `${(-d).toFixed(2)} s later`;
      };
      t.log(
        `rollout complete (kubectl's rule): fixed sleep ${(fixed.rolloutMs / 1000).toFixed(2)} s, gate + drain-wait ` +
          `${(r.rolloutMs / 1000).toFixed(2)} s (${sooner(fixed.rolloutMs, r.rolloutMs)}); last old pod gone: ` +
          `${(fixed.oldPodsGoneMs / 1000).toFixed(2)} s vs ${(r.oldPodsGoneMs / 1000).toFixed(2)} s ` +
          `(${sooner(fixed.oldPodsGoneMs, r.oldPodsGoneMs)})`,
      );
    }
    t.true(r.load.sent >= LOAD_RPS * 5, 'the load ran through the whole rollout');
    t.is(r.load.non2xx, 0);
    // Every preStop was drain-wait returning 0 (drained), not its timeout.
    for (const detail of r.preStopDetails) t.regex(detail, /drain-wait: exit 0/);
    // Every new pod became Ready through the gate, i.e. only after its Envoy had ACKed it.
    t.is(r.gateWaitMs.length, 3);

    // Envoy must not send a single new request to a host it lists as DRAINING; drain-wait's "drained"
    // rests on that. Envoy 1.36 merges health-only EDS changes for update_merge_window (default 1 s)
    // before its load balancers see them, so without update_merge_window: 0s on readygate's clusters this
    // counts ~30 requests per old pod, and a pod that exits right after drain-wait returns fails some.
    t.is(r.sentWhileDraining.size, 3, 'Envoy listed every old pod as DRAINING before it went');
    for (const [host, sent] of r.sentWhileDraining)
      t.is(sent, 0, `requests Envoy sent to ${host} while listing it DRAINING`);
  },
);

test.serial('two readygate replicas, the one Envoy streams from killed mid-rollout: 0 non-2xx', async (t) => {
  t.timeout(110_000);
  const { replicated } = t.context;
  const nodeId = 'envoy-replicated';
  const connected = (plane: DataPlane['plane']): boolean =>
    plane.sync.streams.some((s) => s.nodeId === nodeId);
  let killed = '';
  let reconnectedMs = Number.NaN;
  const r = await restartUnderLoad(t, replicated, APP, async () => {
    // Mid-rollout: the first new pod is starting, the first old one is about to go.
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    const [victim, survivor] = connected(replicated.plane)
      ? [replicated.plane, replicated.second]
      : [replicated.second, replicated.plane];
    killed = victim === replicated.plane ? 'first' : 'second';
    // In-process stand-in for a killed pod: its listener and streams go away at once, as the kernel
    // closes a dead process's sockets. (close() also ends streams with UNAVAILABLE first.)
    const lostAt = performance.now();
    await victim.close();
    await waitUntil(() => connected(survivor), {
      timeoutMs: 15_000,
      intervalMs: 20,
      description: 'Envoy to reconnect to the surviving replica',
    });
    reconnectedMs = performance.now() - lostAt;
  });
  report(t, 'replicated', r);
  t.log(
    `replicated: killed the ${killed} replica mid-rollout; Envoy was back on the other after ${Math.round(reconnectedMs)} ms`,
  );
  t.true(killed !== '', 'a replica was killed during the rollout');
  t.true(r.load.sent >= LOAD_RPS * 5, 'the load ran through the whole rollout');
  t.is(r.load.non2xx, 0);
  for (const pod of r.newPods) t.true((r.load.byPod[pod] ?? 0) > 0, `new pod ${pod} served requests`);
});
