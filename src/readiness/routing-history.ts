/**
 * "Who has what": for every EDS resource (cluster) readygate has served recently, which pods each version
 * routes to and how. Envoys report ACKs as (cluster, version) pairs; this history turns such a pair back
 * into "does this Envoy send new requests to pod P?" without re-reading the store, which may have moved on.
 *
 * Built only from what the ResourceCache actually encoded (the bytes Envoys receive), so it can never
 * disagree with the wire. Bounded: each cluster keeps its last `versionsPerCluster` versions; a version an
 * Envoy ACKed that has been evicted reads as unknown, and the verdicts treat unknown conservatively.
 */
import { HOST_METADATA_NAMESPACE, HostMetadataKey } from '../model/metadata.js';
import { codecFor } from '../protos/envoy-protos.js';
import type { CacheChange, CachedResource, ResourceCache } from '../xds/cache.js';
import { MessageName, TypeUrl } from '../xds/resource-types.js';

/** How a version of a cluster treats a pod: HEALTHY receives new requests; DRAINING does not. */
export type PodRouting = 'HEALTHY' | 'DRAINING';

/** `<namespace>/<pod name>`, as in host metadata and `--pod`. */
export type PodKey = string;

/** The pods one version of one ClusterLoadAssignment mentions. Pods not in it are absent. */
export type AssignmentSummary = ReadonlyMap<PodKey, PodRouting>;

export const DEFAULT_VERSIONS_PER_CLUSTER = 32;

interface DecodedStruct {
  fields?: Record<string, { string_value?: string } | undefined>;
}

interface DecodedAssignment {
  endpoints?: {
    lb_endpoints?: {
      health_status?: string;
      metadata?: { filter_metadata?: Record<string, DecodedStruct | undefined> };
    }[];
  }[];
}

/**
 * Pure: the pods of a decoded ClusterLoadAssignment. Envoy routes new requests to HEALTHY and (absent)
 * UNKNOWN hosts; DRAINING ones only keep existing connections; any other status excludes the host. A pod
 * listed twice counts as HEALTHY if any copy is.
 */
export function summarizeAssignment(assignment: DecodedAssignment): AssignmentSummary {
  const pods = new Map<PodKey, PodRouting>();
  for (const locality of assignment.endpoints ?? []) {
    for (const host of locality.lb_endpoints ?? []) {
      const fields = host.metadata?.filter_metadata?.[HOST_METADATA_NAMESPACE]?.fields;
      const pod = fields?.[HostMetadataKey.POD]?.string_value;
      const namespace = fields?.[HostMetadataKey.NAMESPACE]?.string_value;
      // Hosts without a pod (file source, hand-written slices) cannot be gated or drained by name.
      if (!pod || !namespace) continue;
      const status = host.health_status ?? 'UNKNOWN';
      const routing: PodRouting | undefined =
        status === 'HEALTHY' || status === 'UNKNOWN'
          ? 'HEALTHY'
          : status === 'DRAINING'
            ? 'DRAINING'
            : undefined;
      if (routing === undefined) continue;
      const key = `${namespace}/${pod}`;
      if (pods.get(key) !== 'HEALTHY') pods.set(key, routing);
    }
  }
  return pods;
}

export function decodeAssignmentSummary(body: Uint8Array): AssignmentSummary {
  return summarizeAssignment(codecFor<DecodedAssignment>(MessageName.CLUSTER_LOAD_ASSIGNMENT).decode(body));
}

interface ClusterHistory {
  /** version → summary, oldest first (Map keeps insertion order). */
  readonly versions: Map<string, AssignmentSummary>;
  /**
   * Zone variant version → the plain version it was made from (src/xds/zone-views.ts): Envoys that
   * declared a zone ACK the variant, which routes to the same pods. Dropped with the plain version.
   */
  readonly variants: Map<string, string>;
  /** The version the cache serves now; undefined once the cluster was removed. */
  current: string | undefined;
}

export interface RoutingHistoryOptions {
  readonly versionsPerCluster?: number | undefined;
}

/**
 * The per-cluster version history. Feed it by hand (`record`, `remove`: unit tests) or attach it to a
 * ResourceCache with `follow`.
 */
export class RoutingHistory {
  readonly #clusters = new Map<string, ClusterHistory>();
  readonly #limit: number;
  /** pod → clusters any retained version mentions; lets a verdict skip unrelated clusters. */
  readonly #podClusters = new Map<PodKey, Set<string>>();
  readonly #listeners = new Set<() => void>();

  constructor(options: RoutingHistoryOptions = {}) {
    this.#limit = Math.max(1, options.versionsPerCluster ?? DEFAULT_VERSIONS_PER_CLUSTER);
  }

  /** Records the version the cache now serves for `cluster`. */
  record(cluster: string, version: string, summary: AssignmentSummary): void {
    let history = this.#clusters.get(cluster);
    if (!history)
      this.#clusters.set(
        cluster,
        (history = { versions: new Map(), variants: new Map(), current: undefined }),
      );
    history.current = version;
    // Re-inserting moves the version to the newest end, so a flip-flop back does not evict it.
    history.versions.delete(version);
    history.versions.set(version, summary);
    for (const pod of summary.keys()) {
      let clusters = this.#podClusters.get(pod);
      if (!clusters) this.#podClusters.set(pod, (clusters = new Set()));
      clusters.add(cluster);
    }
    while (history.versions.size > this.#limit) {
      const oldest = history.versions.keys().next().value as string;
      const evicted = history.versions.get(oldest);
      history.versions.delete(oldest);
      for (const [variant, plain] of history.variants) if (plain === oldest) history.variants.delete(variant);
      if (evicted) this.#forgetPods(cluster, history, evicted);
    }
  }

  /** The cache no longer serves `cluster`; its past versions stay, since Envoys may still hold them. */
  remove(cluster: string): void {
    const history = this.#clusters.get(cluster);
    if (history) history.current = undefined;
  }

  /** The summary of one version, or undefined when it was never recorded or has been evicted. */
  summary(cluster: string, version: string): AssignmentSummary | undefined {
    const history = this.#clusters.get(cluster);
    if (!history) return undefined;
    const plain = history.variants.get(version);
    return history.versions.get(plain ?? version);
  }

  /** A zone variant of a recorded version: it routes as that version does. */
  recordVariant(cluster: string, plainVersion: string, variantVersion: string): void {
    const history = this.#clusters.get(cluster);
    if (!history?.versions.has(plainVersion)) return;
    history.variants.set(variantVersion, plainVersion);
  }

  /** The version the cache serves now. */
  currentVersion(cluster: string): string | undefined {
    return this.#clusters.get(cluster)?.current;
  }

  /** Clusters whose current version routes new requests to `pod`. */
  currentHealthyClusters(pod: PodKey): string[] {
    const result: string[] = [];
    for (const cluster of this.#podClusters.get(pod) ?? []) {
      const history = this.#clusters.get(cluster);
      if (history?.current === undefined) continue;
      if (history.versions.get(history.current)?.get(pod) === 'HEALTHY') result.push(cluster);
    }
    return result.sort();
  }

  /** Clusters any retained version (current or past) mentions `pod` in. */
  clustersMentioning(pod: PodKey): string[] {
    return [...(this.#podClusters.get(pod) ?? [])].sort();
  }

  /** Called after every recorded change (the controller and drain waits re-evaluate then). */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Loads what `cache` serves now and follows its EDS changes. Returns the function that stops following.
   * A CLA that cannot be decoded is skipped (the history then knows nothing of that version, which the
   * verdicts treat as "not proven"), never thrown into the cache's emitter.
   */
  follow(cache: ResourceCache, onError: (cluster: string, error: unknown) => void = () => {}): () => void {
    const load = (name: string): void => {
      const resource = cache.get(TypeUrl.ENDPOINT, name);
      if (!resource) {
        this.remove(name);
        return;
      }
      const known = this.summary(name, resource.version);
      if (known) {
        this.record(name, resource.version, known);
        return;
      }
      try {
        this.record(name, resource.version, decodeAssignmentSummary(resource.body));
      } catch (error) {
        onError(name, error);
      }
    };
    for (const name of cache.resources(TypeUrl.ENDPOINT).keys()) load(name);
    const onCacheChange = (change: CacheChange): void => {
      const eds = change.get(TypeUrl.ENDPOINT);
      if (!eds) return;
      for (const name of eds.removed) this.remove(name);
      for (const name of eds.changed) load(name);
      this.#notify();
    };
    const onVariant = (plain: CachedResource, variant: CachedResource): void => {
      // A stream can encode a variant before this history has heard of the change that made its plain
      // version (listeners run in the order they were added): load the plain version first.
      if (this.summary(plain.name, plain.version) === undefined) load(plain.name);
      this.recordVariant(plain.name, plain.version, variant.version);
    };
    cache.on('change', onCacheChange);
    cache.on('variant', onVariant);
    return () => {
      cache.off('change', onCacheChange);
      cache.off('variant', onVariant);
    };
  }

  #notify(): void {
    for (const listener of this.#listeners) listener();
  }

  #forgetPods(cluster: string, history: ClusterHistory, evicted: AssignmentSummary): void {
    for (const pod of evicted.keys()) {
      let stillMentioned = false;
      for (const summary of history.versions.values()) {
        if (summary.has(pod)) {
          stillMentioned = true;
          break;
        }
      }
      if (stillMentioned) continue;
      const clusters = this.#podClusters.get(pod);
      clusters?.delete(cluster);
      if (clusters?.size === 0) this.#podClusters.delete(pod);
    }
  }
}
