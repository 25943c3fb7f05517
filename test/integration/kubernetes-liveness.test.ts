/**
 * Issue 15 end to end: `readygate serve` against the real kube-apiserver when the API misbehaves.
 *
 * - restarted during an API outage, serve holds its xDS answers, so a real Envoy keeps every cluster;
 *   changes flow once the API is back;
 * - RBAC that grants list but not watch: /readyz 503 naming the watch at once, healthy again (without a
 *   restart) once watch is granted;
 * - a blackholed connection: the silent watch is noticed within --kubernetes-watch-silence and relisted
 *   once the network returns;
 * - an API that accepts connections and never answers: a warning within 10 s naming the server;
 * - SIGTERM while the API hangs: the process exits within the documented bound.
 */
import { spawn } from 'node:child_process';
import { setTimeout as delay } from 'node:timers/promises';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import anyTest, { type TestFn } from 'ava';
import type { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { main } from '../../src/cli/main.js';
import type { Logger } from '../../src/log.js';
import { EndpointStore } from '../../src/model/store.js';
import { startKubernetesSource, watchReadiness } from '../../src/sources/kubernetes.js';
import { startEnvoy, waitUntil, type EnvoyProcess } from '../helpers/envoy-process.js';
import { gatewayBootstrap } from '../helpers/gateway-bootstrap.js';
import {
  KubeObjects,
  TcpProxy,
  endpointSlice,
  kubeConfigVia,
  readygateIdentity,
  service,
  startKubeCluster,
  type KubeCluster,
} from '../helpers/kube-cluster.js';
import { freePort } from '../helpers/ports.js';

interface Context {
  cluster: KubeCluster;
  admin: KubeObjects;
  readygate: KubeConfig;
  readygatePath: string;
}
const test = anyTest as TestFn<Context>;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

test.before(async (t) => {
  const cluster = await startKubeCluster();
  t.context.cluster = cluster;
  t.context.admin = new KubeObjects(cluster.adminConfig());
  t.context.readygate = await readygateIdentity(cluster, t.context.admin);
  t.context.readygatePath = writeKubeconfig(cluster, 'readygate-liveness', t.context.readygate);
});

test.after.always(async (t) => {
  const cluster = t.context.cluster as KubeCluster | undefined;
  await cluster?.stop();
});

function writeKubeconfig(cluster: KubeCluster, name: string, kubeConfig: KubeConfig): string {
  const file = path.join(cluster.dir, `${name}.kubeconfig`);
  writeFileSync(file, kubeConfig.exportConfig());
  return file;
}

/** Log lines (JSON) of an in-process component. */
function capturedLogger(): { logger: Logger; lines: string[] } {
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
  return { logger, lines };
}

interface Serving {
  readonly admin: string;
  readonly lines: string[];
  stop(): Promise<number>;
}

/** `readygate serve --source kubernetes` in-process, on the given xDS port and a fresh admin port. */
async function serve(
  t: { teardown(fn: () => Promise<void>): void },
  args: readonly string[],
): Promise<Serving> {
  const adminPort = await freePort();
  const stop = new AbortController();
  const { logger, lines } = capturedLogger();
  const running = main(
    ['serve', '--source', 'kubernetes', '--admin-address', `127.0.0.1:${adminPort}`, ...args],
    {
      stdout: { write: () => true },
      stderr: { write: (text: string) => lines.push(text) },
      env: {},
      signal: stop.signal,
      logger,
    },
  );
  let stopped: Promise<number> | undefined;
  const stopServe = (): Promise<number> => {
    stop.abort();
    stopped ??= running;
    return stopped;
  };
  t.teardown(async () => {
    await stopServe();
  });
  const admin = `http://127.0.0.1:${adminPort}`;
  await waitUntil(async () => (await fetch(`${admin}/healthz`, { signal: AbortSignal.timeout(2_000) })).ok, {
    timeoutMs: 15_000,
    description: 'serve admin up',
  });
  return { admin, lines, stop: stopServe };
}

async function readyz(admin: string): Promise<{ status: number; body: string }> {
  const response = await fetch(`${admin}/readyz`, { signal: AbortSignal.timeout(2_000) });
  return { status: response.status, body: await response.text() };
}

/** One sample of a Prometheus gauge/counter from /metrics, by exact label set text. */
async function metricSample(admin: string, name: string, labels: string): Promise<number | undefined> {
  const text = await (await fetch(`${admin}/metrics`, { signal: AbortSignal.timeout(2_000) })).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function hosts(admin: string, cluster: string): Promise<string[] | undefined> {
  const response = await fetch(`${admin}/debug/endpoints`, { signal: AbortSignal.timeout(2_000) });
  const body = (await response.json()) as { cluster: string; hosts: { address: string; health: string }[] }[];
  return body
    .find((c) => c.cluster === cluster)
    ?.hosts.map((h) => `${h.address} ${h.health}`)
    .sort();
}

async function webService(admin: KubeObjects, namespace: string, name: string, addresses: string[]) {
  await admin.apply(service({ namespace, name, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }));
  await admin.apply(
    endpointSlice({
      namespace,
      name: `${name}-a`,
      service: name,
      ports: [{ name: 'http', port: 8080 }],
      endpoints: addresses.map((address) => ({ addresses: [address], conditions: { ready: true } })),
    }),
  );
}

interface HostStatus {
  address: { socket_address: { address: string; port_value: number } };
}

/** Envoy's clusters named `<namespace>/…` → their host addresses, sorted. */
async function envoyClusters(envoy: EnvoyProcess, namespace: string): Promise<Record<string, string[]>> {
  const json = (await envoy.clusters()) as {
    cluster_statuses?: { name: string; host_statuses?: HostStatus[] }[];
  };
  const result: Record<string, string[]> = {};
  for (const status of json.cluster_statuses ?? []) {
    if (!status.name.startsWith(`${namespace}/`)) continue;
    result[status.name] = (status.host_statuses ?? [])
      .map((h) => `${h.address.socket_address.address}:${h.address.socket_address.port_value}`)
      .sort();
  }
  // Sorted by name, so results compare as JSON whatever order Envoy lists its clusters in.
  return Object.fromEntries(Object.entries(result).sort(([a], [b]) => a.localeCompare(b)));
}

const sleep = (ms: number) =>
  new Promise((resolve) => {
    setTimeout(resolve, ms);
  });

test.serial(
  'restarted during an API outage, serve answers no xDS: Envoy keeps every cluster; changes flow once the API is back',
  async (t) => {
    const { admin, cluster, readygatePath } = t.context;
    const namespace = 'outage';
    await admin.namespace(namespace);
    for (const [index, name] of ['a', 'b', 'c'].entries()) {
      await webService(admin, namespace, name, [`10.41.${index}.1`, `10.41.${index}.2`]);
    }
    const expected = {
      'outage/a:http': ['10.41.0.1:8080', '10.41.0.2:8080'],
      'outage/b:http': ['10.41.1.1:8080', '10.41.1.2:8080'],
      'outage/c:http': ['10.41.2.1:8080', '10.41.2.2:8080'],
    };
    const xdsPort = await freePort();
    const args = [
      '--kubeconfig',
      readygatePath,
      '--namespace',
      namespace,
      '--xds-address',
      `127.0.0.1:${xdsPort}`,
    ];
    const first = await serve(t, args);
    await waitUntil(async () => (await readyz(first.admin)).status === 200, {
      timeoutMs: 15_000,
      description: 'first serve ready',
    });
    const envoy = await startEnvoy({
      bootstrap: gatewayBootstrap({
        xdsPort,
        listenerPort: await freePort(),
        nodeId: 'envoy-outage',
        apiType: 'GRPC',
      }),
    });
    t.teardown(() => envoy.stop());
    let seen = '';
    await waitUntil(
      async () => {
        seen = JSON.stringify(await envoyClusters(envoy, namespace));
        return seen === JSON.stringify(expected);
      },
      { timeoutMs: 20_000, description: 'Envoy has the three clusters' },
    ).catch((error: unknown) => {
      throw new Error(`${String(error)}; Envoy had ${seen}`);
    });

    // The outage, then the restart of readygate while it lasts.
    await cluster.stopApiserver();
    t.is(await first.stop(), 0);
    const second = await serve(t, args);
    // Envoy reconnects to the new readygate, which holds the stream: no answer, so nothing is dropped.
    await waitUntil(async () => (await envoy.stat('control_plane.connected_state')) === 1, {
      timeoutMs: 30_000,
      intervalMs: 100,
      description: 'Envoy connected to the restarted readygate',
    });
    const reconnectedAt = Date.now();
    let samples = 0;
    while (Date.now() - reconnectedAt < 5_000 && samples < 100) {
      t.deepEqual(await envoyClusters(envoy, namespace), expected);
      samples += 1;
      await sleep(250);
    }
    t.true(samples >= 5, `sampled Envoy ${samples} times`);
    t.is(await envoy.stat('control_plane.connected_state'), 1);
    const waiting = await readyz(second.admin);
    t.is(waiting.status, 503);
    t.regex(waiting.body, /waiting for the first complete view from the source; xDS requests are held/);
    t.regex(waiting.body, /services in outage watch failing since .*refused|ECONNREFUSED/);

    // API back: the held stream is answered with the synced state, and changes flow again.
    await cluster.startApiserver();
    await waitUntil(async () => (await readyz(second.admin)).status === 200, {
      timeoutMs: 30_000,
      description: 'restarted serve ready',
    });
    t.deepEqual(await envoyClusters(envoy, namespace), expected);
    await webService(admin, namespace, 'a', ['10.41.0.1', '10.41.0.2', '10.41.0.3']);
    const started = Date.now();
    await waitUntil(
      async () =>
        JSON.stringify((await envoyClusters(envoy, namespace))['outage/a:http']) ===
        JSON.stringify(['10.41.0.1:8080', '10.41.0.2:8080', '10.41.0.3:8080']),
      { timeoutMs: 15_000, description: 'the change after the outage reaches Envoy' },
    );
    t.log(
      `Envoy kept 3 clusters for 5 s while held; change after the outage reached Envoy in ${Date.now() - started} ms`,
    );
  },
);

test.serial(
  'list without watch (RBAC): /readyz 503 naming the watch at once; once watch is granted it recovers without a restart',
  async (t) => {
    const { admin, cluster } = t.context;
    const namespace = 'rbac-watch';
    await admin.namespace(namespace);
    await webService(admin, namespace, 'web', ['10.42.0.1']);
    const rules = (sliceVerbs: string[]) => [
      { apiGroups: [''], resources: ['services'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: sliceVerbs },
    ];
    const role = (sliceVerbs: string[]) => ({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'readygate-list-only' },
      rules: rules(sliceVerbs),
    });
    await admin.apply(role(['get', 'list']));
    await admin.apply({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'readygate-list-only' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'readygate-list-only' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'list-only' }],
    });
    const user = await cluster.userKubeconfig('list-only');
    const started = Date.now();
    const serving = await serve(t, [
      '--kubeconfig',
      user.path,
      '--namespace',
      namespace,
      '--xds-address',
      `127.0.0.1:${await freePort()}`,
    ]);
    const stale = await waitUntil(
      async () => {
        const r = await readyz(serving.admin);
        return r.status === 503 && r.body.includes('stale:') ? r : undefined;
      },
      { timeoutMs: 10_000, description: '/readyz 503 stale' },
    );
    const staleAfter = Date.now() - started;
    t.log(`/readyz 503 ${staleAfter} ms after serve started: ${stale.body.trim()}`);
    t.true(staleAfter < 10_000);
    t.regex(
      stale.body,
      /^not ready: stale: endpointslices in rbac-watch watch failing since \d{4}-\d\d-\d\dT[\d:.]+Z \(HTTP 403: .*cannot watch resource "endpointslices"/,
    );
    t.notRegex(stale.body, /services in rbac-watch/);
    t.is(
      await metricSample(
        serving.admin,
        'readygate_kubernetes_watch_healthy',
        'resource="endpointslices",namespace="rbac-watch"',
      ),
      0,
    );
    // The services watch is allowed: healthy once it has stayed open a second (it proves itself).
    await waitUntil(
      async () =>
        (await metricSample(
          serving.admin,
          'readygate_kubernetes_watch_healthy',
          'resource="services",namespace="rbac-watch"',
        )) === 1,
      { timeoutMs: 5_000, description: 'services watch healthy' },
    );
    const warning = serving.lines.find((l) => l.includes('"level":40') && l.includes('endpointslices watch'));
    t.truthy(warning, 'one warn line about the endpointslices watch');
    t.true(warning?.includes(cluster.server));
    t.true(warning?.includes('"status":403'));
    // Still served from the lists meanwhile.
    t.deepEqual(await hosts(serving.admin, 'rbac-watch/web:http'), ['10.42.0.1:8080 HEALTHY']);

    await admin.apply(role(['get', 'list', 'watch']));
    const grantedAt = Date.now();
    await waitUntil(async () => (await readyz(serving.admin)).status === 200, {
      timeoutMs: 20_000,
      description: '/readyz 200 after the grant',
    });
    t.log(`ready ${Date.now() - grantedAt} ms after watch was granted`);
    t.is(
      await metricSample(
        serving.admin,
        'readygate_kubernetes_watch_healthy',
        'resource="endpointslices",namespace="rbac-watch"',
      ),
      1,
    );
    await webService(admin, namespace, 'web', ['10.42.0.1', '10.42.0.2']);
    const changedAt = Date.now();
    await waitUntil(
      async () =>
        JSON.stringify(await hosts(serving.admin, 'rbac-watch/web:http')) ===
        JSON.stringify(['10.42.0.1:8080 HEALTHY', '10.42.0.2:8080 HEALTHY']),
      { timeoutMs: 5_000, description: 'the change arrives through the watch' },
    );
    t.log(`change applied ${Date.now() - changedAt} ms after it was made`);
  },
);

test.serial(
  'a blackholed watch is failing within --kubernetes-watch-silence (503, warning) and relisted once the network returns',
  async (t) => {
    const { admin, cluster, readygate } = t.context;
    const namespace = 'blackholed';
    await admin.namespace(namespace);
    await webService(admin, namespace, 'web', ['10.43.0.1']);
    const proxy = await TcpProxy.start(Number(new URL(cluster.server).port));
    t.teardown(() => proxy.close());
    const viaProxy = writeKubeconfig(cluster, 'via-proxy', kubeConfigVia(readygate, proxy.port));
    const silenceMs = 3_000;
    const serving = await serve(t, [
      '--kubeconfig',
      viaProxy,
      '--namespace',
      namespace,
      '--xds-address',
      `127.0.0.1:${await freePort()}`,
      '--kubernetes-watch-silence',
      `${silenceMs}ms`,
      '--kubernetes-request-timeout',
      '1s',
    ]);
    await waitUntil(async () => (await readyz(serving.admin)).status === 200, {
      timeoutMs: 15_000,
      description: 'serve ready',
    });
    // Idle is not dead: silent watches are re-established quietly, /readyz stays 200 past the bound.
    for (let i = 0; i < 10; i++) {
      t.is((await readyz(serving.admin)).status, 200);
      await sleep(500);
    }

    const blackholedAt = Date.now();
    proxy.mode = 'blackhole';
    const stale = await waitUntil(
      async () => {
        const r = await readyz(serving.admin);
        return r.status === 503 ? r : undefined;
      },
      { timeoutMs: silenceMs + 10_000, intervalMs: 100, description: '/readyz 503 after the blackhole' },
    );
    const detectedMs = Date.now() - blackholedAt;
    t.log(
      `blackholed watch reported ${detectedMs} ms after the blackhole (bound ${silenceMs} ms): ${stale.body.trim()}`,
    );
    // Bound: the silence window, then the re-established watch's response deadline (1 s).
    t.true(detectedMs <= silenceMs + 1_000 + 2_000, `detected after ${detectedMs} ms`);
    t.regex(
      stale.body,
      /stale: .*watch failing since .*no response within 1 s \(re-establishing a watch silent for 3 s\)/,
    );
    t.true(
      serving.lines.some(
        (l) =>
          l.includes('"level":40') &&
          l.includes('re-establishing a watch silent for 3 s') &&
          l.includes(`127.0.0.1:${proxy.port}`),
      ),
      'a warn line names the reason and the API server',
    );
    t.deepEqual(await hosts(serving.admin, 'blackholed/web:http'), ['10.43.0.1:8080 HEALTHY']);

    proxy.mode = 'forward';
    const forwardedAt = Date.now();
    await waitUntil(async () => (await readyz(serving.admin)).status === 200, {
      timeoutMs: 15_000,
      description: '/readyz 200 after the network returns',
    });
    t.log(`relisted and ready ${Date.now() - forwardedAt} ms after the network returned`);
    await webService(admin, namespace, 'web', ['10.43.0.1', '10.43.0.2']);
    await waitUntil(async () => (await hosts(serving.admin, 'blackholed/web:http'))?.length === 2, {
      timeoutMs: 5_000,
      description: 'a change after recovery',
    });
    t.pass();
  },
);

/** A TCP server that accepts connections and never sends a byte: an API server that hangs. */
async function silentServer(t: { teardown(fn: () => Promise<void>): void }): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => {
    server.listen({ host: '127.0.0.1', port: 0 }, resolve);
  });
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => {
      server.close(resolve);
    });
  });
  return (server.address() as net.AddressInfo).port;
}

test.serial('an API that accepts and never answers: a warning naming the server within 10 s', async (t) => {
  const port = await silentServer(t);
  const { logger, lines } = capturedLogger();
  const store = new EndpointStore();
  const started = Date.now();
  const source = await startKubernetesSource({
    store,
    kubeConfig: kubeConfigVia(t.context.readygate, port),
    namespaces: ['hung'],
    logger,
  });
  t.teardown(() => source.close());
  const warning = await waitUntil(() => lines.find((l) => l.includes('"level":40')), {
    timeoutMs: 12_000,
    intervalMs: 50,
    description: 'a warning',
  });
  const after = Date.now() - started;
  t.log(`first warning after ${after} ms: ${(JSON.parse(warning) as { msg: string }).msg}`);
  t.true(after < 10_000, `first warning after ${after} ms`);
  t.true(warning.includes(`https://127.0.0.1:${port}`));
  t.regex(
    warning,
    /(services|endpointslices) watch \(namespace hung\) failing against the Kubernetes API at/,
  );
  t.regex(warning, /no response within 8 s/);
  t.false(store.synced);
  const readiness = watchReadiness(source.health());
  t.false(readiness.ready);
  t.regex(readiness.reason ?? '', /no response within 8 s/);
});

test.serial('SIGTERM while the API hangs: serve exits 0, well within the shutdown bound', async (t) => {
  const port = await silentServer(t);
  const hung = writeKubeconfig(t.context.cluster, 'hung', kubeConfigVia(t.context.readygate, port));
  const child = spawn(
    process.execPath,
    [
      path.join(ROOT, 'bin', 'readygate.js'),
      'serve',
      '--source',
      'kubernetes',
      '--kubeconfig',
      hung,
      '--xds-address',
      '127.0.0.1:0',
      '--admin-address',
      '127.0.0.1:0',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      resolve(code);
    });
  });
  await waitUntil(() => stdout.includes('serve.started'), {
    timeoutMs: 20_000,
    description: 'serve started',
  });
  await sleep(1_000); // the first list requests are in flight, unanswered
  const signalledAt = Date.now();
  child.kill('SIGTERM');
  // Unref'd: once the race is decided, a 15 s timer must not hold the test process open after its tests.
  const code = await Promise.race([
    exited,
    delay(15_000, undefined, { ref: false }).then(() => 'still running' as const),
  ]);
  const tookMs = Date.now() - signalledAt;
  t.log(`exited ${code} ${tookMs} ms after SIGTERM`);
  t.is(code, 0);
  t.true(tookMs < 5_000, `took ${tookMs} ms`);
  t.true(stdout.includes('"event":"serve.stopped"'));
});
