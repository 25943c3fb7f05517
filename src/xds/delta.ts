/**
 * Incremental (delta) ADS, the protocol only. Tracks per type what the client holds (name → version)
 * and sends just the difference; subscription changes are honoured even on a stale nonce.
 */
import type { CacheChange, CachedResource } from './cache.js';
import type { DeltaDiscoveryRequest } from './messages.js';
import { TypeUrl } from './resource-types.js';
import { type EncodedResponse, XdsStreamBase } from './stream-base.js';
import type { ResourceVersions, SentEntry } from './sync-status.js';
import { stringField } from './wire.js';

/** DeltaDiscoveryResponse per-stream field numbers; resources and type_url come from the cache's shared body. */
const SYSTEM_VERSION_INFO = 1;
const NONCE = 5;
const REMOVED_RESOURCES = 6;

interface DeltaTypeState {
  wildcard: boolean;
  readonly names: Set<string>;
  /** What the client holds, from initial_resource_versions and what this stream sent; and what it ACKed. */
  readonly clientVersions: ResourceVersions;
  /** Names to answer even if the client holds their version (new subscriptions, warming clusters). */
  readonly mustSend: Set<string>;
  /** Names whose state may differ from what the client holds; keeps a push O(changes), not O(set). */
  readonly dirty: Set<string>;
  seen: boolean;
  /**
   * A new wildcard subscription is answered even when there is nothing to send: Envoy counts a type as
   * initialised only on a response, and without one an Envoy of a cluster with no Services (or a gateway's
   * LDS, which readygate leaves empty) sits out its initial_fetch_timeout — for ever where that is 0s.
   */
  answerPending: boolean;
}

export class DeltaStream extends XdsStreamBase {
  readonly #types = new Map<string, DeltaTypeState>();

  handleRequest(request: DeltaDiscoveryRequest): void {
    const typeUrl = request.type_url ?? '';
    if (typeUrl === '') {
      this.transport.fail(3, 'DeltaDiscoveryRequest.type_url is required on an ADS stream');
      return;
    }
    this.noteNode(request.node);
    const nonce = request.response_nonce ?? '';
    if (nonce !== '') {
      if (request.error_detail) {
        const error = request.error_detail.message ?? '';
        // Delta has no version_info; the system version of the rejected response stands in.
        const version = this.syncState.type(typeUrl).inflight(nonce)?.record.versionInfo ?? '';
        if (this.sync.recordNack(this.syncState, typeUrl, nonce, version, error)) {
          this.logger.warn({ typeUrl, nonce, error }, 'envoy rejected a response (NACK)');
        }
      } else {
        const version = this.syncState.type(typeUrl).inflight(nonce)?.record.versionInfo ?? '';
        this.sync.recordAck(this.syncState, typeUrl, nonce, version);
      }
    }
    const state = this.#state(typeUrl);
    const first = !state.seen;
    state.seen = true;
    if (first) {
      // A reconnecting client lists what it already holds, so unchanged resources are not sent again.
      for (const [name, version] of Object.entries(request.initial_resource_versions ?? {})) {
        state.clientVersions.setSent(name, version);
        state.dirty.add(name);
      }
      if (request.resource_names_subscribe.length === 0) this.#subscribeWildcard(typeUrl, state);
    }
    // Share the cache's name strings instead of keeping a decoded copy per stream.
    const known = this.cache.resources(typeUrl);
    for (const requested of request.resource_names_subscribe) {
      if (requested === '*') {
        this.#subscribeWildcard(typeUrl, state);
        continue;
      }
      const name = known.get(requested)?.name ?? requested;
      state.names.add(name);
      state.dirty.add(name);
      // Every subscribed name is answered, even if the client seems current, except on the first
      // request of a reconnect, where initial_resource_versions says what it holds.
      if (!first || !state.clientVersions.hasSent(name)) state.mustSend.add(name);
    }
    for (const name of request.resource_names_unsubscribe) {
      if (name === '*') {
        state.wildcard = false;
        continue;
      }
      state.names.delete(name);
      state.mustSend.delete(name);
      state.clientVersions.deleteSent(name);
    }
    const syncType = this.syncState.type(typeUrl);
    syncType.wildcard = state.wildcard;
    syncType.subscribed = state.names;
    this.schedule(typeUrl);
  }

  handleCacheChange(change: CacheChange): void {
    for (const [typeUrl, typeChange] of change) {
      const state = this.#types.get(typeUrl);
      if (!state?.seen) continue;
      let relevant = false;
      for (const name of typeChange.changed) {
        if (this.#subscribed(typeUrl, state, name)) {
          state.dirty.add(name);
          relevant = true;
        }
      }
      for (const name of typeChange.removed) {
        if (state.clientVersions.hasSent(name)) {
          state.dirty.add(name);
          relevant = true;
        }
      }
      if (relevant) this.schedule(typeUrl);
    }
  }

  #subscribed(typeUrl: string, state: DeltaTypeState, name: string): boolean {
    return state.names.has(name) || (state.wildcard && this.cache.wildcardReceivesAll(typeUrl));
  }

  #subscribeWildcard(typeUrl: string, state: DeltaTypeState): void {
    if (state.wildcard) return;
    state.wildcard = true;
    state.answerPending = true;
    if (this.cache.wildcardReceivesAll(typeUrl))
      for (const name of this.cache.resources(typeUrl).keys()) state.dirty.add(name);
  }

  #state(typeUrl: string): DeltaTypeState {
    let state = this.#types.get(typeUrl);
    if (!state) {
      state = {
        wildcard: false,
        names: new Set(),
        clientVersions: this.syncState.type(typeUrl).versions,
        mustSend: new Set(),
        dirty: new Set(),
        seen: false,
        answerPending: false,
      };
      this.#types.set(typeUrl, state);
    }
    return state;
  }

  protected buildResponse(typeUrl: string): EncodedResponse | undefined {
    const state = this.#types.get(typeUrl);
    // Most calls come from ACKs, with nothing pending.
    if (!state || (state.dirty.size === 0 && state.mustSend.size === 0 && !state.answerPending))
      return undefined;
    const all = this.cache.resources(typeUrl);
    const toSend: CachedResource[] = [];
    const removed: string[] = [];

    const consider = (name: string): void => {
      const resource = all.get(name);
      if (resource) {
        if (state.mustSend.has(name) || state.clientVersions.sentVersion(name) !== resource.version)
          toSend.push(resource);
      } else if (state.mustSend.has(name) || state.clientVersions.hasSent(name)) {
        // Subscribed but absent (never existed, or deleted): say so, once.
        removed.push(name);
      }
    };
    for (const name of state.mustSend) state.dirty.add(name);
    for (const name of state.dirty) {
      if (this.#subscribed(typeUrl, state, name) || state.clientVersions.hasSent(name)) consider(name);
    }
    state.dirty.clear();
    state.mustSend.clear();
    if (toSend.length === 0 && removed.length === 0 && !state.answerPending) return undefined;
    state.answerPending = false;

    for (const r of toSend) state.clientVersions.setSent(r.name, r.version);
    for (const name of removed) state.clientVersions.deleteSent(name);
    state.clientVersions.share(() => this.cache.versionTable(typeUrl));
    if (typeUrl === TypeUrl.CLUSTER) this.#warmChangedClusters(toSend);

    const nonce = this.nextNonce();
    const systemVersion = `${this.syncState.streamId}.${nonce}`;
    const body = this.cache.deltaBody(typeUrl, toSend);
    const parts = [
      body.bytes,
      stringField(SYSTEM_VERSION_INFO, systemVersion),
      stringField(NONCE, nonce),
      ...removed.map((name) => stringField(REMOVED_RESOURCES, name)),
    ];
    let length = 0;
    for (const part of parts) length += part.length;
    const entries: readonly SentEntry[] =
      removed.length === 0 ? body.entries : [...body.entries, ...removed.map((n): SentEntry => [n, null])];
    this.sync.recordSent(this.syncState, typeUrl, {
      versionInfo: systemVersion,
      nonce,
      entries,
      completeSet: false,
      bytes: length,
    });
    return { parts, length };
  }

  /**
   * A modified cluster warms until Envoy gets its ClusterLoadAssignment again, and in delta Envoy has no
   * reason to re-subscribe a name it already holds; so resend the CLAs of modified clusters right after.
   */
  #warmChangedClusters(clusters: readonly CachedResource[]): void {
    const eds = this.#types.get(TypeUrl.ENDPOINT);
    if (!eds) return;
    let any = false;
    for (const cluster of clusters) {
      if (eds.names.has(cluster.name) && eds.clientVersions.hasSent(cluster.name)) {
        eds.mustSend.add(cluster.name);
        any = true;
      }
    }
    if (any) {
      queueMicrotask(() => {
        this.schedule(TypeUrl.ENDPOINT);
      });
    }
  }
}
