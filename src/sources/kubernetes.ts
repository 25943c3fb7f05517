/**
 * The Kubernetes source: Services and EndpointSlices (discovery.k8s.io/v1) from the API into the
 * EndpointStore, through the same model and eligibility rules as the file source.
 *
 * Level-based: every event only marks a Service dirty; dirty Services are rebuilt from the cached objects
 * and written to the store, which drops writes that change nothing. Relists, spurious updates and reconnects
 * therefore push nothing unless something really changed. Nothing reaches the store before every watcher
 * has completed its first list, so a half-listed cluster never looks like empty Services.
 */
import {
  CoreV1Api,
  DiscoveryV1Api,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  type V1EndpointSlice,
  type V1Service,
} from '@kubernetes/client-node';
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
  ResourceWatcher,
  type BackoffOptions,
  type ResourceWatcherMetrics,
  type WatchedResource,
} from './kubernetes-watch.js';

export { loadKubeConfig, type LoadKubeConfigOptions } from './kubernetes-config.js';

/** Default watchdog bound: a watch silent this long is relisted (client-node 1.4 has no watch timeout). */
export const DEFAULT_WATCHDOG_MS = 5 * 60_000;

export interface KubernetesSourceOptions {
  store: EndpointStore;
  kubeConfig: KubeConfig;
  /** Namespaces to watch; empty or absent = all namespaces. */
  namespaces?: readonly string[];
  /** Kubernetes label selector on Services; slices of Services it excludes are ignored. */
  labelSelector?: string;
  logger?: Logger;
  /** Relist a watch that has shown no sign of life (event or reconnect) for this long. */
  watchdogMs?: number;
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
  readonly #watchdogMs: number;
  readonly #watchers: ResourceWatcher<KubernetesObject>[] = [];
  readonly #services = new Map<ServiceKey, V1Service>();
  readonly #slices = new SliceIndex();
  readonly #dirty = new Set<ServiceKey>();
  /** Last warnings logged per Service, so a problem is logged when it appears, not on every rebuild. */
  readonly #reported = new Map<ServiceKey, string>();
  readonly #metrics: SourceMetrics | undefined;
  #flushScheduled: NodeJS.Immediate | undefined;
  #watchdog: NodeJS.Timeout | undefined;
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
    this.#watchdogMs = options.watchdogMs ?? DEFAULT_WATCHDOG_MS;
    this.#metrics = options.registry ? new SourceMetrics(options.registry) : undefined;
    const backoff = options.backoff ?? DEFAULT_BACKOFF;
    const core = options.kubeConfig.makeApiClient(CoreV1Api);
    const discovery = options.kubeConfig.makeApiClient(DiscoveryV1Api);
    const namespaces =
      options.namespaces && options.namespaces.length > 0 ? [...new Set(options.namespaces)] : [undefined];
    const serviceSelector = options.labelSelector?.trim() ? options.labelSelector.trim() : undefined;

    for (const namespace of namespaces) {
      this.#add(options.kubeConfig, backoff, servicesIn(core, namespace, serviceSelector), {
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
      this.#add(options.kubeConfig, backoff, endpointSlicesIn(discovery, namespace), {
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

  start(): void {
    for (const watcher of this.#watchers) watcher.start();
    // Check a few times per bound so a silent watch is relisted at most ~25% past it.
    const every = Math.max(50, Math.min(this.#watchdogMs / 4, 30_000));
    this.#watchdog = setInterval(() => {
      this.#checkWatchdog();
    }, every);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopDecorator?.();
    clearInterval(this.#watchdog);
    if (this.#flushScheduled) clearImmediate(this.#flushScheduled);
    await Promise.all(this.#watchers.map((watcher) => watcher.close()));
    this.#metrics?.synced.set(0);
  }

  #add<T extends KubernetesObject>(
    kubeConfig: KubeConfig,
    backoff: BackoffOptions,
    spec: WatchedResource<T>,
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

  #checkWatchdog(): void {
    const now = Date.now();
    for (const watcher of this.#watchers) {
      if (watcher.restarting) continue;
      if (now - watcher.lastActivityAt > this.#watchdogMs) watcher.relist('watchdog: watch silent');
    }
  }
}

function inScope(key: string, namespace: string | undefined): boolean {
  return namespace === undefined || key.startsWith(`${namespace}/`);
}

function servicesIn(
  core: CoreV1Api,
  namespace: string | undefined,
  labelSelector: string | undefined,
): WatchedResource<V1Service> {
  const selector = labelSelector === undefined ? {} : { labelSelector };
  return {
    resource: 'services',
    namespace,
    path:
      namespace === undefined
        ? '/api/v1/services'
        : `/api/v1/namespaces/${encodeURIComponent(namespace)}/services`,
    labelSelector,
    list: (): Promise<KubernetesListObject<V1Service>> =>
      namespace === undefined
        ? core.listServiceForAllNamespaces(selector)
        : core.listNamespacedService({ namespace, ...selector }),
  };
}

/** Only slices that name a Service: others can never contribute endpoints. */
function endpointSlicesIn(
  discovery: DiscoveryV1Api,
  namespace: string | undefined,
): WatchedResource<V1EndpointSlice> {
  const labelSelector = SERVICE_NAME_LABEL;
  return {
    resource: 'endpointslices',
    namespace,
    path:
      namespace === undefined
        ? '/apis/discovery.k8s.io/v1/endpointslices'
        : `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/endpointslices`,
    labelSelector,
    list: (): Promise<KubernetesListObject<V1EndpointSlice>> =>
      namespace === undefined
        ? discovery.listEndpointSliceForAllNamespaces({ labelSelector })
        : discovery.listNamespacedEndpointSlice({ namespace, labelSelector }),
  };
}

/** Reuses a metric already in the registry (a second source in the same process, tests). */
function metric<M extends Metric>(registry: Registry, name: string, create: () => M): M {
  return (registry.getSingleMetric(name) as M | undefined) ?? create();
}

class SourceMetrics implements ResourceWatcherMetrics {
  readonly restarts: Counter<'resource' | 'namespace'>;
  readonly relists: Counter<'resource' | 'namespace' | 'reason'>;
  readonly lists: Counter<'resource' | 'namespace'>;
  readonly events: Counter<'resource' | 'type'>;
  readonly lastActivity: Gauge<'resource' | 'namespace'>;
  readonly synced: Gauge;

  constructor(registry: Registry) {
    this.restarts = metric(
      registry,
      'readygate_kubernetes_watch_restarts_total',
      () =>
        new Counter({
          name: 'readygate_kubernetes_watch_restarts_total',
          help: 'Kubernetes watches restarted after an error.',
          labelNames: ['resource', 'namespace'],
          registers: [registry],
        }),
    );
    this.relists = metric(
      registry,
      'readygate_kubernetes_relists_total',
      () =>
        new Counter({
          name: 'readygate_kubernetes_relists_total',
          help: 'Kubernetes watches replaced by a fresh list (watchdog).',
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
          help: 'Complete lists of a Kubernetes resource (first sync, 410 Gone, watchdog relists).',
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
          help: 'Objects added, updated or deleted as seen by the Kubernetes watches.',
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
          help: 'When a Kubernetes watch last showed life (event, reconnect or list), Unix seconds.',
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

  restarted(resource: string, namespace: string | undefined): void {
    this.restarts.inc({ resource, namespace: namespace ?? '*' });
  }

  relisted(resource: string, namespace: string | undefined, reason: string): void {
    this.relists.inc({ resource, namespace: namespace ?? '*', reason });
  }

  listCompleted(resource: string, namespace: string | undefined): void {
    this.lists.inc({ resource, namespace: namespace ?? '*' });
  }

  event(resource: string, type: 'upsert' | 'delete'): void {
    this.events.inc({ resource, type });
  }

  active(resource: string, namespace: string | undefined, at: number): void {
    this.lastActivity.set({ resource, namespace: namespace ?? '*' }, at / 1000);
  }
}
