/**
 * The list+watch loop's state machine against a scripted HTTP server. A fake on purpose: the real
 * apiserver (test/integration/kubernetes-liveness.test.ts) cannot be made to send an ERROR 410 event on
 * demand, refuse only the watch of one resource, or end every watch the moment it starts.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { silentLogger } from '../../src/log.js';
import { watchReadiness } from '../../src/sources/kubernetes.js';
import { ResourceWatcher, type ResourceWatcherMetrics } from '../../src/sources/kubernetes-watch.js';
import { waitUntil } from '../helpers/envoy-process.js';

type Handler = (url: URL, response: http.ServerResponse) => void;

async function scriptedApi(
  t: { teardown(fn: () => Promise<void>): void },
  handler: Handler,
): Promise<KubeConfig> {
  const server = http.createServer((request, response) => {
    handler(new URL(request.url ?? '/', 'http://api'), response);
    // As the apiserver does: a watch's headers go out at once, before any event.
    if (!response.writableEnded) response.flushHeaders();
  });
  await new Promise<void>((resolve) => {
    server.listen(0, '127.0.0.1', resolve);
  });
  t.teardown(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => {
      server.close(resolve);
    });
  });
  const kubeConfig = new KubeConfig();
  // Plain HTTP needs skipTLSVerify in client-node's agent selection.
  kubeConfig.loadFromOptions({
    clusters: [
      {
        name: 'c',
        server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        skipTLSVerify: true,
      },
    ],
    users: [{ name: 'u' }],
    contexts: [{ name: 'ctx', cluster: 'c', user: 'u' }],
    currentContext: 'ctx',
  });
  return kubeConfig;
}

const pod = (name: string, resourceVersion: string) => ({
  metadata: { namespace: 'ns', name, resourceVersion },
});

function recorder() {
  const calls: string[] = [];
  const metrics: ResourceWatcherMetrics = {
    restarted: (_r, _n, reason) => calls.push(`restarted:${reason}`),
    relisted: (_r, _n, reason) => calls.push(`relisted:${reason}`),
    listCompleted: () => calls.push('listCompleted'),
    event: (_r, type) => calls.push(`event:${type}`),
    progress: () => undefined,
    health: (_r, _n, healthy) => calls.push(`healthy:${String(healthy)}`),
  };
  return { calls, metrics };
}

function watcher(kubeConfig: KubeConfig, log: string[], metrics: ResourceWatcherMetrics) {
  return new ResourceWatcher<KubernetesObject>({
    kubeConfig,
    spec: { resource: 'pods', namespace: 'ns', path: '/api/v1/namespaces/ns/pods', labelSelector: undefined },
    hooks: {
      upsert: (o) => log.push(`upsert ${o.metadata?.name ?? ''}`),
      delete: (o) => log.push(`delete ${o.metadata?.name ?? ''}`),
      listed: (objects) => log.push(`listed ${objects.map((o) => o.metadata?.name ?? '').join(',')}`),
    },
    logger: silentLogger,
    backoff: { initialMs: 20, maxMs: 200 },
    timeouts: { responseMs: 1_000, listMs: 2_000, silenceMs: 5_000 },
    metrics,
  });
}

test('events and bookmarks are applied; ERROR 410 in the stream relists at once', async (t) => {
  const requests: string[] = [];
  let lists = 0;
  const kubeConfig = await scriptedApi(t, (url, response) => {
    const watching = url.searchParams.get('watch') === 'true';
    requests.push(watching ? `watch rv=${url.searchParams.get('resourceVersion') ?? ''}` : 'list');
    response.writeHead(200, { 'content-type': 'application/json' });
    if (!watching) {
      lists += 1;
      response.end(
        JSON.stringify({ metadata: { resourceVersion: `${lists}0` }, items: [pod(`p${lists}`, '1')] }),
      );
      return;
    }
    t.is(url.searchParams.get('allowWatchBookmarks'), 'true');
    if (lists === 1) {
      response.write(`${JSON.stringify({ type: 'ADDED', object: pod('q', '11') })}\n`);
      response.write('not json\n');
      response.write(
        `${JSON.stringify({ type: 'BOOKMARK', object: { metadata: { resourceVersion: '12' } } })}\n`,
      );
      response.write(`${JSON.stringify({ type: 'DELETED', object: pod('q', '13') })}\n`);
      response.end(
        `${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', code: 410, message: 'too old' } })}\n`,
      );
    }
    // Second watch: stays open (closed by teardown).
  });
  const log: string[] = [];
  const { calls, metrics } = recorder();
  const w = watcher(kubeConfig, log, metrics);
  w.start();
  t.teardown(() => w.close());
  await waitUntil(() => requests.length >= 4 && w.health.healthy, { timeoutMs: 5_000 });
  t.deepEqual(requests, ['list', 'watch rv=10', 'list', 'watch rv=20']);
  t.deepEqual(log, ['listed p1', 'upsert q', 'delete q', 'listed p2']);
  t.deepEqual(
    calls.filter((c) => c !== 'healthy:true' && c !== 'healthy:false'),
    ['listCompleted', 'event:upsert', 'event:bookmark', 'event:delete', 'relisted:gone', 'listCompleted'],
  );
  t.is(w.health.failingSince, undefined);
});

test('a refused watch is failing (reason, since) and relisted after backoff; allowed again, it recovers', async (t) => {
  let allowWatch = false;
  let lists = 0;
  const kubeConfig = await scriptedApi(t, (url, response) => {
    const watching = url.searchParams.get('watch') === 'true';
    if (watching && !allowWatch) {
      response.writeHead(403, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ kind: 'Status', code: 403, message: 'pods is forbidden: cannot watch' }));
      return;
    }
    response.writeHead(200, { 'content-type': 'application/json' });
    if (!watching) {
      lists += 1;
      response.end(JSON.stringify({ metadata: { resourceVersion: String(lists) }, items: [] }));
    }
  });
  const log: string[] = [];
  const { metrics } = recorder();
  const w = watcher(kubeConfig, log, metrics);
  const before = Date.now();
  w.start();
  t.teardown(() => w.close());
  await waitUntil(() => w.health.failingSince !== undefined, { timeoutMs: 5_000 });
  const health = w.health;
  t.false(health.healthy);
  t.is(health.reason, 'HTTP 403: pods is forbidden: cannot watch');
  t.true(health.failingSince! >= before && health.failingSince! <= Date.now());
  t.deepEqual(watchReadiness([health]), {
    ready: false,
    reason: `stale: pods in ns watch failing since ${new Date(health.failingSince!).toISOString()} (HTTP 403: pods is forbidden: cannot watch)`,
  });
  // Relisted after each refusal (backoff 20 → 200 ms): a few lists, not a tight loop.
  await waitUntil(() => lists >= 3, { timeoutMs: 5_000 });
  const listsAfter = lists;
  await new Promise((resolve) => setTimeout(resolve, 500));
  t.true(lists - listsAfter <= 6, `${lists - listsAfter} lists in 500 ms`);

  allowWatch = true;
  await waitUntil(() => w.health.healthy, { timeoutMs: 5_000 });
  t.is(w.health.failingSince, undefined);
  t.deepEqual(watchReadiness([w.health]), { ready: true });
});

test('a watch the API ends as soon as it starts backs off instead of spinning', async (t) => {
  let watches = 0;
  const kubeConfig = await scriptedApi(t, (url, response) => {
    response.writeHead(200, { 'content-type': 'application/json' });
    if (url.searchParams.get('watch') === 'true') {
      watches += 1;
      response.end();
      return;
    }
    response.end(JSON.stringify({ metadata: { resourceVersion: '1' }, items: [] }));
  });
  const w = watcher(kubeConfig, [], recorder().metrics);
  w.start();
  t.teardown(() => w.close());
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  // Backoff 20 ms doubling to 200 ms: about 8 attempts in a second, never hundreds.
  t.true(watches >= 2 && watches <= 15, `${watches} watches in 1 s`);
  t.regex(w.health.reason ?? '', /ends every watch right after it starts/);
});

test('watchReadiness: ready with no failing watch; names every failing one', (t) => {
  const base = { healthy: true, failingSince: undefined, reason: undefined, lastProgressAt: 1 };
  t.deepEqual(watchReadiness([]), { ready: true });
  t.deepEqual(watchReadiness([{ ...base, resource: 'services', namespace: undefined }]), { ready: true });
  t.deepEqual(
    watchReadiness([
      { ...base, resource: 'services', namespace: undefined },
      {
        ...base,
        resource: 'endpointslices',
        namespace: undefined,
        healthy: false,
        failingSince: 0,
        reason: 'x',
      },
      { ...base, resource: 'pods', namespace: 'a', healthy: false, failingSince: 1000, reason: 'y' },
    ]),
    {
      ready: false,
      reason:
        'stale: endpointslices watch failing since 1970-01-01T00:00:00.000Z (x); pods in a watch failing since 1970-01-01T00:00:01.000Z (y)',
    },
  );
});
