/**
 * The xDS control plane assembled: endpoint store → translation → cache → ADS streams. Translation runs
 * per changed service, and all changes that arrive in one turn of the event loop go out as one push:
 * no debounce timer, nothing waits that does not have to.
 */
import { ErrorCode, ReadygateError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import type { EndpointStore, StoreChange } from '../model/store.js';
import type { ServiceKey, ServiceModel } from '../model/types.js';
import { formatHostPort, parseHostPort } from '../net.js';
import { ResourceCache, type ResourceRef } from './cache.js';
import { OutboundCatalog } from './outbound-catalog.js';
import { OutboundViews } from './outbound-views.js';
import type { GrpcServer } from '../http2/grpc-call.js';
import { GrpcHttp2Server, type GrpcHttp2ServerOptions } from '../http2/grpc-transport.js';
import { Http2LimitReports, type Http2Limits } from '../http2/limits.js';
import { ADS_SERVER_SETTINGS, type AdsConnectionEvents, AdsService } from './server.js';
import { SyncStatus } from './sync-status.js';
import { createTlsListener } from '../tls/server.js';
import type { TlsMetrics } from '../tls/metrics.js';
import { tlsMode, type TlsReloader } from '../tls/reloader.js';
import {
  DEFAULT_TRANSLATE_OPTIONS,
  translateService,
  type ResourceDraft,
  type TranslateOptions,
} from './translate.js';

export interface ControlPlaneOptions {
  readonly store: EndpointStore;
  /** HOST:PORT for the ADS gRPC server; port 0 picks a free one. */
  readonly xdsAddress: string;
  readonly translate?: TranslateOptions;
  readonly logger?: Logger;
  /**
   * Answer no xDS request until the store is synced (every source delivered its first complete view):
   * until then streams are accepted and held, so an Envoy keeps its last good config instead of being told
   * that nothing exists. `serve` always sets it; tests that fill a store by hand leave it off.
   */
  readonly holdUntilSynced?: boolean;
  /** The ADS port's HTTP/2 flood and resource limits, over the defaults (docs/security.md). */
  readonly http2Limits?: Partial<Http2Limits>;
  /** Send budgets and the stall bound (defaults in server.ts, reasons in send-budget.ts). */
  readonly maxPendingBytesPerConnection?: number;
  readonly maxPendingBytes?: number;
  readonly maxStallMs?: number;
  /** Serve ADS over TLS (mTLS when the material has a client CA) instead of h2c. */
  readonly tls?: {
    readonly reloader: TlsReloader;
    readonly handshakeTimeoutMs: number;
    readonly metrics?: TlsMetrics;
  };
  /**
   * Makes the gRPC server ADS is served on, from the options readygate's own engine gets: the ADS
   * methods, ADS_SERVER_SETTINGS, the HTTP/2 limits, the reporting hooks and, with `tls`, the TLS
   * listener (`createListener`; a server that cannot use it must throw). Default: GrpcHttp2Server.
   * Only bench:xds sets it, to run this same control plane on node:http2 (bench/node-http2-grpc.ts) and
   * compare the two engines (issue 16); `serve` has no way to.
   */
  readonly grpcServer?: (options: GrpcHttp2ServerOptions) => GrpcServer;
}

export interface ControlPlane {
  readonly address: string;
  readonly port: number;
  readonly cache: ResourceCache;
  readonly sync: SyncStatus;
  /** Connections cut off for crossing an HTTP/2 limit, for metrics. */
  readonly http2Limits: Http2LimitReports;
  /** Client connections readygate closed because they stopped draining, for metrics. */
  readonly connections: AdsConnectionEvents;
  /** Applies pending model changes now instead of at the end of the tick (tests, benchmarks). */
  flush(): void;
  /** Ends all streams with UNAVAILABLE and stops the server. */
  close(): Promise<void>;
}

/** Keeps the cache equal to the translation of the store, service by service. */
export class TranslationPipeline {
  readonly #store: EndpointStore;
  readonly #cache: ResourceCache;
  readonly #options: TranslateOptions;
  readonly #logger: Logger;
  readonly #catalog: OutboundCatalog | undefined;
  /** The resources each service produced last time, to know what to remove. */
  readonly #produced = new Map<ServiceKey, readonly ResourceRef[]>();
  /** Translation by model identity: an unchanged service is never translated or encoded again. */
  readonly #translated = new WeakMap<ServiceModel, readonly ResourceDraft[]>();
  readonly #dirty = new Set<ServiceKey>();
  #scheduled = false;
  readonly #onChange = (change: StoreChange): void => {
    for (const key of change.changed) this.#dirty.add(key);
    for (const key of change.removed) this.#dirty.add(key);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => {
        this.flush();
      });
    }
  };

  constructor(
    store: EndpointStore,
    cache: ResourceCache,
    options: TranslateOptions,
    logger: Logger,
    catalog?: OutboundCatalog,
  ) {
    this.#store = store;
    this.#cache = cache;
    this.#options = options;
    this.#logger = logger;
    this.#catalog = catalog;
    for (const service of store.services) this.#dirty.add(`${service.namespace}/${service.name}`);
    store.on('change', this.#onChange);
    this.flush();
  }

  flush(): void {
    this.#scheduled = false;
    if (this.#dirty.size === 0) return;
    const upserts: ResourceDraft[] = [];
    const removals: ResourceRef[] = [];
    for (const key of this.#dirty) {
      const service = this.#store.get(key);
      this.#catalog?.update(key, service);
      let drafts: readonly ResourceDraft[] = [];
      if (service) {
        try {
          drafts = this.#translate(service);
        } catch (error) {
          // Keep serving what this service had: a bad object must not empty a cluster.
          this.#logger.error(
            { service: key, err: errorMessage(error) },
            'cannot translate service; keeping its last resources',
          );
          continue;
        }
      }
      const names = new Set(drafts.map((d) => `${d.typeUrl} ${d.name}`));
      for (const ref of this.#produced.get(key) ?? []) {
        if (!names.has(`${ref.typeUrl} ${ref.name}`)) removals.push(ref);
      }
      upserts.push(...drafts);
      if (service)
        this.#produced.set(
          key,
          drafts.map((d) => ({ typeUrl: d.typeUrl, name: d.name })),
        );
      else this.#produced.delete(key);
    }
    this.#dirty.clear();
    try {
      this.#cache.update(upserts, removals);
    } catch (error) {
      this.#logger.error({ err: errorMessage(error) }, 'cannot encode resources; keeping the last good ones');
    }
    // Sidecars' routes changed with no resource change to carry them (a port renumbered): send them now.
    this.#catalog?.publish();
  }

  close(): void {
    this.#store.off('change', this.#onChange);
  }

  #translate(service: ServiceModel): readonly ResourceDraft[] {
    let drafts = this.#translated.get(service);
    if (!drafts) {
      drafts = translateService(service, this.#options);
      this.#translated.set(service, drafts);
    }
    return drafts;
  }
}

export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const logger = options.logger ?? silentLogger;
  const cache = new ResourceCache();
  const sync = new SyncStatus();
  const catalog = new OutboundCatalog();
  const views = new OutboundViews(cache, catalog);
  const pipeline = new TranslationPipeline(
    options.store,
    cache,
    options.translate ?? DEFAULT_TRANSLATE_OPTIONS,
    logger,
    catalog,
  );
  // Every type (CDS, EDS, LDS, RDS) is fed by the one store, so one hold covers them all. It is released
  // after the pipeline has turned the first complete view into resources, never before.
  let releaseOnSync: (() => void) | undefined;
  if (options.holdUntilSynced === true && !options.store.synced) {
    cache.hold();
    releaseOnSync = () => {
      pipeline.flush();
      cache.release();
      logger.info({ event: 'xds.released' }, 'sources synced: answering xDS requests');
    };
    options.store.once('synced', releaseOnSync);
  }
  const ads = new AdsService({
    cache,
    sync,
    logger,
    views,
    ...definedOnly({
      maxPendingBytesPerConnection: options.maxPendingBytesPerConnection,
      maxPendingBytes: options.maxPendingBytes,
      maxStallMs: options.maxStallMs,
    }),
  });
  const tls = options.tls;
  const http2Limits = new Http2LimitReports();
  // One line per connection cut off, but a flood of connections must not become a flood of lines.
  const lines = http2Limits.logBudget();
  const serverOptions: GrpcHttp2ServerOptions = {
    ...ADS_SERVER_SETTINGS,
    methods: ads.methods(),
    ...(options.http2Limits === undefined ? {} : { limits: options.http2Limits }),
    ...(tls
      ? {
          createListener: (accept, highWaterMark) =>
            createTlsListener(
              {
                reloader: tls.reloader,
                handshakeTimeoutMs: tls.handshakeTimeoutMs,
                ...(tls.metrics ? { metrics: tls.metrics } : {}),
                listener: 'xds',
                logger,
                highWaterMark,
              },
              accept,
            ),
        }
      : {}),
    onProtocolError: (peer, message) => {
      if (lines.take() === undefined) return;
      logger.warn({ peer, message }, 'xds connection ended: HTTP/2 protocol error');
    },
    onLimitExceeded: (peer, limit, message) => {
      http2Limits.report(limit, peer);
      const suppressed = lines.take();
      if (suppressed === undefined) return;
      logger.warn(
        { peer, limit, message, ...(suppressed > 0 ? { suppressedLines: suppressed } : {}) },
        'xds connection cut off: HTTP/2 limit exceeded',
      );
    },
  };
  const server = options.grpcServer?.(serverOptions) ?? new GrpcHttp2Server(serverOptions);
  const { host, port } = parseHostPort(options.xdsAddress);
  let boundPort: number;
  try {
    boundPort = await server.listen(host, port);
  } catch (error) {
    throw new ReadygateError(
      ErrorCode.LISTEN_FAILED,
      `xDS server cannot listen on ${options.xdsAddress}: ${errorMessage(error)}`,
      { cause: error },
    );
  }
  const address = formatHostPort(host, boundPort);
  logger.info({ address, tls: tlsMode(options.tls?.reloader) }, 'xDS server listening');

  return {
    address,
    port: boundPort,
    cache,
    sync,
    http2Limits,
    connections: ads.events,
    flush: () => {
      pipeline.flush();
    },
    close: async () => {
      if (releaseOnSync) options.store.off('synced', releaseOnSync);
      pipeline.close();
      views.close();
      ads.closeAll('readygate is shutting down');
      await server.close(2000);
    },
  };
}

/** The entries whose value is set (exactOptionalPropertyTypes: an option is absent, not undefined). */
function definedOnly<T extends object>(values: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(values).filter(([, value]) => value !== undefined)) as {
    [K in keyof T]?: Exclude<T[K], undefined>;
  };
}
