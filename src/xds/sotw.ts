/**
 * State-of-the-world ADS, the protocol only: which response a DiscoveryRequest or a cache change calls
 * for on one stream. What the resources are is the cache's business.
 */
import { aggregateVersion, type CacheChange, type CachedResource } from './cache.js';
import type { DiscoveryRequest } from './messages.js';
import type { LazyDiscoveryRequest } from './request-decoder.js';
import { type RequestedNames, type SharedSubscription, SharedSubscriptions } from './shared-subscriptions.js';
import { TypeUrl, isServedTypeUrl } from './resource-types.js';
import {
  type EncodedResponse,
  type StreamContext,
  type StreamTransport,
  XdsStreamBase,
} from './stream-base.js';
import type { ResourceVersions, StreamSyncState } from './sync-status.js';
import { stringField } from './wire.js';

/** DiscoveryResponse.nonce; the other fields come from the cache's shared body. */
const NONCE = 5;

/**
 * LDS and CDS responses carry the complete set (absence = deletion); EDS and RDS any subset. A type
 * readygate does not serve is answered as a complete, empty set: the client learns there is nothing.
 */
function isCompleteSetType(typeUrl: string): boolean {
  return typeUrl === TypeUrl.CLUSTER || typeUrl === TypeUrl.LISTENER || !isServedTypeUrl(typeUrl);
}

interface SotwTypeState {
  wildcard: boolean;
  /** Set once the client named resources; from then on an empty list means "none", not wildcard. */
  explicit: boolean;
  names: ReadonlySet<string>;
  /** What this stream was last sent, and what was ACKed (for complete-set types, the whole last set). */
  readonly sent: ResourceVersions;
  lastNonce: string | undefined;
  /** The last request's names, shared with streams that sent the same bytes (see request-decoder.ts). */
  subscription: SharedSubscription | undefined;
  /** The set version (digest) of the last complete set sent, to skip unchanged complete-set pushes. */
  lastSentVersion: string | undefined;
  /** Subset types: names that may need sending (new subscriptions, changes); keeps pushes O(changes). */
  readonly dirty: Set<string>;
  /**
   * EDS names to answer on the next request even if unchanged: Envoy keeps a modified cluster warming
   * until it gets a ClusterLoadAssignment. Value = the CDS nonce that modified the cluster; the entry
   * stays until that CDS response is ACKed, since an EDS request crossing it on the wire may predate it.
   */
  readonly forced: Map<string, number>;
}

export class SotwStream extends XdsStreamBase {
  readonly #types = new Map<string, SotwTypeState>();
  /** Built when a type's names change, not per request: it is read for every ACK. */
  #recentNames: readonly Buffer[] = [];

  readonly #subscriptions: SharedSubscriptions;

  constructor(context: StreamContext, syncState: StreamSyncState, transport: StreamTransport) {
    super(context, syncState, transport);
    this.#subscriptions = context.subscriptions ?? new SharedSubscriptions();
  }

  /** The stream ended: its subscriptions are no longer held. */
  override detach(): void {
    super.detach();
    for (const state of this.#types.values()) {
      if (state.subscription) this.#subscriptions.release(state.subscription);
      state.subscription = undefined;
    }
  }

  /** The `resource_names` bytes of this stream's last request per type, for the request decoder. */
  recentResourceNames(): readonly Buffer[] {
    return this.#recentNames;
  }

  handleRequest(request: DiscoveryRequest): void {
    const typeUrl = request.type_url ?? '';
    if (typeUrl === '') {
      this.transport.fail(3, 'DiscoveryRequest.type_url is required on an ADS stream');
      return;
    }
    this.noteNode(request.node);
    const state = this.#state(typeUrl);
    const nonce = request.response_nonce ?? '';
    if (nonce !== '') {
      const version = request.version_info ?? '';
      if (request.error_detail) {
        const error = request.error_detail.message ?? '';
        if (this.sync.recordNack(this.syncState, typeUrl, nonce, version, error)) {
          this.logger.warn({ typeUrl, nonce, version, error }, 'envoy rejected a response (NACK)');
        }
      } else {
        this.sync.recordAck(this.syncState, typeUrl, nonce, version);
      }
      // A response superseded by a newer one on this stream: its request says nothing current.
      if (nonce !== state.lastNonce) {
        this.logger.debug({ typeUrl, nonce, latest: state.lastNonce }, 'ignoring request with stale nonce');
        return;
      }
    }
    const namesBytes = (request as Partial<LazyDiscoveryRequest>).resourceNamesBytes;
    const held = state.subscription?.bytes;
    // Same bytes as last time on this stream and type: same subscription, nothing to decode or compare.
    const unchanged =
      namesBytes !== undefined && held !== undefined && (namesBytes === held || held.equals(namesBytes));
    let newlySubscribed = 0;
    if (!unchanged) {
      const decode = (): RequestedNames => this.#decodeNames(typeUrl, request.resource_names);
      const shared =
        namesBytes === undefined ? undefined : this.#subscriptions.acquire(typeUrl, namesBytes, decode);
      newlySubscribed = this.#updateSubscription(typeUrl, state, shared ?? decode());
      if (state.subscription) this.#subscriptions.release(state.subscription);
      state.subscription = shared;
      this.#recentNames = [...this.#types.values()].flatMap((s) =>
        s.subscription !== undefined && s.subscription.bytes.length > 0 ? [s.subscription.bytes] : [],
      );
    }
    if (request.error_detail && newlySubscribed === 0) return;
    this.schedule(typeUrl);
  }

  handleCacheChange(change: CacheChange): void {
    for (const [typeUrl, typeChange] of change) {
      const state = this.#types.get(typeUrl);
      if (!state || state.lastNonce === undefined) continue;
      const affected = (names: ReadonlySet<string>): boolean => {
        if (state.wildcard && this.cache.wildcardReceivesAll(typeUrl)) return names.size > 0;
        for (const name of names) if (state.names.has(name)) return true;
        return false;
      };
      if (isCompleteSetType(typeUrl)) {
        if (affected(typeChange.changed) || affected(typeChange.removed)) this.schedule(typeUrl);
        continue;
      }
      let any = false;
      for (const name of typeChange.changed) {
        if (state.names.has(name)) {
          state.dirty.add(name);
          any = true;
        }
      }
      if (any) this.schedule(typeUrl);
    }
  }

  #state(typeUrl: string): SotwTypeState {
    let state = this.#types.get(typeUrl);
    if (!state) {
      state = {
        wildcard: false,
        explicit: false,
        names: new Set(),
        sent: this.syncState.type(typeUrl).versions,
        lastNonce: undefined,
        lastSentVersion: undefined,
        subscription: undefined,
        dirty: new Set(),
        forced: new Map(),
      };
      this.#types.set(typeUrl, state);
    }
    return state;
  }

  #decodeNames(typeUrl: string, resourceNames: readonly string[]): RequestedNames {
    // Share the cache's name strings instead of keeping a decoded copy per subscription.
    const known = this.cache.resources(typeUrl);
    const names = new Set(resourceNames.map((name) => known.get(name)?.name ?? name));
    const wildcard = names.delete('*');
    return { names, wildcard };
  }

  /** Returns how many names were newly subscribed. */
  #updateSubscription(typeUrl: string, state: SotwTypeState, requested: RequestedNames): number {
    const { names } = requested;
    const syncType = this.syncState.type(typeUrl);
    // The same names in other bytes (another order, say): nothing to do but hold the new set.
    if (
      state.explicit &&
      !requested.wildcard &&
      names.size === state.names.size &&
      isSubset(names, state.names)
    ) {
      state.names = names;
      syncType.subscribed = names;
      return 0;
    }
    const wildcard = requested.wildcard || (names.size === 0 && !state.explicit);
    if (names.size > 0) state.explicit = true;
    let newly = 0;
    // "The server must resend any newly requested resources, even if it previously sent them."
    for (const name of names) {
      if (!state.names.has(name)) {
        state.sent.deleteSent(name);
        state.dirty.add(name);
        newly += 1;
      }
    }
    for (const name of state.names) if (!names.has(name)) state.sent.deleteSent(name);
    state.names = names;
    state.wildcard = wildcard;
    syncType.wildcard = wildcard;
    syncType.subscribed = names;
    return newly;
  }

  /** Resources of the current subscription that exist. */
  #subscribedResources(typeUrl: string, state: SotwTypeState): CachedResource[] {
    const all = this.cache.resources(typeUrl);
    if (state.wildcard && this.cache.wildcardReceivesAll(typeUrl)) return [...all.values()];
    const out: CachedResource[] = [];
    for (const name of state.names) {
      const resource = all.get(name);
      if (resource) out.push(resource);
    }
    return out;
  }

  protected buildResponse(typeUrl: string): EncodedResponse | undefined {
    const state = this.#types.get(typeUrl);
    if (!state) return undefined;
    const completeSet = isCompleteSetType(typeUrl);
    const wildcardAll = state.wildcard && this.cache.wildcardReceivesAll(typeUrl);
    let toSend: CachedResource[];
    let versionInfo: string;
    if (completeSet) {
      // Every CDS ACK lands here: a wildcard stream's version is known without collecting the set.
      if (
        wildcardAll &&
        state.lastNonce !== undefined &&
        this.cache.typeVersion(typeUrl) === state.lastSentVersion
      )
        return undefined;
      const current = this.#subscribedResources(typeUrl, state);
      versionInfo = wildcardAll ? this.cache.typeVersion(typeUrl) : aggregateVersion(current);
      if (state.lastNonce !== undefined && versionInfo === state.lastSentVersion) return undefined;
      toSend = current;
    } else {
      // Most calls come from ACKs, with nothing pending.
      if (state.dirty.size === 0 && state.forced.size === 0) return undefined;
      const all = this.cache.resources(typeUrl);
      toSend = [];
      const candidates =
        state.forced.size > 0 ? new Set([...state.dirty, ...state.forced.keys()]) : state.dirty;
      for (const name of candidates) {
        const resource = all.get(name);
        if (!resource || !state.names.has(name)) continue;
        if (state.sent.sentVersion(name) !== resource.version || state.forced.has(name))
          toSend.push(resource);
      }
      state.dirty.clear();
      if (toSend.length === 0) return undefined;
      // EDS and RDS may carry any subset; their version_info names the state of the whole type.
      versionInfo = this.cache.typeVersion(typeUrl);
    }

    const nonce = this.nextNonce();
    if (typeUrl === TypeUrl.CLUSTER) this.#forceEndpointsOfChangedClusters(toSend, state, Number(nonce));
    if (completeSet) {
      const inSet = new Set(toSend.map((r) => r.name));
      for (const name of state.sent.sentNames()) if (!inSet.has(name)) state.sent.deleteSent(name);
    }
    for (const r of toSend) state.sent.setSent(r.name, r.version);
    state.sent.share(() => this.cache.versionTable(typeUrl));
    state.lastNonce = nonce;
    state.lastSentVersion = versionInfo;
    if (typeUrl === TypeUrl.ENDPOINT) this.#pruneSettledForced(state);

    const body = this.cache.sotwBody(typeUrl, versionInfo, toSend, wildcardAll && completeSet);
    const nonceField = stringField(NONCE, nonce);
    const length = body.bytes.length + nonceField.length;
    this.sync.recordSent(this.syncState, typeUrl, {
      versionInfo,
      nonce,
      entries: body.entries,
      completeSet,
      bytes: length,
    });
    return { parts: [body.bytes, nonceField], length };
  }

  #forceEndpointsOfChangedClusters(
    clusters: readonly CachedResource[],
    cds: SotwTypeState,
    nonce: number,
  ): void {
    const eds = this.#state(TypeUrl.ENDPOINT);
    for (const cluster of clusters) {
      const previous = cds.sent.sentVersion(cluster.name);
      if (previous !== undefined && previous !== cluster.version) eds.forced.set(cluster.name, nonce);
    }
  }

  /**
   * After an EDS response, drops forced names whose CDS response Envoy has settled (ACK or NACK): any
   * EDS request it made for warming came before that ACK, and has now been answered.
   */
  #pruneSettledForced(eds: SotwTypeState): void {
    if (eds.forced.size === 0) return;
    const cds = this.syncState.types.get(TypeUrl.CLUSTER);
    const settled = Math.max(Number(cds?.lastAcked?.nonce ?? 0), Number(cds?.lastNack?.nonce ?? 0));
    for (const [name, cdsNonce] of eds.forced) if (cdsNonce <= settled) eds.forced.delete(name);
  }
}

function isSubset(names: ReadonlySet<string>, of: ReadonlySet<string>): boolean {
  for (const name of names) if (!of.has(name)) return false;
  return true;
}
