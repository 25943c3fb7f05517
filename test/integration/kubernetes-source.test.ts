/**
 * The Kubernetes source against a real kube-apiserver + etcd (+ the real EndpointSlice controller), run as
 * the least-privilege identity from kind/base/rbac.yaml, asserting on the exact eligible endpoint sets.
 */
import { Writable } from 'node:stream';
import anyTest, { type TestFn } from 'ava';
import { CoreV1Api, type ApiException, type KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { EndpointStore } from '../../src/model/store.js';
import { startKubernetesSource, type KubernetesSource } from '../../src/sources/kubernetes.js';
import {
  everyCombination,
  expectedHealth,
  KubeObjects,
  endpointSlice,
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
  /** CN=readygate, bound to the manifest's ClusterRole by a User subject: no more rights than readygate's. */
  readygate: KubeConfig;
}
const test = anyTest as TestFn<Context>;

const sources: KubernetesSource[] = [];

test.before(async (t) => {
  const cluster = await startKubeCluster({
    controllers: ['endpointslice-controller'],
  });
  t.context.cluster = cluster;
  const admin = new KubeObjects(cluster.adminConfig());
  t.context.admin = admin;
  t.context.readygate = await readygateIdentity(cluster, admin);
});

test.after.always(async (t) => {
  await Promise.all(sources.map((source) => source.close()));
  // before() may have failed before the cluster existed.
  const cluster = t.context.cluster as KubeCluster | undefined;
  await cluster?.stop();
});

async function run(
  kubeConfig: KubeConfig,
  options: { namespaces?: string[]; labelSelector?: string; logger?: pino.Logger } = {},
): Promise<{ store: EndpointStore; source: KubernetesSource }> {
  const store = new EndpointStore();
  const source = await startKubernetesSource({ store, kubeConfig, ...options });
  sources.push(source);
  return { store, source };
}

async function synced(store: EndpointStore): Promise<void> {
  await waitForStore(store, (s) => s.synced, 15_000);
}

test.serial(
  'every condition combination across two slices, an IPv6 slice, a named port and a duplicate address',
  async (t) => {
    const { admin, readygate } = t.context;
    const namespace = 'semantics';
    await admin.namespace(namespace);
    await admin.apply(
      service({
        namespace,
        name: 'web',
        ports: [
          { name: 'http', port: 80, targetPort: 'http' },
          { name: 'metrics', port: 9090, targetPort: 9090 },
        ],
      }),
    );
    const combos = everyCombination();
    const endpoints = combos.map((conditions, i) => ({ addresses: [`10.1.0.${i + 1}`], conditions }));
    // Named target port "http" resolves to 8080 in slice a and 8081 in slice b; only slice a has metrics.
    await admin.apply(
      endpointSlice({
        namespace,
        name: 'web-a',
        service: 'web',
        ports: [
          { name: 'http', port: 8080 },
          { name: 'metrics', port: 9090 },
        ],
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
          { addresses: ['fd00::3'], conditions: { ready: false } },
        ],
      }),
    );
    // 10.1.0.2 is ready/serving/not terminating in slice a; a stale not-ready copy elsewhere must not hide it.
    t.deepEqual(combos[1], { ready: true, serving: true, terminating: false });
    await admin.apply(
      endpointSlice({
        namespace,
        name: 'web-dup',
        service: 'web',
        ports: [{ name: 'http', port: 8080 }],
        endpoints: [{ addresses: ['10.1.0.2'], conditions: { ready: false, serving: false } }],
      }),
    );

    const { store } = await run(readygate, { namespaces: [namespace] });
    await synced(store);

    const expectedHttp: string[] = [];
    const expectedMetrics: string[] = [];
    combos.forEach((conditions, i) => {
      const health = expectedHealth(conditions);
      if (!health) return;
      expectedHttp.push(`10.1.0.${i + 1}:${i < 14 ? 8080 : 8081} ${health}`);
      if (i < 14) expectedMetrics.push(`10.1.0.${i + 1}:9090 ${health}`);
    });
    expectedHttp.push('[fd00::1]:8080 HEALTHY', '[fd00::2]:8080 DRAINING');
    t.deepEqual(hostLines(store, `${namespace}/web`, 'http'), expectedHttp.sort());
    t.deepEqual(hostLines(store, `${namespace}/web`, 'metrics'), expectedMetrics.sort());
    // 27 combinations: 12 ready-not-terminating (HEALTHY), 5 terminating-serving (DRAINING), 10 excluded.
    t.is(expectedHttp.filter((l) => l.startsWith('10.') && l.endsWith('HEALTHY')).length, 12);
    t.is(expectedHttp.filter((l) => l.startsWith('10.') && l.endsWith('DRAINING')).length, 5);

    // Conditions arrive exactly as written: nil stays nil (absent), never defaulted by the source.
    const model = store.get(`${namespace}/web`);
    const fromSliceA = model?.endpoints.filter(
      (e) => e.ports?.['http'] === 8080 && e.addresses[0]?.startsWith('10.1.0.'),
    );
    t.deepEqual(
      fromSliceA?.slice(0, 14).map((e) => e.conditions),
      combos.slice(0, 14),
    );
  },
);

test.serial('each condition flip reaches the store within 1 s', async (t) => {
  const { admin, readygate } = t.context;
  const namespace = 'flips';
  await admin.namespace(namespace);
  await admin.apply(
    service({ namespace, name: 'flip', ports: [{ name: 'http', port: 80, targetPort: 8080 }] }),
  );
  const slice = (conditions: SliceEndpointSpec['conditions']) =>
    endpointSlice({
      namespace,
      name: 'flip-a',
      service: 'flip',
      ports: [{ name: 'http', port: 8080 }],
      endpoints: [
        { addresses: ['10.2.0.1'], conditions: { ready: true } },
        { addresses: ['10.2.0.2'], ...(conditions ? { conditions } : {}) },
      ],
    });
  await admin.apply(slice({ ready: true }));
  const { store } = await run(readygate, { namespaces: [namespace] });
  await synced(store);
  const key = `${namespace}/flip`;
  t.deepEqual(hostLines(store, key, 'http'), ['10.2.0.1:8080 HEALTHY', '10.2.0.2:8080 HEALTHY']);

  const flips: [SliceEndpointSpec['conditions'], string[]][] = [
    [{ ready: false }, ['10.2.0.1:8080 HEALTHY']],
    [{ ready: false, serving: true, terminating: true }, ['10.2.0.1:8080 HEALTHY', '10.2.0.2:8080 DRAINING']],
    [{ ready: false, serving: false, terminating: true }, ['10.2.0.1:8080 HEALTHY']],
    [undefined, ['10.2.0.1:8080 HEALTHY', '10.2.0.2:8080 HEALTHY']],
    [{ ready: true, serving: true, terminating: true }, ['10.2.0.1:8080 HEALTHY', '10.2.0.2:8080 DRAINING']],
    [{ ready: true }, ['10.2.0.1:8080 HEALTHY', '10.2.0.2:8080 HEALTHY']],
  ];
  for (const [conditions, expected] of flips) {
    const written = performance.now();
    await admin.apply(slice(conditions));
    await waitForStore(
      store,
      (s) => JSON.stringify(hostLines(s, key, 'http')) === JSON.stringify(expected),
      1_000,
    );
    // From before the write to the store showing it: includes the apiserver round trip.
    const ms = performance.now() - written;
    t.log(`${JSON.stringify(conditions ?? null)} → ${expected.join(', ')} in ${ms.toFixed(0)} ms`);
    t.deepEqual(hostLines(store, key, 'http'), expected);
    t.true(ms < 1_000, `flip took ${ms} ms`);
  }
});

test.serial('topology hints: hints.forZones reaches the model as the apiserver stores it', async (t) => {
  const { admin, readygate } = t.context;
  const namespace = 'hints';
  await admin.namespace(namespace);
  await admin.apply(service({ namespace, name: 'zoned', ports: [{ port: 80, targetPort: 8080 }] }));
  // Shaped as the EndpointSlice controller writes hints (Topology Aware Routing); SliceEndpointSpec has
  // no hints field, so these go through as plain objects.
  const hinted = { addresses: ['10.6.0.1'], zone: 'zone-a', hints: { forZones: [{ name: 'zone-a' }] } };
  const crossHinted = { addresses: ['10.6.0.2'], zone: 'zone-a', hints: { forZones: [{ name: 'zone-b' }] } };
  await admin.apply(
    endpointSlice({
      namespace,
      name: 'zoned-a',
      service: 'zoned',
      ports: [{ port: 8080 }],
      endpoints: [hinted, crossHinted],
    }),
  );
  const { store } = await run(readygate, { namespaces: [namespace] });
  await synced(store);
  await waitForStore(store, (s) => (s.get(`${namespace}/zoned`)?.endpoints.length ?? 0) === 2, 10_000);
  t.deepEqual(
    store.get(`${namespace}/zoned`)?.endpoints.map((e) => [e.addresses[0], e.zone, e.forZones]),
    [
      ['10.6.0.1', 'zone-a', ['zone-a']],
      ['10.6.0.2', 'zone-a', ['zone-b']],
    ],
  );
});

test.serial('all terminating but serving → fallback hosts; serving=false too → empty cluster', async (t) => {
  const { admin, readygate } = t.context;
  const namespace = 'fallback';
  await admin.namespace(namespace);
  await admin.apply(service({ namespace, name: 'drain', ports: [{ port: 80, targetPort: 8080 }] }));
  const slice = (serving: boolean) =>
    endpointSlice({
      namespace,
      name: 'drain-a',
      service: 'drain',
      ports: [{ port: 8080 }],
      endpoints: [
        { addresses: ['10.4.0.1'], conditions: { ready: false, serving, terminating: true } },
        { addresses: ['10.4.0.2'], conditions: { ready: false, serving, terminating: true } },
      ],
    });
  await admin.apply(slice(true));
  const { store } = await run(readygate, { namespaces: [namespace] });
  await synced(store);
  const key = `${namespace}/drain`;
  // Unnamed Service port: the cluster key is the port number.
  t.deepEqual(hostLines(store, key, '80'), ['10.4.0.1:8080 HEALTHY', '10.4.0.2:8080 HEALTHY']);
  await admin.apply(slice(false));
  await waitForStore(store, (s) => hostLines(s, key, '80').length === 0, 1_000);
  // The Service (and so its cluster) stays, with nothing in it.
  t.deepEqual(
    store.get(key)?.ports.map((p) => p.key),
    ['80'],
  );
  t.deepEqual(hostLines(store, key, '80'), []);
});

test.serial(
  'Pods through the real EndpointSlice controller: readiness and publishNotReadyAddresses',
  async (t) => {
    const { admin, readygate } = t.context;
    const namespace = 'pods';
    await admin.namespace(namespace);
    // The controller skips pods whose Node does not exist.
    await admin.apply({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'node-1', labels: { 'topology.kubernetes.io/zone': 'zone-a' } },
    });
    await admin.apply(
      service({
        namespace,
        name: 'app',
        selector: { app: 'app' },
        ports: [{ name: 'http', port: 80, targetPort: 'web' }],
      }),
    );
    await admin.apply(
      service({
        namespace,
        name: 'app-all',
        selector: { app: 'app' },
        publishNotReadyAddresses: true,
        ports: [{ name: 'http', port: 80, targetPort: 'web' }],
      }),
    );
    await admin.apply({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { namespace, name: 'app-1', labels: { app: 'app' } },
      spec: {
        nodeName: 'node-1',
        containers: [
          { name: 'app', image: 'example.invalid/app:1', ports: [{ name: 'web', containerPort: 8080 }] },
        ],
      },
    });
    await admin.setPodStatus(namespace, 'app-1', { podIP: '10.5.0.1', ready: true });

    const { store } = await run(readygate, { namespaces: [namespace] });
    await synced(store);
    await waitForStore(store, (s) => hostLines(s, `${namespace}/app`, 'http').length === 1, 10_000);
    t.deepEqual(hostLines(store, `${namespace}/app`, 'http'), ['10.5.0.1:8080 HEALTHY']);
    const endpoint = store.get(`${namespace}/app`)?.endpoints[0];
    t.is(endpoint?.targetRef?.name, 'app-1');
    t.is(endpoint?.nodeName, 'node-1');
    t.is(endpoint?.zone, 'zone-a');

    await admin.setPodStatus(namespace, 'app-1', { podIP: '10.5.0.1', ready: false });
    await waitForStore(store, (s) => hostLines(s, `${namespace}/app`, 'http').length === 0, 10_000);
    // publishNotReadyAddresses: the controller keeps ready=true, so the endpoint stays eligible.
    await waitForStore(
      store,
      (s) => s.get(`${namespace}/app-all`)?.endpoints[0]?.conditions.serving === false,
      10_000,
    );
    t.deepEqual(hostLines(store, `${namespace}/app-all`, 'http'), ['10.5.0.1:8080 HEALTHY']);
    t.deepEqual(hostLines(store, `${namespace}/app`, 'http'), []);
  },
);

test.serial(
  'headless Services are served; ExternalName Services are skipped with one log line',
  async (t) => {
    const { admin, readygate } = t.context;
    const namespace = 'kinds';
    await admin.namespace(namespace);
    await admin.apply(
      service({
        namespace,
        name: 'headless',
        clusterIP: 'None',
        ports: [{ name: 'http', port: 80, targetPort: 8080 }],
      }),
    );
    await admin.apply(
      endpointSlice({
        namespace,
        name: 'headless-a',
        service: 'headless',
        ports: [{ name: 'http', port: 8080 }],
        endpoints: [{ addresses: ['10.6.0.1'] }],
      }),
    );
    await admin.apply(
      service({ namespace, name: 'external', type: 'ExternalName', externalName: 'example.com', ports: [] }),
    );
    const lines: string[] = [];
    const logger = pino(
      { level: 'info' },
      new Writable({
        write(chunk: Buffer, _encoding, callback) {
          lines.push(chunk.toString());
          callback();
        },
      }),
    );
    const { store } = await run(readygate, { namespaces: [namespace], logger });
    await synced(store);
    t.deepEqual(hostLines(store, `${namespace}/headless`, 'http'), ['10.6.0.1:8080 HEALTHY']);
    t.is(store.get(`${namespace}/external`), undefined);
    // A relabel of the ExternalName Service rebuilds it; the skip is still logged once.
    await admin.apply(
      service({
        namespace,
        name: 'external',
        type: 'ExternalName',
        externalName: 'example.com',
        ports: [],
        labels: { touched: 'yes' },
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    const skips = lines.filter((l) => l.includes('ExternalName'));
    t.is(skips.length, 1);
    t.regex(skips[0] ?? '', /kinds\/external/);
  },
);

test.serial('namespace and label-selector scoping exclude other Services (and their slices)', async (t) => {
  const { admin, readygate } = t.context;
  for (const namespace of ['scope-a', 'scope-b']) {
    await admin.namespace(namespace);
    for (const [name, labels] of [
      ['front', { tier: 'front' }],
      ['back', { tier: 'back' }],
    ] as const) {
      await admin.apply(
        service({ namespace, name, labels, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }),
      );
      await admin.apply(
        endpointSlice({
          namespace,
          name: `${name}-a`,
          service: name,
          // Slices carry the Service's labels too, as the controller mirrors them; scoping must not rely on it.
          ports: [{ name: 'http', port: 8080 }],
          endpoints: [{ addresses: [namespace === 'scope-a' ? '10.7.0.1' : '10.7.1.1'] }],
        }),
      );
    }
  }
  const { store } = await run(readygate, { namespaces: ['scope-a'], labelSelector: 'tier=front' });
  await synced(store);
  t.deepEqual(
    store.services.map((s) => `${s.namespace}/${s.name}`),
    ['scope-a/front'],
  );
  t.deepEqual(hostLines(store, 'scope-a/front', 'http'), ['10.7.0.1:8080 HEALTHY']);

  // A Service that stops matching the selector leaves; one that starts matching arrives with its slices.
  await admin.apply(
    service({
      namespace: 'scope-a',
      name: 'front',
      labels: { tier: 'other' },
      ports: [{ name: 'http', port: 80, targetPort: 8080 }],
    }),
  );
  await admin.apply(
    service({
      namespace: 'scope-a',
      name: 'back',
      labels: { tier: 'front' },
      ports: [{ name: 'http', port: 80, targetPort: 8080 }],
    }),
  );
  await waitForStore(store, (s) => s.services.map((m) => m.name).join() === 'back', 2_000);
  t.deepEqual(hostLines(store, 'scope-a/back', 'http'), ['10.7.0.1:8080 HEALTHY']);

  // Cluster-wide with the selector: both namespaces' matching Services, nothing else.
  const wide = await run(readygate, { labelSelector: 'tier=front' });
  await synced(wide.store);
  t.deepEqual(wide.store.services.map((s) => `${s.namespace}/${s.name}`).sort(), [
    'scope-a/back',
    'scope-b/front',
  ]);
});

test.serial('runs under the RBAC manifest ServiceAccount; a forbidden action fails cleanly', async (t) => {
  const { admin, cluster } = t.context;
  const namespace = 'rbac';
  await admin.namespace(namespace);
  await admin.apply(
    service({ namespace, name: 'svc', ports: [{ name: 'http', port: 80, targetPort: 8080 }] }),
  );
  await admin.apply(
    endpointSlice({
      namespace,
      name: 'svc-a',
      service: 'svc',
      ports: [{ name: 'http', port: 8080 }],
      endpoints: [{ addresses: ['10.8.0.1'] }],
    }),
  );
  const token = await admin.serviceAccountToken('readygate', 'readygate');
  const asServiceAccount = cluster.tokenKubeConfig('readygate-sa', token);

  const { store } = await run(asServiceAccount, { namespaces: [namespace] });
  await synced(store);
  t.deepEqual(hostLines(store, `${namespace}/svc`, 'http'), ['10.8.0.1:8080 HEALTHY']);

  const core = asServiceAccount.makeApiClient(CoreV1Api);
  const error = await t.throwsAsync<ApiException<string>>(core.listNamespacedSecret({ namespace }));
  t.is(error.code, 403);
  const status = JSON.parse(error.body) as { reason?: string; message?: string };
  t.is(status.reason, 'Forbidden');
  t.regex(
    status.message ?? '',
    /secrets is forbidden: User "system:serviceaccount:readygate:readygate" cannot list resource "secrets"/,
  );
});

test.serial('without RBAC the source reports the refusal, stays unsynced and does not crash', async (t) => {
  const { cluster } = t.context;
  const nobody = (await cluster.userKubeconfig('nobody')).kubeConfig;
  const lines: string[] = [];
  const logger = pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        lines.push(chunk.toString());
        callback();
      },
    }),
  );
  const { store, source } = await run(nobody, { namespaces: ['rbac'], logger });
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline && !lines.some((l) => l.includes('"status":403'))) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const refusal = lines.find((l) => l.includes('"status":403'));
  t.truthy(refusal);
  t.regex(refusal ?? '', /refused to list\/watch/);
  t.regex(refusal ?? '', /RBAC/);
  t.false(source.synced);
  t.false(store.synced);
  t.is(store.size, 0);
});

test.serial(
  'a slice moving to another Service, a deleted slice and a deleted Service are followed live',
  async (t) => {
    const { admin, readygate } = t.context;
    const namespace = 'moves';
    await admin.namespace(namespace);
    for (const name of ['one', 'two']) {
      await admin.apply(service({ namespace, name, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }));
    }
    const slice = (owner: string) =>
      endpointSlice({
        namespace,
        name: 'wanderer',
        service: owner,
        ports: [{ name: 'http', port: 8080 }],
        endpoints: [{ addresses: ['10.9.0.1'] }],
      });
    await admin.apply(slice('one'));
    const { store } = await run(readygate, { namespaces: [namespace] });
    await synced(store);
    t.deepEqual(hostLines(store, `${namespace}/one`, 'http'), ['10.9.0.1:8080 HEALTHY']);
    t.deepEqual(hostLines(store, `${namespace}/two`, 'http'), []);

    await admin.apply(slice('two'));
    await waitForStore(store, (s) => hostLines(s, `${namespace}/two`, 'http').length === 1, 1_000);
    t.deepEqual(hostLines(store, `${namespace}/one`, 'http'), []);

    await admin.remove(slice('two'));
    await waitForStore(store, (s) => hostLines(s, `${namespace}/two`, 'http').length === 0, 1_000);
    t.truthy(store.get(`${namespace}/two`), 'the Service stays, with no endpoints');

    await admin.remove(service({ namespace, name: 'two', ports: [] }));
    await waitForStore(store, (s) => s.get(`${namespace}/two`) === undefined, 1_000);
    t.deepEqual(
      store.services.map((s) => s.name),
      ['one'],
    );
  },
);
