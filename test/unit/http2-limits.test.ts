/**
 * Each HTTP/2 limit (src/http2/limits.ts) against a raw client that crosses it by exactly one: the
 * frames up to the limit are served, the one past it gets GOAWAY(ENHANCE_YOUR_CALM), the connection
 * closes, and the limit is reported once, by name. The attacks at full speed against the real ADS
 * server are in test/security/.
 */
import test, { type ExecutionContext } from 'ava';
import {
  encodeFrame,
  encodeSettings,
  encodeWindowUpdate,
  ErrorCode,
  Flags,
  FrameType,
} from '../../src/http2/frames.js';
import {
  DEFAULT_HTTP2_LIMITS,
  type Http2LimitName,
  type Http2Limits,
  resolveHttp2Limits,
  TokenBucket,
} from '../../src/http2/limits.js';
import { frameMessage } from '../../src/http2/grpc-transport.js';
import { ECHO, echoServer } from '../helpers/echo-server.js';
import { pingFrame, priorityFrame, RawH2Client, requestFrame, rstStreamFrame } from '../helpers/raw-h2.js';

interface Reported {
  readonly limit: Http2LimitName;
  readonly message: string;
}

async function limitedServer(
  t: ExecutionContext,
  limits: Partial<Http2Limits>,
): Promise<{ port: number; reports: Reported[] }> {
  const reports: Reported[] = [];
  const { port } = await echoServer(t, {
    limits,
    onLimitExceeded: (_peer, limit, message) => reports.push({ limit, message }),
  });
  return { port, reports };
}

function connect(t: ExecutionContext, port: number, read = true): RawH2Client {
  const client = new RawH2Client(port, { read });
  t.teardown(() => {
    client.destroy();
  });
  return client;
}

/** Waits for the cut-off and checks it is GOAWAY(ENHANCE_YOUR_CALM) then a close, for `limit` alone. */
async function assertCutOff(
  t: ExecutionContext,
  client: RawH2Client,
  reports: Reported[],
  limit: Http2LimitName,
): Promise<void> {
  await client.until('GOAWAY and close', () => client.goaway !== undefined && client.closedAt !== undefined);
  t.is(client.goaway!.code, ErrorCode.ENHANCE_YOUR_CALM);
  t.deepEqual(
    reports.map((r) => r.limit),
    [limit],
  );
}

const data = (streamId: number, bytes: Buffer, flags = 0): Buffer =>
  encodeFrame(FrameType.DATA, flags, streamId, bytes);

test('a token bucket gives its burst at once, then refills at its rate up to the burst', (t) => {
  const bucket = new TokenBucket({ burst: 3, perSecond: 10 }, 0);
  t.deepEqual(
    [1, 2, 3, 4].map(() => bucket.take(0)),
    [true, true, true, false],
  );
  t.false(bucket.take(99), 'not a whole token after 99 ms');
  t.true(bucket.take(100));
  t.deepEqual(
    [1, 2, 3, 4].map(() => bucket.take(100_000)),
    [true, true, true, false],
  );
});

test('limits resolve over the defaults; a negative or non-numeric limit is refused', (t) => {
  t.is(resolveHttp2Limits({ maxConnections: 5 }).maxConnections, 5);
  t.is(resolveHttp2Limits().maxOutboundControlFrames, 1000);
  t.deepEqual(resolveHttp2Limits().streamResets, { burst: 1000, perSecond: 33 });
  t.throws(() => resolveHttp2Limits({ maxContinuationFrames: -1 }), {
    message: 'http2 limit maxContinuationFrames must be a number ≥ 0',
  });
  t.throws(() => resolveHttp2Limits({ pings: { burst: 1, perSecond: Number.NaN } }), {
    message: 'http2 limit pings must be a number ≥ 0',
  });
  t.is(DEFAULT_HTTP2_LIMITS.maxConsecutiveEmptyFrames, 1);
});

test('PINGs within the burst are answered; the one past it ends the connection', async (t) => {
  const { port, reports } = await limitedServer(t, { pings: { burst: 5, perSecond: 0 } });
  const client = connect(t, port);
  client.start();
  client.send(...[1, 2, 3, 4, 5].map(pingFrame));
  await client.until('5 PING ACKs', () => client.of(FrameType.PING).length === 5);
  t.is(client.goaway, undefined);
  client.send(pingFrame(6));
  await assertCutOff(t, client, reports, 'ping_flood');
  t.is(client.of(FrameType.PING).length, 5);
});

test('SETTINGS past the rate, or with too many entries, end the connection', async (t) => {
  const { port, reports } = await limitedServer(t, { settings: { burst: 3, perSecond: 0 } });
  const flood = connect(t, port);
  flood.start();
  flood.send(encodeSettings([]), encodeSettings([]));
  await flood.until(
    '3 SETTINGS ACKs',
    () => flood.of(FrameType.SETTINGS).filter((f) => f.flags === 1).length === 3,
  );
  flood.send(encodeSettings([]));
  await assertCutOff(t, flood, reports, 'settings_flood');

  reports.length = 0;
  const wide = connect(t, port);
  wide.start(Array.from({ length: 33 }, () => [0x10, 1] as const));
  await assertCutOff(t, wide, reports, 'settings_flood');
  t.is(reports[0]!.message, 'SETTINGS with over 32 entries');
});

test('a header block may take 8 CONTINUATION frames, not 9', async (t) => {
  const { port, reports } = await limitedServer(t, {});
  const client = connect(t, port);
  client.start();
  // A valid request split over HEADERS and 8 CONTINUATIONs is served.
  const block = requestFrame(1, ECHO).subarray(9);
  const pieces = [0, 1, 2, 3, 4, 5, 6, 7, 8].map((i) =>
    block.subarray(Math.floor((i * block.length) / 9), Math.floor(((i + 1) * block.length) / 9)),
  );
  client.send(
    encodeFrame(FrameType.HEADERS, 0, 1, pieces[0]),
    ...pieces
      .slice(1)
      .map((p, i) => encodeFrame(FrameType.CONTINUATION, i === 7 ? Flags.END_HEADERS : 0, 1, p)),
    data(1, frameMessage([Buffer.from('hi')])),
  );
  await client.until('the echo', () => client.of(FrameType.DATA, 1).length === 1);
  // Nine are one too many, however small.
  client.send(encodeFrame(FrameType.HEADERS, 0, 3, block.subarray(0, 1)));
  for (let i = 0; i < 9; i++) client.send(encodeFrame(FrameType.CONTINUATION, 0, 3, Buffer.from([0x82])));
  await assertCutOff(t, client, reports, 'continuation_flood');
});

test('two empty frames in a row end the connection; one between payloads does not', async (t) => {
  const { port, reports } = await limitedServer(t, {});
  const client = connect(t, port);
  client.start();
  const message = frameMessage([Buffer.from('x')]);
  client.send(
    requestFrame(1, ECHO),
    data(1, Buffer.alloc(0)),
    data(1, message),
    data(1, Buffer.alloc(0)),
    data(1, message),
  );
  await client.until('two echoes', () => client.of(FrameType.DATA, 1).length === 2);
  t.is(client.goaway, undefined);
  client.send(data(1, Buffer.alloc(0)), data(1, Buffer.alloc(0)));
  await assertCutOff(t, client, reports, 'empty_frames');
});

test('empty HEADERS frames count as empty frames', async (t) => {
  const { port, reports } = await limitedServer(t, {});
  const client = connect(t, port);
  client.start();
  client.send(
    encodeFrame(FrameType.HEADERS, Flags.END_HEADERS, 1),
    encodeFrame(FrameType.HEADERS, Flags.END_HEADERS, 3),
  );
  await assertCutOff(t, client, reports, 'empty_frames');
});

test('rapid reset: streams opened and reset past the reset budget end the connection', async (t) => {
  const { port, reports } = await limitedServer(t, { streamResets: { burst: 4, perSecond: 0 } });
  const client = connect(t, port);
  client.start();
  for (const id of [1, 3, 5, 7]) client.send(requestFrame(id, ECHO), rstStreamFrame(id, ErrorCode.CANCEL));
  await client.until('4 response HEADERS', () => client.of(FrameType.HEADERS).length === 4);
  t.is(client.goaway, undefined);
  client.send(requestFrame(9, ECHO), rstStreamFrame(9, ErrorCode.CANCEL));
  await assertCutOff(t, client, reports, 'stream_resets');
});

test('streams the server refuses count as resets too', async (t) => {
  const { port, reports } = await limitedServer(t, { streamResets: { burst: 2, perSecond: 0 } });
  const client = connect(t, port);
  client.start();
  // A request without :path is malformed: RST_STREAM(PROTOCOL_ERROR), each one a reset.
  const malformed = (id: number): Buffer => {
    const frame = requestFrame(id, ECHO);
    return encodeFrame(FrameType.HEADERS, Flags.END_HEADERS, id, frame.subarray(9, 10));
  };
  client.send(malformed(1), malformed(3), malformed(5));
  await assertCutOff(t, client, reports, 'stream_resets');
  t.is(client.of(FrameType.RST_STREAM).length, 2);
});

test('stream churn: new streams past their budget end the connection', async (t) => {
  const { port, reports } = await limitedServer(t, { newStreams: { burst: 3, perSecond: 0 } });
  const client = connect(t, port);
  client.start();
  client.send(requestFrame(1, ECHO), requestFrame(3, ECHO), requestFrame(5, ECHO));
  await client.until('3 response HEADERS', () => client.of(FrameType.HEADERS).length === 3);
  client.send(requestFrame(7, ECHO));
  await assertCutOff(t, client, reports, 'new_streams');
});

test('PRIORITY frames past the per-stream allowance end the connection', async (t) => {
  const { port, reports } = await limitedServer(t, { maxPriorityFramesPerStream: 3 });
  const client = connect(t, port);
  client.start();
  client.send(priorityFrame(1, 0), priorityFrame(3, 0), priorityFrame(5, 0));
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.is(client.goaway, undefined);
  client.send(priorityFrame(7, 0));
  await assertCutOff(t, client, reports, 'priority_flood');
});

test('WINDOW_UPDATEs beyond what the DATA sent explains end the connection', async (t) => {
  const { port, reports } = await limitedServer(t, {});
  const client = connect(t, port);
  client.start();
  // With no stream and no DATA sent, Envoy's formula allows 5.
  for (let i = 0; i < 5; i++) client.send(encodeWindowUpdate(0, 1));
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.is(client.goaway, undefined);
  client.send(encodeWindowUpdate(0, 1));
  await assertCutOff(t, client, reports, 'window_update_flood');
});

test('a WINDOW_UPDATE that takes the connection window past 2^31-1 is a FLOW_CONTROL_ERROR', async (t) => {
  const { port, reports } = await limitedServer(t, {});
  const client = connect(t, port);
  client.start();
  client.send(encodeWindowUpdate(0, 2 ** 31 - 1));
  await client.until('GOAWAY', () => client.goaway !== undefined);
  t.is(client.goaway!.code, ErrorCode.FLOW_CONTROL_ERROR);
  t.deepEqual(reports, [], 'a protocol error, not a limit');
});

test('control frames owed to a peer past the cap end the connection', async (t) => {
  const { port, reports } = await limitedServer(t, {
    maxOutboundControlFrames: 20,
    pings: { burst: 1000, perSecond: 0 },
  });
  const client = connect(t, port);
  client.start();
  await client.until('the server SETTINGS', () => client.of(FrameType.SETTINGS).length >= 1);
  // In one write, so that the ACKs are all owed at once.
  client.send(...Array.from({ length: 30 }, (_, i) => pingFrame(i)));
  await assertCutOff(t, client, reports, 'outbound_control_frames');
  t.is(client.of(FrameType.PING).length, 20, 'ACKs up to the cap, none past it');
});

test('a connection without preface and SETTINGS is closed after the preface timeout', async (t) => {
  const { port, reports } = await limitedServer(t, { prefaceTimeoutMs: 150 });
  const client = connect(t, port);
  await client.connected;
  const started = performance.now();
  await client.until('the close', () => client.closedAt !== undefined);
  t.true(client.closedAt! - started >= 100, `closed after ${client.closedAt! - started} ms`);
  t.true(client.closedAt! - started < 1500, `closed after ${client.closedAt! - started} ms`);
  t.deepEqual(
    reports.map((r) => r.limit),
    ['preface_timeout'],
  );
});

test('a connection without streams gets GOAWAY(NO_ERROR) after the idle timeout; one with a stream stays', async (t) => {
  const { port, reports } = await limitedServer(t, { idleTimeoutMs: 150 });
  const idle = connect(t, port);
  const busy = connect(t, port);
  idle.start();
  busy.start();
  busy.send(requestFrame(1, ECHO));
  await idle.until('the close', () => idle.closedAt !== undefined);
  t.is(idle.goaway?.code, ErrorCode.NO_ERROR);
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.is(busy.closedAt, undefined);
  t.deepEqual(
    reports.map((r) => r.limit),
    ['idle_timeout'],
  );
});

test('connections past the cap are closed as they are accepted; one frees a place when it leaves', async (t) => {
  const { port, reports } = await limitedServer(t, { maxConnections: 2 });
  const first = connect(t, port);
  const second = connect(t, port);
  first.start();
  second.start();
  await first.until(
    'both served',
    () => first.of(FrameType.SETTINGS).length > 0 && second.of(FrameType.SETTINGS).length > 0,
  );
  const third = connect(t, port);
  await third.until('the third closed', () => third.closedAt !== undefined);
  t.deepEqual(third.frames, []);
  t.deepEqual(
    reports.map((r) => r.limit),
    ['max_connections'],
  );
  first.destroy();
  await new Promise((resolve) => setTimeout(resolve, 100));
  const fourth = connect(t, port);
  fourth.start();
  await fourth.until('the fourth served', () => fourth.of(FrameType.SETTINGS).length > 0);
  t.is(fourth.closedAt, undefined);
});

test('frames that keep completing are served however reads cut them; one left incomplete past the frame timeout ends the connection', async (t) => {
  const { port, reports } = await limitedServer(t, { frameTimeoutMs: 300 });
  const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
  // Nine DATA frames, each sent in two halves 100 ms apart, the next one's first half with the last
  // one's second: every read ends in the middle of a frame for 900 ms, three times the timeout, and
  // yet each frame completes within a third of it.
  const steady = connect(t, port);
  steady.start();
  steady.send(requestFrame(1, ECHO));
  const frames = Array.from({ length: 9 }, (_, i) => data(1, frameMessage([Buffer.alloc(2000, 0x61 + i)])));
  const half = (frame: Buffer, second: boolean): Buffer =>
    second ? frame.subarray(1000) : frame.subarray(0, 1000);
  steady.send(half(frames[0]!, false));
  for (let i = 0; i < frames.length; i++) {
    await sleep(100);
    const next = frames[i + 1];
    steady.send(half(frames[i]!, true), ...(next === undefined ? [] : [half(next, false)]));
  }
  await steady.until('nine echoes', () => steady.of(FrameType.DATA, 1).length === 9);
  // Each echo whole and in order, shown as its first bytes and its length.
  t.deepEqual(
    steady.of(FrameType.DATA, 1).map((frame) => {
      const echoed = frame.payload.subarray(5).toString('latin1');
      return `${echoed.slice(0, 7)} ${echoed.length} ${new Set(echoed.slice(5)).size}`;
    }),
    frames.map((_, i) => `echo:${String.fromCharCode(0x61 + i).repeat(2)} 2005 1`),
  );
  t.is(steady.cutOff, undefined);
  t.deepEqual(reports, []);

  // Three that stop: in a frame header, in a DATA frame's payload, in a header block.
  const stuck = [connect(t, port), connect(t, port), connect(t, port)];
  for (const client of stuck) client.start();
  stuck[0]!.send(requestFrame(1, ECHO), data(1, frameMessage([Buffer.from('x')])).subarray(0, 5));
  stuck[1]!.send(requestFrame(1, ECHO), data(1, frameMessage([Buffer.alloc(1000)])).subarray(0, 500));
  stuck[2]!.send(encodeFrame(FrameType.HEADERS, 0, 1, requestFrame(1, ECHO).subarray(9, 12)));
  const sentAt = performance.now();
  for (const client of stuck) {
    await client.until(
      'GOAWAY and close',
      () => client.goaway !== undefined && client.closedAt !== undefined,
    );
    t.is(client.goaway!.code, ErrorCode.ENHANCE_YOUR_CALM);
    const after = client.goaway!.at - sentAt;
    t.true(after >= 250 && after < 1300, `cut off ${after.toFixed(0)} ms after its last byte`);
  }
  t.deepEqual(
    reports.map((r) => r.limit),
    ['frame_timeout', 'frame_timeout', 'frame_timeout'],
  );
  t.is(steady.cutOff, undefined, 'the steady client is not touched');
});
