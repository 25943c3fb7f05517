/**
 * Pods that declare readygate's readiness gate, watched for two readers:
 *
 * - the Kubernetes source, through `decorate`: an endpoint of such a pod whose containers are ready is
 *   marked `gatePending`, so it is pushed to Envoys although its EndpointSlice says not ready (the gate
 *   holds Ready False, and the gate waits for Envoys: without this, neither could ever move);
 * - the readiness-gate controller, which reads each gated pod's conditions to know what to patch.
 *
 * Only pods carrying the gate are kept; every other pod is ignored after one look at its spec.
 */
import type { KubeConfig, V1Pod } from '@kubernetes/client-node';
import { errorMessage } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { EndpointModel, ServiceKey, ServiceModel } from '../model/types.js';
import { serviceKey } from '../model/types.js';
import { objectKey } from './kubernetes-translate.js';
import {
  DEFAULT_BACKOFF,
  ResourceWatcher,
  type BackoffOptions,
  type ResourceWatcherMetrics,
  type WatchHealth,
  type WatchTimeouts,
} from './kubernetes-watch.js';

/** The readiness-gate condition type readygate owns. Pods opt in with `spec.readinessGates`. */
export const READINESS_GATE_CONDITION = 'readygate.io/envoy-synced';

type Maybe<T> = T | null | undefined;

/** The parts of a Pod read here, as JSON from a watch or a client-node model from a list. */
export interface PodShape {
  readonly metadata?: Maybe<{
    readonly namespace?: Maybe<string>;
    readonly name?: Maybe<string>;
    readonly uid?: Maybe<string>;
    readonly deletionTimestamp?: Maybe<Date | string>;
    readonly creationTimestamp?: Maybe<Date | string>;
  }>;
  readonly spec?: Maybe<{ readonly readinessGates?: Maybe<readonly { conditionType?: Maybe<string> }[]> }>;
  readonly status?: Maybe<{
    readonly phase?: Maybe<string>;
    readonly conditions?: Maybe<
      readonly {
        readonly type?: Maybe<string>;
        readonly status?: Maybe<string>;
        readonly lastTransitionTime?: Maybe<Date | string>;
      }[]
    >;
  }>;
}

/** What readygate needs to know about a gated pod; plain data, comparable by value. */
export interface GatedPod {
  /** `<namespace>/<name>`. */
  readonly key: string;
  readonly namespace: string;
  readonly name: string;
  readonly uid: string | undefined;
  readonly terminating: boolean;
  /** Status phase Succeeded/Failed: the pod will never serve again. */
  readonly finished: boolean;
  readonly containersReady: boolean;
  /** When ContainersReady last turned True (ms since epoch), if the pod says. */
  readonly containersReadySince: number | undefined;
  /** Readiness gates other than readygate's, all True. */
  readonly otherGatesTrue: boolean;
  /** readygate's own condition is True already. */
  readonly gateTrue: boolean;
  /**
   * Envoys should learn this endpoint now: containers ready, every other gate True, not terminating or
   * finished. readygate's own gate does not matter here on purpose: right after it turns True, the kubelet
   * and the EndpointSlice controller still need a moment to mark the endpoint ready, and dropping it from
   * EDS in that moment would undo exactly what the gate waited for.
   */
  readonly gatePending: boolean;
}

export type PodReading =
  { readonly pod: GatedPod } | { readonly ignored: 'not-gated' } | { readonly invalid: string };

function conditionOf(
  pod: PodShape,
  type: string,
): { status: string | undefined; since: number | undefined } | undefined {
  // Entries are unchecked JSON too: a null entry must not throw.
  const list: readonly unknown[] = pod.status?.conditions ?? [];
  const condition = list.find(
    (c): c is NonNullable<NonNullable<PodShape['status']>['conditions']>[number] =>
      typeof c === 'object' && c !== null && (c as { type?: unknown }).type === type,
  );
  if (!condition) return undefined;
  const time = condition.lastTransitionTime;
  const since = time === null || time === undefined ? undefined : new Date(time).getTime();
  return {
    status: condition.status ?? undefined,
    since: since !== undefined && Number.isFinite(since) ? since : undefined,
  };
}

/** Pure: reads a Pod. Pods without readygate's gate are `ignored`; malformed ones come back `invalid`. */
export function readPod(pod: PodShape): PodReading {
  // Watch events are unchecked JSON: read the lists defensively, a bad object must not throw.
  const gates: unknown = pod.spec?.readinessGates ?? [];
  if (!Array.isArray(gates)) return { invalid: 'spec.readinessGates is not a list' };
  const types = (gates as unknown[])
    .map((g) =>
      typeof g === 'object' && g !== null ? (g as { conditionType?: unknown }).conditionType : undefined,
    )
    .filter((t): t is string => typeof t === 'string');
  if (!types.includes(READINESS_GATE_CONDITION)) return { ignored: 'not-gated' };
  const meta = pod.metadata;
  const namespace = meta?.namespace;
  const name = meta?.name;
  if (!meta || !namespace || !name) return { invalid: 'Pod without metadata.namespace or metadata.name' };
  const conditions: unknown = pod.status?.conditions ?? [];
  if (!Array.isArray(conditions))
    return { invalid: `Pod ${namespace}/${name}: status.conditions is not a list` };
  const containers = conditionOf(pod, 'ContainersReady');
  const containersReady = containers?.status === 'True';
  const otherGatesTrue = types
    .filter((t) => t !== READINESS_GATE_CONDITION)
    .every((t) => conditionOf(pod, t)?.status === 'True');
  const terminating = meta.deletionTimestamp !== undefined && meta.deletionTimestamp !== null;
  const phase = pod.status?.phase ?? undefined;
  const finished = phase === 'Succeeded' || phase === 'Failed';
  return {
    pod: {
      key: `${namespace}/${name}`,
      namespace,
      name,
      uid: meta.uid ?? undefined,
      terminating,
      finished,
      containersReady,
      containersReadySince: containersReady ? containers.since : undefined,
      otherGatesTrue,
      gateTrue: conditionOf(pod, READINESS_GATE_CONDITION)?.status === 'True',
      gatePending: containersReady && otherGatesTrue && !terminating && !finished,
    },
  };
}

/**
 * The seam the Kubernetes source calls (src/sources/kubernetes.ts `modelDecorator`): adjust each built
 * Service model, and say which Services to rebuild when what the decorator knows changes.
 */
export interface ServiceModelDecorator {
  /**
   * False until what the decorator knows is complete (the pod index: every pod watch listed once). The
   * source does not call itself synced before, so no endpoint goes out without its gate-pending mark.
   * Absent = always complete. Listeners of `onInvalidate` hear an empty list when it turns true.
   */
  readonly listed?: boolean;
  decorate(model: ServiceModel): ServiceModel;
  onInvalidate(listener: (services: readonly ServiceKey[]) => void): () => void;
}

export interface PodGateIndexOptions {
  readonly kubeConfig: KubeConfig;
  /** Namespaces to watch; empty or absent = all namespaces (match the source's). */
  readonly namespaces?: readonly string[] | undefined;
  readonly logger?: Logger | undefined;
  readonly backoff?: BackoffOptions | undefined;
  /** Deadlines of the pod list+watch loops (the source's, so both fail and recover alike). */
  readonly timeouts?: WatchTimeouts | undefined;
  /** The source's watch metrics (kubernetesWatchMetrics), so pods show up next to services. */
  readonly metrics?: ResourceWatcherMetrics | undefined;
}

/** Gated pods by key, kept from a pod watch; implements the source's decorator seam. */
export class PodGateIndex implements ServiceModelDecorator {
  readonly #pods = new Map<string, GatedPod>();
  /** pod key → Services whose last built model referenced it, so a pod change rebuilds only those. */
  readonly #servicesOfPod = new Map<string, Set<ServiceKey>>();
  readonly #podsOfService = new Map<ServiceKey, Set<string>>();
  readonly #invalidateListeners = new Set<(services: readonly ServiceKey[]) => void>();
  readonly #changeListeners = new Set<(pod: string) => void>();
  readonly #reportedInvalid = new Set<string>();
  readonly #watchers: ResourceWatcher<V1Pod>[] = [];
  readonly #logger: Logger;

  /** Without options: an index fed by hand (`upsert`/`remove`), for tests and file-based setups. */
  constructor(options?: PodGateIndexOptions) {
    this.#logger = (options?.logger ?? silentLogger).child({ component: 'pod-gates' });
    if (!options) return;
    const namespaces =
      options.namespaces && options.namespaces.length > 0 ? [...new Set(options.namespaces)] : [undefined];
    for (const namespace of namespaces) {
      this.#watchers.push(
        new ResourceWatcher<V1Pod>({
          kubeConfig: options.kubeConfig,
          spec: {
            resource: 'pods',
            namespace,
            path:
              namespace === undefined
                ? '/api/v1/pods'
                : `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`,
            labelSelector: undefined,
          },
          hooks: {
            upsert: (pod) => {
              this.#guard(() => {
                this.upsert(pod);
              });
            },
            delete: (pod) => {
              this.#guard(() => {
                const key = objectKey(pod);
                if (key !== undefined) this.remove(key);
              });
            },
            listed: (pods) => {
              this.#guard(() => {
                this.#onListed(namespace, pods);
              });
            },
          },
          logger: this.#logger,
          backoff: options.backoff ?? DEFAULT_BACKOFF,
          timeouts: options.timeouts,
          metrics: options.metrics,
        }),
      );
    }
  }

  /** Starts the pod watches (no-op for a hand-fed index). */
  start(): this {
    for (const watcher of this.#watchers) watcher.start();
    return this;
  }

  /** Per pod watch: can changes arrive? (for /readyz; empty for a hand-fed index) */
  health(): WatchHealth[] {
    return this.#watchers.map((w) => w.health);
  }

  async close(): Promise<void> {
    await Promise.all(this.#watchers.map((w) => w.close()));
  }

  /** True once every pod watch has listed at least once. */
  get listed(): boolean {
    return this.#watchers.every((w) => w.listed);
  }

  get(key: string): GatedPod | undefined {
    return this.#pods.get(key);
  }

  list(): GatedPod[] {
    return [...this.#pods.values()];
  }

  /** Applies one pod as seen now. */
  upsert(pod: PodShape): void {
    const reading = readPod(pod);
    if ('invalid' in reading) {
      const key = objectKey(pod) ?? '(unnamed pod)';
      if (!this.#reportedInvalid.has(key)) {
        this.#reportedInvalid.add(key);
        this.#logger.warn({ pod: key, problem: reading.invalid }, 'ignoring a Pod readygate cannot read');
      }
      return;
    }
    if ('ignored' in reading) {
      // A pod that lost its gate cannot exist (gates are immutable), but a recreated one with the same name can.
      const key = objectKey(pod);
      if (key !== undefined && this.#pods.has(key)) this.remove(key);
      return;
    }
    const next = reading.pod;
    const previous = this.#pods.get(next.key);
    this.#reportedInvalid.delete(next.key);
    this.#pods.set(next.key, next);
    if (previous?.gatePending !== next.gatePending || previous.uid !== next.uid) this.#invalidate(next.key);
    this.#changed(next.key);
  }

  remove(key: string): void {
    const previous = this.#pods.get(key);
    if (!previous) return;
    this.#pods.delete(key);
    if (previous.gatePending) this.#invalidate(key);
    this.#changed(key);
  }

  /** Whether an endpoint of this pod should be sent as gate-pending. */
  isGatePending(namespace: string, name: string, uid?: string): boolean {
    const pod = this.#pods.get(`${namespace}/${name}`);
    if (!pod?.gatePending) return false;
    // A slice can still name the previous pod of the same name (StatefulSets); trust only the same pod.
    return uid === undefined || pod.uid === undefined || uid === pod.uid;
  }

  decorate(model: ServiceModel): ServiceModel {
    const key = serviceKey(model);
    const referenced = new Set<string>();
    const endpoints = model.endpoints.map((endpoint): EndpointModel => {
      const ref = endpoint.targetRef;
      if (!ref?.name || (ref.kind !== undefined && ref.kind !== 'Pod')) return endpoint;
      const namespace = ref.namespace ?? model.namespace;
      referenced.add(`${namespace}/${ref.name}`);
      if (!this.isGatePending(namespace, ref.name, ref.uid)) return endpoint;
      return { ...endpoint, gatePending: true };
    });
    this.#track(key, referenced);
    // Unchanged models keep their identity, so nothing downstream re-translates them.
    return endpoints.some((endpoint, i) => endpoint !== model.endpoints[i]) ? { ...model, endpoints } : model;
  }

  onInvalidate(listener: (services: readonly ServiceKey[]) => void): () => void {
    this.#invalidateListeners.add(listener);
    return () => this.#invalidateListeners.delete(listener);
  }

  /** Any change to a gated pod (the controller re-evaluates it). */
  onChange(listener: (pod: string) => void): () => void {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
  }

  #onListed(namespace: string | undefined, pods: readonly V1Pod[]): void {
    const present = new Set(pods.map((pod) => objectKey(pod)));
    for (const key of [...this.#pods.keys()]) {
      if ((namespace === undefined || key.startsWith(`${namespace}/`)) && !present.has(key)) this.remove(key);
    }
    for (const pod of pods) this.upsert(pod);
    // The source waits for the first complete pod view before its own first sync: tell it.
    if (this.listed) for (const listener of this.#invalidateListeners) listener([]);
  }

  #track(service: ServiceKey, pods: Set<string>): void {
    for (const pod of this.#podsOfService.get(service) ?? []) {
      const services = this.#servicesOfPod.get(pod);
      services?.delete(service);
      if (services?.size === 0) this.#servicesOfPod.delete(pod);
    }
    if (pods.size === 0) {
      this.#podsOfService.delete(service);
      return;
    }
    this.#podsOfService.set(service, pods);
    for (const pod of pods) {
      let services = this.#servicesOfPod.get(pod);
      if (!services) this.#servicesOfPod.set(pod, (services = new Set()));
      services.add(service);
    }
  }

  #invalidate(pod: string): void {
    const services = [...(this.#servicesOfPod.get(pod) ?? [])];
    if (services.length === 0) return;
    for (const listener of this.#invalidateListeners) listener(services);
  }

  #changed(pod: string): void {
    for (const listener of this.#changeListeners) listener(pod);
  }

  #guard(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.#logger.error({ err: errorMessage(error) }, 'failed to handle a Pod event');
    }
  }
}
