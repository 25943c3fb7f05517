/**
 * Transport floors under bench:xds: what a server with no gRPC, no xDS and no bookkeeping spends to do
 * the traffic of one change — write `pushBytes` to each of N peers, one connection each, and read an
 * `ackBytes` answer from each. Two of them:
 * - `tcp`: plain sockets carrying the same bytes, no HTTP/2 at all. No server on this machine and Node
 *   version can spend less per change; readygate's own HTTP/2 sits on top of it.
 * - `node:http2`: a bare node:http2 server, with the ADS server's receive window and frame size. What
 *   readygate spent before it had an HTTP/2 server of its own could not go below this.
 * - `tls`: the `tcp` floor over node:tls, with mTLS and the cipher order readygate's TLS listener uses
 *   (src/tls/material.ts). What TLS costs node for this traffic whatever runs above it: readygate over
 *   TLS can add to its h2c figure no less than this floor adds to the TCP one.
 * bench:xds prints both beside readygate's own figures.
 *
 * Run alone: `npx tsx bench/http2-floor.ts` (BENCH_STREAMS, BENCH_PUSH_BYTES, BENCH_ACK_BYTES,
 * BENCH_CHANGES, BENCH_FLOOR=tcp|node:http2|tls). The client half runs in a child process, as the load does
 * in bench:xds.
 */
import { fork } from 'node:child_process';
import type { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { PREFERRED_CIPHERS } from '../src/tls/material.js';
import { ADS_SERVER_SETTINGS } from '../src/xds/server.js';
import { createTestPki } from '../test/helpers/tls-certs.js';
import { percentile, round1 } from './stats.js';

export type FloorTransport = 'tcp' | 'node:http2' | 'tls';

export interface FloorOptions {
  readonly transport: FloorTransport;
  readonly streams: number;
  readonly pushBytes: number;
  readonly ackBytes: number;
  readonly rounds: number;
}

export interface FloorResult {
  /** Server CPU (user + system) per round. */
  readonly cpuMsPerRound: { p50: number; p99: number };
  /** Wall time from the first write to the last answer read. */
  readonly roundMs: { p50: number; p99: number };
}

const ROUND_TIMEOUT_MS = 30_000;
const CONNECT_TIMEOUT_MS = 120_000;

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`http2 floor: ${what} took over ${ms} ms`));
    }, ms);
  });
  return Promise.race([promise, timeout]).finally(() => {
    clearTimeout(timer);
  });
}

interface Peer extends EventEmitter {
  write(bytes: Buffer): boolean;
}

export async function measureFloor(options: FloorOptions): Promise<FloorResult> {
  const peers: Peer[] = [];
  const closers: Array<() => void> = [];
  let answered = 0;
  let onAnswer: (() => void) | undefined;
  const accept = (peer: Peer): void => {
    // The client is killed at the end; its resets are expected.
    peer.on('error', () => undefined);
    peers.push(peer);
    let pending = 0;
    peer.on('data', (chunk: Buffer) => {
      // Count whole answers, however the client's writes were cut.
      pending += chunk.length;
      while (pending >= options.ackBytes) {
        pending -= options.ackBytes;
        answered += 1;
        onAnswer?.();
      }
    });
  };
  let server: net.Server | http2.Http2Server;
  let tlsDir: string | undefined;
  const pki = options.transport === 'tls' ? createTestPki() : undefined;
  if (pki !== undefined) {
    const ca = pki.ca('ca');
    pki.issue(ca, 'server', { cn: 'readygate', dns: ['readygate'], ips: ['127.0.0.1'], usage: 'serverAuth' });
    pki.issue(ca, 'client', { cn: 'floor', usage: 'clientAuth' });
    tlsDir = pki.dir;
    const file = (name: string): Buffer => readFileSync(path.join(pki.dir, name));
    server = tls.createServer(
      {
        key: file('server.key'),
        cert: file('server.pem'),
        ca: file('ca.pem'),
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.2',
        ciphers: PREFERRED_CIPHERS,
        honorCipherOrder: true,
        noDelay: true,
      },
      (socket) => {
        accept(socket);
        closers.push(() => socket.destroy());
      },
    );
  } else if (options.transport === 'tcp') {
    server = net.createServer({ noDelay: true }, (socket) => {
      accept(socket);
      closers.push(() => socket.destroy());
    });
  } else {
    const window = ADS_SERVER_SETTINGS.receiveWindowBytes;
    const h2 = http2.createServer({
      settings: { initialWindowSize: window, maxFrameSize: ADS_SERVER_SETTINGS.maxFrameBytes },
    });
    h2.on('session', (session) => {
      session.setLocalWindowSize(window);
    });
    h2.on('sessionError', () => undefined);
    h2.on('stream', (stream) => {
      stream.respond({ ':status': 200 });
      accept(stream);
      closers.push(() => {
        stream.close();
      });
    });
    server = h2;
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const client = fork(fileURLToPath(import.meta.url), [], {
    execArgv: ['--import', 'tsx'],
    env: {
      ...process.env,
      FLOOR_CLIENT_PORT: String(port),
      FLOOR_TRANSPORT: options.transport,
      FLOOR_STREAMS: String(options.streams),
      FLOOR_ACK_BYTES: String(options.ackBytes),
      FLOOR_PUSH_BYTES: String(options.pushBytes),
      ...(tlsDir === undefined ? {} : { FLOOR_TLS_DIR: tlsDir }),
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const waitForAnswers = (target: number): Promise<void> =>
    new Promise((resolve) => {
      onAnswer = () => {
        if (answered < target) return;
        onAnswer = undefined;
        resolve();
      };
      onAnswer();
    });
  try {
    // Every client stream opens with one answer-sized message, so "connected" is countable.
    await withTimeout(waitForAnswers(options.streams), CONNECT_TIMEOUT_MS, 'connecting');
    const payload = Buffer.alloc(options.pushBytes, 0x5a);
    const cpu: number[] = [];
    const wall: number[] = [];
    for (let i = 0; i < options.rounds; i++) {
      const target = answered + options.streams;
      const before = process.cpuUsage();
      const startedAt = performance.now();
      const done = waitForAnswers(target);
      // A fresh buffer per peer, as each xDS response is (its nonce differs).
      for (const peer of peers) peer.write(Buffer.from(payload));
      await withTimeout(done, ROUND_TIMEOUT_MS, `round ${i}`);
      wall.push(performance.now() - startedAt);
      // As bench:xds does after a change: let acknowledgements and window updates settle.
      await new Promise((resolve) => setTimeout(resolve, 100));
      const used = process.cpuUsage(before);
      cpu.push((used.user + used.system) / 1000);
    }
    return {
      cpuMsPerRound: { p50: round1(percentile(cpu, 50)), p99: round1(percentile(cpu, 99)) },
      roundMs: { p50: round1(percentile(wall, 50)), p99: round1(percentile(wall, 99)) },
    };
  } finally {
    client.kill();
    for (const close of closers) close();
    await new Promise<void>((resolve) => {
      server.close(() => {
        resolve();
      });
    });
    pki?.remove();
  }
}

/** The client: N connections (with one stream each), answering every push once it has fully arrived. */
function runClient(): void {
  const port = Number(process.env['FLOOR_CLIENT_PORT']);
  const count = Number(process.env['FLOOR_STREAMS']);
  const answer = Buffer.alloc(Number(process.env['FLOOR_ACK_BYTES']), 0x61);
  const pushBytes = Number(process.env['FLOOR_PUSH_BYTES']);
  const open = (): Peer => {
    if (process.env['FLOOR_TRANSPORT'] === 'tcp') {
      return net.connect({ port, host: '127.0.0.1', noDelay: true });
    }
    const tlsDir = process.env['FLOOR_TLS_DIR'];
    if (tlsDir !== undefined) {
      const file = (name: string): Buffer => readFileSync(path.join(tlsDir, name));
      const socket = tls.connect({
        port,
        host: '127.0.0.1',
        servername: 'readygate',
        ca: file('ca.pem'),
        key: file('client.key'),
        cert: file('client.pem'),
      });
      socket.setNoDelay(true);
      return socket;
    }
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => undefined);
    return session.request({ ':method': 'POST', ':path': '/floor' });
  };
  for (let i = 0; i < count; i++) {
    const stream = open();
    stream.on('error', () => undefined);
    let received = 0;
    stream.on('data', (chunk: Buffer) => {
      received += chunk.length;
      while (received >= pushBytes) {
        received -= pushBytes;
        stream.write(answer);
      }
    });
    stream.write(answer);
  }
}

if (process.env['FLOOR_CLIENT_PORT'] !== undefined) {
  runClient();
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const options: FloorOptions = {
    transport: (['node:http2', 'tls'] as const).find((t) => t === process.env['BENCH_FLOOR']) ?? 'tcp',
    streams: Number(process.env['BENCH_STREAMS'] ?? 1000),
    pushBytes: Number(process.env['BENCH_PUSH_BYTES'] ?? 1213),
    ackBytes: Number(process.env['BENCH_ACK_BYTES'] ?? 100),
    rounds: Number(process.env['BENCH_CHANGES'] ?? 30),
  };
  console.log(JSON.stringify({ options, result: await measureFloor(options) }, null, 2));
}
