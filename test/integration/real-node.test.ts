/**
 * readygate against a real kubelet (docs/e2e.md): every failure mode readygate exists for is decided by
 * the kubelet (probes racing EndpointSlice propagation, preStop hooks, SIGTERM and grace periods, a process
 * dying mid-request, pods going NotReady), so here nothing about pods is simulated.
 *
 * Real: etcd, kube-apiserver, kube-controller-manager (deployment, replicaset, endpointslice, disruption
 * controllers), kube-scheduler, kubelet, containerd, runc, the CNI bridge plugin (test/helpers/real-node.ts),
 * Envoy with the shipped ext_proc gateway bootstrap, and readygate: the Kubernetes source, the xDS server,
 * the readiness-gate controller, the /drain-wait admin route on the pods' bridge address, the ext_proc
 * failure mapper. The pods run test/real-node/app (probes, slow graceful shutdown, a crash on demand) and
 * `readygate drain-wait` (bin/readygate.js on this machine's Node, mounted read-only) as their preStop.
 *
 * Load goes to Envoy on 127.0.0.1, which routes to the pods' own addresses on the run's bridge; every load
 * loop is bounded in requests and time.
 */
import http from 'node:http';
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import {
  AppsV1Api,
  CoreV1Api,
  PatchStrategy,
  PolicyV1Api,
  setHeaderOptions,
  V1Eviction,
  V1ObjectMeta,
  type KubeConfig,
  type V1Pod,
} from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { startAdminServer, type AdminServer } from '../../src/admin/server.js';
import { startExtprocServer, type ExtprocServer } from '../../src/extproc/server.js';
import { CAUSE_HEADER, PROBLEM_CONTENT_TYPE } from '../../src/extproc/problem.js';
import { EndpointStore } from '../../src/model/store.js';
import {
  READINESS_GATE_CONDITION,
  startPodGateIndex,
  startReadiness,
  type PodGateIndex,
  type Readiness,
} from '../../src/readiness/index.js';
import { startKubernetesSource, type KubernetesSource } from '../../src/sources/kubernetes.js';
import { startControlPlane, type ControlPlane } from '../../src/xds/control-plane.js';
import { startEnvoy, waitUntil, type EnvoyProcess } from '../helpers/envoy-process.js';
import {
  firstEndpointAddress,
  gatewayBootstrap,
  objectAt,
  valueAt,
  type Json,
} from '../helpers/gateway-bootstrap.js';
import {
  KubeObjects,
  readygateIdentity,
  startKubeCluster,
  waitForStore,
  type KubeCluster,
} from '../helpers/kube-cluster.js';
import { freePort } from '../helpers/ports.js';
import { APP_IMAGE, APP_PORT, NODE_CONTROLLERS, RealNode, realNodeTestMode } from '../helpers/real-node.js';

const NAMESPACE = 'e2e';
/** Gate + drain-wait: readygate's setup (docs/rollouts.md). */
const GATED = 'web';
/** Readiness probe + `preStop: sleep 5` and nothing else: the usual Kubernetes setup, for comparison. */
const BASELINE = 'baseline';
const clusterOf = (app: string): string => `${NAMESPACE}/${app}:http`;
const CONTROLLERS = [
  'deployment-controller',
  'replicaset-controller',
  'endpointslice-controller',
  'disruption-controller',
  ...NODE_CONTROLLERS,
];
/** The readiness probe of every pod: what "out of Envoy within probe period + propagation" derives from. */
const PROBE = { periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 1, successThreshold: 1 };
/**
 * Kubelet status write → apiserver → EndpointSlice controller → readygate's watch → EDS → Envoy ACK, on a
 * 2-core machine shared with other test workers. Measured well under 1 s when idle (docs/e2e.md).
 */
const PROPAGATION_BUDGET_MS = 5_000;
/** How long the app keeps serving after SIGTERM before it closes its listener. */
const SHUTDOWN_DELAY = '2s';
const BASELINE_PRESTOP_SECONDS = 5;
/**
 * drain-wait's bound. A drain completes within an xDS round trip; only when every pod of a Service
 * terminates at once (scale to 0) does it run out, because readygate keeps terminating-but-serving pods
 * routed while no ready one is left (KEP-1669 fallback).
 */
const DRAIN_TIMEOUT = '10s';
const GATED_GRACE_SECONDS = 20;
const BASELINE_GRACE_SECONDS = 15;
const LOAD_RPS = 60;
/**
 * A request the app holds this long is in flight when the test crashes the app; ROUTE_TIMEOUT leaves it
 * room on a loaded machine.
 */
const SLOW_REQUEST_MS = 8_000;
const ROUTE_TIMEOUT = '15s';
const LOAD_CONCURRENCY = 16;

interface Context {
  cluster: KubeCluster;
  node: RealNode;
  admin: KubeObjects;
  apps: AppsV1Api;
  core: CoreV1Api;
  policy: PolicyV1Api;
  pods: PodGateIndex;
  source: KubernetesSource;
  store: EndpointStore;
  plane: ControlPlane;
  extproc: ExtprocServer;
  envoy: EnvoyProcess;
  listenerPort: number;
  readiness: Readiness;
  adminServer: AdminServer;
  /** Every /drain-wait answer readygate gave: pod and HTTP status. */
  drainAnswers: { pod: string; status: number }[];
}
const test = anyTest as TestFn<Context>;
const mode = realNodeTestMode();
const serial = mode.run ? test.serial : test.serial.skip;
if (!mode.run) process.stderr.write(`real-node tests skipped (CI would fail them): ${mode.reason}\n`);

function deployment(app: string, variant: 'gated' | 'baseline', ctx: Context): Json {
  const mounts = ctx.node.readygateMounts();
  const env: Json[] = [
    { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
    { name: 'SHUTDOWN_DELAY', value: SHUTDOWN_DELAY },
  ];
  const gated = variant === 'gated';
  if (gated) {
    env.push(
      { name: 'READYGATE_POD', value: '$(POD_NAMESPACE)/$(POD_NAME)' },
      { name: 'READYGATE_CONTROL_PLANE', value: `http://${ctx.node.gateway}:${ctx.adminServer.port}` },
      { name: 'READYGATE_DRAIN_TIMEOUT', value: DRAIN_TIMEOUT },
      { name: 'READYGATE_LOG_LEVEL', value: 'warn' },
    );
  }
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { namespace: NAMESPACE, name: app },
    spec: {
      replicas: 3,
      selector: { matchLabels: { app } },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      template: {
        metadata: { labels: { app } },
        spec: {
          terminationGracePeriodSeconds: gated ? GATED_GRACE_SECONDS : BASELINE_GRACE_SECONDS,
          enableServiceLinks: false,
          ...(gated ? { readinessGates: [{ conditionType: READINESS_GATE_CONDITION }] } : {}),
          ...(gated ? { volumes: mounts.volumes } : {}),
          containers: [
            {
              name: 'app',
              image: APP_IMAGE,
              imagePullPolicy: 'Never',
              ports: [{ name: 'http', containerPort: APP_PORT }],
              env,
              readinessProbe: { httpGet: { path: '/healthz', port: 'http' }, ...PROBE },
              lifecycle: {
                preStop: gated
                  ? // The real CLI, as kind/base/demo-app.yaml runs it; flags from READYGATE_* above.
                    { exec: { command: [process.execPath, repoBin(), 'drain-wait'] } }
                  : { sleep: { seconds: BASELINE_PRESTOP_SECONDS } },
              },
              ...(gated ? { volumeMounts: mounts.volumeMounts } : {}),
            },
          ],
        },
      },
    },
  };
}

function repoBin(): string {
  return new URL('../../bin/readygate.js', import.meta.url).pathname;
}

function appService(app: string): Json {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: NAMESPACE, name: app },
    spec: { selector: { app }, ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }] },
  };
}

/** The shipped ext_proc gateway through the shared test helper, pointed at this test's ext_proc. */
function envoyBootstrap(xdsPort: number, extprocPort: number, listenerPort: number): Json {
  const bootstrap = gatewayBootstrap({
    file: 'gateway-ads-extproc.yaml',
    xdsPort,
    listenerPort,
    nodeId: 'envoy-real-node',
    apiType: 'GRPC',
  });
  const clusters = valueAt(bootstrap, 'static_resources', 'clusters') as Json[];
  const extproc = clusters.find((c) => c['name'] === 'readygate_extproc');
  if (!extproc) throw new Error('gateway-ads-extproc.yaml has no readygate_extproc cluster');
  firstEndpointAddress(extproc)['port_value'] = extprocPort;
  // The helper's route times out after 5 s; the crash test holds requests longer.
  const hcm = objectAt(
    bootstrap,
    'static_resources',
    'listeners',
    0,
    'filter_chains',
    0,
    'filters',
    0,
    'typed_config',
  );
  const routes = valueAt(hcm, 'route_config', 'virtual_hosts', 0, 'routes') as { route: Json }[];
  for (const route of routes) route.route['timeout'] = ROUTE_TIMEOUT;
  return bootstrap;
}

async function startReadygate(ctx: Context, kubeConfig: KubeConfig): Promise<void> {
  ctx.pods = startPodGateIndex({ kubeConfig, namespaces: [NAMESPACE] });
  ctx.store = new EndpointStore();
  ctx.source = await startKubernetesSource({
    store: ctx.store,
    kubeConfig,
    namespaces: [NAMESPACE],
    modelDecorator: ctx.pods,
  });
  await waitForStore(ctx.store, (s) => s.synced, 30_000);
  ctx.plane = await startControlPlane({ store: ctx.store, xdsAddress: '127.0.0.1:0' });
  ctx.extproc = await startExtprocServer({ address: '127.0.0.1:0' });
  ctx.listenerPort = await freePort();
  ctx.envoy = await startEnvoy({
    bootstrap: envoyBootstrap(ctx.plane.port, ctx.extproc.port, ctx.listenerPort),
  });
  ctx.readiness = await startReadiness({
    cache: ctx.plane.cache,
    sync: ctx.plane.sync,
    kubeConfig,
    pods: ctx.pods,
    leaseNamespace: 'readygate',
    identity: 'readygate-real-node-test',
    startupGraceMs: 500,
  });
  ctx.drainAnswers = [];
  const drainWait = ctx.readiness.routes['/drain-wait'];
  if (!drainWait) throw new Error('readiness routes have no /drain-wait');
  ctx.adminServer = await startAdminServer({
    // The bridge address: the pods' preStop hooks reach readygate here, and nothing outside this run can.
    address: `${ctx.node.gateway}:0`,
    registry: new Registry(),
    readiness: () => ({ ready: true }),
    routes: {
      ...ctx.readiness.routes,
      // The real route, with each answer recorded: the evidence that every preStop was drain-wait's.
      '/drain-wait': async (request, url) => {
        const answer = await drainWait(request, url);
        ctx.drainAnswers.push({ pod: url.searchParams.get('pod') ?? '', status: answer.status });
        return answer;
      },
    },
  });
}

test.before(async (t) => {
  if (!mode.run) return;
  t.timeout(3_600_000, 'first run builds the kubelet and kube-scheduler');
  const ctx = t.context;
  ctx.cluster = await startKubeCluster({ controllers: CONTROLLERS });
  ctx.node = await RealNode.start(ctx.cluster);
  ctx.admin = new KubeObjects(ctx.cluster.adminConfig());
  ctx.apps = ctx.cluster.adminConfig().makeApiClient(AppsV1Api);
  ctx.core = ctx.cluster.adminConfig().makeApiClient(CoreV1Api);
  ctx.policy = ctx.cluster.adminConfig().makeApiClient(PolicyV1Api);
  await ctx.admin.namespace(NAMESPACE);
  const readygateUser = await readygateIdentity(ctx.cluster, ctx.admin, { readiness: true });
  await startReadygate(ctx, readygateUser);
  for (const [app, variant] of [
    [GATED, 'gated'],
    [BASELINE, 'baseline'],
  ] as const) {
    await ctx.admin.apply(appService(app));
    await ctx.admin.apply(deployment(app, variant, ctx));
  }
  for (const app of [GATED, BASELINE]) {
    await waitRolledOut(ctx, app, 120_000).catch(async (error: unknown) => {
      throw new Error(`${String(error)}\n${await ctx.node.describe(ctx.cluster, NAMESPACE)}`);
    });
    await waitUntil(async () => (await envoyHosts(ctx.envoy, clusterOf(app))).healthy.length === 3, {
      timeoutMs: 30_000,
      intervalMs: 100,
      description: `3 HEALTHY hosts in ${clusterOf(app)}`,
    });
  }
});

test.after.always(async (t) => {
  const c = t.context as Partial<Context>;
  await c.readiness?.close();
  await c.adminServer?.close();
  await c.envoy?.stop();
  await c.extproc?.close();
  await c.plane?.close();
  await c.source?.close();
  await c.pods?.close();
  // Pods first, so the kubelet tears their sandboxes down itself; the node's stop() removes what is left.
  await c.node?.stop();
  await c.cluster?.stop();
});

// ---- Helpers ----

interface HostStatus {
  address: { socket_address: { address: string } };
  health_status?: { eds_health_status?: string };
  stats?: { name: string; value?: string | number }[];
}

async function envoyHosts(
  envoy: EnvoyProcess,
  cluster: string,
): Promise<{
  healthy: string[];
  all: { address: string; health: string; rqActive: number; rqTotal: number }[];
}> {
  const json = (await envoy.clusters()) as {
    cluster_statuses?: { name: string; host_statuses?: HostStatus[] }[];
  };
  const hosts = json.cluster_statuses?.find((c) => c.name === cluster)?.host_statuses ?? [];
  const all = hosts.map((h) => ({
    address: h.address.socket_address.address,
    health: h.health_status?.eds_health_status ?? 'HEALTHY',
    rqActive: Number(h.stats?.find((s) => s.name === 'rq_active')?.value ?? 0),
    rqTotal: Number(h.stats?.find((s) => s.name === 'rq_total')?.value ?? 0),
  }));
  return { healthy: all.filter((h) => h.health === 'HEALTHY').map((h) => h.address), all };
}

async function podsOf(ctx: Context, app: string): Promise<V1Pod[]> {
  const list = await ctx.core.listNamespacedPod({ namespace: NAMESPACE, labelSelector: `app=${app}` });
  return list.items;
}

const isReady = (pod: V1Pod): boolean =>
  pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

/** kubectl rollout status's rule. */
async function waitRolledOut(ctx: Context, name: string, timeoutMs: number): Promise<void> {
  await waitUntil(
    async () => {
      const d = await ctx.apps.readNamespacedDeployment({ namespace: NAMESPACE, name });
      const want = d.spec?.replicas ?? 1;
      const s = d.status;
      return (
        (s?.observedGeneration ?? 0) >= (d.metadata?.generation ?? 1) &&
        (s?.updatedReplicas ?? 0) === want &&
        (s?.replicas ?? 0) === want &&
        (s?.availableReplicas ?? 0) === want &&
        (s?.unavailableReplicas ?? 0) === 0
      );
    },
    { timeoutMs, intervalMs: 200, description: `Deployment ${NAMESPACE}/${name} rolled out` },
  );
}

interface Answer {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

/** One request through Envoy to `app` (its answer, or status 0 with the error as body). */
function viaEnvoy(ctx: Context, app: string, pathAndQuery = '/', timeoutMs = 10_000): Promise<Answer> {
  return new Promise((resolve) => {
    const request = http.get(
      {
        host: '127.0.0.1',
        port: ctx.listenerPort,
        path: pathAndQuery,
        headers: { 'x-cluster': clusterOf(app) },
        agent: false,
        timeout: timeoutMs,
      },
      (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', () => {
          resolve({ status: response.statusCode ?? 0, body, headers: response.headers });
        });
        response.on('error', (error) => {
          resolve({ status: 0, body: error.message, headers: {} });
        });
      },
    );
    request.on('timeout', () => request.destroy(new Error('client timeout')));
    request.on('error', (error) => {
      resolve({ status: 0, body: error.message, headers: {} });
    });
  });
}

/** A request straight to a pod (the host reaches pod IPs over the bridge): the test's remote control. */
async function toPod(ip: string, method: string, pathAndQuery: string): Promise<number> {
  const response = await fetch(`http://${ip}:${APP_PORT}${pathAndQuery}`, {
    method,
    signal: AbortSignal.timeout(5_000),
  });
  await response.text();
  return response.status;
}

interface LoadResult {
  sent: number;
  ok: number;
  non2xx: number;
  statuses: Record<string, number>;
  byPod: Record<string, number>;
  firstFailures: string[];
  skipped: number;
}

/** Constant-rate keep-alive load to `app` through Envoy, bounded by `maxDurationMs` and its request count. */
function startLoad(ctx: Context, app: string, maxDurationMs: number): { stop: () => Promise<LoadResult> } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: LOAD_CONCURRENCY });
  const maxRequests = Math.ceil((LOAD_RPS * maxDurationMs) / 1000);
  const started = performance.now();
  const result: LoadResult = {
    sent: 0,
    ok: 0,
    non2xx: 0,
    statuses: {},
    byPod: {},
    firstFailures: [],
    skipped: 0,
  };
  let inFlight = 0;
  let idle: (() => void) | undefined;
  const done = (key: string, ok: boolean, detail: string): void => {
    result.statuses[key] = (result.statuses[key] ?? 0) + 1;
    if (ok) {
      result.ok++;
      result.byPod[detail] = (result.byPod[detail] ?? 0) + 1;
    } else {
      result.non2xx++;
      if (result.firstFailures.length < 10)
        result.firstFailures.push(
          `${((performance.now() - started) / 1000).toFixed(2)} s: ${key} ${detail.slice(0, 160)}`,
        );
    }
    inFlight--;
    if (inFlight === 0) idle?.();
  };
  const send = (): void => {
    result.sent++;
    inFlight++;
    const request = http.get(
      {
        host: '127.0.0.1',
        port: ctx.listenerPort,
        path: '/',
        headers: { 'x-cluster': clusterOf(app) },
        agent,
        timeout: 10_000,
      },
      (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', () => {
          const status = response.statusCode ?? 0;
          done(String(status), status >= 200 && status < 300, body.trim());
        });
        response.on('error', (error) => {
          done('response-error', false, error.message);
        });
      },
    );
    request.on('timeout', () => request.destroy(new Error('client timeout')));
    request.on('error', (error: NodeJS.ErrnoException) => {
      done(error.code ?? 'error', false, error.message);
    });
  };
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
      clearInterval(timer);
      if (inFlight > 0)
        await Promise.race([
          new Promise<void>((resolve) => (idle = resolve)),
          new Promise<void>((resolve) => setTimeout(resolve, 12_000)),
        ]);
      agent.destroy();
      return result;
    },
  };
}

function describeLoad(load: LoadResult): string {
  return (
    `${load.sent} requests (${load.skipped} skipped at the concurrency cap), ${load.ok} 2xx, ${load.non2xx} non-2xx; ` +
    `statuses ${JSON.stringify(load.statuses)}; per pod ${JSON.stringify(load.byPod)}`
  );
}

interface RolloutResult {
  load: LoadResult;
  seconds: number;
  oldPods: string[];
  newPods: string[];
}

async function restartUnderLoad(t: ExecutionContext<Context>, app: string): Promise<RolloutResult> {
  const ctx = t.context;
  const oldPods = (await podsOf(ctx, app)).map((p) => p.metadata?.name ?? '');
  t.is(oldPods.length, 3, `3 pods before the restart: ${oldPods.join(', ')}`);
  const load = startLoad(ctx, app, 150_000);
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const started = performance.now();
  // What `kubectl rollout restart` does.
  await ctx.apps.patchNamespacedDeployment(
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
  await waitRolledOut(ctx, app, 120_000);
  await waitUntil(
    async () => {
      const pods = await podsOf(ctx, app);
      return pods.length === 3 && pods.every((p) => !oldPods.includes(p.metadata?.name ?? ''));
    },
    { timeoutMs: 60_000, intervalMs: 200, description: `old ${app} pods removed` },
  );
  const seconds = (performance.now() - started) / 1000;
  // Errors right after the last old pod left count too.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const result = await load.stop();
  const newPods = (await podsOf(ctx, app)).map((p) => p.metadata?.name ?? '');
  return { load: result, seconds, oldPods, newPods };
}

async function eventsWithReason(ctx: Context, reason: string): Promise<string[]> {
  const list = await ctx.core.listNamespacedEvent({ namespace: NAMESPACE });
  return list.items
    .filter((e) => e.reason === reason)
    .map((e) => `${e.involvedObject.name}: ${e.message ?? ''}`);
}

// ---- Tests ----

serial(
  'rolling restart of 3 replicas under load: 0 non-2xx with gate + drain-wait; sleep-5 baseline reported',
  async (t) => {
    t.timeout(400_000);
    const ctx = t.context;
    const gated = await restartUnderLoad(t, GATED);
    t.log(`gate + drain-wait: rollout done in ${gated.seconds.toFixed(1)} s; ${describeLoad(gated.load)}`);
    for (const failure of gated.load.firstFailures) t.log(`gate + drain-wait failure at ${failure}`);
    const drains = ctx.drainAnswers.filter((a) =>
      gated.oldPods.some((pod) => a.pod === `${NAMESPACE}/${pod}`),
    );
    t.log(`drain-wait answers: ${JSON.stringify(drains)}`);

    const baseline = await restartUnderLoad(t, BASELINE);
    t.log(
      `ready-only + preStop sleep ${BASELINE_PRESTOP_SECONDS}: rollout done in ${baseline.seconds.toFixed(1)} s; ${describeLoad(baseline.load)}`,
    );
    for (const failure of baseline.load.firstFailures) t.log(`baseline failure at ${failure}`);

    t.true(gated.load.sent >= LOAD_RPS * 5, 'the load ran through the whole gated rollout');
    t.is(gated.load.non2xx, 0);
    for (const pod of gated.newPods)
      t.true((gated.load.byPod[pod] ?? 0) > 0, `new pod ${pod} served requests`);
    for (const pod of gated.oldPods)
      t.true((gated.load.byPod[pod] ?? 0) > 0, `old pod ${pod} served requests`);
    // Every old pod's preStop was drain-wait, answered "drained" by readygate (not its timeout, not a failure).
    t.deepEqual(
      [...new Set(drains.filter((a) => a.status === 200).map((a) => a.pod))].sort(),
      gated.oldPods.map((pod) => `${NAMESPACE}/${pod}`).sort(),
    );
    t.deepEqual(await eventsWithReason(ctx, 'FailedPreStopHook'), []);
    // The baseline: only what is deterministic. Its new pods took over; its error count is reported above.
    t.true(baseline.load.sent >= LOAD_RPS * 5, 'the load ran through the whole baseline rollout');
    for (const pod of baseline.newPods)
      t.true((baseline.load.byPod[pod] ?? 0) > 0, `new pod ${pod} served requests`);
  },
);

serial(
  'a readiness probe failing on a running pod takes it out of Envoy within probe period + propagation',
  async (t) => {
    t.timeout(120_000);
    const ctx = t.context;
    const [victim] = await podsOf(ctx, GATED);
    const ip = victim?.status?.podIP;
    if (!victim || !ip) throw new Error('no running pod to fail');
    const restartsBefore = victim.status?.containerStatuses?.[0]?.restartCount ?? 0;
    const load = startLoad(ctx, GATED, 60_000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    t.is(await toPod(ip, 'POST', '/readiness?ready=false'), 200);
    const failedAt = performance.now();
    await waitUntil(async () => !(await envoyHosts(ctx.envoy, clusterOf(GATED))).healthy.includes(ip), {
      timeoutMs: 30_000,
      intervalMs: 50,
      description: `${ip} out of Envoy's HEALTHY hosts`,
    });
    const outMs = performance.now() - failedAt;
    // Ready again: back in Envoy (through the readiness gate: Ready only once Envoy ACKed it).
    t.is(await toPod(ip, 'POST', '/readiness?ready=true'), 200);
    const recoveredAt = performance.now();
    await waitUntil(async () => (await envoyHosts(ctx.envoy, clusterOf(GATED))).healthy.includes(ip), {
      timeoutMs: 30_000,
      intervalMs: 50,
      description: `${ip} back in Envoy's HEALTHY hosts`,
    });
    const backMs = performance.now() - recoveredAt;
    await new Promise((resolve) => setTimeout(resolve, 500));
    const result = await load.stop();
    const bound =
      (PROBE.periodSeconds * PROBE.failureThreshold + PROBE.timeoutSeconds) * 1000 + PROPAGATION_BUDGET_MS;
    t.log(
      `readiness failed on ${victim.metadata?.name}: out of Envoy after ${Math.round(outMs)} ms (bound ${bound} ms), ` +
        `back after ${Math.round(backMs)} ms; ${describeLoad(result)}`,
    );
    t.true(outMs <= bound, `out of Envoy after ${Math.round(outMs)} ms, bound ${bound} ms`);
    // The process kept running and serving throughout: not a restart, no request lost.
    const after = await ctx.core.readNamespacedPod({
      namespace: NAMESPACE,
      name: victim.metadata?.name ?? '',
    });
    t.is(after.status?.containerStatuses?.[0]?.restartCount ?? 0, restartsBefore);
    t.is(result.non2xx, 0);
  },
);

serial('an Eviction through the Eviction API with a PodDisruptionBudget: 0 non-2xx', async (t) => {
  t.timeout(180_000);
  const ctx = t.context;
  await ctx.admin.apply({
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: { namespace: NAMESPACE, name: GATED },
    spec: { minAvailable: 2, selector: { matchLabels: { app: GATED } } },
  });
  await waitUntil(
    async () => {
      const pdb = await ctx.policy.readNamespacedPodDisruptionBudget({ namespace: NAMESPACE, name: GATED });
      return pdb.status?.currentHealthy === 3 && pdb.status.disruptionsAllowed === 1;
    },
    { timeoutMs: 30_000, intervalMs: 200, description: 'the PDB allows exactly one disruption' },
  );
  const before = (await podsOf(ctx, GATED)).map((p) => p.metadata?.name ?? '');
  const [first, second] = before;
  if (!first || !second) throw new Error(`expected 3 pods, got ${before.join(', ')}`);
  const load = startLoad(ctx, GATED, 120_000);
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const evict = async (name: string): Promise<number> => {
    try {
      const eviction = new V1Eviction();
      eviction.apiVersion = 'policy/v1';
      eviction.kind = 'Eviction';
      eviction.metadata = new V1ObjectMeta();
      eviction.metadata.namespace = NAMESPACE;
      eviction.metadata.name = name;
      await ctx.core.createNamespacedPodEviction({ namespace: NAMESPACE, name, body: eviction });
      return 201;
    } catch (error) {
      return (error as { code?: number }).code ?? -1;
    }
  };
  t.is(await evict(first), 201, 'the first eviction is allowed');
  // The budget is spent until the replacement is Ready: the apiserver refuses the second one.
  t.is(await evict(second), 429, 'a second eviction is refused while the first is being replaced');
  await waitUntil(
    async () => {
      const pods = await podsOf(ctx, GATED);
      return pods.length === 3 && !pods.some((p) => p.metadata?.name === first) && pods.every(isReady);
    },
    { timeoutMs: 90_000, intervalMs: 200, description: 'the evicted pod replaced' },
  );
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const result = await load.stop();
  t.log(`eviction of ${first}: ${describeLoad(result)}`);
  for (const failure of result.firstFailures) t.log(`eviction failure at ${failure}`);
  t.true(result.sent >= LOAD_RPS * 3, 'the load ran through the eviction');
  t.is(result.non2xx, 0);
  t.true(
    ctx.drainAnswers.some((a) => a.pod === `${NAMESPACE}/${first}` && a.status === 200),
    'drain-wait ran for the evicted pod',
  );
});

serial(
  'a container killed mid-request: 502 for the requests in flight to it, no new request lost',
  async (t) => {
    t.timeout(180_000);
    const ctx = t.context;
    const pods = await podsOf(ctx, GATED);
    const victim = pods[0];
    const ip = victim?.status?.podIP;
    if (!victim || !ip) throw new Error('no pod to kill');
    const name = victim.metadata?.name ?? '';
    const restartsBefore = victim.status?.containerStatuses?.[0]?.restartCount ?? 0;
    // Slow requests spread over the pods (Envoy balances round robin), answered well inside the route
    // timeout; the crash comes while they are held.
    const slow = Array.from({ length: 9 }, () => viaEnvoy(ctx, GATED, `/?delay=${SLOW_REQUEST_MS}`, 20_000));
    await waitUntil(
      async () =>
        (await envoyHosts(ctx.envoy, clusterOf(GATED))).all.reduce((n, h) => n + h.rqActive, 0) === 9,
      { timeoutMs: 4_000, intervalMs: 50, description: 'the 9 slow requests in flight' },
    );
    const inFlight =
      (await envoyHosts(ctx.envoy, clusterOf(GATED))).all.find((h) => h.address === ip)?.rqActive ?? 0;
    t.true(inFlight >= 1, `requests in flight to the victim: ${inFlight}`);
    await toPod(ip, 'POST', '/crash').catch(() => 0);
    // New requests from the moment of the crash until the container is back and Ready.
    const load = startLoad(ctx, GATED, 90_000);
    const answers = await Promise.all(slow);
    await waitUntil(
      async () => {
        const pod = await ctx.core.readNamespacedPod({ namespace: NAMESPACE, name });
        return (pod.status?.containerStatuses?.[0]?.restartCount ?? 0) > restartsBefore && isReady(pod);
      },
      { timeoutMs: 60_000, intervalMs: 200, description: `${name} restarted and Ready again` },
    );
    await waitUntil(async () => (await envoyHosts(ctx.envoy, clusterOf(GATED))).healthy.includes(ip), {
      timeoutMs: 30_000,
      intervalMs: 100,
      description: `${ip} back in Envoy`,
    });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const result = await load.stop();
    const failed = answers.filter((a) => a.status !== 200);
    t.log(
      `killed ${name} with ${inFlight} requests in flight to it: slow answers ${JSON.stringify(
        answers.map((a) => a.status),
      )}; failures ${JSON.stringify(failed.map((a) => `${a.status} ${String(a.headers[CAUSE_HEADER] ?? '')}`))}`,
    );
    t.log(`new requests from the crash until the pod was back: ${describeLoad(result)}`);
    for (const failure of result.firstFailures) t.log(`new request failure at ${failure}`);
    // Exactly the requests the victim held failed, each a 502 problem (the upstream died mid-request); the
    // others were answered by the pods they went to.
    t.is(failed.length, inFlight);
    for (const answer of failed) {
      t.is(answer.status, 502);
      t.is(answer.headers['content-type'], PROBLEM_CONTENT_TYPE);
    }
    for (const answer of answers.filter((a) => a.status === 200)) t.not(answer.body.trim(), name);
    // New requests: none lost. The shipped bootstrap retries a refused connect on another pod, and
    // outlier detection on readygate's clusters ejects the dead address before EDS drops it.
    t.is(result.non2xx, 0, JSON.stringify(result.statuses));
    t.true((result.byPod[name] ?? 0) > 0, 'the restarted container served new requests');
  },
);

serial('scale to 0: 503 + Retry-After problem answers', async (t) => {
  t.timeout(120_000);
  const ctx = t.context;
  await ctx.policy.deleteNamespacedPodDisruptionBudget({ namespace: NAMESPACE, name: GATED });
  const lastPods = (await podsOf(ctx, GATED)).map((p) => `${NAMESPACE}/${p.metadata?.name ?? ''}`);
  const scaledAt = performance.now();
  await ctx.apps.patchNamespacedDeploymentScale(
    { namespace: NAMESPACE, name: GATED, body: { spec: { replicas: 0 } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
  await waitUntil(async () => (await podsOf(ctx, GATED)).length === 0, {
    timeoutMs: 90_000,
    intervalMs: 200,
    description: 'every pod gone',
  });
  await waitUntil(async () => (await envoyHosts(ctx.envoy, clusterOf(GATED))).all.length === 0, {
    timeoutMs: 30_000,
    intervalMs: 100,
    description: 'no hosts left in Envoy',
  });
  const podsGoneS = (performance.now() - scaledAt) / 1000;
  const answersByStatus: Record<string, number> = {};
  for (const a of ctx.drainAnswers.filter((x) => lastPods.includes(x.pod)))
    answersByStatus[a.status] = (answersByStatus[a.status] ?? 0) + 1;
  const hookFailures = await eventsWithReason(ctx, 'FailedPreStopHook');
  t.log(
    `scale to 0: pods gone after ${podsGoneS.toFixed(1)} s; /drain-wait answers for them by status ` +
      `${JSON.stringify(answersByStatus)}; ${hookFailures.length} FailedPreStopHook events, first: ${hookFailures[0] ?? '-'}`,
  );
  const answers = await Promise.all([1, 2, 3, 4, 5].map(() => viaEnvoy(ctx, GATED)));
  t.log(
    `after scale to 0: ${JSON.stringify(answers.map((a) => [a.status, a.headers['retry-after'], a.headers[CAUSE_HEADER]]))}`,
  );
  for (const answer of answers) {
    t.is(answer.status, 503);
    t.is(answer.headers['retry-after'], '1');
    t.is(answer.headers['content-type'], PROBLEM_CONTENT_TYPE);
  }
});
