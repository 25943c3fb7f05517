/**
 * The Kubernetes source when the API misbehaves: the apiserver goes away and comes back, history is
 * compacted (410 Gone), watches go quiet (watchdog). The store must keep the last known good state through
 * all of it and only ever receive real differences.
 */
import anyTest, { type TestFn } from 'ava';
import type { KubeConfig } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { EndpointStore, type StoreChange } from '../../src/model/store.js';
import {
  startKubernetesSource,
  type KubernetesSource,
  type KubernetesSourceOptions,
} from '../../src/sources/kubernetes.js';
import {
  KubeObjects,
  TcpProxy,
  endpointSlice,
  kubeConfigVia,
  hostLines,
  service,
  readygateIdentity,
  startKubeCluster,
  waitForStore,
  type KubeCluster,
  type SliceEndpointSpec,
} from '../helpers/kube-cluster.js';

interface Context {
  cluster: KubeCluster;
  admin: KubeObjects;
  readygate: KubeConfig;
}
const test = anyTest as TestFn<Context>;
const sources: KubernetesSource[] = [];

test.before(async (t) => {
  const cluster = await startKubeCluster();
  t.context.cluster = cluster;
  t.context.admin = new KubeObjects(cluster.adminConfig());
  t.context.readygate = await readygateIdentity(cluster, t.context.admin);
});

test.after.always(async (t) => {
  await Promise.all(sources.map((source) => source.close()));
  const cluster = t.context.cluster as KubeCluster | undefined;
  await cluster?.stop();
});

async function run(
  kubeConfig: KubeConfig,
  options: Partial<KubernetesSourceOptions> = {},
): Promise<{ store: EndpointStore; source: KubernetesSource; changes: StoreChange[] }> {
  const store = new EndpointStore();
  const changes: StoreChange[] = [];
  store.on('change', (change) => changes.push(change));
  const source = await startKubernetesSource({ store, kubeConfig, ...options });
  sources.push(source);
  await waitForStore(store, (s) => s.synced, 15_000);
  return { store, source, changes };
}

async function twoEndpointService(
  admin: KubeObjects,
  namespace: string,
  name: string,
  base: string,
  second: SliceEndpointSpec['conditions'] = { ready: true },
): Promise<void> {
  await admin.apply(service({ namespace, name, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }));
  await admin.apply(
    endpointSlice({
      namespace,
      name: `${name}-a`,
      service: name,
      ports: [{ name: 'http', port: 8080 }],
      endpoints: [
        { addresses: [`${base}.1`], conditions: { ready: true } },
        { addresses: [`${base}.2`], conditions: second },
      ],
    }),
  );
}

async function metricValue(
  registry: Registry,
  name: string,
  labels: Record<string, string>,
): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  const values = (metric?.values ?? []) as { labels: Record<string, unknown>; value: number }[];
  return values
    .filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want))
    .reduce((sum, v) => sum + v.value, 0);
}

const sleep = (ms: number) =>
  new Promise((resolve) => {
    setTimeout(resolve, ms);
  });

test.serial(
  'apiserver outage: the store keeps its endpoints throughout; changes after restart arrive within 5 s',
  async (t) => {
    const { admin, cluster, readygate } = t.context;
    const namespace = 'outage';
    await admin.namespace(namespace);
    await twoEndpointService(admin, namespace, 'web', '10.20.0');
    const { store, changes } = await run(readygate, { namespaces: [namespace] });
    const key = `${namespace}/web`;
    const before = ['10.20.0.1:8080 HEALTHY', '10.20.0.2:8080 HEALTHY'];
    t.deepEqual(hostLines(store, key, 'http'), before);
    changes.length = 0;

    // Sample the store all through the outage: it must never lose an endpoint.
    const samples: string[][] = [];
    const sampler = setInterval(() => samples.push(hostLines(store, key, 'http')), 50);
    try {
      await cluster.stopApiserver('SIGKILL');
      await sleep(6_000); // several failed restarts (backoff 250 ms → 3 s)
      t.deepEqual(changes, [], 'nothing may reach the store while the API is down');
      t.true(store.synced);
      await cluster.startApiserver();
      const written = performance.now();
      await twoEndpointService(admin, namespace, 'web', '10.20.0', { ready: false });
      await waitForStore(store, (s) => hostLines(s, key, 'http').length === 1, 5_000);
      const ms = performance.now() - written;
      t.log(`change after restart reached the store in ${ms.toFixed(0)} ms`);
      t.true(ms < 5_000);
    } finally {
      clearInterval(sampler);
    }
    t.true(samples.length > 50);
    const after = ['10.20.0.1:8080 HEALTHY'];
    const unexpected = samples.filter((sample) => ![before, after].some((ok) => ok.join() === sample.join()));
    t.deepEqual(unexpected, [], 'every sample shows the state before or after the change, never less');
    t.deepEqual(hostLines(store, key, 'http'), ['10.20.0.1:8080 HEALTHY']);
    // Exactly one real change: the flip. No empty intermediate state, no churn for the restart.
    t.deepEqual(changes, [{ changed: [key], removed: [] }]);
  },
);

test.serial('410 Gone after compaction: the relist pushes only the real differences', async (t) => {
  const { admin, cluster, readygate } = t.context;
  const namespace = 'gone';
  await admin.namespace(namespace);
  await twoEndpointService(admin, namespace, 'steady', '10.21.0');
  await twoEndpointService(admin, namespace, 'moving', '10.21.1');
  await admin.apply(
    endpointSlice({
      namespace,
      name: 'moving-b',
      service: 'moving',
      ports: [{ name: 'http', port: 8080 }],
      endpoints: [{ addresses: ['10.21.1.3'] }],
    }),
  );
  await admin.apply(
    service({ namespace, name: 'doomed', ports: [{ name: 'http', port: 80, targetPort: 8080 }] }),
  );
  const registry = new Registry();
  const proxy = await TcpProxy.start(Number(new URL(cluster.server).port));
  t.teardown(() => proxy.close());
  const { store, changes } = await run(kubeConfigVia(readygate, proxy.port), {
    namespaces: [namespace],
    registry,
  });
  t.deepEqual(store.services.map((s) => s.name).sort(), ['doomed', 'moving', 'steady']);
  const lists = () =>
    metricValue(registry, 'readygate_kubernetes_lists_total', { resource: 'endpointslices' });
  const listsBefore = await lists();
  const steadyModel = store.get(`${namespace}/steady`);
  changes.length = 0;

  // readygate is cut off while the cluster changes; then the apiserver restarts (its watch cache starts
  // after the changes) and etcd is compacted, so readygate's resourceVersion can no longer be watched from.
  proxy.mode = 'refuse';
  await admin.remove(
    endpointSlice({ namespace, name: 'moving-b', service: 'moving', ports: [], endpoints: [] }),
  );
  await twoEndpointService(admin, namespace, 'moving', '10.21.1', { ready: false });
  await admin.remove(service({ namespace, name: 'doomed', ports: [] }));
  await cluster.stopApiserver('SIGKILL');
  await cluster.startApiserver();
  await cluster.compactEtcd();
  t.deepEqual(changes, [], 'nothing reaches the store while readygate is cut off');
  proxy.mode = 'forward';

  await waitForStore(
    store,
    (s) =>
      hostLines(s, `${namespace}/moving`, 'http').join() === '10.21.1.1:8080 HEALTHY' &&
      !s.get(`${namespace}/doomed`),
    10_000,
  );
  t.true((await lists()) > listsBefore, 'the endpointslice watch had to relist (410 Gone)');
  // Only the Services that really changed were written; the untouched one kept its identity.
  const touched = new Set(changes.flatMap((c) => [...c.changed, ...c.removed]));
  t.deepEqual([...touched].sort(), [`${namespace}/doomed`, `${namespace}/moving`]);
  t.is(store.get(`${namespace}/steady`), steadyModel);
  t.deepEqual(hostLines(store, `${namespace}/moving`, 'http'), ['10.21.1.1:8080 HEALTHY']);
});

test.serial(
  'silent (idle) watches are re-established quietly and push nothing; changes still arrive',
  async (t) => {
    const { admin, readygate } = t.context;
    const namespace = 'quiet';
    await admin.namespace(namespace);
    await twoEndpointService(admin, namespace, 'web', '10.22.0');
    const registry = new Registry();
    const { store, changes } = await run(readygate, {
      namespaces: [namespace],
      registry,
      timeouts: { silenceMs: 800 },
    });
    changes.length = 0;
    const model = store.get(`${namespace}/web`);
    await sleep(3_000);
    const rewatches = await metricValue(registry, 'readygate_kubernetes_watch_restarts_total', {
      reason: 'silent',
    });
    t.true(rewatches >= 4, `expected silent watches re-established, saw ${rewatches}`);
    // Idle is not failing: re-establishing worked every time, so nothing was relisted or reported.
    t.is(await metricValue(registry, 'readygate_kubernetes_relists_total', {}), 0);
    t.is(await metricValue(registry, 'readygate_kubernetes_watch_healthy', { resource: 'services' }), 1);
    t.deepEqual(changes, []);
    t.is(store.get(`${namespace}/web`), model);

    // Still live after all those replacements.
    await twoEndpointService(admin, namespace, 'web', '10.22.0', { ready: false });
    await waitForStore(store, (s) => hostLines(s, `${namespace}/web`, 'http').length === 1, 2_000);
    t.deepEqual(hostLines(store, `${namespace}/web`, 'http'), ['10.22.0.1:8080 HEALTHY']);
  },
);

test.serial(
  'watchdog: a dead TCP stream (no error, no bytes) is recovered; the store keeps its state meanwhile',
  async (t) => {
    const { admin, cluster, readygate } = t.context;
    const namespace = 'blackhole';
    await admin.namespace(namespace);
    await twoEndpointService(admin, namespace, 'web', '10.23.0');
    const proxy = await TcpProxy.start(Number(new URL(cluster.server).port));
    t.teardown(() => proxy.close());
    const { store, changes } = await run(kubeConfigVia(readygate, proxy.port), {
      namespaces: [namespace],
      timeouts: { silenceMs: 1_000, responseMs: 1_000 },
    });
    const key = `${namespace}/web`;
    changes.length = 0;

    proxy.mode = 'blackhole';
    await twoEndpointService(admin, namespace, 'web', '10.23.0', { ready: false });
    await sleep(3_000); // relists vanish into the blackhole; nothing may change meanwhile
    t.deepEqual(changes, []);
    t.deepEqual(hostLines(store, key, 'http'), ['10.23.0.1:8080 HEALTHY', '10.23.0.2:8080 HEALTHY']);

    proxy.mode = 'forward';
    const ms = await waitForStore(store, (s) => hostLines(s, key, 'http').length === 1, 5_000);
    t.log(`recovered ${ms.toFixed(0)} ms after the network came back`);
    t.deepEqual(hostLines(store, key, 'http'), ['10.23.0.1:8080 HEALTHY']);
    t.deepEqual(changes, [{ changed: [key], removed: [] }]);
  },
);
