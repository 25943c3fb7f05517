/**
 * The Kubernetes source: Services and EndpointSlices (discovery.k8s.io/v1) from the API into the
 * EndpointStore, through the same model and eligibility rules as the file source.
 *
 * Level-based: every event only marks a Service dirty; dirty Services are rebuilt from the cached objects
 * and written to the store, which drops writes that change nothing. Relists, spurious updates and reconnects
 * therefore push nothing unless something really changed. Nothing reaches the store before every watcher
 * has completed its first list, so a half-listed cluster never looks like empty Services.
 */
import type { KubeConfig, KubernetesObject, V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { Counter, Gauge, type Metric, type Registry } from 'prom-client';
import { errorMessage } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { EndpointStore } from '../model/store.js';
import type { ServiceKey, ServiceModel } from '../model/types.js';
import type { ServiceModelDecorator } from './kubernetes-pods.js';
import {
  objectKey,
  SERVICE_NAME_LABEL,
  serviceKeyOfSlice,
  translateService,
} from './kubernetes-translate.js';
import {
  DEFAULT_BACKOFF,
  DEFAULT_WATCH_TIMEOUTS,
  ResourceWatcher,
  type BackoffOptions,
  type RelistReason,
  type ResourceWatcherMetrics,
  type WatchHealth,
  type WatchTimeouts,
  type WatchedResource,
} from './kubernetes-watch.js';

export { loadKubeConfig, type LoadKubeConfigOptions } from './kubernetes-config.js';
export { DEFAULT_WATCH_TIMEOUTS, type WatchHealth, type WatchTimeouts } from './kubernetes-watch.js';

export interface KubernetesSourceOptions {
  store: EndpointStore;
  kubeConfig: KubeConfig;
  /** Namespaces to watch; empty or absent = all namespaces. */
  namespaces?: readonly string[];
  /** Kubernetes label selector on Services; slices of Services it excludes are ignored. */
  labelSelector?: string;
  logger?: Logger;
  /** Deadlines of the list+watch loop (response head, whole list, watch silence); see WatchTimeouts. */
  timeouts?: Partial<WatchTimeouts>;
  registry?: Registry;
  /** Restart delays after a watch error. */
  backoff?: BackoffOptions;
  /**
   * Readiness-gate hook (src/sources/kubernetes-pods.ts): adjusts every built model (marks gate-pending
   * endpoints) and names Services to rebuild when the pods it watches change. Absent = no Pod watch.
   */
  modelDecorator?: ServiceModelDecorator;
}

export interface KubernetesSource {
  close(): Promise<void>;
  /** True once every watcher completed its first full list and the store holds the cluster's state. */
  readonly synced: boolean;
  /** Per watch: can changes arrive? (for /readyz) */
  health(): WatchHealth[];
  /** The uid of a watched Service (Events name their object by uid), or undefined when unknown. */
  serviceUid(key: ServiceKey): string | undefined;
}

export async function startKubernetesSource(options: KubernetesSourceOptions): Promise<KubernetesSource> {
  const source = new KubernetesSourceImpl(options);
  source.start();
  return Promise.resolve(source);
}

/** Slices grouped by the Service they belong to, kept from watch events; the informer cache is per scope. */
class SliceIndex {
  readonly #byService = new Map<ServiceKey, Map<string, V1EndpointSlice>>();
  /** slice key → service key, to notice a slice whose service-name label changed. */
  readonly #serviceOf = new Map<string, ServiceKey>();

  /** Stores a slice; returns the Service keys whose endpoints may have changed. */
  set(sliceKey: string, slice: V1EndpointSlice): ServiceKey[] {
    const affected = this.remove(sliceKey);
    const owner = serviceKeyOfSlice(slice);
    if (owner === undefined) return affected;
    let slices = this.#byService.get(owner);
    if (!slices) {
      slices = new Map();
      this.#byService.set(owner, slices);
    }
    slices.set(sliceKey, slice);
    this.#serviceOf.set(sliceKey, owner);
    if (!affected.includes(owner)) affected.push(owner);
    return affected;
  }

  remove(sliceKey: string): ServiceKey[] {
    const owner = this.#serviceOf.get(sliceKey);
    if (owner === undefined) return [];
    this.#serviceOf.delete(sliceKey);
    const slices = this.#byService.get(owner);
    slices?.delete(sliceKey);
    if (slices?.size === 0) this.#byService.delete(owner);
    return [owner];
  }

  slicesOf(service: ServiceKey): V1EndpointSlice[] {
    return [...(this.#byService.get(service)?.values() ?? [])];
  }

  keys(): IterableIterator<string> {
    return this.#serviceOf.keys();
  }
}

class KubernetesSourceImpl implements KubernetesSource {
  readonly #store: EndpointStore;
  readonly #logger: Logger;
  readonly #timeouts: WatchTimeouts;
  readonly #watchers: ResourceWatcher<KubernetesObject>[] = [];
  readonly #services = new Map<ServiceKey, V1Service>();
  readonly #slices = new SliceIndex();
  readonly #dirty = new Set<ServiceKey>();
  /** Last warnings logged per Service, so a problem is logged when it appears, not on every rebuild. */
  readonly #reported = new Map<ServiceKey, string>();
  readonly #metrics: KubernetesWatchMetrics | undefined;
  #flushScheduled: NodeJS.Immediate | undefined;
  #synced = false;
  #closed = false;
  readonly #decorator: ServiceModelDecorator | undefined;
  readonly #stopDecorator: (() => void) | undefined;

  constructor(options: KubernetesSourceOptions) {
    this.#store = options.store;
    this.#decorator = options.modelDecorator;
    this.#stopDecorator = this.#decorator?.onInvalidate((services) => {
      if (this.#closed) return;
      for (const key of services) this.#markDirty(key);
      // An empty list = the decorator completed its first view (the pods): the first sync may be due.
      if (!this.#synced && services.length === 0) this.#scheduleFlush();
    });
    this.#logger = (options.logger ?? silentLogger).child({ component: 'kubernetes-source' });
    this.#timeouts = { ...DEFAULT_WATCH_TIMEOUTS, ...options.timeouts };
    this.#metrics = options.registry ? kubernetesWatchMetrics(options.registry) : undefined;
    const backoff = options.backoff ?? DEFAULT_BACKOFF;
    const namespaces =
      options.namespaces && options.namespaces.length > 0 ? [...new Set(options.namespaces)] : [undefined];
    const serviceSelector = options.labelSelector?.trim() ? options.labelSelector.trim() : undefined;

    for (const namespace of namespaces) {
      this.#add<V1Service>(options.kubeConfig, backoff, servicesIn(namespace, serviceSelector), {
        upsert: (service) => {
          this.#onServiceUpsert(service);
        },
        delete: (service) => {
          this.#onServiceDelete(service);
        },
        listed: (services) => {
          this.#onServicesListed(namespace, services);
        },
      });
      this.#add<V1EndpointSlice>(options.kubeConfig, backoff, endpointSlicesIn(namespace), {
        upsert: (slice) => {
          this.#onSliceUpsert(slice);
        },
        delete: (slice) => {
          this.#onSliceDelete(slice);
        },
        listed: (slices) => {
          this.#onSlicesListed(namespace, slices);
        },
      });
      // Seam for Pods (readiness gates, later): one more watcher per namespace feeding its own index.
    }
    this.#logger.info(
      { namespaces: namespaces.map((n) => n ?? '*'), labelSelector: serviceSelector ?? '' },
      'watching Services and EndpointSlices',
    );
  }

  get synced(): boolean {
    return this.#synced;
  }

  health(): WatchHealth[] {
    return this.#watchers.map((watcher) => watcher.health);
  }

  serviceUid(key: ServiceKey): string | undefined {
    return this.#services.get(key)?.metadata?.uid ?? undefined;
  }

  start(): void {
    for (const watcher of this.#watchers) watcher.start();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopDecorator?.();
    if (this.#flushScheduled) clearImmediate(this.#flushScheduled);
    await Promise.all(this.#watchers.map((watcher) => watcher.close()));
    this.#metrics?.synced.set(0);
  }

  #add<T extends KubernetesObject>(
    kubeConfig: KubeConfig,
    backoff: BackoffOptions,
    spec: WatchedResource,
    hooks: { upsert(object: T): void; delete(object: T): void; listed(objects: readonly T[]): void },
  ): void {
    // A bad object or a bug in one handler must not kill the watch (or the process): log and carry on.
    const guarded =
      <A>(what: string, fn: (arg: A) => void) =>
      (arg: A) => {
        try {
          fn(arg);
        } catch (error) {
          this.#logger.error(
            { resource: spec.resource, err: errorMessage(error) },
            `failed to handle ${what}`,
          );
        }
      };
    const watcher = new ResourceWatcher<T>({
      kubeConfig,
      spec,
      hooks: {
        upsert: guarded('an added/updated object', (object: T) => {
          hooks.upsert(object);
        }),
        delete: guarded('a deleted object', (object: T) => {
          hooks.delete(object);
        }),
        listed: guarded('a list', (objects: readonly T[]) => {
          hooks.listed(objects);
        }),
      },
      logger: this.#logger,
      backoff,
      timeouts: this.#timeouts,
      metrics: this.#metrics,
    });
    this.#watchers.push(watcher);
  }

  #onServiceUpsert(service: V1Service): void {
    const key = objectKey(service);
    if (key === undefined) {
      this.#logger.warn('ignoring a Service without namespace or name');
      return;
    }
    this.#services.set(key, service);
    this.#markDirty(key);
  }

  #onServiceDelete(service: V1Service): void {
    const key = objectKey(service);
    if (key === undefined) return;
    this.#services.delete(key);
    this.#markDirty(key);
  }

  /** Drops Services that vanished while the watch was down or being replaced. */
  #onServicesListed(namespace: string | undefined, listed: readonly V1Service[]): void {
    const present = new Set(listed.map((service) => objectKey(service)));
    for (const key of [...this.#services.keys()]) {
      if (inScope(key, namespace) && !present.has(key)) {
        this.#services.delete(key);
        this.#markDirty(key);
      }
    }
    for (const service of listed) this.#onServiceUpsert(service);
    this.#flushNow();
  }

  #onSliceUpsert(slice: V1EndpointSlice): void {
    const key = objectKey(slice);
    if (key === undefined) {
      this.#logger.warn('ignoring an EndpointSlice without namespace or name');
      return;
    }
    for (const service of this.#slices.set(key, slice)) this.#markDirty(service);
  }

  #onSliceDelete(slice: V1EndpointSlice): void {
    const key = objectKey(slice);
    if (key === undefined) return;
    for (const service of this.#slices.remove(key)) this.#markDirty(service);
  }

  #onSlicesListed(namespace: string | undefined, listed: readonly V1EndpointSlice[]): void {
    const present = new Set(listed.map((slice) => objectKey(slice)));
    for (const key of [...this.#slices.keys()]) {
      if (inScope(key, namespace) && !present.has(key)) {
        for (const service of this.#slices.remove(key)) this.#markDirty(service);
      }
    }
    for (const slice of listed) this.#onSliceUpsert(slice);
    this.#flushNow();
  }

  #markDirty(key: ServiceKey): void {
    this.#dirty.add(key);
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    // Coalesce what arrives in the same tick (one list, one burst of watch events); no fixed debounce.
    this.#flushScheduled ??= setImmediate(() => {
      this.#flushScheduled = undefined;
      this.#flush();
    });
  }

  #flushNow(): void {
    if (this.#flushScheduled) clearImmediate(this.#flushScheduled);
    this.#flushScheduled = undefined;
    this.#flush();
  }

  #flush(): void {
    if (this.#closed) return;
    if (!this.#synced) {
      if (!this.#watchers.every((watcher) => watcher.listed)) return;
      // With readiness gates, the pods too: a gated endpoint sent before its pod is known goes out unmarked.
      if (this.#decorator?.listed === false) return;
      // First complete view: replace whatever the store held, then report ready.
      const models: ServiceModel[] = [];
      for (const key of this.#services.keys()) {
        const model = this.#build(key);
        if (model) models.push(model);
      }
      this.#dirty.clear();
      this.#store.replaceAll(models);
      this.#synced = true;
      this.#store.markSynced();
      this.#metrics?.synced.set(1);
      this.#logger.info({ services: models.length }, 'initial sync complete');
      return;
    }
    const keys = [...this.#dirty];
    this.#dirty.clear();
    for (const key of keys) {
      const model = this.#build(key);
      if (model) this.#store.upsert(model);
      else this.#store.delete(key);
    }
  }

  /** The model for one Service from the cached objects, or undefined when it is gone or skipped. */
  #build(key: ServiceKey): ServiceModel | undefined {
    const service = this.#services.get(key);
    if (!service) {
      this.#reported.delete(key);
      return undefined;
    }
    const result = translateService(service, this.#slices.slicesOf(key));
    const report = result.skipped ?? result.warnings.join('\n');
    if (this.#reported.get(key) !== report) {
      this.#reported.set(key, report);
      if (result.skipped === 'external-name') {
        this.#logger.info({ service: key }, 'skipping ExternalName Service: it has no endpoints to serve');
      } else if (result.skipped === 'invalid') {
        this.#logger.warn({ service: key, problems: result.warnings }, 'skipping an invalid Service');
      } else if (result.warnings.length > 0) {
        this.#logger.warn({ service: key, problems: result.warnings }, 'parts of a Service were left out');
      }
    }
    return result.model && this.#decorator ? this.#decorator.decorate(result.model) : result.model;
  }
}

function inScope(key: string, namespace: string | undefined): boolean {
  return namespace === undefined || key.startsWith(`${namespace}/`);
}

function servicesIn(namespace: string | undefined, labelSelector: string | undefined): WatchedResource {
  return {
    resource: 'services',
    namespace,
    path:
      namespace === undefined
        ? '/api/v1/services'
        : `/api/v1/namespaces/${encodeURIComponent(namespace)}/services`,
    labelSelector,
  };
}

/** Only slices that name a Service: others can never contribute endpoints. */
function endpointSlicesIn(namespace: string | undefined): WatchedResource {
  return {
    resource: 'endpointslices',
    namespace,
    path:
      namespace === undefined
        ? '/apis/discovery.k8s.io/v1/endpointslices'
        : `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/endpointslices`,
    labelSelector: SERVICE_NAME_LABEL,
  };
}

/** Reuses a metric already in the registry (a second source in the same process, tests). */
function metric<M extends Metric>(registry: Registry, name: string, create: () => M): M {
  return (registry.getSingleMetric(name) as M | undefined) ?? create();
}

const metricsByRegistry = new WeakMap<Registry, KubernetesWatchMetrics>();

/** The watch metrics of a registry, one set shared by every watcher (the source's and the pod index's). */
export function kubernetesWatchMetrics(registry: Registry): KubernetesWatchMetrics {
  let metrics = metricsByRegistry.get(registry);
  if (!metrics) {
    metrics = new KubernetesWatchMetrics(registry);
    metricsByRegistry.set(registry, metrics);
  }
  return metrics;
}

export class KubernetesWatchMetrics implements ResourceWatcherMetrics {
  readonly restarts: Counter<'resource' | 'namespace' | 'reason'>;
  readonly relists: Counter<'resource' | 'namespace' | 'reason'>;
  readonly lists: Counter<'resource' | 'namespace'>;
  readonly events: Counter<'resource' | 'type'>;
  readonly lastActivity: Gauge<'resource' | 'namespace'>;
  readonly eventAge: Gauge<'resource' | 'namespace'>;
  readonly healthy: Gauge<'resource' | 'namespace'>;
  readonly synced: Gauge;
  /** `resource\0namespace` → when the API last delivered something, for the age gauge. */
  readonly #progressAt = new Map<string, { resource: string; namespace: string; at: number }>();

  constructor(registry: Registry) {
    this.restarts = metric(
      registry,
      'readygate_kubernetes_watch_restarts_total',
      () =>
        new Counter({
          name: 'readygate_kubernetes_watch_restarts_total',
          help: 'New Kubernetes watch requests, by reason: failed (after a failed list or watch, with backoff), silent (re-establishing a watch that delivered nothing for --kubernetes-watch-silence).',
          labelNames: ['resource', 'namespace', 'reason'],
          registers: [registry],
        }),
    );
    this.relists = metric(
      registry,
      'readygate_kubernetes_relists_total',
      () =>
        new Counter({
          name: 'readygate_kubernetes_relists_total',
          help: 'Kubernetes watches replaced by a fresh list, by reason: gone (410 Gone), failed (a list failed or a watch could not be established).',
          labelNames: ['resource', 'namespace', 'reason'],
          registers: [registry],
        }),
    );
    this.lists = metric(
      registry,
      'readygate_kubernetes_lists_total',
      () =>
        new Counter({
          name: 'readygate_kubernetes_lists_total',
          help: 'Complete lists of a Kubernetes resource (first sync and every relist).',
          labelNames: ['resource', 'namespace'],
          registers: [registry],
        }),
    );
    this.events = metric(
      registry,
      'readygate_kubernetes_events_total',
      () =>
        new Counter({
          name: 'readygate_kubernetes_events_total',
          help: 'Watch events received: objects added/updated (upsert), deleted (delete), and bookmarks.',
          labelNames: ['resource', 'type'],
          registers: [registry],
        }),
    );
    this.lastActivity = metric(
      registry,
      'readygate_kubernetes_watch_last_activity_timestamp_seconds',
      () =>
        new Gauge({
          name: 'readygate_kubernetes_watch_last_activity_timestamp_seconds',
          help: 'When the Kubernetes API last delivered a complete list, a watch event or a bookmark for this watch, Unix seconds (reconnect attempts do not count).',
          labelNames: ['resource', 'namespace'],
          registers: [registry],
        }),
    );
    const progressAt = this.#progressAt;
    this.eventAge = metric(
      registry,
      'readygate_kubernetes_watch_event_age_seconds',
      () =>
        new Gauge({
          name: 'readygate_kubernetes_watch_event_age_seconds',
          help: 'Seconds since the Kubernetes API last delivered a complete list, a watch event or a bookmark for this watch. It grows on an idle resource too (the API sends bookmarks only every few minutes); readygate_kubernetes_watch_healthy says whether changes can arrive.',
          labelNames: ['resource', 'namespace'],
          registers: [registry],
          collect() {
            const now = Date.now();
            for (const { resource, namespace, at } of progressAt.values()) {
              this.set({ resource, namespace }, Math.max(0, (now - at) / 1000));
            }
          },
        }),
    );
    this.healthy = metric(
      registry,
      'readygate_kubernetes_watch_healthy',
      () =>
        new Gauge({
          name: 'readygate_kubernetes_watch_healthy',
          help: '1 while this Kubernetes watch is established and changes can arrive; 0 while it is starting or failing (then /readyz is 503).',
          labelNames: ['resource', 'namespace'],
          registers: [registry],
        }),
    );
    this.synced = metric(
      registry,
      'readygate_kubernetes_synced',
      () =>
        new Gauge({
          name: 'readygate_kubernetes_synced',
          help: '1 once every Kubernetes watch completed its first list.',
          registers: [registry],
        }),
    );
  }

  restarted(resource: string, namespace: string | undefined, reason: 'failed' | 'silent'): void {
    this.restarts.inc({ resource, namespace: namespace ?? '*', reason });
  }

  relisted(resource: string, namespace: string | undefined, reason: RelistReason): void {
    this.relists.inc({ resource, namespace: namespace ?? '*', reason });
  }

  listCompleted(resource: string, namespace: string | undefined): void {
    this.lists.inc({ resource, namespace: namespace ?? '*' });
  }

  event(resource: string, type: 'upsert' | 'delete' | 'bookmark'): void {
    this.events.inc({ resource, type });
  }

  progress(resource: string, namespace: string | undefined, at: number): void {
    const scope = namespace ?? '*';
    this.lastActivity.set({ resource, namespace: scope }, at / 1000);
    this.#progressAt.set(`${resource}\0${scope}`, { resource, namespace: scope, at });
  }

  health(resource: string, namespace: string | undefined, healthy: boolean): void {
    this.healthy.set({ resource, namespace: namespace ?? '*' }, healthy ? 1 : 0);
  }
}

/**
 * Pure: /readyz's view of the watches. Ready unless a watch is failing; the reason names every failing
 * watch, since when and why (`stale: endpointslices watch failing since … (HTTP 403: …)`).
 */
export function watchReadiness(health: readonly WatchHealth[]): { ready: boolean; reason?: string } {
  const failing = health.filter((h) => h.failingSince !== undefined);
  if (failing.length === 0) return { ready: true };
  const parts = failing.map((h) => {
    const scope = h.namespace === undefined ? '' : ` in ${h.namespace}`;
    const since = new Date(h.failingSince ?? 0).toISOString();
    return `${h.resource}${scope} watch failing since ${since} (${h.reason ?? 'unknown'})`;
  });
  return { ready: false, reason: `stale: ${parts.join('; ')}` };
}
