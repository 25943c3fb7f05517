import net from 'node:net';
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import test, { type ExecutionContext } from 'ava';
import {
  GrpcFramingError,
  GrpcMessageReader,
  GrpcStatus,
  encodeGrpcMessage,
  frameMessage,
} from '../../src/http2/grpc-transport.js';
import { ECHO, echoServer } from '../helpers/echo-server.js';

function framed(...messages: Buffer[]): Buffer {
  return Buffer.concat(messages.map((m) => frameMessage([m])));
}

test('frameMessage prefixes a zero flag and the big-endian length of all parts', (t) => {
  const bytes = frameMessage([Buffer.from('ab'), Buffer.alloc(0), Buffer.from('cde')]);
  t.deepEqual([...bytes], [0, 0, 0, 0, 5, 0x61, 0x62, 0x63, 0x64, 0x65]);
});

test('messages within one chunk are views of it, in order, including an empty one', (t) => {
  const chunk = framed(Buffer.from('first'), Buffer.alloc(0), Buffer.from('third'));
  const messages = new GrpcMessageReader(1024).push(chunk);
  t.deepEqual(
    messages.map((m) => m.toString()),
    ['first', '', 'third'],
  );
  t.is(messages[0]!.buffer, chunk.buffer);
  t.is(messages[2]!.buffer, chunk.buffer);
});

test('a message split anywhere, even inside its header, is reassembled', (t) => {
  const payload = Buffer.from('x'.repeat(300) + 'end');
  const bytes = framed(payload, Buffer.from('next'));
  for (const cuts of [[1], [3], [5], [6, 200], [2, 4, 150, 304]]) {
    const reader = new GrpcMessageReader(1024);
    const out: string[] = [];
    let from = 0;
    for (const cut of [...cuts, bytes.length]) {
      out.push(...reader.push(bytes.subarray(from, cut)).map((m) => m.toString()));
      from = cut;
    }
    t.deepEqual(out, [payload.toString(), 'next'], `cuts ${cuts.join(',')}`);
    t.true(reader.atBoundary);
  }
});

test('split messages reuse one assembly buffer across pushes, never within one push', (t) => {
  const reader = new GrpcMessageReader(1 << 20);
  const first = framed(Buffer.from('a'.repeat(100)));
  reader.push(first.subarray(0, 50));
  const [a] = reader.push(first.subarray(50));
  const second = framed(Buffer.from('b'.repeat(80)));
  reader.push(second.subarray(0, 40));
  const [b] = reader.push(second.subarray(40));
  t.is(b!.toString(), 'b'.repeat(80));
  // The caller was done with `a` once it pushed again: its bytes now hold `b`.
  t.is(a!.buffer, b!.buffer);

  // One chunk that completes a split message and starts another: the first must survive the second.
  const c = framed(Buffer.from('c'.repeat(90)));
  const d = framed(Buffer.from('d'.repeat(90)));
  const e = framed(Buffer.from('e'.repeat(90)));
  reader.push(c.subarray(0, 10));
  const [cOut] = reader.push(Buffer.concat([c.subarray(10), d.subarray(0, 30)]));
  t.is(cOut!.toString(), 'c'.repeat(90));
  const [dOut] = reader.push(Buffer.concat([d.subarray(30), e.subarray(0, 30)]));
  t.is(dOut!.toString(), 'd'.repeat(90));
  t.deepEqual(
    reader.push(e.subarray(30)).map((m) => m.toString()),
    ['e'.repeat(90)],
  );

  // Messages above the kept size get a buffer of their own each time.
  const big = framed(Buffer.alloc(70 * 1024, 0x66));
  reader.push(big.subarray(0, 100));
  const [bigOut] = reader.push(big.subarray(100));
  reader.push(big.subarray(0, 100));
  const [bigAgain] = reader.push(big.subarray(100));
  t.is(bigOut!.length, 70 * 1024);
  t.not(bigOut!.buffer, bigAgain!.buffer);
});
test('the reader refuses compressed, malformed and oversized messages with their gRPC status', (t) => {
  const compressed = Buffer.from([1, 0, 0, 0, 1, 0x61]);
  t.is(
    t.throws(() => new GrpcMessageReader(1024).push(compressed), { instanceOf: GrpcFramingError }).status,
    GrpcStatus.INTERNAL,
  );
  const badFlag = Buffer.from([7, 0, 0, 0, 0]);
  t.regex(t.throws(() => new GrpcMessageReader(1024).push(badFlag)).message, /invalid gRPC message flag 7/);
  const large = new GrpcMessageReader(10);
  large.push(Buffer.from([0, 0, 0]));
  const error = t.throws(() => large.push(Buffer.from([0, 11])), { instanceOf: GrpcFramingError });
  t.is(error.status, GrpcStatus.RESOURCE_EXHAUSTED);
  t.is(error.message, 'received message larger than max (11 vs 10)');
});

test('a half-read message is not at a boundary', (t) => {
  const reader = new GrpcMessageReader(1024);
  t.deepEqual(reader.push(Buffer.from([0, 0, 0, 0, 3, 0x61])), []);
  t.false(reader.atBoundary);
});

test('grpc-message is percent-encoded outside printable ASCII, and % itself', (t) => {
  t.is(encodeGrpcMessage('100% done\nnaïve'), '100%25 done%0Ana%C3%AFve');
});

function grpcClient(t: ExecutionContext, address: string): grpc.Client {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  t.teardown(() => {
    client.close();
  });
  return client;
}

function bidi(client: grpc.Client, path = ECHO): grpc.ClientDuplexStream<Buffer, Buffer> {
  return client.makeBidiStreamRequest(
    path,
    (b: Buffer) => b,
    (b: Buffer) => b,
  );
}

function outcome(
  call: grpc.ClientDuplexStream<Buffer, Buffer>,
): Promise<{ messages: string[]; code: number; details: string }> {
  const messages: string[] = [];
  call.on('data', (b: Buffer) => messages.push(b.toString()));
  return new Promise((resolve) => {
    call.on('error', () => undefined);
    call.on('status', (status: grpc.StatusObject) => {
      resolve({ messages, code: status.code, details: status.details });
    });
  });
}

test('a grpc-js client streams both ways; half-closing ends the call with OK and one onClose', async (t) => {
  const { address, closes } = await echoServer(t);
  const call = bidi(grpcClient(t, address));
  const done = outcome(call);
  const large = 'L'.repeat(40_000);
  for (const text of ['a', large, 'b']) call.write(Buffer.from(text));
  call.end();
  const result = await done;
  t.deepEqual(result.messages, ['echo:a', `echo:${large}`, 'echo:b']);
  t.is(result.code, GrpcStatus.OK);
  await until(() => closes[0] === 1);
  t.deepEqual(closes, [1]);
});

test('a status the handler chooses reaches the client, and the client is told to stop sending', async (t) => {
  const { address, closes } = await echoServer(t);
  const call = bidi(grpcClient(t, address));
  const done = outcome(call);
  call.write(Buffer.from('fail'));
  const result = await done;
  t.is(result.code, GrpcStatus.INVALID_ARGUMENT);
  t.is(result.details, 'asked to fail');
  await until(() => closes[0] === 1);
  t.deepEqual(closes, [1]);
});

test('an unknown method is UNIMPLEMENTED, an oversized message RESOURCE_EXHAUSTED', async (t) => {
  const { address } = await echoServer(t, { maxReceiveMessageBytes: 100 });
  const client = grpcClient(t, address);
  const unknown = bidi(client, '/test.Echo/Nope');
  const unknownDone = outcome(unknown);
  unknown.write(Buffer.from('x'));
  const result = await unknownDone;
  t.is(result.code, GrpcStatus.UNIMPLEMENTED);
  t.is(result.details, 'unknown method /test.Echo/Nope');

  const oversized = bidi(client);
  const oversizedDone = outcome(oversized);
  oversized.write(Buffer.alloc(101));
  const refused = await oversizedDone;
  t.is(refused.code, GrpcStatus.RESOURCE_EXHAUSTED);
  t.is(refused.details, 'received message larger than max (101 vs 100)');
});

test('raw HTTP/2: a non-gRPC request gets 415; a compressed message ends the call with INTERNAL', async (t) => {
  const { address } = await echoServer(t);
  const session = http2.connect(`http://${address}`);
  t.teardown(() => {
    session.destroy();
  });
  const plain = session.request({ ':method': 'POST', ':path': ECHO, 'content-type': 'text/plain' });
  plain.end();
  const plainHeaders = await new Promise<http2.IncomingHttpHeaders>((resolve) => {
    plain.on('response', resolve);
  });
  t.is(Number(plainHeaders[':status']), 415);

  const grpcCall = session.request({ ':method': 'POST', ':path': ECHO, 'content-type': 'application/grpc' });
  grpcCall.write(Buffer.from([1, 0, 0, 0, 1, 0x61]));
  const trailers = await new Promise<http2.IncomingHttpHeaders>((resolve) =>
    grpcCall.on('trailers', resolve),
  );
  grpcCall.resume();
  t.is(trailers['grpc-status'], String(GrpcStatus.INTERNAL));
  t.is(
    trailers['grpc-message'],
    encodeGrpcMessage('received a compressed message; readygate accepts only grpc-encoding identity'),
  );
});

test('raw HTTP/2: the receive windows and the largest frame accepted are the configured sizes', async (t) => {
  const { address } = await echoServer(t, { receiveWindowBytes: 300_000, maxFrameBytes: 100_000 });
  const session = http2.connect(`http://${address}`);
  t.teardown(() => {
    session.destroy();
  });
  await new Promise((resolve) => session.once('remoteSettings', resolve));
  t.is(session.remoteSettings.initialWindowSize, 300_000);
  t.is(session.remoteSettings.maxFrameSize, 100_000);
  // The connection window grows by a WINDOW_UPDATE, which may follow the SETTINGS frame.
  const deadline = Date.now() + 2000;
  while (session.state.remoteWindowSize !== 300_000 && Date.now() < deadline)
    await new Promise((resolve) => setTimeout(resolve, 10));
  t.is(session.state.remoteWindowSize, 300_000);
});

test('a connection that stops answering pings is dropped after the keepalive timeout', async (t) => {
  const { address } = await echoServer(t, { keepaliveTimeMs: 50, keepaliveTimeoutMs: 100 });
  const [host, port] = address.split(':');
  // A peer that opens HTTP/2 (preface, empty SETTINGS, and an ACK of the server's SETTINGS) and then
  // answers nothing, pings included; it reads and discards what arrives, or it would not notice the
  // server closing the connection.
  const socket = net.connect(Number(port), host);
  t.teardown(() => {
    socket.destroy();
  });
  socket.resume();
  const closed = new Promise<void>((resolve) =>
    socket.on('close', () => {
      resolve();
    }),
  );
  socket.on('error', () => undefined);
  socket.write(
    Buffer.concat([
      Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
      Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]),
      Buffer.from([0, 0, 0, 4, 1, 0, 0, 0, 0]),
    ]),
  );
  const started = Date.now();
  const outcome = await Promise.race([closed.then(() => 'closed'), delay(3000).then(() => 'still open')]);
  t.is(outcome, 'closed');
  t.true(Date.now() - started >= 100, 'not before one ping interval and timeout have passed');
});

test('a connection that answers pings stays open across many keepalive intervals', async (t) => {
  const { address } = await echoServer(t, { keepaliveTimeMs: 20, keepaliveTimeoutMs: 50 });
  const session = http2.connect(`http://${address}`);
  t.teardown(() => {
    session.destroy();
  });
  let pings = 0;
  session.on('ping', () => {
    pings += 1;
  });
  await delay(400);
  t.false(session.destroyed);
  t.false(session.closed);
  t.true(pings >= 5, `pings received: ${pings}`);
});

test('close() ends open calls and resolves; new connections are refused', async (t) => {
  const { server, address, closes } = await echoServer(t);
  const call = bidi(grpcClient(t, address));
  const done = outcome(call);
  call.write(Buffer.from('hello'));
  await until(() => closes.length === 1);
  await server.close(200);
  const result = await done;
  t.deepEqual(result.messages, ['echo:hello']);
  t.not(result.code, GrpcStatus.OK);
  t.deepEqual(closes, [1]);
  const [host, port] = address.split(':');
  const refused = await new Promise<string>((resolve) => {
    const socket = net.connect(Number(port), host);
    socket.on('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      resolve(error.code ?? 'error');
    });
  });
  t.is(refused, 'ECONNREFUSED');
});

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await delay(5);
  }
}
