/**
 * The slow gateway's link to its control plane: a TCP relay on loopback between one Envoy and the xDS
 * server that holds every byte the server sends for a set delay (0 = pass through) before the Envoy gets
 * it. Bytes from the Envoy (requests, ACKs) pass at once. So that Envoy applies every EDS update exactly
 * `delayMs` late, and its ACK — what the readiness gate and drain-wait wait for — comes back just as late.
 *
 * Why a delay line and not a CPU-starved Envoy: the delay is the same on every run and on every machine,
 * so the demo can state it and the result does not depend on how busy the host is. The relay reads the
 * server's bytes as they come (the server never sees a stalled client) and releases them in order: a
 * chunk never overtakes an earlier one, also when the delay is lowered while chunks are waiting.
 */
import net from 'node:net';
import { ErrorCode, ReadygateError, errorMessage } from '../errors.js';

export interface DelayLine {
  /** The port the Envoy connects to (on 127.0.0.1) instead of the xDS server's. */
  readonly port: number;
  /** Sets the delay for bytes the server sends from now on. */
  setDelay(ms: number): void;
  /** Chunks received from the server and not yet passed on. */
  pending(): number;
  close(): Promise<void>;
}

export async function startDelayLine(target: { host: string; port: number }): Promise<DelayLine> {
  let delayMs = 0;
  const sockets = new Set<net.Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const queues = new Set<unknown[]>();
  const server = net.createServer((envoySide) => {
    const serverSide = net.connect({ host: target.host, port: target.port });
    for (const socket of [envoySide, serverSide]) {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      // Either side gone: the other goes too, as on a real link that broke.
      socket.once('close', () => {
        envoySide.destroy();
        serverSide.destroy();
      });
      socket.on('error', () => undefined);
    }
    envoySide.pipe(serverSide);
    // One queue and one timer per connection: chunks leave strictly in the order they came.
    const queue: { releaseAt: number; chunk: Buffer }[] = [];
    queues.add(queue);
    envoySide.once('close', () => queues.delete(queue));
    let timer: NodeJS.Timeout | undefined;
    const flush = (): void => {
      if (timer) timers.delete(timer);
      timer = undefined;
      const now = performance.now();
      while (queue[0] !== undefined && queue[0].releaseAt <= now) {
        const { chunk } = queue.shift() ?? queue[0];
        if (!envoySide.destroyed) envoySide.write(chunk);
      }
      const head = queue[0];
      if (head !== undefined) {
        timer = setTimeout(flush, Math.max(1, head.releaseAt - now));
        timers.add(timer);
      }
    };
    serverSide.on('data', (chunk: Buffer) => {
      const last = queue.at(-1)?.releaseAt ?? 0;
      queue.push({ releaseAt: Math.max(performance.now() + delayMs, last), chunk });
      if (timer === undefined) flush();
    });
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', (error) => {
      reject(
        new ReadygateError(
          ErrorCode.LISTEN_FAILED,
          `demo: the xDS delay line cannot listen: ${errorMessage(error)}`,
          { cause: error },
        ),
      );
    });
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : 0);
    });
  });
  return {
    port,
    setDelay: (ms) => {
      delayMs = Math.max(0, ms);
    },
    pending: () => [...queues].reduce((n, queue) => n + queue.length, 0),
    close: async () => {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
    },
  };
}
