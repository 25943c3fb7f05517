/**
 * What an Envoy that declared its zone (node.locality.zone) reads: its base view (the cache for a
 * gateway, its OutboundView for a sidecar) with each zone-aware CLA swapped for that zone's variant
 * (CachedResource.forZone). Streams with the same base and zone share one view, and a variant is
 * encoded once per (cluster, zone) whatever the number of streams.
 *
 * Envoys without a zone hold no zone view; Envoys with one pay nothing beyond a counter check while no
 * Service is zone-aware (ResourceCache.zonedCount).
 */
import {
  type CachedResource,
  digestVersion,
  type ResourceCache,
  type ResourceView,
  type SharedResponseBody,
} from './cache.js';
import { TypeUrl } from './resource-types.js';

/** Longest zone read from a node; Kubernetes label values (where zones come from) stop at 63. */
export const MAX_ZONE_CHARS = 128;

/** The zone an Envoy's node declares, or undefined when absent or not a plausible zone name. */
export function nodeZone(locality: { readonly zone?: string | undefined } | undefined): string | undefined {
  const zone = locality?.zone;
  if (zone === undefined || zone === '' || zone.length > MAX_ZONE_CHARS) return undefined;
  return zone;
}

interface OwnEndpoints {
  readonly byName: ReadonlyMap<string, CachedResource>;
  readonly version: string;
  table: ReadonlyMap<string, string> | undefined;
  wholeBody: { versionInfo: string; body: SharedResponseBody } | undefined;
}

export class ZoneView implements ResourceView {
  readonly key: string;
  readonly zone: string;
  readonly targets = new Set<object>();
  readonly #base: ResourceView;
  readonly #cache: ResourceCache;
  #generation = -1;
  /** The zone's endpoint set when it differs from the base's; undefined = read the base. */
  #own: OwnEndpoints | undefined;

  constructor(key: string, zone: string, base: ResourceView, cache: ResourceCache) {
    this.key = key;
    this.zone = zone;
    this.#base = base;
    this.#cache = cache;
  }

  get held(): boolean {
    return this.#base.held;
  }

  resources(typeUrl: string): ReadonlyMap<string, CachedResource> {
    const own = typeUrl === TypeUrl.ENDPOINT ? this.#endpoints() : undefined;
    return own?.byName ?? this.#base.resources(typeUrl);
  }

  typeVersion(typeUrl: string): string {
    const own = typeUrl === TypeUrl.ENDPOINT ? this.#endpoints() : undefined;
    return own?.version ?? this.#base.typeVersion(typeUrl);
  }

  versionTable(typeUrl: string): ReadonlyMap<string, string> {
    const own = typeUrl === TypeUrl.ENDPOINT ? this.#endpoints() : undefined;
    if (own === undefined) return this.#base.versionTable(typeUrl);
    own.table ??= new Map([...own.byName.values()].map((r) => [r.name, r.version]));
    return own.table;
  }

  sotwBody(
    typeUrl: string,
    versionInfo: string,
    resources: readonly CachedResource[],
    wholeType: boolean,
  ): SharedResponseBody {
    const own = typeUrl === TypeUrl.ENDPOINT ? this.#endpoints() : undefined;
    if (own === undefined) return this.#base.sotwBody(typeUrl, versionInfo, resources, wholeType);
    // The base's whole-type body holds the base's CLAs; single-resource bodies are keyed by resource.
    if (!wholeType) return this.#cache.sotwBody(typeUrl, versionInfo, resources, false);
    if (own.wholeBody?.versionInfo === versionInfo) return own.wholeBody.body;
    const body = this.#cache.sotwBody(typeUrl, versionInfo, resources, false);
    own.wholeBody = { versionInfo, body };
    return body;
  }

  deltaBody(typeUrl: string, resources: readonly CachedResource[]): SharedResponseBody {
    return this.#base.deltaBody(typeUrl, resources);
  }

  wildcardReceivesAll(typeUrl: string): boolean {
    return this.#base.wildcardReceivesAll(typeUrl);
  }

  /** Rebuilt once per cache change, on first read: O(endpoint resources) while some Service is zone-aware. */
  #endpoints(): OwnEndpoints | undefined {
    if (this.#generation === this.#cache.generation) return this.#own;
    this.#generation = this.#cache.generation;
    this.#own = undefined;
    if (this.#cache.zonedCount(TypeUrl.ENDPOINT) === 0) return undefined;
    const byName = new Map<string, CachedResource>();
    let digest = 0n;
    let differs = false;
    for (const resource of this.#base.resources(TypeUrl.ENDPOINT).values()) {
      const variant = this.#cache.forZone(resource, this.zone);
      if (variant !== resource) differs = true;
      byName.set(variant.name, variant);
      digest ^= variant.digest;
    }
    if (differs) {
      this.#own = { byName, version: digestVersion(digest), table: undefined, wholeBody: undefined };
    }
    return this.#own;
  }
}

/** Zone views shared by (base view, zone) and dropped with their last stream. */
export class ZoneViews {
  readonly #cache: ResourceCache;
  readonly #views = new Map<string, ZoneView>();

  constructor(cache: ResourceCache) {
    this.#cache = cache;
  }

  get size(): number {
    return this.#views.size;
  }

  /** `baseKey` names the base view: '' for the whole cache, the OutboundView's key for a sidecar. */
  acquire(base: ResourceView, baseKey: string, zone: string, target: object): ZoneView {
    const key = `${baseKey}\u0000${zone}`;
    let view = this.#views.get(key);
    if (view === undefined) {
      view = new ZoneView(key, zone, base, this.#cache);
      this.#views.set(key, view);
    }
    view.targets.add(target);
    return view;
  }

  release(view: ZoneView, target: object): void {
    view.targets.delete(target);
    if (view.targets.size === 0 && this.#views.get(view.key) === view) this.#views.delete(view.key);
  }
}
