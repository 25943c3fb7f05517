/**
 * End to end: kube-apiserver → readygate's Kubernetes source (as the RBAC manifest's identity) → xDS →
 * a real Envoy. Asserts on Envoy's own /clusters view and on where Envoy actually sends requests.
 */
import anyTest, { type TestFn } from 'ava';
import type { KubeConfig } from '@kubernetes/client-node';
import { EndpointStore } from '../../src/model/store.js';
import { startKubernetesSource, type KubernetesSource } from '../../src/sources/kubernetes.js';
import { startControlPlane, type ControlPlane } from '../../src/xds/control-plane.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { startEnvoy, waitUntil, type EnvoyProcess } from '../helpers/envoy-process.js';
import { gatewayBootstrap } from '../helpers/gateway-bootstrap.js';
import {
  everyCombination,
  expectedHealth,
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

interface Context {
  cluster: KubeCluster;
  admin: KubeObjects;
  readygate: KubeConfig;
  store: EndpointStore;
  source: KubernetesSource;
  plane: ControlPlane;
  envoy: EnvoyProcess;
  listenerPort: number;
}
const test = anyTest as TestFn<Context>;
const NODE_ID = 'envoy-k8s';

test.before(async (t) => {
  const cluster = await startKubeCluster();
  t.context.cluster = cluster;
  const admin = new KubeObjects(cluster.adminConfig());
  t.context.admin = admin;
  t.context.readygate = await readygateIdentity(cluster, admin);
  await admin.namespace('e2e');

  const store = new EndpointStore();
  t.context.store = store;
  t.context.source = await startKubernetesSource({
    store,
    kubeConfig: t.context.readygate,
    namespaces: ['e2e'],
  });
  await waitForStore(store, (s) => s.synced, 15_000);
  t.context.plane = await startControlPlane({ store, xdsAddress: '127.0.0.1:0' });
  t.context.listenerPort = await freePort();
  t.context.envoy = await startEnvoy({
    bootstrap: gatewayBootstrap({
      xdsPort: t.context.plane.port,
      listenerPort: t.context.listenerPort,
      nodeId: NODE_ID,
      apiType: 'GRPC',
    }),
  });
});

test.after.always(async (t) => {
  const { envoy, plane, source, cluster } = t.context as Partial<Context>;
  await envoy?.stop();
  await plane?.close();
  await source?.close();
  await cluster?.stop();
});

interface HostStatus {
  address: { socket_address: { address: string; port_value: number } };
  health_status?: { eds_health_status?: string };
}

/** `address:port HEALTH` per host of an Envoy cluster, sorted; undefined when Envoy has no such cluster. */
async function envoyHosts(envoy: EnvoyProcess, cluster: string): Promise<string[] | undefined> {
  const json = (await envoy.clusters()) as {
    cluster_statuses?: { name: string; host_statuses?: HostStatus[] }[];
  };
  const status = json.cluster_statuses?.find((c) => c.name === cluster);
  if (!status) return undefined;
  return (status.host_statuses ?? [])
    .map((h) => {
      const { address, port_value: port } = h.address.socket_address;
      return `${address.includes(':') ? `[${address}]` : address}:${port} ${h.health_status?.eds_health_status ?? 'HEALTHY'}`;
    })
    .sort();
}

/** Resolves with how long it took until Envoy shows exactly `expected` for `cluster`. */
async function waitForEnvoy(
  envoy: EnvoyProcess,
  cluster: string,
  expected: readonly string[],
  timeoutMs: number,
): Promise<number> {
  const started = performance.now();
  const want = JSON.stringify([...expected].sort());
  let last = '';
  await waitUntil(
    async () => {
      last = JSON.stringify(await envoyHosts(envoy, cluster));
      return last === want;
    },
    { timeoutMs, intervalMs: 20, description: `Envoy ${cluster} = ${want} (last: ${last})` },
  );
  return performance.now() - started;
}

async function get(listenerPort: number, cluster: string): Promise<{ status: number; body: string }> {
  const response = await fetch(`http://127.0.0.1:${listenerPort}/`, {
    headers: { 'x-cluster': cluster },
    signal: AbortSignal.timeout(5_000),
  });
  return { status: response.status, body: await response.text() };
}

test.serial(
  'every condition combination: Envoy shows exactly the eligible set; each flip lands within 1 s',
  async (t) => {
    const { admin, envoy } = t.context;
    const namespace = 'e2e';
    await admin.apply(
      service({ namespace, name: 'web', ports: [{ name: 'http', port: 80, targetPort: 'http' }] }),
    );
    const combos = everyCombination();
    const endpoints = combos.map((conditions, i) => ({ addresses: [`10.30.0.${i + 1}`], conditions }));
    await admin.apply(
      endpointSlice({
        namespace,
        name: 'web-a',
        service: 'web',
        ports: [{ name: 'http', port: 8080 }],
        endpoints: endpoints.slice(0, 14),
      }),
    );
    await admin.apply(
      endpointSlice({
        namespace,
        name: 'web-b',
        service: 'web',
        ports: [{ name: 'http', port: 8081 }],
        endpoints: endpoints.slice(14),
      }),
    );
    await admin.apply(
      endpointSlice({
        namespace,
        name: 'web-v6',
        service: 'web',
        addressType: 'IPv6',
        ports: [{ name: 'http', port: 8080 }],
        endpoints: [
          { addresses: ['fd00::1'], conditions: { ready: true } },
          { addresses: ['fd00::2'], conditions: { ready: false, serving: true, terminating: true } },
        ],
      }),
    );
    // 10.30.0.2 (ready in web-a) listed again, not ready, in another slice: Envoy must see it once, HEALTHY.
    await admin.apply(
      endpointSlice({
        namespace,
        name: 'web-dup',
        service: 'web',
        ports: [{ name: 'http', port: 8080 }],
        endpoints: [{ addresses: ['10.30.0.2'], conditions: { ready: false } }],
      }),
    );
    const expected = combos.flatMap((conditions, i) => {
      const health = expectedHealth(conditions);
      return health ? [`10.30.0.${i + 1}:${i < 14 ? 8080 : 8081} ${health}`] : [];
    });
    expected.push('[fd00::1]:8080 HEALTHY', '[fd00::2]:8080 DRAINING');
    const cluster = `${namespace}/web:http`;
    await waitForEnvoy(envoy, cluster, expected, 10_000);
    t.deepEqual(await envoyHosts(envoy, cluster), [...expected].sort());

    // Flip one endpoint of web-b through the states; Envoy must follow each within 1 s of the write.
    const flipIndex = 20; // 10.30.0.21, first endpoint of web-b is index 14
    const flips: [NonNullable<SliceEndpointSpec['conditions']>, 'HEALTHY' | 'DRAINING' | undefined][] = [
      [{ ready: true, serving: true, terminating: false }, 'HEALTHY'],
      [{ ready: false, serving: false, terminating: false }, undefined],
      [{ ready: false, serving: true, terminating: true }, 'DRAINING'],
      [{ ready: false, serving: false, terminating: true }, undefined],
      [{}, 'HEALTHY'],
    ];
    for (const [conditions, health] of flips) {
      const next = endpoints.map((e, i) => (i === flipIndex ? { ...e, conditions } : e));
      const want = expected.filter((line) => !line.startsWith(`10.30.0.${flipIndex + 1}:`));
      if (health) want.push(`10.30.0.${flipIndex + 1}:8081 ${health}`);
      const written = performance.now();
      await admin.apply(
        endpointSlice({
          namespace,
          name: 'web-b',
          service: 'web',
          ports: [{ name: 'http', port: 8081 }],
          endpoints: next.slice(14),
        }),
      );
      await waitForEnvoy(envoy, cluster, want, 1_000);
      const ms = performance.now() - written;
      t.log(`${JSON.stringify(conditions)} → ${health ?? 'absent'} in Envoy after ${ms.toFixed(0)} ms`);
      t.true(ms < 1_000);
    }
  },
);

test.serial(
  'all terminating but serving: Envoy keeps them as HEALTHY (fallback); serving=false too: empty cluster, 503',
  async (t) => {
    // The apiserver rejects loopback addresses in EndpointSlices, so these hosts cannot be real local
    // upstreams: Envoy's own health view is the assertion here (its routing on HEALTHY/DRAINING hosts is
    // proven with local upstreams in xds-envoy.test.ts). The 503 needs no upstream: Envoy answers it.
    const { admin, envoy, listenerPort } = t.context;
    const namespace = 'e2e';
    await admin.apply(
      service({ namespace, name: 'drain', ports: [{ name: 'http', port: 80, targetPort: 8080 }] }),
    );
    const slice = (conditions: NonNullable<SliceEndpointSpec['conditions']>) =>
      endpointSlice({
        namespace,
        name: 'drain-a',
        service: 'drain',
        ports: [{ name: 'http', port: 8080 }],
        endpoints: [
          { addresses: ['10.32.0.1'], conditions },
          { addresses: ['10.32.0.2'], conditions },
        ],
      });
    const cluster = `${namespace}/drain:http`;
    const both = ['10.32.0.1:8080 HEALTHY', '10.32.0.2:8080 HEALTHY'];
    await admin.apply(slice({ ready: false, serving: true, terminating: true }));
    // KEP-1669 fallback: nothing is ready, so the serving-terminating hosts are sent HEALTHY, not DRAINING.
    await waitForEnvoy(envoy, cluster, both, 10_000);
    t.deepEqual(await envoyHosts(envoy, cluster), both);

    // One becomes ready: the other is no longer needed as a fallback and drains.
    await admin.apply(
      endpointSlice({
        namespace,
        name: 'drain-a',
        service: 'drain',
        ports: [{ name: 'http', port: 8080 }],
        endpoints: [
          { addresses: ['10.32.0.1'], conditions: { ready: true } },
          { addresses: ['10.32.0.2'], conditions: { ready: false, serving: true, terminating: true } },
        ],
      }),
    );
    await waitForEnvoy(envoy, cluster, ['10.32.0.1:8080 HEALTHY', '10.32.0.2:8080 DRAINING'], 1_000);

    await admin.apply(slice({ ready: false, serving: false, terminating: true }));
    await waitForEnvoy(envoy, cluster, [], 1_000);
    for (let i = 0; i < 3; i++) {
      const response = await get(listenerPort, cluster);
      t.is(response.status, 503);
    }
  },
);

test.serial(
  'apiserver outage: Envoy keeps its endpoints throughout; changes after restart reach it within 5 s',
  async (t) => {
    const { admin, cluster, envoy, plane, store } = t.context;
    const namespace = 'e2e';
    await admin.apply(
      service({ namespace, name: 'steady', ports: [{ name: 'http', port: 80, targetPort: 8080 }] }),
    );
    const slice = (secondReady: boolean) =>
      endpointSlice({
        namespace,
        name: 'steady-a',
        service: 'steady',
        ports: [{ name: 'http', port: 8080 }],
        endpoints: [
          { addresses: ['10.31.0.1'], conditions: { ready: true } },
          { addresses: ['10.31.0.2'], conditions: { ready: secondReady } },
        ],
      });
    await admin.apply(slice(true));
    const name = `${namespace}/steady:http`;
    const both = ['10.31.0.1:8080 HEALTHY', '10.31.0.2:8080 HEALTHY'];
    await waitForEnvoy(envoy, name, both, 10_000);
    const versionBefore = plane.cache.get(TypeUrl.ENDPOINT, name)?.version;

    const samples: (string[] | undefined)[] = [];
    const sampling = { on: true };
    const sampler = (async () => {
      // Bounded: the outage below lasts well under 2 000 polls.
      for (let i = 0; i < 2_000 && sampling.on; i++) {
        samples.push(await envoyHosts(envoy, name));
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    try {
      await cluster.stopApiserver('SIGKILL');
      await new Promise((resolve) => setTimeout(resolve, 6_000));
      t.is(
        plane.cache.get(TypeUrl.ENDPOINT, name)?.version,
        versionBefore,
        'nothing pushed during the outage',
      );
      await cluster.startApiserver();
      const written = performance.now();
      await admin.apply(slice(false));
      await waitForEnvoy(envoy, name, ['10.31.0.1:8080 HEALTHY'], 5_000);
      const ms = performance.now() - written;
      t.log(`change after the restart reached Envoy in ${ms.toFixed(0)} ms`);
      t.true(ms < 5_000);
    } finally {
      sampling.on = false;
      await sampler;
    }
    t.true(samples.length > 50);
    const unexpected = samples.filter(
      (s) =>
        JSON.stringify(s) !== JSON.stringify(both) &&
        JSON.stringify(s) !== JSON.stringify(['10.31.0.1:8080 HEALTHY']),
    );
    t.deepEqual(unexpected, [], 'Envoy never saw fewer endpoints because of the outage');
    t.true(store.synced);
  },
);
