/**
 * Prometheus metrics for the control plane. Everything is driven by SyncStatus and cache events, so the
 * protocol code carries no metric calls of its own.
 */
import { Counter, Gauge, Histogram, collectDefaultMetrics, Registry } from 'prom-client';
import { Http2Limit, type Http2LimitReports } from '../http2/limits.js';
import type { EndpointStore } from '../model/store.js';
import { PUSH_ORDER, type ResourceCache } from '../xds/cache.js';
import { shortTypeName } from '../xds/resource-types.js';
import type { AdsConnectionEvents } from '../xds/server.js';
import type { SyncStatus } from '../xds/sync-status.js';

/** Istio's pilot_proxy_convergence_time bucket edges, so dashboards compare like with like. */
export const CONVERGENCE_BUCKETS_SECONDS = [0.1, 0.5, 1, 3, 5, 10, 20, 30];

export function createRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'readygate_' });
  return registry;
}

export function registerControlPlaneMetrics(
  registry: Registry,
  sources: {
    sync: SyncStatus;
    cache: ResourceCache;
    store: EndpointStore;
    http2Limits?: Http2LimitReports;
    connections?: AdsConnectionEvents;
  },
): void {
  const { sync, cache, store } = sources;
  const limitExceeded = new Counter({
    name: 'readygate_http2_limit_exceeded_total',
    help: 'ADS connections cut off for crossing an HTTP/2 limit (docs/security.md), by limit.',
    labelNames: ['limit'],
    registers: [registry],
  });
  // Every limit shows, at 0 until crossed, so an alert can watch a series that exists.
  for (const limit of Object.values(Http2Limit)) limitExceeded.inc({ limit }, 0);
  sources.http2Limits?.on('exceeded', (limit) => {
    limitExceeded.inc({ limit });
  });
  const closed = new Counter({
    name: 'readygate_xds_connections_closed_total',
    help: 'xDS client connections readygate closed; reason stalled: they drained nothing for --xds-stall-timeout.',
    labelNames: ['reason'],
    registers: [registry],
  });
  closed.inc({ reason: 'stalled' }, 0);
  sources.connections?.on('closed', (e) => {
    closed.inc({ reason: e.reason });
  });
  new Gauge({
    name: 'readygate_xds_connected_proxies',
    help: 'ADS streams open, by protocol variant.',
    labelNames: ['stream'],
    registers: [registry],
    collect() {
      const counts = { sotw: 0, delta: 0 };
      for (const s of sync.streams) counts[s.kind] += 1;
      this.set({ stream: 'sotw' }, counts.sotw);
      this.set({ stream: 'delta' }, counts.delta);
    },
  });
  const pushes = new Counter({
    name: 'readygate_xds_pushes_total',
    help: 'DiscoveryResponses sent, by type.',
    labelNames: ['type'],
    registers: [registry],
  });
  const pushBytes = new Counter({
    name: 'readygate_xds_push_bytes_total',
    help: 'Bytes of DiscoveryResponses sent, by type.',
    labelNames: ['type'],
    registers: [registry],
  });
  const acks = new Counter({
    name: 'readygate_xds_acks_total',
    help: 'Responses Envoy accepted, by type.',
    labelNames: ['type'],
    registers: [registry],
  });
  const nacks = new Counter({
    name: 'readygate_xds_nacks_total',
    help: 'Responses Envoy rejected, by type.',
    labelNames: ['type'],
    registers: [registry],
  });
  const convergence = new Histogram({
    name: 'readygate_xds_convergence_seconds',
    help: 'Time from sending a response to its ACK, by type.',
    labelNames: ['type'],
    buckets: CONVERGENCE_BUCKETS_SECONDS,
    registers: [registry],
  });
  new Gauge({
    name: 'readygate_xds_resources',
    help: 'Resources in the cache, by type.',
    labelNames: ['type'],
    registers: [registry],
    collect() {
      for (const typeUrl of PUSH_ORDER) this.set({ type: shortTypeName(typeUrl) }, cache.count(typeUrl));
    },
  });
  new Gauge({
    name: 'readygate_model_services',
    help: 'Services in the endpoint model.',
    registers: [registry],
    collect() {
      this.set(store.size);
    },
  });
  // Labelled children resolved once per type: these handlers run for every push and ACK of every stream.
  // Keyed by the short name, which is bounded: a client can send any number of unknown type URLs.
  const perType = new Map<string, ReturnType<typeof childrenFor>>();
  const childrenFor = (type: string) => {
    const labels = { type };
    return {
      pushes: pushes.labels(labels),
      pushBytes: pushBytes.labels(labels),
      acks: acks.labels(labels),
      convergence: convergence.labels(labels),
    };
  };
  const children = (typeUrl: string) => {
    const type = shortTypeName(typeUrl);
    let found = perType.get(type);
    if (!found) perType.set(type, (found = childrenFor(type)));
    return found;
  };
  sync.on('sent', (e) => {
    const c = children(e.typeUrl);
    c.pushes.inc();
    c.pushBytes.inc(e.bytes);
  });
  sync.on('ack', (e) => {
    const c = children(e.typeUrl);
    c.acks.inc();
    c.convergence.observe(e.latencySeconds);
  });
  sync.on('nack', (e) => {
    nacks.inc({ type: shortTypeName(e.typeUrl) });
  });
}
