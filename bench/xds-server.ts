/**
 * Benchmark control plane, run as its own process so its CPU and memory are measured alone. Holds C
 * services × E endpoints; on `change` it flips one endpoint's port and reports CPU and bytes sent.
 *
 * It runs the compiled code in dist/, what `readygate serve` runs (bench:xds builds first): tsx's
 * transform adds a naming helper to every closure, which showed up in profiles of the hot path.
 *
 * BENCH_ENGINE: `readygate` (default) serves ADS on readygate's HTTP/2 engine, as `serve` does;
 * `node:http2` serves the same control plane on node:http2 (bench/node-http2-grpc.ts, h2c only).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { EndpointModel, ServiceModel } from '../src/model/types.js';

/** A module of dist/, typed as its source (the build emits no declarations). */
async function compiled<T>(modulePath: string): Promise<T> {
  const dist = new URL('../dist/', import.meta.url);
  return (await import(new URL(modulePath, dist).href)) as T;
}
const { createRegistry, registerControlPlaneMetrics } =
  await compiled<typeof import('../src/admin/metrics.js')>('admin/metrics.js');
const { EndpointStore } = await compiled<typeof import('../src/model/store.js')>('model/store.js');
const { startControlPlane } =
  await compiled<typeof import('../src/xds/control-plane.js')>('xds/control-plane.js');
const { limitHeapGrowth } = await compiled<typeof import('../src/cli/heap-growth.js')>('cli/heap-growth.js');

// As `serve` does (BENCH_SERVER_NODE_FLAGS=--heap-growing-percent=N overrides it).
limitHeapGrowth();

const engine = process.env['BENCH_ENGINE'] ?? 'readygate';
if (engine !== 'readygate' && engine !== 'node:http2') {
  throw new Error(`BENCH_ENGINE must be readygate or node:http2, not ${engine}`);
}

/**
 * BENCH_NODE_HTTP2_MODULE: bench/node-http2-grpc.ts compiled by bench/xds.ts, its imports pointed at
 * dist/ (see compileNodeHttp2Engine there), so it runs as the engine it is compared with does.
 */
async function nodeHttp2Engine(): Promise<typeof import('./node-http2-grpc.js')> {
  const file = process.env['BENCH_NODE_HTTP2_MODULE'];
  if (file === undefined)
    throw new Error('BENCH_ENGINE=node:http2 needs BENCH_NODE_HTTP2_MODULE (bench/xds.ts)');
  return (await import(pathToFileURL(file).href)) as typeof import('./node-http2-grpc.js');
}
const grpcServer = engine === 'node:http2' ? (await nodeHttp2Engine()).nodeHttp2GrpcServer : undefined;

const clusters = Number(process.env['BENCH_CLUSTERS'] ?? 1000);
const endpointsPerCluster = Number(process.env['BENCH_ENDPOINTS'] ?? 10);

function serviceAt(index: number, variant: number): ServiceModel {
  const endpoints: EndpointModel[] = [];
  for (let e = 0; e < endpointsPerCluster; e++) {
    endpoints.push({
      addresses: [`10.${(index >> 8) & 255}.${index & 255}.${e + 1}`],
      conditions: { ready: true, serving: true, terminating: false },
      targetRef: { kind: 'Pod', name: `svc-${index}-${e}` },
    });
  }
  // The change under test: one endpoint's conditions flip, as when one pod starts terminating.
  if (variant % 2 === 1)
    endpoints[0] = { ...endpoints[0]!, conditions: { ready: false, serving: true, terminating: true } };
  return {
    namespace: 'bench',
    name: `svc-${index}`,
    ports: [{ key: 'http', port: 8080, targetPort: 8080 }],
    endpoints,
  };
}

const store = new EndpointStore();
store.replaceAll(Array.from({ length: clusters }, (_, i) => serviceAt(i, 0)));
store.markSynced();
const budget = process.env['BENCH_MAX_PENDING_BYTES'];
const stallTimeout = process.env['BENCH_STALL_TIMEOUT_MS'];
/** BENCH_TLS_DIR (set by bench/xds.ts for its TLS runs): mTLS as `serve --tls-*` does, with these files. */
const tlsDir = process.env['BENCH_TLS_DIR'];
const tls =
  tlsDir === undefined
    ? undefined
    : await (
        await compiled<typeof import('../src/tls/reloader.js')>('tls/reloader.js')
      ).startTlsReloader(
        {
          certFile: path.join(tlsDir, 'server.pem'),
          keyFile: path.join(tlsDir, 'server.key'),
          clientCaFile: path.join(tlsDir, 'ca.pem'),
        },
        { logger: (await compiled<typeof import('../src/log.js')>('log.js')).silentLogger },
      );
const CONNECT_STORM_MS = 300_000;
const plane = await startControlPlane({
  store,
  xdsAddress: '127.0.0.1:0',
  ...(budget === undefined ? {} : { maxPendingBytes: Number(budget) }),
  ...(stallTimeout === undefined ? {} : { maxStallMs: Number(stallTimeout) }),
  // 1000 Envoys connecting at once to a loaded 2-core machine, handshakes and prefaces included, take
  // longer than the 10 s and 5 s bounds for one slow client; the load does not reconnect a client cut
  // off, so the run would wait for ever.
  http2Limits: { prefaceTimeoutMs: CONNECT_STORM_MS },
  ...(tls === undefined ? {} : { tls: { reloader: tls, handshakeTimeoutMs: CONNECT_STORM_MS } }),
  ...(grpcServer === undefined ? {} : { grpcServer }),
});
// Metrics are on in `readygate serve`, and they listen to every push and ACK: count their cost too.
registerControlPlaneMetrics(createRegistry(), { sync: plane.sync, cache: plane.cache, store });
let bytesSent = 0;
plane.sync.on('sent', (e) => {
  bytesSent += e.bytes;
});

const send = (message: unknown): void => {
  process.send?.(message);
};
/** Per service, how many times it was changed: odd = its first endpoint is terminating. */
const variants = new Map<number, number>();
process.on('message', (message: { cmd: string; index?: number }) => {
  if (message.cmd === 'change') {
    const index = message.index ?? 0;
    const variant = (variants.get(index) ?? 0) + 1;
    variants.set(index, variant);
    const cpuBefore = process.cpuUsage();
    const bytesBefore = bytesSent;
    const at = performance.timeOrigin + performance.now();
    store.upsert(serviceAt(index, variant));
    // Report once the push is fully written out (after the same-tick coalescing and the fan-out).
    setImmediate(() => {
      setImmediate(() => {
        const cpu = process.cpuUsage(cpuBefore);
        send({ cmd: 'changed', at, cpuMs: (cpu.user + cpu.system) / 1000, bytes: bytesSent - bytesBefore });
      });
    });
  } else if (message.cmd === 'stats') {
    const cpu = process.cpuUsage();
    // The live set: RSS after a connect storm still holds garbage V8 has not handed back.
    const gc = (globalThis as { gc?: () => void }).gc;
    if ((message as { gc?: boolean }).gc === true && gc) gc();
    const memory = process.memoryUsage();
    send({
      cmd: 'stats',
      heapUsedBytes: memory.heapUsed,
      rssBytes: memory.rss,
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
      externalBytes: memory.external,
      heapTotalBytes: memory.heapTotal,
      cpuMs: (cpu.user + cpu.system) / 1000,
      bytesSent,
      streams: plane.sync.streams.length,
    });
  } else if (message.cmd === 'profile-start') {
    void startProfile().then(() => {
      send({ cmd: 'profiling' });
    });
  } else if (message.cmd === 'stop') {
    void stopProfile()
      .then(() => plane.close())
      .then(() => process.exit(0));
  }
});
/** With BENCH_PROFILE_DIR, a CPU profile of the change phase alone (the connect storm would drown it). */
const profileDir = process.env['BENCH_PROFILE_DIR'];
/** BENCH_PROFILE=heap: where the change phase allocates (sampled), instead of where it spends CPU. */
const heapProfile = process.env['BENCH_PROFILE'] === 'heap';
let profiler: Session | undefined;
async function startProfile(): Promise<void> {
  if (profileDir === undefined) return;
  profiler = new Session();
  profiler.connect();
  if (heapProfile) {
    await profiler.post('HeapProfiler.enable');
    // The include* options (count garbage too, not only what survives) are newer than @types/node's
    // protocol types, hence the cast.
    await profiler.post('HeapProfiler.startSampling', {
      samplingInterval: 1024,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    } as never);
    return;
  }
  await profiler.post('Profiler.enable');
  await profiler.post('Profiler.start');
}
async function stopProfile(): Promise<void> {
  if (profiler === undefined || profileDir === undefined) return;
  const { profile } = heapProfile
    ? await profiler.post('HeapProfiler.stopSampling')
    : await profiler.post('Profiler.stop');
  const file = path.join(
    profileDir,
    `xds-server-${process.env['BENCH_MODE'] ?? 'sotw'}${engine === 'readygate' ? '' : '-node-http2'}-changes.${heapProfile ? 'heapprofile' : 'cpuprofile'}`,
  );
  mkdirSync(profileDir, { recursive: true });
  writeFileSync(file, JSON.stringify(profile));
  profiler.disconnect();
}

send({ cmd: 'ready', address: plane.address, engine });
