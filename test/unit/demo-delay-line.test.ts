import net from 'node:net';
import test from 'ava';
import { startDelayLine } from '../../src/demo/delay-line.js';

/** A server that answers every chunk it reads with `reply:<chunk>`, and can push on its own. */
async function upstream(): Promise<{
  port: number;
  push: (text: string) => void;
  close: () => Promise<void>;
}> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('data', (chunk) => socket.write(`reply:${chunk.toString()};`));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const address = server.address();
  return {
    port: typeof address === 'object' && address !== null ? address.port : 0,
    push: (text) => {
      for (const socket of sockets) socket.write(text);
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => {
          resolve();
        });
      }),
  };
}

function connect(port: number): Promise<{ socket: net.Socket; received: () => string }> {
  return new Promise((resolve, reject) => {
    let text = '';
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      resolve({ socket, received: () => text });
    });
    socket.on('data', (chunk) => (text += chunk.toString()));
    socket.once('error', reject);
  });
}

const until = async (condition: () => boolean, limitMs: number): Promise<number> => {
  const started = performance.now();
  while (!condition()) {
    if (performance.now() - started > limitMs) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return performance.now() - started;
};

test('no delay: bytes pass both ways at once', async (t) => {
  const server = await upstream();
  const line = await startDelayLine({ host: '127.0.0.1', port: server.port });
  t.teardown(async () => {
    await line.close();
    await server.close();
  });
  const client = await connect(line.port);
  client.socket.write('a');
  await until(() => client.received() === 'reply:a;', 2000);
  t.is(line.pending(), 0);
});

test('a delay holds what the server sends by at least that long, in order, also when it is lowered', async (t) => {
  const server = await upstream();
  const line = await startDelayLine({ host: '127.0.0.1', port: server.port });
  t.teardown(async () => {
    await line.close();
    await server.close();
  });
  const client = await connect(line.port);
  client.socket.write('a');
  await until(() => client.received() === 'reply:a;', 2000);

  line.setDelay(1000);
  const sent = performance.now();
  server.push('1;');
  await until(() => line.pending() === 1 || client.received().includes('1;'), 2000);
  t.false(client.received().includes('1;'), 'held, not passed on');
  // Lowered while the first chunk waits: the second must still come after it.
  line.setDelay(0);
  server.push('2;');
  await until(() => client.received().endsWith('2;'), 3000);
  t.true(performance.now() - sent >= 995, `released after ${Math.round(performance.now() - sent)} ms`);
  t.is(client.received(), 'reply:a;1;2;');
  t.is(line.pending(), 0);
});
