/**
 * The resources readygate serves, per type URL and name, each with a content-hash version and its bytes
 * encoded once. Streams assemble responses from these bytes; nothing is re-encoded per stream.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { codecFor } from '../protos/envoy-protos.js';
import { messageNameOf, TypeUrl, wildcardReceivesAll } from './resource-types.js';
import type { SentEntry } from './sync-status.js';
import type { ResourceDraft, ZonedAssignment } from './translate.js';
import { lengthDelimitedField, stringField } from './wire.js';

/** google.protobuf.Any field numbers. */
const ANY_TYPE_URL = 1;
const ANY_VALUE = 2;
/** envoy.service.discovery.v3.Resource field numbers. */
const RESOURCE_VERSION = 1;
const RESOURCE_RESOURCE = 2;
const RESOURCE_NAME = 3;
/** Field number of `resources` in both DiscoveryResponse and DeltaDiscoveryResponse. */
const RESPONSE_RESOURCES = 2;

export class CachedResource {
  readonly typeUrl: TypeUrl;
  readonly name: string;
  /** Hex SHA-256 prefix of the encoded message: equal content, equal version, across restarts too. */
  readonly version: string;
  /** The encoded message (Cluster, ClusterLoadAssignment, …). */
  readonly body: Buffer;
  /** 64 bits identifying (name, version); XOR-combined into the order-independent version of a set. */
  readonly digest: bigint;
  /** A zone-aware cluster's per-zone CLAs (translate.ts ZonedAssignment); undefined for every other. */
  readonly zoned: ZonedAssignment | undefined;
  /** Encoded per-zone variants, made on first ask: at most one encoding per (cluster, zone). */
  #variants: Map<string, CachedResource> | undefined;
  #sotwField: Buffer | undefined;
  #deltaField: Buffer | undefined;

  constructor(typeUrl: TypeUrl, name: string, body: Buffer, zoned?: ZonedAssignment) {
    this.typeUrl = typeUrl;
    this.name = name;
    this.body = body;
    this.zoned = zoned;
    this.version = createHash('sha256').update(body).digest('hex').slice(0, 16);
    this.digest = createHash('sha256')
      .update(name)
      .update('\u0000')
      .update(this.version)
      .digest()
      .readBigUInt64BE(0);
  }

  /**
   * What an Envoy in `zone` gets for this resource: itself unless it is a zone-aware CLA with a variant
   * for the zone. Zones without local endpoints share this resource, so a zone an Envoy makes up costs
   * nothing.
   */
  forZone(zone: string, onEncoded?: (variant: CachedResource) => void): CachedResource {
    if (this.zoned === undefined || !this.zoned.zones.has(zone)) return this;
    this.#variants ??= new Map();
    let variant = this.#variants.get(zone);
    if (variant === undefined) {
      const body = codecFor<Record<string, unknown>>(messageNameOf(this.typeUrl)).encode(
        this.zoned.build(zone),
      );
      variant = body.equals(this.body) ? this : new CachedResource(this.typeUrl, this.name, body);
      this.#variants.set(zone, variant);
      if (variant !== this) onEncoded?.(variant);
    }
    return variant;
  }

  /** The zone variants encoded so far, by zone (a zone whose variant equals this resource maps to it). */
  encodedVariants(): ReadonlyMap<string, CachedResource> {
    return this.#variants ?? NO_VARIANTS;
  }

  /** `resources` entry of a DiscoveryResponse: an Any around the body, framed as field 2. */
  get sotwField(): Buffer {
    this.#sotwField ??= lengthDelimitedField(RESPONSE_RESOURCES, this.#any());
    return this.#sotwField;
  }

  /** `resources` entry of a DeltaDiscoveryResponse: a Resource{version, Any, name}, framed as field 2. */
  get deltaField(): Buffer {
    this.#deltaField ??= lengthDelimitedField(
      RESPONSE_RESOURCES,
      Buffer.concat([
        stringField(RESOURCE_VERSION, this.version),
        lengthDelimitedField(RESOURCE_RESOURCE, this.#any()),
        stringField(RESOURCE_NAME, this.name),
      ]),
    );
    return this.#deltaField;
  }

  #any(): Buffer {
    return Buffer.concat([
      stringField(ANY_TYPE_URL, this.typeUrl),
      lengthDelimitedField(ANY_VALUE, this.body),
    ]);
  }
}

export interface TypeChange {
  /** Names added or whose version changed. */
  readonly changed: ReadonlySet<string>;
  readonly removed: ReadonlySet<string>;
}

/** Changes of one update, per type URL, in the order xDS wants them applied (CDS, EDS, LDS, RDS). */
export type CacheChange = ReadonlyMap<TypeUrl, TypeChange>;

export const PUSH_ORDER: readonly TypeUrl[] = [
  TypeUrl.CLUSTER,
  TypeUrl.ENDPOINT,
  TypeUrl.LISTENER,
  TypeUrl.ROUTE,
];

export interface ResourceCacheEvents {
  change: [CacheChange];
  /** `release()` ended a hold: streams send what they held back. */
  released: [];
  /**
   * A zone variant of a resource was encoded (zone-views.ts): its version routes to the same pods as
   * `plain`'s, with priorities added, so the routing history can treat it as the same state.
   */
  variant: [plain: CachedResource, variant: CachedResource];
}

export interface ResourceRef {
  readonly typeUrl: TypeUrl;
  readonly name: string;
}

/**
 * The part of a response that every stream sending the same resources shares, and what it records as
 * sent. The per-stream fields (nonce, and Delta's system_version_info) are appended after it: protobuf
 * fields may come in any order, so one copy of these bytes serves every stream.
 */
export interface SharedResponseBody {
  readonly bytes: Buffer;
  readonly entries: readonly SentEntry[];
}

/** DiscoveryResponse / DeltaDiscoveryResponse field numbers that the shared body carries. */
const SOTW_VERSION_INFO = 1;
const RESPONSE_TYPE_URL = 4;

/**
 * What an ADS stream reads its resources from. A gateway's view is the whole cache (ResourceCache); a
 * sidecar's is an OutboundView (outbound-views.ts): the clusters and endpoints of the Services it may call,
 * plus its outbound listener and routes. Streams do not know which they hold.
 */
export interface ResourceView {
  /** True while no response may go out (ResourceCache.held). */
  readonly held: boolean;
  resources(typeUrl: string): ReadonlyMap<string, CachedResource>;
  /** The version of the type's whole set in this view. */
  typeVersion(typeUrl: string): string;
  /** name → version of the type's set, one immutable table per change (ResourceCache.versionTable). */
  versionTable(typeUrl: string): ReadonlyMap<string, string>;
  /** `wholeType` = `resources` is this view's whole set of the type, in its order. */
  sotwBody(
    typeUrl: string,
    versionInfo: string,
    resources: readonly CachedResource[],
    wholeType: boolean,
  ): SharedResponseBody;
  deltaBody(typeUrl: string, resources: readonly CachedResource[]): SharedResponseBody;
  /** Whether a wildcard subscription to the type receives every resource of this view. */
  wildcardReceivesAll(typeUrl: string): boolean;
}

/** Test-only hook: rewrites a draft before encoding (used to make Envoy reject a resource on purpose). */
export type DraftOverride = (draft: ResourceDraft) => ResourceDraft;

export class ResourceCache extends EventEmitter<ResourceCacheEvents> implements ResourceView {
  readonly #byType = new Map<TypeUrl, Map<string, CachedResource>>(PUSH_ORDER.map((t) => [t, new Map()]));
  /** Per type, the XOR of every resource's digest: a set version maintained in O(changes). */
  readonly #typeDigest = new Map<string, bigint>(PUSH_ORDER.map((t) => [t, 0n]));
  readonly #typeVersions = new Map<string, string>();
  /** Per type, name → version of every resource, made when first asked after a change (versionTable). */
  readonly #versionTables = new Map<string, ReadonlyMap<string, string>>();
  #override: DraftOverride | undefined;
  #held = false;
  /**
   * Shared response bodies of the current cache state, keyed by the one resource they carry or, for a
   * type's whole set, by the type URL. A push of one change builds its body once instead of once per
   * stream; cleared on every change, so nothing outlives the resources it was built from.
   */
  readonly #sotwBodies = new Map<
    CachedResource | string,
    { versionInfo: string; body: SharedResponseBody }
  >();
  readonly #deltaBodies = new Map<CachedResource, SharedResponseBody>();
  /** Counts changes, so views derived from the cache (zone-views.ts) know when to rebuild. */
  #generation = 0;
  /** Per type, how many resources carry per-zone variants: zone views skip all work while it is 0. */
  readonly #zonedCount = new Map<string, number>();

  /**
   * True while streams must answer nothing: the sources have not delivered their first complete view, so
   * what the cache holds (usually nothing) is not the world, and an Envoy that got it would drop every
   * cluster it has. Requests are still accepted; Envoy keeps its last good config meanwhile.
   */
  get held(): boolean {
    return this.#held;
  }

  /** Starts holding every response back (see `held`). */
  hold(): void {
    this.#held = true;
  }

  /** Ends the hold; every stream then sends what it owes from the cache as it is now. */
  release(): void {
    if (!this.#held) return;
    this.#held = false;
    this.emit('released');
  }

  get generation(): number {
    return this.#generation;
  }

  zonedCount(typeUrl: string): number {
    return this.#zonedCount.get(typeUrl) ?? 0;
  }

  /** `resource` as an Envoy in `zone` gets it (CachedResource.forZone), announcing each new variant. */
  forZone(resource: CachedResource, zone: string): CachedResource {
    return resource.forZone(zone, (variant) => this.emit('variant', resource, variant));
  }

  get(typeUrl: string, name: string): CachedResource | undefined {
    return this.#byType.get(typeUrl as TypeUrl)?.get(name);
  }

  /** All resources of a type; an unknown type URL simply has none. */
  resources(typeUrl: string): ReadonlyMap<string, CachedResource> {
    return this.#byType.get(typeUrl as TypeUrl) ?? EMPTY;
  }

  /** The version of a type's whole resource set; equal sets give equal versions everywhere. */
  typeVersion(typeUrl: string): string {
    // Asked by every stream on every push; formatted once per change.
    let version = this.#typeVersions.get(typeUrl);
    if (version === undefined) {
      version = digestVersion(this.#typeDigest.get(typeUrl) ?? 0n);
      this.#typeVersions.set(typeUrl, version);
    }
    return version;
  }

  /**
   * name → version of every resource of a type, as one table that does not change: a new one is made
   * after a change. Streams that were sent exactly this share it as their record (sync-status.ts).
   */
  versionTable(typeUrl: string): ReadonlyMap<string, string> {
    let table = this.#versionTables.get(typeUrl);
    if (table === undefined) {
      table = new Map([...this.resources(typeUrl).values()].map((r) => [r.name, r.version]));
      this.#versionTables.set(typeUrl, table);
    }
    return table;
  }

  wildcardReceivesAll(typeUrl: string): boolean {
    return wildcardReceivesAll(typeUrl as TypeUrl);
  }

  count(typeUrl: TypeUrl): number {
    return this.resources(typeUrl).size;
  }

  /**
   * A SotW response body: `resources`, then type_url and version_info. `wholeType` says `resources` is
   * every resource of the type in cache order (a wildcard complete-set push), which makes it shareable.
   */
  sotwBody(
    typeUrl: string,
    versionInfo: string,
    resources: readonly CachedResource[],
    wholeType: boolean,
  ): SharedResponseBody {
    const key = resources.length === 1 ? resources[0] : wholeType ? typeUrl : undefined;
    const memo = key === undefined ? undefined : this.#sotwBodies.get(key);
    if (memo?.versionInfo === versionInfo) return memo.body;
    const body: SharedResponseBody = {
      bytes: Buffer.concat([
        ...resources.map((r) => r.sotwField),
        stringField(RESPONSE_TYPE_URL, typeUrl),
        stringField(SOTW_VERSION_INFO, versionInfo),
      ]),
      entries: sentEntries(resources),
    };
    if (key !== undefined) this.#sotwBodies.set(key, { versionInfo, body });
    return body;
  }

  /** A Delta response body: `resources`, then type_url. Removals and versions are per stream. */
  deltaBody(typeUrl: string, resources: readonly CachedResource[]): SharedResponseBody {
    const single = resources.length === 1 ? resources[0] : undefined;
    const memo = single && this.#deltaBodies.get(single);
    if (memo) return memo;
    const body: SharedResponseBody = {
      bytes: Buffer.concat([...resources.map((r) => r.deltaField), stringField(RESPONSE_TYPE_URL, typeUrl)]),
      entries: sentEntries(resources),
    };
    if (single) this.#deltaBodies.set(single, body);
    return body;
  }

  setDraftOverride(override: DraftOverride | undefined): void {
    this.#override = override;
  }

  /**
   * Applies upserts and removals as one change. A draft whose encoding equals the cached one keeps its
   * version and bytes, so streams see nothing. Emits `change` once if anything changed.
   */
  update(upserts: readonly ResourceDraft[], removals: readonly ResourceRef[]): CacheChange {
    const change = new Map<TypeUrl, { changed: Set<string>; removed: Set<string> }>();
    const entry = (typeUrl: TypeUrl) => {
      let c = change.get(typeUrl);
      if (!c) change.set(typeUrl, (c = { changed: new Set(), removed: new Set() }));
      return c;
    };
    for (const ref of removals) {
      const existing = this.#byType.get(ref.typeUrl)?.get(ref.name);
      if (!existing) continue;
      this.#byType.get(ref.typeUrl)?.delete(ref.name);
      this.#xorDigest(ref.typeUrl, existing.digest);
      if (existing.zoned) this.#countZoned(ref.typeUrl, -1);
      entry(ref.typeUrl).removed.add(ref.name);
    }
    for (const original of upserts) {
      const draft = this.#override ? this.#override(original) : original;
      const body = codecFor<Record<string, unknown>>(messageNameOf(draft.typeUrl)).encode(draft.message);
      const byName = this.#byType.get(draft.typeUrl);
      if (!byName) continue;
      const existing = byName.get(draft.name);
      // Same bytes can still mean new per-zone variants: the key was switched on or off, or hints changed.
      if (existing?.body.equals(body) && existing.zoned?.key === draft.zoned?.key) continue;
      const resource = new CachedResource(draft.typeUrl, draft.name, body, draft.zoned);
      byName.set(draft.name, resource);
      if (existing?.zoned) this.#countZoned(draft.typeUrl, -1);
      if (resource.zoned) this.#countZoned(draft.typeUrl, 1);
      if (existing) this.#xorDigest(draft.typeUrl, existing.digest);
      this.#xorDigest(draft.typeUrl, resource.digest);
      const c = entry(draft.typeUrl);
      c.removed.delete(draft.name);
      c.changed.add(draft.name);
    }
    const ordered = new Map<TypeUrl, TypeChange>();
    for (const typeUrl of PUSH_ORDER) {
      const c = change.get(typeUrl);
      if (c && (c.changed.size > 0 || c.removed.size > 0)) ordered.set(typeUrl, c);
    }
    if (ordered.size > 0) {
      this.#generation += 1;
      this.#sotwBodies.clear();
      this.#deltaBodies.clear();
      this.emit('change', ordered);
    }
    return ordered;
  }

  #countZoned(typeUrl: string, delta: number): void {
    this.#zonedCount.set(typeUrl, (this.#zonedCount.get(typeUrl) ?? 0) + delta);
  }

  #xorDigest(typeUrl: string, digest: bigint): void {
    this.#typeDigest.set(typeUrl, (this.#typeDigest.get(typeUrl) ?? 0n) ^ digest);
    this.#typeVersions.delete(typeUrl);
    this.#versionTables.delete(typeUrl);
  }
}

function sentEntries(resources: readonly CachedResource[]): SentEntry[] {
  return resources.map((r): SentEntry => [r.name, r.version]);
}

export function digestVersion(digest: bigint): string {
  return digest.toString(16).padStart(16, '0');
}

const EMPTY: ReadonlyMap<string, CachedResource> = new Map();
const NO_VARIANTS: ReadonlyMap<string, CachedResource> = new Map();

/**
 * The version of a set of resources: the XOR of their digests, so it does not depend on order and can
 * be maintained incrementally. Deterministic: every stream and replica reports the same version for the
 * same content.
 */
export function aggregateVersion(resources: Iterable<CachedResource>): string {
  let digest = 0n;
  for (const r of resources) digest ^= r.digest;
  return digestVersion(digest);
}
