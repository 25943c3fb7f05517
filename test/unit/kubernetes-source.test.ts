import net from 'node:net';
import { Writable } from 'node:stream';
import test from 'ava';
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

test('no reachable API: a clear log line naming the server, never synced, quiet after close()', async (t) => {
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
  const source = await startKubernetesSource({
    store,
    kubeConfig,
    logger,
    backoff: { initialMs: 20, maxMs: 40 },
  });
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline && lines.length < 4) await new Promise((resolve) => setTimeout(resolve, 20));
  await source.close();
  const logged = lines.length;
  t.true(logged >= 4, 'retries keep going (and keep saying why)');
  const first = JSON.parse(lines[0] ?? '{}') as { msg?: string; server?: string };
  t.is(first.server, `https://127.0.0.1:${port}`);
  t.regex(
    first.msg ?? '',
    new RegExp(
      `cannot list (services|endpointslices) from the Kubernetes API at https://127\\.0\\.0\\.1:${port}`,
    ),
  );
  t.regex(first.msg ?? '', /--source file:PATH/);
  t.false(source.synced);
  t.false(store.synced);
  t.is(store.size, 0);
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.is(lines.length, logged, 'no retries after close()');
});
