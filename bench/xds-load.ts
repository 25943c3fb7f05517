/**
 * Benchmark load: N simulated Envoys, each an ADS stream (SotW or Delta) subscribed to every cluster and
 * its CLA, ACKing every response like Envoy does. Reads only the fields it needs from each response.
 */
import * as grpc from '@grpc/grpc-js';
import { codecFor } from '../src/protos/envoy-protos.js';
import { DELTA_DISCOVERY_REQUEST, DISCOVERY_REQUEST } from '../src/xds/messages.js';
import { TypeUrl } from '../src/xds/resource-types.js';
import { DELTA_METHOD_PATH, SOTW_METHOD_PATH } from '../src/xds/server.js';

const address = process.env['BENCH_ADDRESS']!;
const streamsWanted = Number(process.env['BENCH_STREAMS'] ?? 1000);
const clusters = Number(process.env['BENCH_CLUSTERS'] ?? 1000);
const mode = process.env['BENCH_MODE'] === 'delta' ? 'delta' : 'sotw';
/**
 * Envoy opens one HTTP/2 connection per ADS stream; BENCH_STREAMS_PER_CONNECTION > 1 multiplexes
 * simulated Envoys onto fewer connections (lighter for the load process, less like production).
 */
const STREAMS_PER_CONNECTION = Number(process.env['BENCH_STREAMS_PER_CONNECTION'] ?? 1);

/** Fields 4 (type_url) and 5 (nonce) of a (Delta)DiscoveryResponse, skipping the resources. */
function scan(bytes: Buffer): { typeUrl: string; nonce: string; version: string } {
  let offset = 0;
  let typeUrl = '';
  let nonce = '';
  let version = '';
  const varint = (): number => {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = bytes[offset++]!;
      result += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return result;
      shift += 7;
    }
  };
  while (offset < bytes.length) {
    const tag = varint();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (wire !== 2) throw new Error(`unexpected wire type ${wire}`);
    const length = varint();
    if (field === 1) version = bytes.toString('utf8', offset, offset + length);
    if (field === 4) typeUrl = bytes.toString('utf8', offset, offset + length);
    if (field === 5) nonce = bytes.toString('utf8', offset, offset + length);
    offset += length;
  }
  return { typeUrl, nonce, version };
}

const sotwCodec = codecFor<Record<string, unknown>>(DISCOVERY_REQUEST);
const deltaCodec = codecFor<Record<string, unknown>>(DELTA_DISCOVERY_REQUEST);
const definition = {
  ads: {
    path: mode === 'delta' ? DELTA_METHOD_PATH : SOTW_METHOD_PATH,
    requestStream: true,
    responseStream: true,
    requestSerialize: (value: Record<string, unknown> | Buffer) =>
      Buffer.isBuffer(value) ? value : (mode === 'delta' ? deltaCodec : sotwCodec).encode(value),
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => b,
  },
};
const Client = grpc.makeGenericClientConstructor(definition, 'ads');
const clusterNames = Array.from({ length: clusters }, (_, i) => `bench/svc-${i}:http`);

/** A SotW EDS ACK repeats every subscribed name, as Envoy's do; the names are encoded once here. */
const encodedNames = sotwCodec.encode({ resource_names: clusterNames });
function stringField(field: number, value: string): Buffer {
  const body = Buffer.from(value, 'utf8');
  return Buffer.concat([Buffer.from([(field << 3) | 2]), varintBytes(body.length), body]);
}
function varintBytes(n: number): Buffer {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}
function sotwEdsAck(version: string, nonce: string): Buffer {
  return Buffer.concat([
    stringField(1, version),
    encodedNames,
    stringField(4, TypeUrl.ENDPOINT),
    stringField(5, nonce),
  ]);
}

/** Bytes of the EDS ACK this load sends, for the transport floor bench:xds measures beside it. */
function edsAckSize(version: string, nonce: string): number {
  return mode === 'delta'
    ? deltaCodec.encode({ type_url: TypeUrl.ENDPOINT, response_nonce: nonce }).length
    : sotwEdsAck(version, nonce).length;
}

interface SimStream {
  call: grpc.ClientDuplexStream<Record<string, unknown> | Buffer, Buffer>;
  synced: boolean;
  edsResponses: number;
}
const streams: SimStream[] = [];
let expectChangeAfter = Infinity;
const changeArrivals: number[] = [];
let syncedCount = 0;
const startedAt = performance.timeOrigin + performance.now();

const send = (message: unknown): void => {
  process.send?.(message);
};

function open(index: number, client: grpc.Client): void {
  const call = (
    client as unknown as { ads: () => grpc.ClientDuplexStream<Record<string, unknown> | Buffer, Buffer> }
  ).ads();
  const sim: SimStream = { call, synced: false, edsResponses: 0 };
  streams.push(sim);
  const node = { id: `bench-envoy-${index}`, cluster: 'bench' };
  call.on('data', (bytes: Buffer) => {
    const now = performance.timeOrigin + performance.now();
    const { typeUrl, nonce, version } = scan(bytes);
    if (mode === 'delta') call.write({ type_url: typeUrl, response_nonce: nonce });
    else if (typeUrl === TypeUrl.ENDPOINT) call.write(sotwEdsAck(version, nonce));
    else call.write({ type_url: typeUrl, version_info: version, response_nonce: nonce });
    if (typeUrl === TypeUrl.CLUSTER && !sim.synced && sim.edsResponses === 0) {
      // Envoy asks for the CLAs of the clusters it just got.
      if (mode === 'delta')
        call.write({ type_url: TypeUrl.ENDPOINT, resource_names_subscribe: clusterNames });
      else call.write({ type_url: TypeUrl.ENDPOINT, resource_names: clusterNames });
    }
    if (typeUrl === TypeUrl.ENDPOINT) {
      sim.edsResponses += 1;
      if (!sim.synced) {
        sim.synced = true;
        syncedCount += 1;
        if (syncedCount === streamsWanted)
          send({ cmd: 'synced', ms: now - startedAt, edsAckBytes: edsAckSize(version, nonce) });
      } else if (now >= expectChangeAfter) {
        changeArrivals.push(now);
        if (changeArrivals.length === streamsWanted)
          send({ cmd: 'arrivals', times: changeArrivals.splice(0) });
      }
    }
  });
  call.on('error', () => undefined);
  if (mode === 'delta') call.write({ node, type_url: TypeUrl.CLUSTER, resource_names_subscribe: ['*'] });
  else call.write({ node, type_url: TypeUrl.CLUSTER, resource_names: [] });
}

const channels: grpc.Client[] = [];
for (let i = 0; i < streamsWanted; i++) {
  if (i % STREAMS_PER_CONNECTION === 0)
    channels.push(
      new Client(address, grpc.credentials.createInsecure(), {
        'grpc.max_receive_message_length': 64 * 1024 * 1024,
        // Without it grpc-js shares one connection between every channel to the same address.
        'grpc.use_local_subchannel_pool': 1,
      }),
    );
  open(i, channels[channels.length - 1]!);
}

process.on('message', (message: { cmd: string; after?: number }) => {
  if (message.cmd === 'expect') {
    expectChangeAfter = message.after ?? 0;
    send({ cmd: 'expecting' });
  } else if (message.cmd === 'stop') {
    for (const s of streams) s.call.cancel();
    for (const c of channels) c.close();
    process.exit(0);
  }
});
