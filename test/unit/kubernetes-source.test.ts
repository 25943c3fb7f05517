import net from 'node:net';
import { Writable } from 'node:stream';
import test from 'ava';
import { Registry } from 'prom-client';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { EndpointStore } from '../../src/model/store.js';
import { startKubernetesSource } from '../../src/sources/kubernetes.js';

/** A loopback port with nothing listening: connections are refused at once. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  await new Promise<void>((resolve) =>
    server.close(() => {
      resolve();
    }),
  );
  return port;
}

test('no reachable API: one warn line per watch naming the server, retries go on, quiet after close()', async (t) => {
  const port = await closedPort();
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'c', server: `https://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'x' }],
    contexts: [{ name: 'ctx', cluster: 'c', user: 'u' }],
    currentContext: 'ctx',
  });
  const lines: string[] = [];
  const logger = pino(
    { level: 'warn' },
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        lines.push(chunk.toString());
        callback();
      },
    }),
  );
  const store = new EndpointStore();
  const registry = new Registry();
  const source = await startKubernetesSource({
    store,
    kubeConfig,
    logger,
    registry,
    backoff: { initialMs: 20, maxMs: 40 },
  });
  const retries = async (): Promise<number> =>
    (
      (await registry.getSingleMetric('readygate_kubernetes_watch_restarts_total')?.get())?.values ?? []
    ).reduce((sum, v) => sum + v.value, 0);
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline && (await retries()) < 10)
    await new Promise((resolve) => setTimeout(resolve, 20));
  await source.close();
  t.true((await retries()) >= 10, 'retries keep going');
  // One warning per watch when it starts failing, not one per retry (repeated at most once a minute).
  t.is(lines.length, 2, lines.join(''));
  const logged = lines.length;
  const first = JSON.parse(lines[0] ?? '{}') as { msg?: string; server?: string; reason?: string };
  t.is(first.server, `https://127.0.0.1:${port}`);
  t.regex(
    first.msg ?? '',
    new RegExp(
      `(services|endpointslices) watch \\(all namespaces\\) failing against the Kubernetes API at https://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`,
    ),
  );
  t.regex(first.msg ?? '', /--source file:PATH/);
  t.false(source.synced);
  t.false(store.synced);
  t.is(store.size, 0);
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.is(lines.length, logged, 'no retries after close()');
});
