/**
 * readygate.io/* annotations end to end: kube-apiserver → Kubernetes source → xDS → the real Envoy. Each
 * valid key shows up in Envoy's config_dump; invalid values fall back to defaults with an InvalidAnnotation
 * Event (written with the RBAC manifest's identity), a metric and /debug/policy, never a NACK, and the
 * Service's hosts stay in Envoy. Fixing the annotation clears the problem.
 *
 * The apiserver refuses loopback addresses in EndpointSlices, so requests cannot reach a local upstream
 * here: what the same clusters do to traffic (breaker overflow, idle timeout, a bad key next to a good
 * one) is shown in test/integration/policy-envoy.test.ts with the store fed directly.
 */
import anyTest, { type TestFn } from 'ava';
import type { KubeConfig } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { silentLogger } from '../../src/log.js';
import { EndpointStore } from '../../src/model/store.js';
import { startKubernetesSource, type KubernetesSource } from '../../src/sources/kubernetes.js';
import { kubernetesPolicyEvents, INVALID_ANNOTATION_REASON } from '../../src/sources/kubernetes-events.js';
import { PolicyProblemReporter } from '../../src/sources/policy-report.js';
import { startControlPlane, type ControlPlane } from '../../src/xds/control-plane.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
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
  type ManifestObject,
} from '../helpers/kube-cluster.js';
import { freePort } from '../helpers/ports.js';

interface Context {
  cluster: KubeCluster;
  admin: KubeObjects;
  readygate: KubeConfig;
  store: EndpointStore;
  source: KubernetesSource;
  reporter: PolicyProblemReporter;
  registry: Registry;
  plane: ControlPlane;
  envoy: EnvoyProcess;
}
const test = anyTest as TestFn<Context>;
const NS = 'policy';
const NODE_ID = 'envoy-policy';

test.before(async (t) => {
  const cluster = await startKubeCluster();
  t.context.cluster = cluster;
  const admin = new KubeObjects(cluster.adminConfig());
  t.context.admin = admin;
  t.context.readygate = await readygateIdentity(cluster, admin);
  await admin.namespace(NS);

  const store = new EndpointStore();
  t.context.store = store;
  const source = await startKubernetesSource({ store, kubeConfig: t.context.readygate, namespaces: [NS] });
  t.context.source = source;
  t.context.registry = new Registry();
  // As readygate itself writes them: with the RBAC manifest's identity.
  t.context.reporter = new PolicyProblemReporter({
    store,
    logger: silentLogger,
    registry: t.context.registry,
    events: kubernetesPolicyEvents(t.context.readygate, (key) => source.serviceUid(key), 'test-replica'),
  });
  await waitForStore(store, (s) => s.synced, 15_000);
  t.context.plane = await startControlPlane({ store, xdsAddress: '127.0.0.1:0' });
  t.context.envoy = await startEnvoy({
    bootstrap: gatewayBootstrap({
      xdsPort: t.context.plane.port,
      listenerPort: await freePort(),
      nodeId: NODE_ID,
      apiType: 'GRPC',
    }),
  });
  for (const name of ['tuned', 'broken']) {
    await admin.apply(
      endpointSlice({
        namespace: NS,
        name: `${name}-1`,
        service: name,
        ports: [{ name: 'http', port: 8080 }],
        endpoints: [{ addresses: ['10.33.0.1'], conditions: { ready: true } }],
      }),
    );
  }
});

test.after.always(async (t) => {
  const { envoy, plane, source, cluster, reporter } = t.context as Partial<Context>;
  reporter?.close();
  await envoy?.stop();
  await plane?.close();
  await source?.close();
  await cluster?.stop();
});

function annotated(name: string, annotations: Record<string, string>): ManifestObject {
  const object = service({ namespace: NS, name, ports: [{ name: 'http', port: 80 }] });
  return { ...object, metadata: { ...object.metadata, annotations } as ManifestObject['metadata'] };
}

type Json = Record<string, unknown>;

/** The cluster as Envoy has it now (config_dump), once `accept` says it is the expected version. */
async function envoyCluster(
  envoy: EnvoyProcess,
  name: string,
  accept: (cluster: Json) => boolean,
): Promise<Json> {
  let last: Json | undefined;
  return waitUntil(
    async () => {
      const dump = (await envoy.configDump('?resource=dynamic_active_clusters')) as {
        configs?: { cluster: Json }[];
      };
      last = dump.configs?.find((c) => c.cluster['name'] === name)?.cluster;
      return last !== undefined && accept(last) ? last : undefined;
    },
    { timeoutMs: 15_000, description: `Envoy cluster ${name} (last: ${JSON.stringify(last)})` },
  );
}

/** `address:port HEALTH` of each host Envoy has for a cluster. */
async function envoyHosts(envoy: EnvoyProcess, name: string): Promise<string[]> {
  const json = (await envoy.clusters()) as {
    cluster_statuses?: {
      name: string;
      host_statuses?: {
        address: { socket_address: { address: string; port_value: number } };
        health_status?: { eds_health_status?: string };
      }[];
    }[];
  };
  return (json.cluster_statuses?.find((c) => c.name === name)?.host_statuses ?? []).map(
    (h) =>
      `${h.address.socket_address.address}:${h.address.socket_address.port_value} ${h.health_status?.eds_health_status ?? 'HEALTHY'}`,
  );
}

test.serial('every valid annotation reaches its Envoy field', async (t) => {
  const { admin, envoy } = t.context;
  await admin.apply(
    annotated('tuned', {
      'readygate.io/connect-timeout': '250ms',
      'readygate.io/idle-timeout': '3s',
      'readygate.io/slow-start': '10s',
      'readygate.io/slow-start-aggression': '1.5',
      'readygate.io/lb-policy': 'least-request',
      'readygate.io/max-connections': '1',
      'readygate.io/max-pending-requests': '1',
      'readygate.io/max-requests': '5',
      'readygate.io/outlier-consecutive-gateway-errors': '7',
      'readygate.io/outlier-max-ejection-percent': '20',
    }),
  );
  const cluster = await envoyCluster(envoy, `${NS}/tuned:http`, (c) => c['connect_timeout'] === '0.250s');
  t.is(cluster['lb_policy'], 'LEAST_REQUEST');
  t.deepEqual(cluster['least_request_lb_config'], {
    slow_start_config: {
      slow_start_window: '10s',
      aggression: { default_value: 1.5, runtime_key: 'readygate.slow_start.aggression' },
    },
  });
  t.deepEqual(cluster['circuit_breakers'], {
    thresholds: [
      {
        max_connections: 1,
        max_pending_requests: 1,
        max_requests: 5,
        retry_budget: { budget_percent: { value: 20 }, min_retry_concurrency: 50 },
      },
    ],
  });
  const outlier = cluster['outlier_detection'] as Json;
  t.is(outlier['consecutive_gateway_failure'], 7);
  t.is(outlier['max_ejection_percent'], 20);
  const options = (cluster['typed_extension_protocol_options'] as Json)[
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions'
  ] as Json;
  t.deepEqual(options['common_http_protocol_options'], { idle_timeout: '3s' });

  t.deepEqual(await envoyHosts(envoy, `${NS}/tuned:http`), ['10.33.0.1:8080 HEALTHY']);
});

test.serial(
  'invalid values: default + Event + metric + /debug, no NACK, still served; fixing clears them',
  async (t) => {
    const { admin, envoy, reporter, registry, plane } = t.context;
    await admin.apply(
      annotated('broken', {
        'readygate.io/connect-timeout': 'banana',
        'readygate.io/max-requests': '-1',
        'readygate.io/lb-policy': 'ring-hash',
        'readygate.io/conect-timeout': '2s',
        'readygate.io/idle-timeout': '4s',
      }),
    );
    // The valid key next to the bad ones applies; the bad ones keep their defaults.
    const cluster = await envoyCluster(
      envoy,
      `${NS}/broken:http`,
      (c) => c['typed_extension_protocol_options'] !== undefined,
    );
    t.is(cluster['connect_timeout'], '1s');
    // Only the retry budget every cluster carries: the bad breaker values fell back to Envoy's defaults.
    t.deepEqual(cluster['circuit_breakers'], {
      thresholds: [{ retry_budget: { budget_percent: { value: 20 }, min_retry_concurrency: 50 } }],
    });
    t.is(cluster['lb_policy'], undefined);
    t.deepEqual(await envoyHosts(envoy, `${NS}/broken:http`), ['10.33.0.1:8080 HEALTHY']);
    const syncz = plane.sync.toJSON().find((s) => s.nodeId === NODE_ID)!;
    t.is(syncz.types[TypeUrl.CLUSTER]!.lastNack, null);

    t.deepEqual(
      reporter.toJSON().map((entry) => [entry.service, entry.problems.map((p) => p.key)]),
      [
        [
          `${NS}/broken`,
          [
            'readygate.io/conect-timeout',
            'readygate.io/connect-timeout',
            'readygate.io/lb-policy',
            'readygate.io/max-requests',
          ],
        ],
      ],
    );
    const gauge = async (key: string) =>
      (await registry.getSingleMetric('readygate_policy_invalid_annotations')!.get()).values.find(
        (v) => v.labels['key'] === key,
      )?.value;
    t.is(await gauge('readygate.io/connect-timeout'), 1);
    t.is(await gauge('unknown'), 1);

    const events = await waitUntil(
      async () => {
        const list = await admin.core.listNamespacedEvent({
          namespace: NS,
          fieldSelector: `involvedObject.kind=Service,involvedObject.name=broken,reason=${INVALID_ANNOTATION_REASON}`,
        });
        return list.items.length === 4 ? list.items : undefined;
      },
      { timeoutMs: 10_000, description: 'four InvalidAnnotation Events on the Service' },
    );
    const uid = (await admin.core.readNamespacedService({ namespace: NS, name: 'broken' })).metadata?.uid;
    t.true(events.every((e) => e.involvedObject.uid === uid && e.type === 'Warning'));
    t.true(
      events.some(
        (e) =>
          e.message ===
          'readygate.io/connect-timeout: "banana" is not a duration (a number with ms, s, m or h, for example 250ms or 2s); readygate uses the default',
      ),
    );

    // Fixed: the problems, the gauge and the fallback go; the corrected values reach Envoy.
    await admin.apply(
      annotated('broken', { 'readygate.io/connect-timeout': '2s', 'readygate.io/idle-timeout': '4s' }),
    );
    await envoyCluster(envoy, `${NS}/broken:http`, (c) => c['connect_timeout'] === '2s');
    t.deepEqual(reporter.toJSON(), []);
    t.is(await gauge('readygate.io/connect-timeout'), 0);
    t.is(await gauge('unknown'), 0);
  },
);
