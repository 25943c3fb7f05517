/**
 * One list+watch of one resource in one scope (a namespace or the whole cluster), kept alive.
 *
 * @kubernetes/client-node 1.4.0's ListWatch handles 410 Gone by relisting, but on any other error it fires
 * `error` and stops for good, has no client-side timeout, and a dead TCP stream can leave it silent forever
 * (kubernetes-client/javascript#364, #596, #958). This wrapper restarts it after errors with capped
 * exponential backoff and jitter, and relists from scratch when it has been silent past a bound (watchdog).
 *
 * Its cache is never cleared by a failure: callers hear only `upsert`/`delete` for objects the API actually
 * reported, and `listed` after every successful full list, so an outage leaves the last known state alone.
 */
import {
  ListWatch,
  Watch,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';

export interface BackoffOptions {
  /** First restart delay after an error. */
  readonly initialMs: number;
  /** Upper bound of a restart delay; keeps recovery after an outage within about this long. */
  readonly maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = Object.freeze({ initialMs: 250, maxMs: 3000 });

export interface WatchedResource<T extends KubernetesObject> {
  /** Plural resource name, for logs and metrics (`services`, `endpointslices`, later `pods`). */
  readonly resource: string;
  /** Undefined = all namespaces. */
  readonly namespace: string | undefined;
  /** API path of the collection, e.g. `/api/v1/namespaces/default/services`. */
  readonly path: string;
  readonly labelSelector: string | undefined;
  /** Lists the same collection with the same selector as the watch. */
  readonly list: () => Promise<KubernetesListObject<T>>;
}

export interface ResourceWatcherHooks<T extends KubernetesObject> {
  upsert(object: T): void;
  delete(object: T): void;
  /** After each complete list, with everything the list returned (for reconciling what vanished). */
  listed(objects: readonly T[]): void;
}

export interface ResourceWatcherMetrics {
  restarted(resource: string, namespace: string | undefined): void;
  relisted(resource: string, namespace: string | undefined, reason: string): void;
  /** A full list succeeded (first list, 410 Gone, watchdog relist). */
  listCompleted(resource: string, namespace: string | undefined): void;
  event(resource: string, type: 'upsert' | 'delete'): void;
  active(resource: string, namespace: string | undefined, at: number): void;
}

export interface ResourceWatcherOptions<T extends KubernetesObject> {
  readonly kubeConfig: KubeConfig;
  readonly spec: WatchedResource<T>;
  readonly hooks: ResourceWatcherHooks<T>;
  readonly logger: Logger;
  readonly backoff: BackoffOptions;
  readonly metrics?: ResourceWatcherMetrics | undefined;
  readonly now?: () => number;
  readonly random?: () => number;
}

export class ResourceWatcher<T extends KubernetesObject> {
  readonly #options: ResourceWatcherOptions<T>;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #random: () => number;
  #informer: ListWatch<T> | undefined;
  /** Bumped whenever the informer is replaced, so callbacks of a discarded one are ignored. */
  #generation = 0;
  #restartTimer: NodeJS.Timeout | undefined;
  #failures = 0;
  #lastFailureAt = 0;
  #lastActivityAt: number;
  #listed = false;
  #closed = false;

  constructor(options: ResourceWatcherOptions<T>) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
    this.#lastActivityAt = this.#now();
    this.#logger = options.logger.child({
      resource: options.spec.resource,
      namespace: options.spec.namespace ?? '*',
    });
  }

  /** True once a full list has succeeded at least once. */
  get listed(): boolean {
    return this.#listed;
  }

  /** When the watch last showed life (an event, a (re)connect, a list). */
  get lastActivityAt(): number {
    return this.#lastActivityAt;
  }

  /** True while waiting to restart after an error: the backoff, not the watchdog, is in charge then. */
  get restarting(): boolean {
    return this.#restartTimer !== undefined;
  }

  start(): void {
    this.#replaceInformer();
  }

  /**
   * Drops the current informer and lists from scratch with a new one. The cache of objects the callers
   * hold is untouched until the new list succeeds; then `listed` lets them drop what disappeared.
   */
  relist(reason: string): void {
    if (this.#closed) return;
    this.#logger.info({ reason }, 'relisting');
    this.#options.metrics?.relisted(this.#options.spec.resource, this.#options.spec.namespace, reason);
    this.#replaceInformer();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#generation += 1;
    clearTimeout(this.#restartTimer);
    this.#restartTimer = undefined;
    const informer = this.#informer;
    this.#informer = undefined;
    await informer?.stop();
  }

  #replaceInformer(): void {
    clearTimeout(this.#restartTimer);
    this.#restartTimer = undefined;
    const previous = this.#informer;
    const generation = ++this.#generation;
    // Stopping aborts the old request, which makes the old informer fire `error` (AbortError) later; the
    // generation check below discards it.
    if (previous) void previous.stop();

    const { spec, kubeConfig } = this.#options;
    const isCurrent = (): boolean => generation === this.#generation && !this.#closed;
    const informer: ListWatch<T> = new ListWatch<T>(
      spec.path,
      new Watch(kubeConfig),
      async () => {
        const list = await spec.list();
        // ListWatch applies the items right after this promise settles, synchronously; setImmediate runs
        // after that, when informer.list() holds exactly this list.
        setImmediate(() => {
          if (!isCurrent()) return;
          this.#touch();
          this.#failures = 0;
          this.#listed = true;
          this.#options.metrics?.listCompleted(spec.resource, spec.namespace);
          const objects = informer.list();
          this.#logger.debug({ objects: objects.length }, 'listed');
          this.#options.hooks.listed(objects);
        });
        return list;
      },
      false,
      spec.labelSelector,
    );
    informer.on('add', (object) => {
      if (isCurrent()) this.#onUpsert(object);
    });
    informer.on('update', (object) => {
      if (isCurrent()) this.#onUpsert(object);
    });
    informer.on('delete', (object) => {
      if (!isCurrent()) return;
      this.#touch();
      this.#options.metrics?.event(spec.resource, 'delete');
      this.#options.hooks.delete(object);
    });
    informer.on('connect', () => {
      if (!isCurrent()) return;
      this.#logger.debug({ resourceVersion: informer.latestResourceVersion() }, 'connecting');
      this.#touch();
    });
    informer.on('error', (error: unknown) => {
      if (isCurrent()) this.#scheduleRestart(error);
    });
    this.#informer = informer;
    this.#touch();
    this.#run(informer, generation);
  }

  #run(informer: ListWatch<T>, generation: number): void {
    // start() rejects only for failures before the watch request exists (e.g. TLS setup); treat them
    // like any other error.
    informer.start().catch((error: unknown) => {
      if (generation === this.#generation && !this.#closed) this.#scheduleRestart(error);
    });
  }

  #onUpsert(object: T): void {
    this.#touch();
    this.#options.metrics?.event(this.#options.spec.resource, 'upsert');
    this.#options.hooks.upsert(object);
  }

  #touch(): void {
    this.#lastActivityAt = this.#now();
    this.#options.metrics?.active(
      this.#options.spec.resource,
      this.#options.spec.namespace,
      this.#lastActivityAt,
    );
  }

  #scheduleRestart(error: unknown): void {
    if (this.#restartTimer !== undefined) return;
    const { initialMs, maxMs } = this.#options.backoff;
    const now = this.#now();
    // A watch that ran well for a while before failing starts its backoff over.
    if (now - this.#lastFailureAt > maxMs * 4) this.#failures = 0;
    this.#lastFailureAt = now;
    this.#failures += 1;
    const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(this.#failures - 1, 30));
    // "Equal jitter": at least half the ceiling, so a fleet of restarts spreads without hammering.
    const delayMs = Math.round(ceiling / 2 + (this.#random() * ceiling) / 2);
    const status = statusOf(error);
    const server = this.#options.kubeConfig.getCurrentCluster()?.server;
    const fields = { status, server, attempt: this.#failures, retryInMs: delayMs, err: errorMessage(error) };
    if (status === 401 || status === 403) {
      this.#logger.error(
        fields,
        `the Kubernetes API refused to list/watch ${this.#options.spec.resource}` +
          " (check readygate's credentials and RBAC: it needs get/list/watch); retrying",
      );
    } else {
      this.#logger.warn(
        fields,
        this.#listed
          ? 'watch failed; keeping the last known state and retrying'
          : `cannot list ${this.#options.spec.resource} from the Kubernetes API at ${server ?? '(no server)'}; ` +
              'not ready until it can (retrying). Check --kubeconfig / KUBECONFIG, or serve a file with --source file:PATH',
      );
    }
    const informer = this.#informer;
    const generation = this.#generation;
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      if (generation !== this.#generation || this.#closed || !informer) return;
      this.#options.metrics?.restarted(this.#options.spec.resource, this.#options.spec.namespace);
      // Same informer: it resumes from its resourceVersion (and relists by itself on 410 Gone).
      this.#run(informer, generation);
    }, delayMs);
  }
}

/** HTTP status of a client-node error: ApiException.code (lists) or statusCode (watches). */
export function statusOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const record = error as { code?: unknown; statusCode?: unknown };
  if (typeof record.statusCode === 'number') return record.statusCode;
  if (typeof record.code === 'number') return record.code;
  return undefined;
}
