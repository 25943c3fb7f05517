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
import { GrpcHttp2Server } from '../http2/grpc-transport.js';
import { ADS_SERVER_SETTINGS, AdsService } from './server.js';
import { SyncStatus } from './sync-status.js';
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
  /** Cap on bytes written to all streams but not yet sent (default 8 MiB); see SendBudget. */
  readonly maxBytesInFlight?: number;
}

export interface ControlPlane {
  readonly address: string;
  readonly port: number;
  readonly cache: ResourceCache;
  readonly sync: SyncStatus;
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

  constructor(store: EndpointStore, cache: ResourceCache, options: TranslateOptions, logger: Logger) {
    this.#store = store;
    this.#cache = cache;
    this.#options = options;
    this.#logger = logger;
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
  const pipeline = new TranslationPipeline(
    options.store,
    cache,
    options.translate ?? DEFAULT_TRANSLATE_OPTIONS,
    logger,
  );
  const ads = new AdsService({
    cache,
    sync,
    logger,
    ...(options.maxBytesInFlight === undefined ? {} : { maxBytesInFlight: options.maxBytesInFlight }),
  });
  const server = new GrpcHttp2Server({
    ...ADS_SERVER_SETTINGS,
    methods: ads.methods(),
    onProtocolError: (peer, message) => {
      logger.warn({ peer, message }, 'xds connection ended: HTTP/2 protocol error');
    },
  });
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
  logger.info({ address }, 'xDS server listening');

  return {
    address,
    port: boundPort,
    cache,
    sync,
    flush: () => {
      pipeline.flush();
    },
    close: async () => {
      pipeline.close();
      ads.closeAll('readygate is shutting down');
      await server.close(2000);
    },
  };
}
