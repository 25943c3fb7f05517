/**
 * Benchmark load: N simulated Envoys, each an ADS stream (SotW or Delta) subscribed to every cluster and
 * its CLA, ACKing every response like Envoy does. Reads only the fields it needs from each response.
 *
 * It speaks gRPC over node:http2 directly rather than through grpc-js's client. All N simulated Envoys
 * share this one process and run one after another, so the last arrival of a change waits for the load's
 * own work on the 999 before it; real Envoys do that work in parallel on their own CPUs. grpc-js spent
 * 35-75 ms of the load's CPU per change on 1000 arrivals, which bench:xds then counted as delivery time.
 */
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import path from 'node:path';
import { codecFor } from '../src/protos/envoy-protos.js';
import { GrpcMessageReader } from '../src/http2/grpc-transport.js';
import { DELTA_DISCOVERY_REQUEST, DISCOVERY_REQUEST } from '../src/xds/messages.js';
import { TypeUrl } from '../src/xds/resource-types.js';
import { DELTA_METHOD_PATH, SOTW_METHOD_PATH } from '../src/xds/server.js';
import { stringField } from '../src/xds/wire.js';

/** A bound, not a size: the first EDS response is 1.1 MB at 1000 clusters × 10 endpoints, and grows with them. */
const MAX_RESPONSE_BYTES = 512 * 1024 * 1024;

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
const encodeRequest = (value: Record<string, unknown>): Buffer =>
  Buffer.from((mode === 'delta' ? deltaCodec : sotwCodec).encode(value));
const clusterNames = Array.from({ length: clusters }, (_, i) => `bench/svc-${i}:http`);

/**
 * BENCH_SIDECAR_SCOPE (bench/xds.ts, BENCH_SIDECARS): every stream is a sidecar (node metadata
 * readygate.io/outbound-port); N > 0 also scopes stream i to N Services, (i + j·101) mod clusters for
 * j < N: every scope distinct, every Service in about N·streams/clusters scopes. 0: every Service.
 */
const sidecarScope = process.env['BENCH_SIDECAR_SCOPE'];
const scopeSize = Number(sidecarScope ?? 0);
function scopeOf(index: number): number[] | undefined {
  if (sidecarScope === undefined || scopeSize <= 0) return undefined;
  return [...new Set(Array.from({ length: scopeSize }, (_, j) => (index + j * 101) % clusters))];
}
function sidecarMetadata(scope: number[] | undefined): Record<string, unknown> | undefined {
  if (sidecarScope === undefined) return undefined;
  const fields: Record<string, unknown> = { 'readygate.io/outbound-port': { number_value: 15001 } };
  if (scope) fields['readygate.io/egress'] = { string_value: scope.map((i) => `bench/svc-${i}`).join(',') };
  return { fields };
}
/** How many streams a change to Service `index` reaches: those whose scope holds it. */
let expectedArrivals = streamsWanted;
function arrivalsFor(index: number | undefined): number {
  if (index === undefined || scopeSize <= 0 || sidecarScope === undefined) return streamsWanted;
  let count = 0;
  for (let i = 0; i < streamsWanted; i++) if (scopeOf(i)?.includes(index) === true) count++;
  return count;
}

/** A SotW EDS ACK repeats every subscribed name, as Envoy's do; the names are encoded once here. */
const encodedNames = encodeRequest({ resource_names: clusterNames });
function sotwEdsAck(version: string, nonce: string, names = encodedNames): Buffer[] {
  // In parts, so the names (20 KB at 1000 clusters) are not copied for every ACK.
  return [stringField(1, version), names, stringField(4, TypeUrl.ENDPOINT), stringField(5, nonce)];
}

/** A delta ACK names only the type and the nonce it answers. */
const deltaTypeFields = new Map<string, Buffer>();
function deltaAck(typeUrl: string, nonce: string): Buffer {
  let typeField = deltaTypeFields.get(typeUrl);
  if (typeField === undefined) {
    typeField = stringField(2, typeUrl);
    deltaTypeFields.set(typeUrl, typeField);
  }
  return Buffer.concat([typeField, stringField(6, nonce)]);
}

function sotwAck(typeUrl: string, version: string, nonce: string): Buffer {
  return Buffer.concat([stringField(1, version), stringField(4, typeUrl), stringField(5, nonce)]);
}

/** Bytes of the EDS ACK this load sends, for the transport floor bench:xds measures beside it. */
function edsAckSize(version: string, nonce: string): number {
  return mode === 'delta'
    ? deltaAck(TypeUrl.ENDPOINT, nonce).length
    : sotwEdsAck(version, nonce).reduce((sum, part) => sum + part.length, 0);
}

/** The 5-byte prefix of an uncompressed gRPC message. */
function grpcPrefix(length: number): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(length, 1);
  return prefix;
}

interface SimStream {
  stream: http2.ClientHttp2Stream;
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

function open(index: number, session: http2.ClientHttp2Session): void {
  const stream = session.request({
    ':method': 'POST',
    ':path': mode === 'delta' ? DELTA_METHOD_PATH : SOTW_METHOD_PATH,
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  const sim: SimStream = { stream, synced: false, edsResponses: 0 };
  streams.push(sim);
  const write = (body: Buffer | Buffer[]): void => {
    const parts = Buffer.isBuffer(body) ? [body] : body;
    stream.cork();
    stream.write(grpcPrefix(parts.reduce((sum, part) => sum + part.length, 0)));
    for (const part of parts) stream.write(part);
    stream.uncork();
  };
  const scope = scopeOf(index);
  const metadata = sidecarMetadata(scope);
  const node = { id: `bench-envoy-${index}`, cluster: 'bench', ...(metadata ? { metadata } : {}) };
  const edsNames = scope ? scope.map((i) => clusterNames[i]!) : clusterNames;
  const encodedEdsNames = scope ? encodeRequest({ resource_names: edsNames }) : encodedNames;
  // Messages are used before the next chunk is pushed, as the reader requires.
  const reader = new GrpcMessageReader(MAX_RESPONSE_BYTES);
  const onResponse = (bytes: Buffer): void => {
    const now = performance.timeOrigin + performance.now();
    const { typeUrl, nonce, version } = scan(bytes);
    if (mode === 'delta') write(deltaAck(typeUrl, nonce));
    else if (typeUrl === TypeUrl.ENDPOINT) write(sotwEdsAck(version, nonce, encodedEdsNames));
    else write(sotwAck(typeUrl, version, nonce));
    if (typeUrl === TypeUrl.CLUSTER && !sim.synced && sim.edsResponses === 0) {
      // Envoy asks for the CLAs of the clusters it just got.
      if (mode === 'delta')
        write(encodeRequest({ type_url: TypeUrl.ENDPOINT, resource_names_subscribe: edsNames }));
      else write(encodeRequest({ type_url: TypeUrl.ENDPOINT, resource_names: edsNames }));
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
        if (changeArrivals.length === expectedArrivals)
          send({ cmd: 'arrivals', times: changeArrivals.splice(0) });
      }
    }
  };
  stream.on('data', (chunk: Buffer) => {
    for (const message of reader.push(chunk)) onResponse(message);
  });
  stream.on('error', () => undefined);
  if (mode === 'delta')
    write(encodeRequest({ node, type_url: TypeUrl.CLUSTER, resource_names_subscribe: ['*'] }));
  else write(encodeRequest({ node, type_url: TypeUrl.CLUSTER, resource_names: [] }));
}

/** BENCH_TLS_DIR: connect with mTLS (client.pem/client.key, trusting ca.pem), as an Envoy with TLS does. */
const tlsDir = process.env['BENCH_TLS_DIR'];
const tlsOptions: http2.SecureClientSessionOptions | undefined =
  tlsDir === undefined
    ? undefined
    : {
        ca: readFileSync(path.join(tlsDir, 'ca.pem')),
        cert: readFileSync(path.join(tlsDir, 'client.pem')),
        key: readFileSync(path.join(tlsDir, 'client.key')),
        servername: 'readygate',
      };

const sessions: http2.ClientHttp2Session[] = [];
for (let i = 0; i < streamsWanted; i++) {
  if (i % STREAMS_PER_CONNECTION === 0) {
    const session = tlsOptions
      ? http2.connect(`https://${address}`, tlsOptions)
      : http2.connect(`http://${address}`);
    session.on('error', () => undefined);
    sessions.push(session);
  }
  open(i, sessions[sessions.length - 1]!);
}

process.on('message', (message: { cmd: string; after?: number; index?: number }) => {
  if (message.cmd === 'expect') {
    expectChangeAfter = message.after ?? 0;
    expectedArrivals = arrivalsFor(message.index);
    send({ cmd: 'expecting' });
  } else if (message.cmd === 'stop') {
    for (const s of streams) s.stream.close(http2.constants.NGHTTP2_CANCEL);
    for (const s of sessions) s.destroy();
    process.exit(0);
  }
});
