/**
 * The HTTP/2 server connection (src/http2/connection.ts) seen from a raw TCP client that writes and
 * reads frames itself, for what h2spec (test/integration/http2-conformance.test.ts) does not look at:
 * how responses are framed and paced by flow control, backpressure, limits, and input cut anywhere.
 */
import net from 'node:net';
import test, { type ExecutionContext } from 'ava';
import { GrpcStatus, frameMessage } from '../../src/http2/grpc-transport.js';
import { Http2ServerConnection, type Http2ServerStream } from '../../src/http2/connection.js';
import {
  CONNECTION_PREFACE,
  encodeFrame,
  encodeSettings,
  encodeWindowUpdate,
  ErrorCode,
  Flags,
  FRAME_HEADER_BYTES,
  FrameType,
  readFrameHeader,
  Setting,
} from '../../src/http2/frames.js';
import { encodeHeaderBlock, type HeaderField, HpackDecoder } from '../../src/http2/hpack.js';
import { DEFAULT_HTTP2_LIMITS } from '../../src/http2/limits.js';
import { ECHO, echoServer } from '../helpers/echo-server.js';

interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly payload: Buffer;
}

/** A client that speaks HTTP/2 frame by frame over a plain socket. */
class RawClient {
  readonly socket: net.Socket;
  readonly frames: Frame[] = [];
  readonly #decoder = new HpackDecoder(4096);
  #input = Buffer.alloc(0);
  #prefaceSkipped = false;
  closed = false;

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.setNoDelay(true);
    this.socket.on('data', (chunk: Buffer) => {
      this.#input = Buffer.concat([this.#input, chunk]);
      while (this.#input.length >= FRAME_HEADER_BYTES) {
        const header = readFrameHeader(this.#input, 0);
        if (this.#input.length < FRAME_HEADER_BYTES + header.length) break;
        const payload = this.#input.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + header.length);
        this.frames.push({ type: header.type, flags: header.flags, streamId: header.streamId, payload });
        this.#input = this.#input.subarray(FRAME_HEADER_BYTES + header.length);
      }
    });
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => {
      this.closed = true;
    });
  }

  /** The preface and our SETTINGS; the server's SETTINGS are ACKed as they come in `send`. */
  start(settings: ReadonlyArray<readonly [number, number]> = []): void {
    if (this.#prefaceSkipped) return;
    this.#prefaceSkipped = true;
    this.socket.write(Buffer.concat([CONNECTION_PREFACE, encodeSettings(settings)]));
  }

  send(...frames: Buffer[]): void {
    this.socket.write(Buffer.concat(frames));
  }

  request(streamId: number, path = ECHO, extra: HeaderField[] = [], endStream = false): Buffer {
    const block = encodeHeaderBlock([
      [':method', 'POST'],
      [':scheme', 'http'],
      [':path', path],
      [':authority', 'test'],
      ['content-type', 'application/grpc'],
      ...extra,
    ]);
    return encodeFrame(
      FrameType.HEADERS,
      Flags.END_HEADERS | (endStream ? Flags.END_STREAM : 0),
      streamId,
      block,
    );
  }

  headers(frame: Frame): HeaderField[] {
    return this.#decoder.decode(frame.payload);
  }

  /** Frames of `type` on `streamId` received so far. */
  of(type: number, streamId: number): Frame[] {
    return this.frames.filter((f) => f.type === type && f.streamId === streamId);
  }

  async until(what: string, done: () => boolean, timeoutMs = 3000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await delay(5);
    }
  }

  dataBytes(streamId: number): Buffer {
    return Buffer.concat(this.of(FrameType.DATA, streamId).map((f) => f.payload));
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function client(t: ExecutionContext, port: number): RawClient {
  const raw = new RawClient(port);
  t.teardown(() => {
    raw.socket.destroy();
  });
  return raw;
}

const grpcMessage = (text: string): Buffer => frameMessage([Buffer.from(text)]);
const data = (streamId: number, bytes: Buffer, flags = 0): Buffer =>
  encodeFrame(FrameType.DATA, flags, streamId, bytes);

test('a response that fits one frame goes out as one DATA frame after the response headers', async (t) => {
  const raw = client(t, (await echoServer(t)).port);
  raw.start();
  raw.send(raw.request(1), data(1, grpcMessage('hello')));
  await raw.until('the echo', () => raw.of(FrameType.DATA, 1).length > 0);
  const [headers] = raw.of(FrameType.HEADERS, 1);
  t.deepEqual(raw.headers(headers!), [
    [':status', '200'],
    ['content-type', 'application/grpc'],
    ['grpc-accept-encoding', 'identity'],
  ]);
  await delay(50);
  const frames = raw.of(FrameType.DATA, 1);
  t.is(frames.length, 1);
  t.deepEqual(frames[0]!.payload, grpcMessage('echo:hello'));
  t.is(frames[0]!.flags, 0);
});

test('DATA is paced by the client windows and split at its frame size; WINDOW_UPDATE resumes it', async (t) => {
  const raw = client(t, (await echoServer(t)).port);
  // A 100-byte stream window; the connection window stays at the default 65535.
  raw.start([[Setting.INITIAL_WINDOW_SIZE, 100]]);
  const text = 'x'.repeat(40_000);
  raw.send(raw.request(1), data(1, grpcMessage(text)));
  await raw.until('the first 100 bytes', () => raw.dataBytes(1).length === 100);
  await delay(100);
  t.is(raw.dataBytes(1).length, 100, 'nothing beyond the stream window');
  raw.send(encodeWindowUpdate(1, 1_000_000));
  const expected = grpcMessage(`echo:${text}`);
  await raw.until('the rest', () => raw.dataBytes(1).length === expected.length);
  t.deepEqual(raw.dataBytes(1), expected);
  t.true(raw.of(FrameType.DATA, 1).every((f) => f.payload.length <= 16_384));
  t.is(raw.of(FrameType.DATA, 1).length, 1 + Math.ceil((expected.length - 100) / 16_384));
});

test('input cut at every byte still makes whole frames', async (t) => {
  const raw = client(t, (await echoServer(t)).port);
  const bytes = Buffer.concat([
    CONNECTION_PREFACE,
    encodeSettings([]),
    raw.request(1),
    data(1, Buffer.concat([grpcMessage('one'), grpcMessage('two')])),
  ]);
  for (const byte of bytes) {
    raw.socket.write(Buffer.from([byte]));
    await delay(1);
  }
  const expected = Buffer.concat([grpcMessage('echo:one'), grpcMessage('echo:two')]);
  await raw.until('both echoes', () => raw.dataBytes(1).length === expected.length);
  t.deepEqual(raw.dataBytes(1), expected);
});

test('trailers that carry a pseudo-header or do not end the stream reset it; the connection lives on', async (t) => {
  const raw = client(t, (await echoServer(t)).port);
  raw.start();
  const trailers = (streamId: number, fields: HeaderField[], flags: number): Buffer =>
    encodeFrame(FrameType.HEADERS, flags, streamId, encodeHeaderBlock(fields));
  raw.send(raw.request(1), trailers(1, [[':method', 'POST']], Flags.END_HEADERS | Flags.END_STREAM));
  raw.send(raw.request(3), trailers(3, [['x-trailer', 'a']], Flags.END_HEADERS));
  raw.send(raw.request(5), data(5, grpcMessage('still here')));
  await raw.until(
    'two resets and an echo',
    () => raw.of(FrameType.RST_STREAM, 3).length === 1 && raw.dataBytes(5).length > 0,
  );
  t.deepEqual(
    [1, 3].map((id) => raw.of(FrameType.RST_STREAM, id).map((f) => f.payload.readUInt32BE(0))),
    [[ErrorCode.PROTOCOL_ERROR], [ErrorCode.PROTOCOL_ERROR]],
  );
  t.deepEqual(raw.dataBytes(5), grpcMessage('echo:still here'));
  t.false(raw.closed);
});

test('a header block growing past the limit over CONTINUATION frames ends the connection', async (t) => {
  const raw = client(t, (await echoServer(t)).port);
  raw.start();
  const block = raw.request(1).subarray(FRAME_HEADER_BYTES);
  const filler = Buffer.alloc(16_000, 0x80);
  raw.send(encodeFrame(FrameType.HEADERS, 0, 1, block));
  for (let i = 0; i < 5; i++) raw.send(encodeFrame(FrameType.CONTINUATION, 0, 1, filler));
  await raw.until('GOAWAY', () => raw.of(FrameType.GOAWAY, 0).length === 1);
  t.is(raw.of(FrameType.GOAWAY, 0)[0]!.payload.readUInt32BE(4), ErrorCode.ENHANCE_YOUR_CALM);
  await raw.until('the close', () => raw.closed);
});

test('a header list past the 16 KB limit gets 431 and the connection lives; past 4 × the limit it ends', async (t) => {
  const raw = client(t, (await echoServer(t)).port);
  raw.start();
  // Literal fields without indexing, 2 KB values: 10 of them make a 20 KB list from a 20 KB block.
  const field = (i: number): HeaderField => [`x-big-${i}`, 'v'.repeat(2000)];
  raw.send(
    raw.request(
      1,
      ECHO,
      Array.from({ length: 10 }, (_, i) => field(i)),
      true,
    ),
  );
  await raw.until('the 431', () => raw.of(FrameType.HEADERS, 1).length === 1);
  t.deepEqual(raw.headers(raw.of(FrameType.HEADERS, 1)[0]!), [[':status', '431']]);
  t.is(raw.of(FrameType.GOAWAY, 0).length, 0);
  // A 3 KB field put in the table, then 30 one-byte references to it: a 3 KB block that decodes to over
  // 90 KB, past 4 × 16 KB. An abuse, not a large request.
  const expanding = Buffer.concat([
    Buffer.from([0x83, 0x86, 0x84, 0x40, 5]),
    Buffer.from('x-big'),
    Buffer.from([0x7f, 0xb9, 0x16]), // the length 3000: 127 + 57 + 22 × 128
    Buffer.alloc(3000, 0x61),
    Buffer.alloc(30, 0xbe), // index 62: the newest dynamic entry
  ]);
  raw.send(encodeFrame(FrameType.HEADERS, Flags.END_HEADERS | Flags.END_STREAM, 3, expanding));
  await raw.until('GOAWAY', () => raw.of(FrameType.GOAWAY, 0).length === 1);
  t.is(raw.of(FrameType.GOAWAY, 0)[0]!.payload.readUInt32BE(4), ErrorCode.ENHANCE_YOUR_CALM);
  t.is(raw.of(FrameType.HEADERS, 3).length, 0);
  await raw.until('the close', () => raw.closed);
});

test('after the client shrinks its HPACK table, the next header block starts with a size update to 0', async (t) => {
  const raw = client(t, (await echoServer(t)).port);
  raw.start([[Setting.HEADER_TABLE_SIZE, 0]]);
  raw.send(raw.request(1), data(1, grpcMessage('a')));
  await raw.until('the response headers', () => raw.of(FrameType.HEADERS, 1).length === 1);
  const [headers] = raw.of(FrameType.HEADERS, 1);
  t.is(headers!.payload[0], 0x20);
  t.is(raw.headers(headers!)[0]![1], '200');
  // Only once: the one after it starts with its first field.
  raw.send(raw.request(3), data(3, grpcMessage('b')));
  await raw.until('the second response headers', () => raw.of(FrameType.HEADERS, 3).length === 1);
  t.is(raw.of(FrameType.HEADERS, 3)[0]!.payload[0], 0x88);
});

test('messages still arriving on one connection are held up to a limit; over it the call ends', async (t) => {
  const raw = client(t, (await echoServer(t, { maxPartialBytesPerConnection: 1000 })).port);
  raw.start();
  // The gRPC header announces 5000 bytes; 100 arrive, so the call would hold a 5000-byte buffer.
  const partial = Buffer.concat([Buffer.from([0, 0, 0, 0x13, 0x88]), Buffer.alloc(100)]);
  raw.send(raw.request(1), data(1, partial));
  await raw.until('the trailers', () => raw.of(FrameType.HEADERS, 1).length === 2);
  const trailers = raw.headers(raw.of(FrameType.HEADERS, 1)[1]!);
  t.deepEqual(trailers, [
    ['grpc-status', String(GrpcStatus.RESOURCE_EXHAUSTED)],
    ['grpc-message', 'messages still arriving on this connection hold over 1000 bytes'],
  ]);
  t.is(raw.of(FrameType.HEADERS, 1)[1]!.flags & Flags.END_STREAM, Flags.END_STREAM);
});

test('write() reports a full queue, onWritten waits for the hand-off, onDrain follows once all is out', async (t) => {
  const events: string[] = [];
  let stream: Http2ServerStream | undefined;
  const server = net.createServer((socket) => {
    new Http2ServerConnection(
      socket,
      {
        maxConcurrentStreams: 10,
        receiveWindowBytes: 65_535,
        maxFrameBytes: 16_384,
        limits: DEFAULT_HTTP2_LIMITS,
      },
      {
        onStream: (opened) => {
          stream = opened;
          opened.handlers = {
            onData: () => undefined,
            onEnd: () => undefined,
            onDrain: () => events.push('drain'),
            onClose: () => events.push('close'),
          };
          opened.respond([[':status', '200']]);
        },
        onClose: () => undefined,
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const raw = client(t, (server.address() as net.AddressInfo).port);
  // A stream window of 0: nothing can be sent until the client opens it.
  raw.start([[Setting.INITIAL_WINDOW_SIZE, 0]]);
  raw.send(raw.request(1));
  await raw.until('the stream', () => stream !== undefined);
  const accepted = [10_000, 10_000].map((size, i) =>
    stream!.write(Buffer.alloc(size, 0x61 + i), false, () => events.push(`written ${i}`)),
  );
  t.deepEqual(accepted, [true, false]);
  await delay(50);
  t.deepEqual(events, []);
  raw.send(encodeWindowUpdate(1, 15_000));
  await raw.until('15000 bytes', () => raw.dataBytes(1).length === 15_000);
  t.deepEqual(events, ['written 0']);
  raw.send(encodeWindowUpdate(1, 5_000));
  await raw.until('all 20000 bytes', () => raw.dataBytes(1).length === 20_000);
  t.deepEqual(events, ['written 0', 'written 1', 'drain']);
});
