/**
 * What SotW and Delta streams share: nonces, node identity, and send scheduling with backpressure.
 * Responses are computed from current state when they can be written, so a slow Envoy gets the latest
 * state once instead of a queue of outdated ones (memory stays O(types) per stream).
 */
import type { Logger } from '../log.js';
import type { CacheChange, ResourceCache, ResourceView } from './cache.js';
import { PUSH_ORDER } from './cache.js';
import type { EnvoyNode } from './messages.js';
import { inScope, parseNodeProfile, profileJson, serviceKeyOfCluster } from './node-metadata.js';
import { TypeUrl } from './resource-types.js';
import type { OutboundView, OutboundViews } from './outbound-views.js';
import { SendBudget } from './send-budget.js';
import { nodeZone, type ZoneView } from './zone-views.js';
import type { SharedSubscriptions } from './shared-subscriptions.js';
import type { StreamSyncState, SyncStatus } from './sync-status.js';

/** A response as the pieces it is assembled from (shared body + per-stream fields), and their total size. */
export interface EncodedResponse {
  readonly parts: readonly Buffer[];
  readonly length: number;
}

export interface StreamTransport {
  /** Writes one response; false means the buffer is full and `resume()` will follow a drain. */
  send(parts: readonly Buffer[], length: number): boolean;
  /** Ends the stream with a gRPC status (code per grpc.status) and a message for the client. */
  fail(code: number, message: string): void;
}

export interface StreamContext {
  readonly cache: ResourceCache;
  readonly sync: SyncStatus;
  readonly logger: Logger;
  /** The budget of the stream's connection (a child of the process-wide one, send-budget.ts). */
  readonly budget?: SendBudget;
  /** Where SotW streams share equal subscriptions; a stream without one shares with nobody. */
  readonly subscriptions?: SharedSubscriptions;
  /** Sidecars' views (outbound-views.ts); without them every Envoy is served as a gateway. */
  readonly views?: OutboundViews;
}

const UNLIMITED = new SendBudget(Number.POSITIVE_INFINITY);

export abstract class XdsStreamBase {
  /** The whole cache for a gateway; a sidecar's view once its node metadata has been read. */
  protected cache: ResourceView;
  protected readonly sync: SyncStatus;
  protected readonly syncState: StreamSyncState;
  protected readonly transport: StreamTransport;
  protected logger: Logger;
  #nonce = 0;
  #blocked = false;
  #waitingForBudget = false;
  readonly #budget: SendBudget;
  readonly #views: OutboundViews | undefined;
  #view: OutboundView | undefined;
  #zoneView: ZoneView | undefined;
  readonly #onBudget = (): void => {
    this.#waitingForBudget = false;
    this.#flushDirty();
  };
  /** Types with something to send once the transport drains, in push order. */
  readonly #dirty = new Set<string>();

  constructor(context: StreamContext, syncState: StreamSyncState, transport: StreamTransport) {
    this.cache = context.cache;
    this.sync = context.sync;
    this.syncState = syncState;
    this.transport = transport;
    this.#budget = context.budget ?? UNLIMITED;
    this.#views = context.views;
    this.logger = context.logger.child({ stream: syncState.streamId, kind: syncState.kind });
  }

  get nodeId(): string {
    return this.syncState.nodeId;
  }

  /** Only the first request is guaranteed to carry the node; keep the first one seen. */
  protected noteNode(node: EnvoyNode | undefined): void {
    if (this.syncState.nodeId !== '' || !node?.id) return;
    this.syncState.nodeId = node.id;
    this.syncState.nodeCluster = node.cluster ?? '';
    this.syncState.userAgent = userAgentOf(node);
    this.logger = this.logger.child({ node: node.id });
    this.logger.info({ peer: this.syncState.peer, userAgent: node.user_agent_name }, 'xds stream opened');
    // The first request decides for the stream's life: Envoy sends its node (and metadata) only then.
    const profile = parseNodeProfile(node.metadata);
    const zone = nodeZone(node.locality);
    this.syncState.proxy = { ...profileJson(profile), ...(zone === undefined ? {} : { zone }) };
    if (profile.mode === 'gateway') {
      if (profile.problems.length > 0) {
        if (this.#views) this.#views.warnOnce(this.logger, node.id, profile.problems);
        else this.logger.warn({ problems: profile.problems }, 'ignoring sidecar node metadata');
      }
      if (zone !== undefined && this.#views) {
        this.#zoneView = this.#views.zones.acquire(this.cache, '', zone, this);
        this.cache = this.#zoneView;
      }
      return;
    }
    if (!this.#views) return;
    this.#view = this.#views.acquire(profile, this);
    this.cache = this.#view;
    if (zone !== undefined) {
      this.#zoneView = this.#views.zones.acquire(this.#view, this.#view.key, zone, this);
      this.cache = this.#zoneView;
    }
    const { egress } = profile;
    if (egress !== undefined) {
      const scope = (name: string): boolean => inScope(egress, serviceKeyOfCluster(name));
      this.syncState.type(TypeUrl.CLUSTER).wildcardScope = scope;
      this.syncState.type(TypeUrl.ENDPOINT).wildcardScope = scope;
    }
  }

  /** A cache change as this stream sees it: all of it for a gateway, its view's part for a sidecar. */
  onCacheChange(change: CacheChange): void {
    if (this.#view === undefined) {
      this.handleCacheChange(change);
      return;
    }
    const own = this.#view.changeOf(change);
    if (own.size > 0) this.handleCacheChange(own);
  }

  protected nextNonce(): string {
    this.#nonce += 1;
    return String(this.#nonce);
  }

  /** Sends what `typeUrl` needs now, or remembers to once the transport drains. */
  protected schedule(typeUrl: string): void {
    // Held (sources not synced yet): remember the type; `onCacheReleased` sends it from the synced cache.
    if (this.#blocked || this.#waitingForBudget || this.cache.held) {
      this.#dirty.add(typeUrl);
      return;
    }
    if (!this.#budget.available()) {
      this.#dirty.add(typeUrl);
      this.#waitingForBudget = true;
      this.#budget.waitFor(this.#onBudget);
      return;
    }
    const response = this.buildResponse(typeUrl);
    if (response && !this.transport.send(response.parts, response.length)) this.#blocked = true;
  }

  /** The stream ended: stop waiting for budget. */
  detach(): void {
    this.#budget.cancel(this.#onBudget);
    this.#dirty.clear();
    if (this.#view) this.#views?.release(this.#view, this);
    this.#view = undefined;
    if (this.#zoneView) this.#views?.zones.release(this.#zoneView, this);
    this.#zoneView = undefined;
  }

  /** A method, not a field read, because schedule() may flip it mid-loop. */
  protected isBlocked(): boolean {
    return this.#blocked;
  }

  resume(): void {
    this.#blocked = false;
    this.#flushDirty();
  }

  /** The cache stopped holding responses back: send everything requested meanwhile. */
  onCacheReleased(): void {
    this.#flushDirty();
  }

  #flushDirty(): void {
    const order = [
      ...PUSH_ORDER,
      ...[...this.#dirty].filter((t) => !(PUSH_ORDER as readonly string[]).includes(t)),
    ];
    for (const typeUrl of order) {
      if (!this.#dirty.delete(typeUrl)) continue;
      this.schedule(typeUrl);
      if (this.isBlocked() || this.#waitingForBudget) return;
    }
  }

  /** Builds and records the response `typeUrl` needs now, or returns undefined if none is due. */
  protected abstract buildResponse(typeUrl: string): EncodedResponse | undefined;

  abstract handleCacheChange(change: CacheChange): void;
}

/** `name/version` from a node (Envoy: `envoy/1.36.4`; gRPC: `grpc-go/1.70.0`), null without a name. */
export function userAgentOf(node: EnvoyNode): string | null {
  const name = node.user_agent_name;
  if (name === undefined || name === '') return null;
  const build = node.user_agent_build_version?.version;
  const version =
    node.user_agent_version !== undefined && node.user_agent_version !== ''
      ? node.user_agent_version
      : build
        ? `${build.major_number ?? 0}.${build.minor_number ?? 0}.${build.patch ?? 0}`
        : undefined;
  return version === undefined ? name : `${name}/${version}`;
}
