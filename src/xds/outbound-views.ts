/**
 * Sidecars' views of the cache. Streams with the same profile (port, namespace, ext_proc cluster, egress
 * scope) share one view, so a scoped CDS response is encoded once per distinct scope, not per stream.
 *
 * A view of an unscoped profile hands out the cache's own clusters and endpoints (and its shared response
 * bodies); a scoped one keeps the matching subset, updated from each cache change in O(changes). Each
 * view adds one listener and one route configuration of its own. Gateways hold no view: nothing here
 * runs on their path.
 */
import type { Logger } from '../log.js';
import type { ServiceKey } from '../model/types.js';
import { codecFor } from '../protos/envoy-protos.js';
import {
  aggregateVersion,
  CachedResource,
  digestVersion,
  type CacheChange,
  type ResourceCache,
  type ResourceView,
  type SharedResponseBody,
  type TypeChange,
} from './cache.js';
import { inScope, serviceKeyOfCluster, sidecarKey, type SidecarProfile } from './node-metadata.js';
import type { OutboundCatalog } from './outbound-catalog.js';
import { MessageName, TypeUrl } from './resource-types.js';
import {
  fallbackVirtualHost,
  OUTBOUND_LISTENER_NAME,
  OUTBOUND_ROUTE_NAME,
  outboundListenerFor,
} from './translate-outbound.js';
import { ZoneViews } from './zone-views.js';

/** Who hears a view's changes: its streams. */
export interface ChangeTarget {
  handleCacheChange(change: CacheChange): void;
}

const EMPTY_CHANGE: CacheChange = new Map();

interface ScopedSet {
  readonly byName: Map<string, CachedResource>;
  digest: bigint;
}

export class OutboundView implements ResourceView {
  readonly key: string;
  readonly profile: SidecarProfile;
  readonly targets = new Set<ChangeTarget>();
  readonly #cache: ResourceCache;
  readonly #catalog: OutboundCatalog;
  /** Clusters and endpoints of a scoped profile; undefined = the cache's own (every Service). */
  readonly #scoped: ReadonlyMap<string, ScopedSet> | undefined;
  readonly #listeners: ReadonlyMap<string, CachedResource>;
  #routes: ReadonlyMap<string, CachedResource>;
  readonly #versionTables = new Map<string, ReadonlyMap<string, string>>();
  readonly #wholeBodies = new Map<string, { versionInfo: string; body: SharedResponseBody }>();
  #current: { source: CacheChange; own: CacheChange } | undefined;

  constructor(profile: SidecarProfile, cache: ResourceCache, catalog: OutboundCatalog) {
    this.key = sidecarKey(profile);
    this.profile = profile;
    this.#cache = cache;
    this.#catalog = catalog;
    if (profile.egress !== undefined) {
      const scoped = new Map<string, ScopedSet>();
      for (const typeUrl of [TypeUrl.CLUSTER, TypeUrl.ENDPOINT]) {
        const set: ScopedSet = { byName: new Map(), digest: 0n };
        for (const resource of cache.resources(typeUrl).values()) {
          if (!inScope(profile.egress, serviceKeyOfCluster(resource.name))) continue;
          set.byName.set(resource.name, resource);
          set.digest ^= resource.digest;
        }
        scoped.set(typeUrl, set);
      }
      this.#scoped = scoped;
    }
    const listenerBody = codecFor<Record<string, unknown>>(MessageName.LISTENER).encode(
      outboundListenerFor(profile.outboundPort, profile.extprocCluster),
    );
    this.#listeners = single(new CachedResource(TypeUrl.LISTENER, OUTBOUND_LISTENER_NAME, listenerBody));
    this.#routes = single(this.#buildRoute());
  }

  get held(): boolean {
    return this.#cache.held;
  }

  resources(typeUrl: string): ReadonlyMap<string, CachedResource> {
    switch (typeUrl) {
      case TypeUrl.LISTENER:
        return this.#listeners;
      case TypeUrl.ROUTE:
        return this.#routes;
      default:
        return this.#scoped?.get(typeUrl)?.byName ?? this.#cache.resources(typeUrl);
    }
  }

  typeVersion(typeUrl: string): string {
    if (typeUrl === TypeUrl.LISTENER || typeUrl === TypeUrl.ROUTE)
      return aggregateVersion(this.resources(typeUrl).values());
    const scoped = this.#scoped?.get(typeUrl);
    return scoped === undefined ? this.#cache.typeVersion(typeUrl) : digestVersion(scoped.digest);
  }

  versionTable(typeUrl: string): ReadonlyMap<string, string> {
    if (this.#ownsType(typeUrl)) {
      let table = this.#versionTables.get(typeUrl);
      if (table === undefined) {
        table = new Map([...this.resources(typeUrl).values()].map((r) => [r.name, r.version]));
        this.#versionTables.set(typeUrl, table);
      }
      return table;
    }
    return this.#cache.versionTable(typeUrl);
  }

  sotwBody(
    typeUrl: string,
    versionInfo: string,
    resources: readonly CachedResource[],
    wholeType: boolean,
  ): SharedResponseBody {
    // The cache's whole-type body is its whole set: only an unscoped CDS set is the same.
    if (!this.#ownsType(typeUrl)) return this.#cache.sotwBody(typeUrl, versionInfo, resources, wholeType);
    if (!wholeType) return this.#cache.sotwBody(typeUrl, versionInfo, resources, false);
    const memo = this.#wholeBodies.get(typeUrl);
    if (memo?.versionInfo === versionInfo) return memo.body;
    const body = this.#cache.sotwBody(typeUrl, versionInfo, resources, false);
    this.#wholeBodies.set(typeUrl, { versionInfo, body });
    return body;
  }

  deltaBody(typeUrl: string, resources: readonly CachedResource[]): SharedResponseBody {
    return this.#cache.deltaBody(typeUrl, resources);
  }

  wildcardReceivesAll(typeUrl: string): boolean {
    return typeUrl === TypeUrl.CLUSTER || typeUrl === TypeUrl.LISTENER;
  }

  /** This view's part of a cache change; computed once per change (OutboundViews.apply), read per stream. */
  changeOf(change: CacheChange): CacheChange {
    return this.#current?.source === change ? this.#current.own : EMPTY_CHANGE;
  }

  /** Takes a cache change (and the Services whose virtual hosts changed) into this view. */
  apply(change: CacheChange, catalogChanged: ReadonlySet<ServiceKey>): CacheChange {
    const own = new Map<TypeUrl, TypeChange>();
    for (const typeUrl of [TypeUrl.CLUSTER, TypeUrl.ENDPOINT]) {
      const typeChange = change.get(typeUrl);
      if (typeChange === undefined) continue;
      const scoped = this.#scoped?.get(typeUrl);
      if (scoped === undefined) {
        own.set(typeUrl, typeChange);
        continue;
      }
      const changed = new Set<string>();
      const removed = new Set<string>();
      for (const name of typeChange.removed) {
        const existing = scoped.byName.get(name);
        if (!existing) continue;
        scoped.byName.delete(name);
        scoped.digest ^= existing.digest;
        removed.add(name);
      }
      const all = this.#cache.resources(typeUrl);
      for (const name of typeChange.changed) {
        if (!inScope(this.profile.egress, serviceKeyOfCluster(name))) continue;
        const resource = all.get(name);
        if (!resource) continue;
        const existing = scoped.byName.get(name);
        if (existing) scoped.digest ^= existing.digest;
        scoped.byName.set(name, resource);
        scoped.digest ^= resource.digest;
        changed.add(name);
      }
      if (changed.size > 0 || removed.size > 0) own.set(typeUrl, { changed, removed });
    }
    let routeChanged = false;
    for (const key of catalogChanged) {
      if (inScope(this.profile.egress, key)) {
        routeChanged = true;
        break;
      }
    }
    if (routeChanged) {
      const route = this.#buildRoute();
      if (route.version !== this.#routes.get(OUTBOUND_ROUTE_NAME)?.version) {
        this.#routes = single(route);
        own.set(TypeUrl.ROUTE, { changed: new Set([OUTBOUND_ROUTE_NAME]), removed: new Set() });
      }
    }
    if (own.size > 0) {
      this.#versionTables.clear();
      this.#wholeBodies.clear();
    }
    this.#current = { source: change, own };
    return own;
  }

  /**
   * The route configuration: its name, every allowed Service's virtual hosts (sorted, so equal input
   * gives equal bytes), and the 404 for any other Host. Repeated fields concatenate in protobuf, so the
   * per-Service parts are copied, not encoded again.
   */
  #buildRoute(): CachedResource {
    const codec = codecFor<Record<string, unknown>>(MessageName.ROUTE_CONFIGURATION);
    const parts: Buffer[] = [codec.encode({ name: OUTBOUND_ROUTE_NAME })];
    const keys = [...this.#catalog.keys()].filter((key) => inScope(this.profile.egress, key)).sort();
    for (const key of keys) {
      const bytes = this.#catalog.virtualHostBytes(
        key,
        this.#catalog.namespaceOf(key) === this.profile.namespace,
      );
      if (bytes) parts.push(bytes);
    }
    parts.push(FALLBACK_BYTES());
    return new CachedResource(TypeUrl.ROUTE, OUTBOUND_ROUTE_NAME, Buffer.concat(parts));
  }

  #ownsType(typeUrl: string): boolean {
    return typeUrl === TypeUrl.LISTENER || typeUrl === TypeUrl.ROUTE || this.#scoped?.has(typeUrl) === true;
  }
}

let fallbackBytes: Buffer | undefined;
function FALLBACK_BYTES(): Buffer {
  fallbackBytes ??= codecFor<Record<string, unknown>>(MessageName.ROUTE_CONFIGURATION).encode({
    virtual_hosts: [fallbackVirtualHost()],
  });
  return fallbackBytes;
}

function single(resource: CachedResource): ReadonlyMap<string, CachedResource> {
  return new Map([[resource.name, resource]]);
}

/** Bound on the nodes remembered as warned about, so a churn of node ids cannot grow memory. */
const MAX_WARNED_NODES = 10_000;

/** The views of all connected sidecars, shared by profile and dropped with their last stream. */
export class OutboundViews {
  readonly #cache: ResourceCache;
  readonly #catalog: OutboundCatalog;
  readonly #views = new Map<string, OutboundView>();
  /** Zone views of gateways and sidecars that declared a zone (zone-views.ts). */
  readonly zones: ZoneViews;
  readonly #warned = new Set<string>();
  readonly #onCatalogChange = (): void => {
    // A Service's ports changed and no cache change carried it: tell the views' streams directly.
    const source: CacheChange = new Map();
    const changed = this.#catalog.takePending();
    for (const view of this.#views.values()) {
      const own = view.apply(source, changed);
      if (own.size === 0) continue;
      for (const target of view.targets) target.handleCacheChange(own);
    }
  };

  constructor(cache: ResourceCache, catalog: OutboundCatalog) {
    this.#cache = cache;
    this.#catalog = catalog;
    this.zones = new ZoneViews(cache);
    catalog.on('change', this.#onCatalogChange);
  }

  get size(): number {
    return this.#views.size;
  }

  acquire(profile: SidecarProfile, target: ChangeTarget): OutboundView {
    const key = sidecarKey(profile);
    let view = this.#views.get(key);
    if (view === undefined) {
      view = new OutboundView(profile, this.#cache, this.#catalog);
      this.#views.set(key, view);
    }
    view.targets.add(target);
    return view;
  }

  release(view: OutboundView, target: ChangeTarget): void {
    view.targets.delete(target);
    if (view.targets.size === 0 && this.#views.get(view.key) === view) this.#views.delete(view.key);
  }

  /** Runs before a cache change reaches the streams, so each view's part of it is ready for them. */
  apply(change: CacheChange): void {
    const changed = this.#catalog.takePending();
    for (const view of this.#views.values()) view.apply(change, changed);
  }

  /** Logs bad metadata once per node id, not on every reconnect. */
  warnOnce(logger: Logger, nodeId: string, problems: readonly string[]): void {
    if (this.#warned.has(nodeId)) return;
    if (this.#warned.size >= MAX_WARNED_NODES) this.#warned.clear();
    this.#warned.add(nodeId);
    logger.warn(
      { event: 'xds.node_metadata_invalid', problems },
      'ignoring sidecar node metadata: serving this Envoy as a gateway',
    );
  }

  close(): void {
    this.#catalog.off('change', this.#onCatalogChange);
  }
}
