/**
 * The outlier detection every cluster carries (issue 17), against the real Envoy: what config_dump shows,
 * that a pod refusing connections is ejected after two failures while its healthy sibling serves the rest,
 * and that a one-pod Service is never ejected into "no healthy upstream" (panic threshold 0 would leave
 * it with nothing).
 *
 * The test route has no retries, so every request that reaches the refusing host is a visible 503: the
 * count of those is the count of requests the dead pod got before it was ejected.
 */
import test, { type ExecutionContext } from 'ava';
import { EndpointStore } from '../../src/model/store.js';
import { startControlPlane } from '../../src/xds/control-plane.js';
import { OUTLIER_DEFAULTS } from '../../src/xds/translate.js';
import { startEnvoy, waitUntil, type EnvoyProcess } from '../helpers/envoy-process.js';
import { gatewayBootstrap, objectAt, valueAt } from '../helpers/gateway-bootstrap.js';
import { endpoint, service } from '../helpers/model-fixtures.js';
import { freePort } from '../helpers/ports.js';
import { httpUpstream, type Upstream } from '../helpers/upstreams.js';

/** Answers 200 with its own address. The refusing "pod" is an address nothing listens on. */
function namedUpstream(host: string, port: number): Promise<Upstream> {
  return httpUpstream(
    (_request, _body, response) => {
      response.writeHead(200, { 'content-type': 'text/plain' });
      response.end(host);
    },
    { host, port },
  );
}

async function setup(t: ExecutionContext, hosts: string[]) {
  const port = await freePort('127.0.0.2');
  const upstream = await namedUpstream('127.0.0.2', port);
  const store = new EndpointStore();
  store.replaceAll([
    service(
      'web',
      hosts.map((host) => endpoint(host)),
      { port },
    ),
  ]);
  const plane = await startControlPlane({ store, xdsAddress: '127.0.0.1:0' });
  const listenerPort = await freePort();
  const envoy = await startEnvoy({
    // Without the shipped retry policy: this file shows outlier detection alone (each refused connect
    // is one answered 503); gateway-retry.test.ts shows the two together.
    bootstrap: gatewayBootstrap({
      xdsPort: plane.port,
      listenerPort,
      nodeId: 'outlier',
      apiType: 'GRPC',
      withoutRetryPolicy: true,
    }),
  });
  t.teardown(async () => {
    await envoy.stop();
    await plane.close();
    await upstream.close();
  });
  await waitUntil(
    async () => {
      const json = (await envoy.clusters()) as {
        cluster_statuses?: { name: string; host_statuses?: unknown[] }[];
      };
      return (
        json.cluster_statuses?.find((c) => c.name === 'default/web:http')?.host_statuses?.length ===
        hosts.length
      );
    },
    { timeoutMs: 10_000, description: `Envoy to know ${hosts.length} hosts of default/web:http` },
  );
  return { envoy, listenerPort };
}

/**
 * Sends `count` requests one after the other. After every `consecutiveLocalOriginFailures`-th 503 it waits
 * until Envoy has acted on that failure run (`settled(runs)`): failures are counted on Envoy's worker
 * thread, but the count is reset on its main thread, in the posted task that decides the ejection. A
 * failure that reaches the worker before that task runs takes the count past the threshold without
 * meeting it (Envoy compares with ==), and one detection goes missing; on a loaded machine it did.
 */
async function drive(
  listenerPort: number,
  count: number,
  settled: (runs: number) => Promise<boolean>,
): Promise<{ statuses: Record<number, number> }> {
  const statuses: Record<number, number> = {};
  for (let i = 0; i < count; i++) {
    const response = await fetch(`http://127.0.0.1:${listenerPort}/`, {
      headers: { 'x-cluster': 'default/web:http' },
      signal: AbortSignal.timeout(5000),
    });
    await response.arrayBuffer();
    statuses[response.status] = (statuses[response.status] ?? 0) + 1;
    const failures = statuses[503] ?? 0;
    if (response.status === 503 && failures % OUTLIER_DEFAULTS.consecutiveLocalOriginFailures === 0) {
      const runs = failures / OUTLIER_DEFAULTS.consecutiveLocalOriginFailures;
      await waitUntil(() => settled(runs), { timeoutMs: 5000, description: `failure run ${runs} handled` });
    }
  }
  return { statuses };
}

// Envoy's stat names replace the ':' of a cluster name with '_'.
const stat = async (envoy: EnvoyProcess, name: string): Promise<number> =>
  (await envoy.stat(`cluster.default/web_http.outlier_detection.${name}`)) ?? -1;

test('every cluster carries the outlier detection defaults (config_dump)', async (t) => {
  const { envoy } = await setup(t, ['127.0.0.2']);
  const dump = await envoy.configDump('?resource=dynamic_active_clusters');
  const configs = valueAt(dump, 'configs') as { cluster: { name: string } }[];
  const cluster = configs.find((c) => c.cluster.name === 'default/web:http')?.cluster;
  t.truthy(cluster);
  t.deepEqual(objectAt(cluster, 'outlier_detection'), {
    split_external_local_origin_errors: true,
    consecutive_local_origin_failure: OUTLIER_DEFAULTS.consecutiveLocalOriginFailures,
    enforcing_consecutive_local_origin_failure: 100,
    consecutive_gateway_failure: OUTLIER_DEFAULTS.consecutiveGatewayErrors,
    enforcing_consecutive_gateway_failure: 100,
    enforcing_consecutive_5xx: 0,
    enforcing_success_rate: 0,
    enforcing_local_origin_success_rate: 0,
    interval: '1s',
    base_ejection_time: '5s',
    max_ejection_time: '30s',
    max_ejection_percent: OUTLIER_DEFAULTS.maxEjectionPercent,
  });
  t.deepEqual(objectAt(cluster, 'common_lb_config', 'healthy_panic_threshold'), {});
});

test('a pod refusing connections is ejected after two failures; its healthy sibling serves the rest', async (t) => {
  // 127.0.0.3 has nothing listening on the port: every connect is refused, as for a crashed pod.
  const { envoy, listenerPort } = await setup(t, ['127.0.0.2', '127.0.0.3']);
  // Each failure run waits until the host is ejected (or, back after 5 s, ejected again).
  const { statuses } = await drive(
    listenerPort,
    30,
    async (runs) => (await stat(envoy, 'ejections_enforced_consecutive_local_origin_failure')) === runs,
  );
  const ejections = await stat(envoy, 'ejections_enforced_consecutive_local_origin_failure');
  // Ejection lasts 5 s; a machine slow enough to spend that long on 30 requests would see the host come
  // back and be ejected again after two more failures, so the exact relation is failures = 2 × ejections.
  t.true(ejections >= 1, `ejections: ${ejections}`);
  t.deepEqual(statuses, {
    200: 30 - OUTLIER_DEFAULTS.consecutiveLocalOriginFailures * ejections,
    503: OUTLIER_DEFAULTS.consecutiveLocalOriginFailures * ejections,
  });
  t.is(await stat(envoy, 'ejections_active'), 1);
});

test('the only pod of a Service is never ejected: max_ejection_percent 50 keeps one host of one', async (t) => {
  const { envoy, listenerPort } = await setup(t, ['127.0.0.3']);
  const { statuses } = await drive(
    listenerPort,
    6,
    async (runs) => (await stat(envoy, 'ejections_overflow')) === runs,
  );
  // Every request reaches the refused host (503 upstream connect failure), none gets "no healthy upstream".
  t.deepEqual(statuses, { 503: 6 });
  t.is(await stat(envoy, 'ejections_active'), 0);
  t.is(await stat(envoy, 'ejections_enforced_total'), 0);
  // Detected every second failure, refused each time: ejecting would leave the Service with no host.
  const runs = 6 / OUTLIER_DEFAULTS.consecutiveLocalOriginFailures;
  t.is(await stat(envoy, 'ejections_detected_consecutive_local_origin_failure'), runs);
  t.is(await stat(envoy, 'ejections_overflow'), runs);
  t.is(await envoy.stat('cluster.default/web_http.upstream_cx_connect_fail'), 6);
});
