/**
 * The transport floor under bench:xds: what a bare node:http2 server (no gRPC, no xDS, no bookkeeping)
 * spends to do the traffic of one change — write `pushBytes` on each of N streams, one connection each,
 * and read an `ackBytes` answer from each. readygate cannot spend less than this per change on this
 * machine and Node version; bench:xds prints it beside readygate's own figures. It uses the ADS server's
 * HTTP/2 receive window and frame size, so the floor moves with readygate's transport settings.
 *
 * Run alone: `npx tsx bench/http2-floor.ts` (BENCH_STREAMS, BENCH_PUSH_BYTES, BENCH_ACK_BYTES,
 * BENCH_CHANGES). The client half runs in a child process, as the load does in bench:xds.
 */
import { fork } from 'node:child_process';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { ADS_SERVER_SETTINGS } from '../src/xds/server.js';
import { percentile, round1 } from './stats.js';

export interface FloorOptions {
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

export async function measureFloor(options: FloorOptions): Promise<FloorResult> {
  const streams: http2.ServerHttp2Stream[] = [];
  let answered = 0;
  let onAnswer: (() => void) | undefined;
  const window = ADS_SERVER_SETTINGS.receiveWindowBytes;
  const server = http2.createServer({
    settings: { initialWindowSize: window, maxFrameSize: ADS_SERVER_SETTINGS.maxFrameBytes },
  });
  server.on('session', (session) => {
    session.setLocalWindowSize(window);
  });
  server.on('sessionError', () => undefined);
  server.on('stream', (stream) => {
    // The client is killed at the end; its resets are expected.
    stream.on('error', () => undefined);
    stream.respond({ ':status': 200 });
    streams.push(stream);
    let pending = 0;
    stream.on('data', (chunk: Buffer) => {
      // Count whole answers, however the client's frames were cut.
      pending += chunk.length;
      while (pending >= options.ackBytes) {
        pending -= options.ackBytes;
        answered += 1;
        onAnswer?.();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const client = fork(fileURLToPath(import.meta.url), [], {
    execArgv: ['--import', 'tsx'],
    env: {
      ...process.env,
      FLOOR_CLIENT_PORT: String(port),
      FLOOR_STREAMS: String(options.streams),
      FLOOR_ACK_BYTES: String(options.ackBytes),
      FLOOR_PUSH_BYTES: String(options.pushBytes),
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
      // A fresh buffer per stream, as each xDS response is (its nonce differs).
      for (const stream of streams) stream.write(Buffer.from(payload));
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
    for (const stream of streams) stream.close();
    await new Promise<void>((resolve) => {
      server.close(() => {
        resolve();
      });
    });
  }
}

/** The client: N connections with one stream each, answering every push once it has fully arrived. */
function runClient(): void {
  const port = Number(process.env['FLOOR_CLIENT_PORT']);
  const count = Number(process.env['FLOOR_STREAMS']);
  const answer = Buffer.alloc(Number(process.env['FLOOR_ACK_BYTES']), 0x61);
  const pushBytes = Number(process.env['FLOOR_PUSH_BYTES']);
  for (let i = 0; i < count; i++) {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => undefined);
    const stream = session.request({ ':method': 'POST', ':path': '/floor' });
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
    streams: Number(process.env['BENCH_STREAMS'] ?? 1000),
    pushBytes: Number(process.env['BENCH_PUSH_BYTES'] ?? 1213),
    ackBytes: Number(process.env['BENCH_ACK_BYTES'] ?? 100),
    rounds: Number(process.env['BENCH_CHANGES'] ?? 30),
  };
  console.log(JSON.stringify({ options, result: await measureFloor(options) }, null, 2));
}
