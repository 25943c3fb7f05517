/**
 * Benchmark load: BENCH_STALLED connections that stop draining, each one ADS stream subscribed like an
 * Envoy (all clusters, then all their CLAs) that announces a flow-control window of 0 and never grants
 * any, so readygate can never send it a byte of DATA. It reads what else comes and answers PINGs, as a
 * live but stuck peer would. bench:xds measures the healthy streams with these present (issue 16:
 * change→all p99 within 1.2× of the run without them).
 */
import net from 'node:net';
import {
  CONNECTION_PREFACE,
  encodeFrame,
  encodeSettings,
  Flags,
  FRAME_HEADER_BYTES,
  FrameType,
  readFrameHeader,
  Setting,
} from '../src/http2/frames.js';
import { frameMessage } from '../src/http2/grpc-transport.js';
import { encodeHeaderBlock } from '../src/http2/hpack.js';
import { codecFor } from '../src/protos/envoy-protos.js';
import { DISCOVERY_REQUEST } from '../src/xds/messages.js';
import { TypeUrl } from '../src/xds/resource-types.js';
import { SOTW_METHOD_PATH } from '../src/xds/server.js';

const [host, port] = (process.env['BENCH_ADDRESS'] ?? '').split(':');
const count = Number(process.env['BENCH_STALLED'] ?? 10);
const clusters = Number(process.env['BENCH_CLUSTERS'] ?? 1000);
const codec = codecFor<Record<string, unknown>>(DISCOVERY_REQUEST);

const headers = encodeHeaderBlock([
  [':method', 'POST'],
  [':scheme', 'http'],
  [':path', SOTW_METHOD_PATH],
  [':authority', 'readygate'],
  ['content-type', 'application/grpc'],
  ['te', 'trailers'],
]);
const clusterNames = Array.from({ length: clusters }, (_, i) => `bench/svc-${i}:http`);

const sockets: net.Socket[] = [];
let answered = 0;
for (let i = 0; i < count; i++) {
  const socket = net.connect(Number(port), host);
  sockets.push(socket);
  socket.on('error', () => undefined);
  let input = Buffer.alloc(0);
  let responded = false;
  socket.on('data', (chunk: Buffer) => {
    input = Buffer.concat([input, chunk]);
    while (input.length >= FRAME_HEADER_BYTES) {
      const header = readFrameHeader(input, 0);
      const end = FRAME_HEADER_BYTES + header.length;
      if (input.length < end) break;
      if (header.type === FrameType.PING && (header.flags & Flags.ACK) === 0)
        socket.write(encodeFrame(FrameType.PING, Flags.ACK, 0, input.subarray(FRAME_HEADER_BYTES, end)));
      if (header.type === FrameType.HEADERS && !responded) {
        responded = true;
        answered += 1;
        if (answered === count) process.send?.({ cmd: 'stalled', connections: count });
      }
      input = input.subarray(end);
    }
  });
  const body = Buffer.concat([
    frameMessage([codec.encode({ node: { id: `stalled-${i}` }, type_url: TypeUrl.CLUSTER })]),
    frameMessage([codec.encode({ type_url: TypeUrl.ENDPOINT, resource_names: clusterNames })]),
  ]);
  socket.write(
    Buffer.concat([
      CONNECTION_PREFACE,
      encodeSettings([[Setting.INITIAL_WINDOW_SIZE, 0]]),
      encodeFrame(FrameType.SETTINGS, Flags.ACK, 0),
      encodeFrame(FrameType.HEADERS, Flags.END_HEADERS, 1, headers),
      encodeFrame(FrameType.DATA, 0, 1, body),
    ]),
  );
}

process.on('message', (message: { cmd: string }) => {
  if (message.cmd === 'stop') {
    for (const socket of sockets) socket.destroy();
    process.exit(0);
  }
});
