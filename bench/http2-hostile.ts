/**
 * The hostile-client attacks of test/security/ against two servers side by side: readygate's engine
 * (GrpcHttp2Server with its default limits) and a bare node:http2 server (nghttp2 with its defaults,
 * the ADS window and frame size). Per attack: how long after crossing the attacker was cut off (GOAWAY
 * or close), the server process's RSS growth, and the worst round trip of a legitimate client on its
 * own connection, which sends a small gRPC message every 50 ms on an open stream and waits for its
 * echo (the same echo with no attack is printed first). Both servers run in this process, one at a
 * time, with attacker and legitimate client: RSS is the process's, and the round trips include the
 * attacker's own work on the shared event loop, for both servers alike. The attacker writes in bounded
 * batches for at most 3 s.
 *
 * Run: `npx tsx bench/http2-hostile.ts`. Not a test: figures for docs/architecture.md.
 */
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import {
  encodeFrame,
  encodeSettings,
  encodeWindowUpdate,
  ErrorCode,
  Flags,
  FrameType,
} from '../src/http2/frames.js';
import type { GrpcCall } from '../src/http2/grpc-call.js';
import { frameMessage, GrpcHttp2Server } from '../src/http2/grpc-transport.js';
import { ADS_SERVER_SETTINGS } from '../src/xds/server.js';
import { pingFrame, RawH2Client, requestFrame, rstStreamFrame } from '../test/helpers/raw-h2.js';

interface Attack {
  readonly name: string;
  readonly read: boolean;
  readonly setup: Buffer[];
  readonly frame: (i: number) => Buffer;
}

const EMPTY = Buffer.alloc(0);
const ATTACKS: readonly Attack[] = [
  { name: 'PING flood, reads', read: true, setup: [], frame: pingFrame },
  { name: 'PING flood, never reads', read: false, setup: [], frame: pingFrame },
  { name: 'SETTINGS flood', read: true, setup: [], frame: () => encodeSettings([]) },
  {
    name: 'empty HEADERS',
    read: true,
    setup: [],
    frame: (i) => encodeFrame(FrameType.HEADERS, Flags.END_HEADERS, 2 * i + 1, EMPTY),
  },
  {
    name: 'empty CONTINUATION',
    read: true,
    setup: [encodeFrame(FrameType.HEADERS, 0, 1, Buffer.from([0x83]))],
    frame: () => encodeFrame(FrameType.CONTINUATION, 0, 1, EMPTY),
  },
  {
    name: 'empty DATA',
    read: true,
    setup: [requestFrame(1, '/x')],
    frame: () => encodeFrame(FrameType.DATA, 0, 1, EMPTY),
  },
  {
    name: 'rapid reset',
    read: true,
    setup: [],
    frame: (i) => Buffer.concat([requestFrame(2 * i + 1, '/x'), rstStreamFrame(2 * i + 1, ErrorCode.CANCEL)]),
  },
  { name: 'WINDOW_UPDATE flood', read: true, setup: [], frame: () => encodeWindowUpdate(0, 1) },
];

const ECHO_PATH = '/bench.Echo/Stream';
const ECHO_INTERVAL_MS = 50;

/**
 * A legitimate client: one stream, a message every 50 ms, each echoed back. `stop()` ends it and
 * returns the worst round trip; a message still unanswered then counts with its age so far.
 */
function legitimateClient(port: number): {
  ready: Promise<void>;
  stop(): Promise<{ worstMs: number; echoes: number }>;
} {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => undefined);
  const stream = session.request({
    ':method': 'POST',
    ':path': ECHO_PATH,
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  stream.on('error', () => undefined);
  const message = frameMessage([Buffer.from('ping')]);
  const sentAt: number[] = [];
  let received = 0;
  let echoes = 0;
  let worstMs = 0;
  let onFirstEcho: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => {
    onFirstEcho = resolve;
    setTimeout(resolve, 2000);
  });
  stream.on('data', (chunk: Buffer) => {
    onFirstEcho();
    received += chunk.length;
    while (received >= message.length && sentAt.length > 0) {
      received -= message.length;
      echoes += 1;
      worstMs = Math.max(worstMs, performance.now() - sentAt.shift()!);
    }
  });
  const timer = setInterval(() => {
    sentAt.push(performance.now());
    stream.write(message);
  }, ECHO_INTERVAL_MS);
  return {
    ready,
    stop: async () => {
      clearInterval(timer);
      // Time for the last message's echo, then whatever is still unanswered counts as waited so far.
      await new Promise((resolve) => setTimeout(resolve, 2 * ECHO_INTERVAL_MS));
      const now = performance.now();
      for (const at of sentAt) worstMs = Math.max(worstMs, now - at);
      session.destroy();
      return { worstMs, echoes };
    },
  };
}

async function run(port: number, attack: Attack): Promise<{ cutOffMs: number | undefined; frames: number }> {
  const client = new RawH2Client(port, { read: attack.read, keepFrames: false });
  await client.connected;
  client.start();
  if (attack.setup.length > 0) client.send(...attack.setup);
  const started = performance.now();
  let frames = 0;
  while (client.cutOff === undefined && performance.now() - started < 3000) {
    const batch: Buffer[] = [];
    for (let i = 0; i < 100; i++) batch.push(attack.frame(frames++));
    client.send(...batch);
    if (client.socket.writableNeedDrain) await new Promise((resolve) => setTimeout(resolve, 10));
    else await yieldToLoop();
  }
  const cut = client.cutOff;
  client.destroy();
  return { cutOffMs: cut === undefined ? undefined : cut.at - started, frames };
}

async function withServer(
  kind: 'readygate' | 'node:http2',
  body: (port: number) => Promise<void>,
): Promise<void> {
  if (kind === 'readygate') {
    const echo = new Map([
      [
        ECHO_PATH,
        (call: GrpcCall) => ({
          onMessage: (bytes: Buffer) => call.write([Buffer.from(bytes)], () => undefined),
          onDrain: () => undefined,
          onClose: () => undefined,
        }),
      ],
    ]);
    const server = new GrpcHttp2Server({ ...ADS_SERVER_SETTINGS, methods: echo });
    const port = await server.listen('127.0.0.1', 0);
    await body(port);
    await server.close(100);
    return;
  }
  const server = http2.createServer({
    settings: {
      initialWindowSize: ADS_SERVER_SETTINGS.receiveWindowBytes,
      maxFrameSize: ADS_SERVER_SETTINGS.maxFrameBytes,
    },
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => undefined);
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
    // The legitimate client's messages are echoed as they come (each arrives whole: 9 bytes).
    if (headers[':path'] === ECHO_PATH) stream.on('data', (chunk: Buffer) => stream.write(chunk));
  });
  server.on('sessionError', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  await body((server.address() as AddressInfo).port);
  await new Promise((resolve) => {
    server.close(resolve);
    setTimeout(resolve, 200);
  });
}

const rows: string[] = [];
const quiet: string[] = [];
for (const kind of ['readygate', 'node:http2'] as const) {
  await withServer(kind, async (port) => {
    const legit = legitimateClient(port);
    await legit.ready;
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const { worstMs, echoes } = await legit.stop();
    quiet.push(`${kind}: worst ${worstMs.toFixed(0)} ms over ${echoes} echoes`);
  });
}
for (const attack of ATTACKS) {
  const cells: string[] = [];
  for (const kind of ['readygate', 'node:http2'] as const) {
    await withServer(kind, async (port) => {
      global.gc?.();
      const before = process.memoryUsage.rss();
      const legit = legitimateClient(port);
      await legit.ready;
      const attackStarted = performance.now();
      const { cutOffMs, frames } = await run(port, attack);
      // The legitimate client keeps going for at least a second from the attack's start, so an
      // attacker cut off at once still leaves 20 round trips to measure.
      await new Promise((resolve) =>
        setTimeout(resolve, Math.max(0, 1000 - (performance.now() - attackStarted))),
      );
      const { worstMs, echoes } = await legit.stop();
      const growth = (process.memoryUsage.rss() - before) / 1024 / 1024;
      cells.push(
        `${cutOffMs === undefined ? 'not cut off in 3 s' : `${cutOffMs.toFixed(0)} ms`}, ${frames} frames, RSS +${growth.toFixed(0)} MB, legitimate worst ${worstMs.toFixed(0)} ms (${echoes} echoes)`,
      );
    });
  }
  rows.push(`| ${attack.name} | ${cells.join(' | ')} |`);
}
console.log(`no attack: ${quiet.join('; ')}`);
console.log('| attack | readygate engine | node:http2 |\n| --- | --- | --- |');
for (const row of rows) console.log(row);
process.exit(0);
