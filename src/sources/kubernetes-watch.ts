/**
 * One list+watch of one resource in one scope (a namespace or the whole cluster), kept alive, with an
 * honest account of whether changes can arrive.
 *
 * The loop: list (deadline `listMs`), then watch from the list's resourceVersion with bookmarks asked for
 * (`allowWatchBookmarks`), resuming from the last resourceVersion seen when the server ends a watch.
 * Progress is counted only from what the API actually delivered: a complete list, an event, a bookmark.
 * A watch that delivers nothing for `silenceMs` is re-established from its resourceVersion (lossless: the
 * new watch replays what the old one missed, or says 410 Gone): on a dead connection that new request
 * fails, on an idle resource it succeeds. (Measured on kube-apiserver 1.34: an idle watch that asked for
 * bookmarks got its first periodic one only after ~120 s, so silence alone cannot tell dead from idle.)
 * A request the API does not answer within `responseMs`, a list past `listMs` and a watch that cannot be
 * established (403, a stalled TLS handshake) are failures: the watcher reports itself unhealthy (metric,
 * /readyz), logs one warn line naming the resource, the API server and the reason, and relists after a
 * capped, jittered backoff. It turns healthy again only when a watch is established after a complete
 * list. A dead watch is therefore noticed within `silenceMs + responseMs`. Requests go through kubernetes-http.ts, so every one of them has a
 * deadline and `close()` ends them at once.
 *
 * Its callers' caches are never cleared by a failure: they hear `upsert`/`delete` only for objects the API
 * reported, and `listed` after every successful full list, so an outage leaves the last known state alone.
 */
import type { IncomingMessage } from 'node:http';
import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import {
  apiGet,
  apiServerOf,
  forEachLine,
  formatMs,
  KubernetesApiError,
  readJson,
} from './kubernetes-http.js';

export interface BackoffOptions {
  /** First retry delay after a failure. */
  readonly initialMs: number;
  /** Upper bound of a retry delay; keeps recovery after an outage within about this long. */
  readonly maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = Object.freeze({ initialMs: 250, maxMs: 3000 });

/** The deadlines of the list+watch loop; serve's `--kubernetes-*` options set them. */
export interface WatchTimeouts {
  /**
   * Deadline for the response head of any list or watch request (connect, TLS, the API's first answer).
   * Also bounds how late the first warning about an unanswering API comes.
   */
  readonly responseMs: number;
  /** Deadline for a whole list, body included. */
  readonly listMs: number;
  /**
   * A watch that delivers no event and no bookmark for this long is re-established; if that fails, the
   * watch is failing. Bounds how long a dead connection goes unnoticed (plus `responseMs`).
   */
  readonly silenceMs: number;
}

export const DEFAULT_WATCH_TIMEOUTS: WatchTimeouts = Object.freeze({
  responseMs: 8_000,
  listMs: 60_000,
  silenceMs: 60_000,
});

/** One watch event larger than this ends the watch (a relist follows): bounds the line buffer. */
const MAX_EVENT_BYTES = 32 * 1024 * 1024;
/** A watch the server ends sooner than this is not a normal rotation but a failure. */
const QUICK_END_MS = 1_000;
/** How often, at most, a still-failing watch repeats its warning. */
const REPEAT_WARNING_MS = 60_000;
/** Server-side watch duration: 5–10 min at random (as client-go does), so watches rotate and spread. */
const WATCH_SECONDS_MIN = 300;

export interface WatchedResource {
  /** Plural resource name, for logs, metrics and /readyz (`services`, `endpointslices`, `pods`). */
  readonly resource: string;
  /** Undefined = all namespaces. */
  readonly namespace: string | undefined;
  /** API path of the collection, e.g. `/api/v1/namespaces/default/services`. */
  readonly path: string;
  readonly labelSelector: string | undefined;
}

export interface ResourceWatcherHooks<T extends KubernetesObject> {
  upsert(object: T): void;
  delete(object: T): void;
  /** After each complete list, with everything the list returned (for reconciling what vanished). */
  listed(objects: readonly T[]): void;
}

export type RelistReason = 'gone' | 'failed';

export interface ResourceWatcherMetrics {
  /** A new watch request: after a failure, or re-establishing a silent watch (`silent`). */
  restarted(resource: string, namespace: string | undefined, reason: 'failed' | 'silent'): void;
  relisted(resource: string, namespace: string | undefined, reason: RelistReason): void;
  /** A full list succeeded. */
  listCompleted(resource: string, namespace: string | undefined): void;
  event(resource: string, type: 'upsert' | 'delete' | 'bookmark'): void;
  /** The API delivered something (a list, an event, a bookmark) at `at` (ms since epoch). */
  progress(resource: string, namespace: string | undefined, at: number): void;
  health(resource: string, namespace: string | undefined, healthy: boolean): void;
}

/** What /readyz and the metrics say about one watch. */
export interface WatchHealth {
  readonly resource: string;
  readonly namespace: string | undefined;
  /** A watch is established and has not failed since. */
  readonly healthy: boolean;
  /** Since when changes cannot arrive (ms since epoch); undefined while healthy or still starting. */
  readonly failingSince: number | undefined;
  /** Why, in words (`HTTP 403: …`, `no response within 8 s`, `no event or bookmark for 90 s`). */
  readonly reason: string | undefined;
  /** When the API last delivered a list, an event or a bookmark (ms since epoch). */
  readonly lastProgressAt: number | undefined;
}

export interface ResourceWatcherOptions<T extends KubernetesObject> {
  readonly kubeConfig: KubeConfig;
  readonly spec: WatchedResource;
  readonly hooks: ResourceWatcherHooks<T>;
  readonly logger: Logger;
  readonly backoff: BackoffOptions;
  readonly timeouts?: WatchTimeouts | undefined;
  readonly metrics?: ResourceWatcherMetrics | undefined;
  readonly now?: () => number;
  readonly random?: () => number;
}

type WatchEnd = 'ended' | 'gone' | 'silent' | 'aborted';

interface WatchEvent {
  readonly type?: unknown;
  /** Unchecked JSON: may be anything, null included. */
  readonly object?: unknown;
}

interface WatchObject {
  readonly metadata?: { resourceVersion?: unknown } | null;
  /** Set on the Status object of an ERROR event. */
  readonly code?: unknown;
  readonly message?: unknown;
}

export class ResourceWatcher<T extends KubernetesObject> {
  readonly #options: ResourceWatcherOptions<T>;
  readonly #timeouts: WatchTimeouts;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #server: string;
  #attempt: AbortController | undefined;
  #wake: (() => void) | undefined;
  #failures = 0;
  #listed = false;
  #closed = false;
  #running: Promise<void> | undefined;
  #healthy = false;
  #failingSince: number | undefined;
  #reason: string | undefined;
  #lastWarningAt = 0;
  #lastProgressAt: number | undefined;

  constructor(options: ResourceWatcherOptions<T>) {
    this.#options = options;
    this.#timeouts = options.timeouts ?? DEFAULT_WATCH_TIMEOUTS;
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
    this.#server = apiServerOf(options.kubeConfig);
    this.#logger = options.logger.child({
      resource: options.spec.resource,
      namespace: options.spec.namespace ?? '*',
    });
  }

  /** True once a full list has succeeded at least once. */
  get listed(): boolean {
    return this.#listed;
  }

  get health(): WatchHealth {
    return {
      resource: this.#options.spec.resource,
      namespace: this.#options.spec.namespace,
      healthy: this.#healthy,
      failingSince: this.#failingSince,
      reason: this.#reason,
      lastProgressAt: this.#lastProgressAt,
    };
  }

  start(): void {
    this.#options.metrics?.health(this.#options.spec.resource, this.#options.spec.namespace, false);
    this.#running ??= this.#loop();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#attempt?.abort();
    this.#wake?.();
    await this.#running;
  }

  async #loop(): Promise<void> {
    const { spec } = this.#options;
    let resourceVersion: string | undefined;
    /** The current attempt re-establishes a silent watch (named in a failure's reason). */
    let silentRewatch = false;
    while (!this.#closed) {
      const attempt = new AbortController();
      this.#attempt = attempt;
      // Which step failed decides what comes next: a watch that broke after working resumes from where
      // it was; one that could not be established, or a failed list, starts over with a list.
      const watchState = { established: false, startedAt: 0 };
      try {
        resourceVersion ??= await this.#list(attempt.signal);
        watchState.startedAt = this.#now();
        const end = await this.#watch(resourceVersion, attempt.signal, {
          established: () => {
            watchState.established = true;
            silentRewatch = false;
          },
          progressed: (version) => {
            resourceVersion = version;
          },
        });
        if (end === 'aborted') return;
        if (end === 'gone') {
          // History compacted past our resourceVersion: an ordinary event, relist right away.
          this.#logger.info('watch expired (410 Gone); relisting');
          this.#options.metrics?.relisted(spec.resource, spec.namespace, 'gone');
          resourceVersion = undefined;
        } else if (end === 'silent') {
          // Dead or idle? A new watch from the same resourceVersion tells: it fails on a dead path.
          this.#logger.debug('watch silent; re-establishing it');
          this.#options.metrics?.restarted(spec.resource, spec.namespace, 'silent');
          silentRewatch = true;
          continue;
        }
        if (end !== 'ended' || this.#now() - watchState.startedAt >= this.#quickEndMs()) continue;
        // 'ended' normally means the server's timeout: watch again from resourceVersion at once. A watch
        // the API ends as soon as it starts would make that a tight loop: back off instead.
        this.#failed('the API ends every watch right after it starts');
      } catch (error) {
        if (this.#isClosed()) return;
        const after = silentRewatch
          ? ` (re-establishing a watch silent for ${formatMs(this.#timeouts.silenceMs)})`
          : '';
        silentRewatch = false;
        this.#failed(`${describe(error)}${after}`, undefined, statusOf(error));
        if (!watchState.established) {
          resourceVersion = undefined;
          this.#options.metrics?.relisted(spec.resource, spec.namespace, 'failed');
        }
      } finally {
        attempt.abort();
      }
      await this.#sleep(this.#nextDelay());
      if (!this.#isClosed()) this.#options.metrics?.restarted(spec.resource, spec.namespace, 'failed');
    }
  }

  /** QUICK_END_MS, or less under a shorter silence bound (tests), so a live watch can prove itself. */
  #quickEndMs(): number {
    return Math.min(QUICK_END_MS, this.#timeouts.silenceMs / 2);
  }

  /** A method, not a field read: close() flips it while the loop awaits. */
  #isClosed(): boolean {
    return this.#closed;
  }

  async #list(signal: AbortSignal): Promise<string> {
    const { spec, kubeConfig, hooks, metrics } = this.#options;
    const started = this.#now();
    const response = await apiGet(kubeConfig, {
      path: spec.path,
      query: { labelSelector: spec.labelSelector },
      signal,
      responseTimeoutMs: this.#timeouts.responseMs,
    });
    const remaining = Math.max(1, this.#timeouts.listMs - (this.#now() - started));
    const list = (await readJson(response, remaining)) as {
      items?: unknown;
      metadata?: { resourceVersion?: unknown };
    };
    const items = Array.isArray(list.items) ? (list.items as T[]) : [];
    const version = list.metadata?.resourceVersion;
    if (typeof version !== 'string' || version === '') {
      throw new KubernetesApiError('the list carries no resourceVersion');
    }
    this.#progress();
    this.#listed = true;
    metrics?.listCompleted(spec.resource, spec.namespace);
    this.#logger.debug({ objects: items.length, resourceVersion: version }, 'listed');
    hooks.listed(items);
    return version;
  }

  /** Runs one watch until it ends; resolves how it ended, rejects when it failed. */
  async #watch(
    resourceVersion: string,
    signal: AbortSignal,
    on: { established(): void; progressed(resourceVersion: string): void },
  ): Promise<WatchEnd> {
    const { spec, kubeConfig } = this.#options;
    const seconds = WATCH_SECONDS_MIN + Math.floor(this.#random() * WATCH_SECONDS_MIN);
    const response = await apiGet(kubeConfig, {
      path: spec.path,
      query: {
        watch: 'true',
        allowWatchBookmarks: 'true',
        resourceVersion,
        timeoutSeconds: String(seconds),
        labelSelector: spec.labelSelector,
      },
      signal,
      responseTimeoutMs: this.#timeouts.responseMs,
    });
    on.established();
    // Healthy again once this watch proves itself: an event, or staying open past QUICK_END_MS (a watch
    // the API ends at once, or cuts after its headers, must not flap to healthy on every attempt).
    const proven = setTimeout(() => {
      this.#recovered();
    }, this.#quickEndMs());
    const state: { end: WatchEnd } = { end: 'ended' };
    const stop = (why: WatchEnd): void => {
      state.end = why;
      response.destroy();
    };
    const silence = this.#silenceTimer(() => {
      stop('silent');
    });
    try {
      await forEachLine(response, MAX_EVENT_BYTES, (line) => {
        if (state.end !== 'ended') return;
        const outcome = this.#onEvent(line, response);
        if (outcome === 'gone') stop('gone');
        else if (outcome !== undefined) {
          this.#recovered();
          on.progressed(outcome.resourceVersion);
        }
      });
    } finally {
      clearTimeout(proven);
      silence.cancel();
    }
    if (signal.aborted && state.end === 'ended') return 'aborted';
    return state.end;
  }

  /** Applies one watch line; returns the new resourceVersion, 'gone', or undefined for a line to skip. */
  #onEvent(line: string, response: IncomingMessage): { resourceVersion: string } | 'gone' | undefined {
    const { spec, hooks, metrics } = this.#options;
    let event: WatchEvent;
    try {
      event = JSON.parse(line) as WatchEvent;
    } catch {
      this.#logger.warn({ bytes: line.length }, 'skipping a watch line that is not JSON');
      return undefined;
    }
    if (typeof event.object !== 'object' || event.object === null) return undefined;
    const object = event.object as WatchObject;
    if (event.type === 'ERROR') {
      if (object.code === 410) return 'gone';
      const message = typeof object.message === 'string' ? object.message : 'unknown error';
      response.destroy(
        new KubernetesApiError(`watch error event: ${message}`, {
          ...(typeof object.code === 'number' ? { statusCode: object.code } : {}),
        }),
      );
      return undefined;
    }
    const version = object.metadata?.resourceVersion;
    this.#progress();
    if (event.type === 'ADDED' || event.type === 'MODIFIED') {
      metrics?.event(spec.resource, 'upsert');
      hooks.upsert(object as T);
    } else if (event.type === 'DELETED') {
      metrics?.event(spec.resource, 'delete');
      hooks.delete(object as T);
    } else if (event.type === 'BOOKMARK') {
      metrics?.event(spec.resource, 'bookmark');
    }
    return typeof version === 'string' && version !== '' ? { resourceVersion: version } : undefined;
  }

  /**
   * Fires `onSilent` once this watch has delivered nothing for `silenceMs` since it was established or
   * since its last event; re-arms itself as events come (one timer per window, not per event).
   */
  #silenceTimer(onSilent: () => void): { cancel(): void } {
    const establishedAt = this.#now();
    let timer: NodeJS.Timeout | undefined;
    const arm = (delay: number): void => {
      timer = setTimeout(() => {
        const since = Math.max(establishedAt, this.#lastProgressAt ?? 0);
        const quiet = this.#now() - since;
        if (quiet >= this.#timeouts.silenceMs) onSilent();
        else arm(this.#timeouts.silenceMs - quiet);
      }, delay);
    };
    arm(this.#timeouts.silenceMs);
    return {
      cancel: () => {
        clearTimeout(timer);
      },
    };
  }

  #progress(): void {
    this.#lastProgressAt = this.#now();
    this.#options.metrics?.progress(
      this.#options.spec.resource,
      this.#options.spec.namespace,
      this.#lastProgressAt,
    );
  }

  /** A watch is established after a complete list: changes can arrive again. */
  #recovered(): void {
    this.#failures = 0;
    if (this.#healthy) return;
    this.#healthy = true;
    const { spec, metrics } = this.#options;
    metrics?.health(spec.resource, spec.namespace, true);
    if (this.#failingSince !== undefined) {
      this.#logger.info(
        { server: this.#server, failedForMs: this.#now() - this.#failingSince },
        `${spec.resource} watch recovered after ${formatMs(this.#now() - this.#failingSince)}`,
      );
    }
    this.#failingSince = undefined;
    this.#reason = undefined;
  }

  #failed(reason: string, since?: number, status?: number): void {
    const { spec, metrics } = this.#options;
    const now = this.#now();
    this.#failures += 1;
    this.#reason = reason;
    const first = this.#failingSince === undefined;
    if (first) this.#failingSince = since ?? now;
    if (this.#healthy) {
      this.#healthy = false;
      metrics?.health(spec.resource, spec.namespace, false);
    }
    if (!first && now - this.#lastWarningAt < REPEAT_WARNING_MS) {
      this.#logger.debug({ reason, attempt: this.#failures }, 'still failing');
      return;
    }
    this.#lastWarningAt = now;
    const where = `the Kubernetes API at ${this.#server}`;
    const scope = spec.namespace === undefined ? 'all namespaces' : `namespace ${spec.namespace}`;
    const refused = status === 401 || status === 403;
    const what = this.#listed
      ? 'changes cannot arrive; serving the last known state and retrying'
      : 'not ready until it can (retrying); check --kubeconfig / KUBECONFIG and RBAC (get, list, watch), ' +
        'or serve a file with --source file:PATH';
    const hint = refused
      ? ` (the API refused to list/watch ${spec.resource}: check readygate's credentials and RBAC, it needs get, list and watch)`
      : '';
    this.#logger.warn(
      {
        server: this.#server,
        ...(status === undefined ? {} : { status }),
        reason,
        failingSince: new Date(this.#failingSince ?? now).toISOString(),
        attempt: this.#failures,
      },
      `${spec.resource} watch (${scope}) failing against ${where}: ${reason}${hint}; ${what}`,
    );
  }

  #nextDelay(): number {
    const { initialMs, maxMs } = this.#options.backoff;
    const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(Math.max(this.#failures - 1, 0), 30));
    // "Equal jitter": at least half the ceiling, so a fleet of restarts spreads without hammering.
    return Math.round(ceiling / 2 + (this.#random() * ceiling) / 2);
  }

  #sleep(ms: number): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }
}

function describe(error: unknown): string {
  if (error instanceof KubernetesApiError) return error.message;
  return errorMessage(error);
}

/** HTTP status of a Kubernetes client error: KubernetesApiError / ApiException.code / statusCode. */
export function statusOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const record = error as { code?: unknown; statusCode?: unknown };
  if (typeof record.statusCode === 'number') return record.statusCode;
  if (typeof record.code === 'number') return record.code;
  return undefined;
}
