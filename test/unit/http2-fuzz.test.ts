/**
 * Fuzzing the HTTP/2 input path: the HPACK decoder and the connection's frame decoder get random and
 * mutated inputs from a seeded PRNG (the seed is in every failure message; READYGATE_FUZZ_SEED replays
 * one). Neither may throw anything but its own protocol error, hang, or hold more than a bound.
 *
 * The connection is fed through a stand-in socket, not TCP: 100,000 inputs over loopback would take
 * minutes, and what is under test is the parsing, which sees only 'data' events and writes.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import test from 'ava';
import { Http2ServerConnection } from '../../src/http2/connection.js';
import { CONNECTION_PREFACE, encodeFrame, encodeSettings, Flags, FrameType } from '../../src/http2/frames.js';
import { encodeHeaderBlock, HpackDecoder, HpackError } from '../../src/http2/hpack.js';
import { DEFAULT_HTTP2_LIMITS } from '../../src/http2/limits.js';

const SEED = Number(process.env['READYGATE_FUZZ_SEED'] ?? Date.now() % 2 ** 31);

/** mulberry32: small, fast, seeded. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function mutate(random: () => number, input: Buffer): Buffer {
  const out = Buffer.from(input);
  const edits = 1 + Math.floor(random() * 4);
  for (let i = 0; i < edits && out.length > 0; i++) {
    const at = Math.floor(random() * out.length);
    const kind = random();
    if (kind < 0.5) out[at] = Math.floor(random() * 256);
    else if (kind < 0.75) out[at] = out[at]! ^ (1 << Math.floor(random() * 8));
    else
      return Buffer.concat([
        out.subarray(0, at),
        out.subarray(Math.min(out.length, at + 1 + Math.floor(random() * 8))),
      ]);
  }
  return out;
}

const randomBytes = (random: () => number, max: number): Buffer =>
  Buffer.from(Array.from({ length: Math.floor(random() * max) }, () => Math.floor(random() * 256)));

const SAMPLE_BLOCKS = [
  encodeHeaderBlock([
    [':method', 'POST'],
    [':scheme', 'http'],
    [':path', '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources'],
    ['content-type', 'application/grpc'],
    ['te', 'trailers'],
  ]),
  // Literal with incremental indexing, Huffman-coded value, then a reference to it.
  Buffer.from([0x40, 0x03, 0x61, 0x62, 0x63, 0x83, 0xc6, 0x4a, 0x6f, 0xbe, 0xbe, 0x20, 0x3f, 0xe1, 0x1f]),
];

test('the HPACK decoder: 100,000 random and mutated blocks, only HpackError, bounded lists', (t) => {
  const random = prng(SEED);
  const started = performance.now();
  let errors = 0;
  for (let i = 0; i < 100_000; i++) {
    const decoder = new HpackDecoder(4096);
    const input =
      i % 2 === 0 ? randomBytes(random, 64) : mutate(random, SAMPLE_BLOCKS[i % SAMPLE_BLOCKS.length]!);
    try {
      const fields = decoder.decode(input, 16 * 1024);
      let bytes = 0;
      for (const [name, value] of fields) bytes += name.length + value.length + 32;
      if (bytes > 16 * 1024) t.fail(`seed ${SEED}, input ${i}: a list of ${bytes} bytes`);
      if (decoder.dynamicTableBytes > 4096)
        t.fail(`seed ${SEED}, input ${i}: table of ${decoder.dynamicTableBytes}`);
    } catch (error) {
      if (!(error instanceof HpackError)) {
        t.fail(`seed ${SEED}, input ${i} (${input.toString('hex')}): ${String(error)}`);
        return;
      }
      errors += 1;
    }
  }
  t.log(`seed ${SEED}: ${errors} of 100000 refused, ${(performance.now() - started).toFixed(0)} ms`);
  t.true(errors > 0 && errors < 100_000, `seed ${SEED}`);
});

/** Stands in for a net.Socket: records what is written, delivers what a test pushes. */
class StandInSocket extends EventEmitter {
  written = 0;
  destroyed = false;
  writableLength = 0;
  writableNeedDrain = false;
  setNoDelay(): void {}
  cork(): void {}
  uncork(): void {}
  pause(): void {}
  resume(): void {}
  write(bytes: Buffer): boolean {
    this.written += bytes.length;
    return true;
  }
  end(): void {
    this.destroy();
  }
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.emit('close');
  }
}

test('the frame decoder: 100,000 random and mutated frame sequences, no crash, bounded output', (t) => {
  const random = prng(SEED ^ 0x5bd1e995);
  const started = performance.now();
  const valid = Buffer.concat([
    encodeSettings([]),
    encodeFrame(FrameType.HEADERS, Flags.END_HEADERS, 1, SAMPLE_BLOCKS[0]),
    encodeFrame(FrameType.DATA, 0, 1, Buffer.from([0, 0, 0, 0, 2, 8, 1])),
    encodeFrame(FrameType.PING, 0, 0, Buffer.alloc(8)),
    encodeFrame(FrameType.WINDOW_UPDATE, 0, 0, Buffer.from([0, 0, 1, 0])),
  ]);
  let protocolErrors = 0;
  for (let i = 0; i < 100_000; i++) {
    const socket = new StandInSocket();
    const connection = new Http2ServerConnection(
      socket as unknown as Socket,
      {
        maxConcurrentStreams: 10,
        receiveWindowBytes: 65_535,
        maxFrameBytes: 16_384,
        limits: DEFAULT_HTTP2_LIMITS,
      },
      {
        onStream: (stream) => {
          stream.handlers = {
            onData: () => undefined,
            onEnd: () => {
              stream.end();
            },
            onDrain: () => undefined,
            onClose: () => undefined,
          };
          stream.respond([[':status', '200']]);
        },
        onProtocolError: () => (protocolErrors += 1),
        onLimitExceeded: () => (protocolErrors += 1),
        onClose: () => undefined,
      },
    );
    const body = i % 2 === 0 ? randomBytes(random, 96) : mutate(random, valid);
    const input = Buffer.concat([CONNECTION_PREFACE, body]);
    try {
      // Delivered in two pieces cut at a random place, as TCP may.
      const cut = Math.floor(random() * input.length);
      socket.emit('data', input.subarray(0, cut));
      socket.emit('data', input.subarray(cut));
    } catch (error) {
      t.fail(`seed ${SEED}, input ${i} (${input.toString('hex')}): ${String(error)}`);
      return;
    }
    connection.destroy();
    if (socket.written > 64 * 1024) t.fail(`seed ${SEED}, input ${i}: ${socket.written} bytes written`);
  }
  t.log(`seed ${SEED}: ${protocolErrors} connections ended, ${(performance.now() - started).toFixed(0)} ms`);
  t.true(protocolErrors > 0, `seed ${SEED}`);
});
