/**
 * What every connected Envoy was sent and what it accepted, per type URL and per resource. Fed by the
 * protocol state machines; read by /debug/syncz, metrics, and the readiness gate and drain-wait, which
 * need to know which resource versions each Envoy has ACKed.
 */
import { EventEmitter } from 'node:events';
import type { ProxyProfileJson } from './node-metadata.js';

export type StreamKind = 'sotw' | 'delta';

export interface SentRecord {
  readonly versionInfo: string;
  readonly nonce: string;
  /** Epoch milliseconds: a number, not a Date, as two of these are made for every push of every stream. */
  readonly timeMs: number;
}

export interface NackRecord extends SentRecord {
  readonly error: string;
  /** Names the rejected response carried (for complete-set types: the whole set). */
  readonly resources?: readonly string[];
}

/** A resource in a response: its version, or null when the response removes it. */
export type SentEntry = readonly [name: string, version: string | null];

/** A response sent and not yet ACKed or NACKed. */
interface InflightResponse {
  readonly record: SentRecord;
  readonly entries: readonly SentEntry[];
  /** SotW CDS/LDS responses carry the complete set: on ACK, anything absent is gone from the client. */
  readonly completeSet: boolean;
  /** performance.now() at sending: a plain number, since this runs for every push of every stream. */
  readonly sentAtMs: number;
  /** The next response sent on this stream and type. */
  next: InflightResponse | undefined;
}

/**
 * Per stream and type: the version this stream last sent of each resource, and the version the client
 * ACKed, stored once. The two agree except for names in responses not yet ACKed, or rejected, and only
 * those are kept apart. At 1000 Envoys × 1000 clusters, a second full map per stream and type was a third
 * of the live heap, and RSS grows about twice as fast as the live heap.
 *
 * What was sent is itself mostly shared: Envoys in step with the cache were all sent exactly the cache's
 * current versions, so a stream keeps a table shared with others (see share()) and, apart from it, only
 * the names where it differs. Without sharing, those per-stream maps were most of the live heap, which
 * every full GC marks again.
 */
export class ResourceVersions {
  /** name → version sent, shared with other streams; #sentApart overrides it. */
  #base: ReadonlyMap<string, string> = NO_VERSIONS;
  /** name → version sent where it differs from #base (null: in #base, but not sent). */
  readonly #sentApart = new Map<string, string | null>();
  #sentCount = 0;
  /** share() looks for a shared table once this many names are apart. */
  #shareAt = SHARE_AFTER + Math.floor(Math.random() * SHARE_AFTER);
  /** name → the ACKed version where it differs from what was sent since (null: none ACKed). */
  readonly #ackedApart = new Map<string, string | null>();

  sentVersion(name: string): string | undefined {
    const apart = this.#sentApart.get(name);
    if (apart === undefined) return this.#base.get(name);
    return apart ?? undefined;
  }

  hasSent(name: string): boolean {
    return this.sentVersion(name) !== undefined;
  }

  /** The names sent, as an array: callers delete while they go through them. */
  sentNames(): string[] {
    const names: string[] = [];
    for (const [name, version] of this.#sentApart) if (version !== null) names.push(name);
    for (const name of this.#base.keys()) if (!this.#sentApart.has(name)) names.push(name);
    return names;
  }

  /** Records that `version` of `name` went out (or, in delta, that the client says it holds it). */
  setSent(name: string, version: string): void {
    const previous = this.sentVersion(name);
    if (previous === version) return;
    if (!this.#ackedApart.has(name)) this.#ackedApart.set(name, previous ?? null);
    this.#recordSent(name, previous, version);
  }

  deleteSent(name: string): void {
    const previous = this.sentVersion(name);
    if (previous === undefined) return;
    if (!this.#ackedApart.has(name)) this.#ackedApart.set(name, previous);
    this.#recordSent(name, previous, undefined);
  }

  ackedVersion(name: string): string | undefined {
    const apart = this.#ackedApart.get(name);
    if (apart === undefined) return this.sentVersion(name);
    return apart ?? undefined;
  }

  /**
   * The client ACKed a response with these entries (null version: removed). A complete set also says
   * every other name is gone from the client.
   */
  acknowledge(entries: readonly SentEntry[], completeSet: boolean): void {
    if (completeSet) {
      const inResponse = new Set(entries.map(([name]) => name));
      for (const name of this.sentNames()) if (!inResponse.has(name)) this.#settle(name, null);
      for (const name of this.#ackedApart.keys()) if (!inResponse.has(name)) this.#settle(name, null);
    }
    for (const [name, version] of entries) this.#settle(name, version);
  }

  /** How many names have an ACKed version. */
  ackedCount(): number {
    let count = this.#sentCount;
    for (const [name, acked] of this.#ackedApart) {
      if (this.hasSent(name)) count -= 1;
      if (acked !== null) count += 1;
    }
    return count;
  }

  /** name → ACKed version, for /debug/syncz. */
  ackedEntries(): Map<string, string> {
    const acked = new Map<string, string>();
    for (const name of this.sentNames()) {
      if (!this.#ackedApart.has(name)) acked.set(name, this.sentVersion(name) ?? '');
    }
    for (const [name, version] of this.#ackedApart) if (version !== null) acked.set(name, version);
    return acked;
  }

  /** How many names this stream keeps apart from the table it shares. */
  get sentApartCount(): number {
    return this.#sentApart.size;
  }

  /**
   * Offers `table` (name → version) to share: taken if it is exactly what this stream was sent, which
   * frees what the stream kept apart. Returns whether it was taken.
   */
  adopt(table: ReadonlyMap<string, string>): boolean {
    if (table.size !== this.#sentCount) return false;
    if (table !== this.#base) {
      for (const [name, version] of table) if (this.sentVersion(name) !== version) return false;
    } else {
      for (const [name, version] of this.#sentApart) if (version !== (table.get(name) ?? null)) return false;
    }
    this.#base = table;
    this.#sentApart.clear();
    return true;
  }

  /**
   * Calls adopt() with `current()` once enough names are kept apart. The threshold starts at a random
   * point in [SHARE_AFTER, 2 × SHARE_AFTER), so streams moving in step do not all compare at one change;
   * after a refusal (a stream with a partial subscription, or behind) it waits for SHARE_AFTER more.
   */
  share(current: () => ReadonlyMap<string, string>): void {
    if (this.#sentApart.size < this.#shareAt) return;
    this.#shareAt = this.adopt(current())
      ? SHARE_AFTER + Math.floor(Math.random() * SHARE_AFTER)
      : this.#sentApart.size + SHARE_AFTER;
  }

  #recordSent(name: string, previous: string | undefined, version: string | undefined): void {
    if (version === this.#base.get(name)) this.#sentApart.delete(name);
    else this.#sentApart.set(name, version ?? null);
    this.#sentCount += (version === undefined ? 0 : 1) - (previous === undefined ? 0 : 1);
  }

  #settle(name: string, acked: string | null): void {
    // Equal to what was sent last: nothing to keep apart (a later response may have changed it again).
    if (acked === (this.sentVersion(name) ?? null)) this.#ackedApart.delete(name);
    else this.#ackedApart.set(name, acked);
  }
}

const NO_VERSIONS: ReadonlyMap<string, string> = new Map();
/** Names a stream keeps apart before it looks for a table to share (see ResourceVersions.share). */
const SHARE_AFTER = 64;

export class TypeSyncState {
  readonly typeUrl: string;
  lastSent: SentRecord | undefined;
  lastAcked: SentRecord | undefined;
  lastNack: NackRecord | undefined;
  wildcard = false;
  /**
   * What a wildcard subscription covers when not everything: a scoped sidecar's (docs/sidecar.md). The
   * readiness gate must not wait for an Envoy to ACK a cluster it will never be sent.
   */
  wildcardScope: ((name: string) => boolean) | undefined = undefined;
  subscribed: ReadonlySet<string> = new Set();
  /** What was sent and what the client ACKed, per resource name. */
  readonly versions = new ResourceVersions();
  /**
   * Responses sent and not yet settled, oldest first. A list through the responses themselves, not a
   * Map: a Map that empties gets a new table from V8, and this one empties at every ACK of every stream.
   */
  #oldestInflight: InflightResponse | undefined;
  #newestInflight: InflightResponse | undefined;

  constructor(typeUrl: string) {
    this.typeUrl = typeUrl;
  }

  /** SYNCED: the latest response is ACKed; STALE: one is outstanding; NACKED: the latest was rejected. */
  get status(): 'NOT_SENT' | 'SYNCED' | 'STALE' | 'NACKED' {
    if (!this.lastSent) return 'NOT_SENT';
    if (this.lastAcked?.nonce === this.lastSent.nonce) return 'SYNCED';
    if (this.lastNack?.nonce === this.lastSent.nonce) return 'NACKED';
    return 'STALE';
  }

  isSubscribed(name: string): boolean {
    return (this.wildcard && (this.wildcardScope?.(name) ?? true)) || this.subscribed.has(name);
  }

  /** The response with this nonce, while it is in flight. */
  inflight(nonce: string): InflightResponse | undefined {
    for (let r = this.#oldestInflight; r !== undefined; r = r.next) if (r.record.nonce === nonce) return r;
    return undefined;
  }

  addInflight(response: InflightResponse): void {
    if (this.#newestInflight === undefined) this.#oldestInflight = response;
    else this.#newestInflight.next = response;
    this.#newestInflight = response;
  }

  /**
   * Removes the in-flight response `nonce` and every one sent before it (Envoy answers responses in
   * order, so those are settled too); returns it, or undefined when the nonce is unknown or settled.
   */
  settle(nonce: string): InflightResponse | undefined {
    const response = this.inflight(nonce);
    if (response === undefined) return undefined;
    const rest = response.next;
    // Unlinked, so that one a caller of inflight() kept does not keep every later one alive.
    for (let r = this.#oldestInflight; r !== undefined && r !== rest;) {
      const following: InflightResponse | undefined = r.next;
      r.next = undefined;
      r = following;
    }
    this.#oldestInflight = rest;
    if (rest === undefined) this.#newestInflight = undefined;
    return response;
  }
}

export class StreamSyncState {
  readonly streamId: number;
  readonly kind: StreamKind;
  readonly peer: string;
  /** Who the stream's verified client certificate names (mTLS), else null. */
  readonly identity: string | null;
  readonly connectedAt = new Date();
  nodeId = '';
  nodeCluster = '';
  /** The client's software, e.g. `envoy/1.36.4`, from its first request's node; null when it sent none. */
  userAgent: string | null = null;
  /** What the node's metadata made of it (node-metadata.ts); null until its node was seen. */
  proxy: ProxyProfileJson | null = null;
  readonly types = new Map<string, TypeSyncState>();

  constructor(streamId: number, kind: StreamKind, peer: string, identity?: string) {
    this.streamId = streamId;
    this.kind = kind;
    this.peer = peer;
    this.identity = identity ?? null;
  }

  type(typeUrl: string): TypeSyncState {
    let state = this.types.get(typeUrl);
    if (!state) this.types.set(typeUrl, (state = new TypeSyncState(typeUrl)));
    return state;
  }
}

export interface AckEvent {
  readonly stream: StreamSyncState;
  readonly typeUrl: string;
  readonly versionInfo: string;
  /** Seconds from sending the response to receiving its ACK. */
  readonly latencySeconds: number;
  readonly entries: readonly SentEntry[];
}

export interface NackEvent {
  readonly stream: StreamSyncState;
  readonly typeUrl: string;
  readonly versionInfo: string;
  readonly error: string;
  readonly entries: readonly SentEntry[];
}

export interface SentEvent {
  readonly stream: StreamSyncState;
  readonly typeUrl: string;
  readonly record: SentRecord;
  readonly resources: number;
  readonly bytes: number;
}

export interface SyncStatusEvents {
  connect: [StreamSyncState];
  disconnect: [StreamSyncState];
  sent: [SentEvent];
  ack: [AckEvent];
  nack: [NackEvent];
}

export class SyncStatus extends EventEmitter<SyncStatusEvents> {
  readonly #streams = new Map<number, StreamSyncState>();
  #nextStreamId = 1;

  open(kind: StreamKind, peer: string, identity?: string): StreamSyncState {
    const stream = new StreamSyncState(this.#nextStreamId++, kind, peer, identity);
    this.#streams.set(stream.streamId, stream);
    this.emit('connect', stream);
    return stream;
  }

  close(stream: StreamSyncState): void {
    if (this.#streams.delete(stream.streamId)) this.emit('disconnect', stream);
  }

  get streams(): readonly StreamSyncState[] {
    return [...this.#streams.values()];
  }

  recordSent(
    stream: StreamSyncState,
    typeUrl: string,
    sent: {
      versionInfo: string;
      nonce: string;
      entries: readonly SentEntry[];
      completeSet: boolean;
      bytes: number;
    },
  ): void {
    const state = stream.type(typeUrl);
    const record: SentRecord = { versionInfo: sent.versionInfo, nonce: sent.nonce, timeMs: Date.now() };
    state.lastSent = record;
    state.addInflight({
      record,
      entries: sent.entries,
      completeSet: sent.completeSet,
      sentAtMs: performance.now(),
      next: undefined,
    });
    this.emit('sent', { stream, typeUrl, record, resources: sent.entries.length, bytes: sent.bytes });
  }

  /** Applies an ACK of `nonce`; returns false when the nonce is unknown (already settled or never sent). */
  recordAck(stream: StreamSyncState, typeUrl: string, nonce: string, versionInfo: string): boolean {
    const state = stream.type(typeUrl);
    const response = state.settle(nonce);
    if (!response) return false;
    state.versions.acknowledge(response.entries, response.completeSet);
    // The strings of the response, when they are equal: these records outlive a young-generation GC.
    state.lastAcked = {
      versionInfo: versionInfo === response.record.versionInfo ? response.record.versionInfo : versionInfo,
      nonce: response.record.nonce,
      timeMs: Date.now(),
    };
    const latencySeconds = (performance.now() - response.sentAtMs) / 1000;
    this.emit('ack', { stream, typeUrl, versionInfo, latencySeconds, entries: response.entries });
    return true;
  }

  recordNack(
    stream: StreamSyncState,
    typeUrl: string,
    nonce: string,
    versionInfo: string,
    error: string,
  ): boolean {
    const state = stream.type(typeUrl);
    const response = state.settle(nonce);
    if (!response) return false;
    state.lastNack = {
      versionInfo,
      nonce,
      error,
      timeMs: Date.now(),
      resources: response.entries.map(([name]) => name),
    };
    this.emit('nack', { stream, typeUrl, versionInfo, error, entries: response.entries });
    return true;
  }

  /** The /debug/syncz document (shape fixed in shared/design.md). */
  toJSON(options: { resources?: boolean } = {}): SynczEntry[] {
    return this.streams.map((stream) => ({
      nodeId: stream.nodeId,
      nodeCluster: stream.nodeCluster,
      proxy: stream.proxy,
      streamId: stream.streamId,
      stream: stream.kind,
      peer: stream.peer,
      identity: stream.identity,
      userAgent: stream.userAgent,
      connectedAt: stream.connectedAt.toISOString(),
      types: Object.fromEntries(
        [...stream.types.values()].map((t) => [
          t.typeUrl,
          {
            status: t.status,
            subscribed: t.wildcard ? '*' : [...t.subscribed].sort(),
            sent: t.lastSent ? recordJson(t.lastSent) : null,
            acked: t.lastAcked ? recordJson(t.lastAcked) : null,
            lastNack: t.lastNack
              ? {
                  ...recordJson(t.lastNack),
                  error: t.lastNack.error,
                  resources: [...(t.lastNack.resources ?? [])].sort(),
                }
              : null,
            ackedResourceCount: t.versions.ackedCount(),
            ...(options.resources
              ? { ackedResources: Object.fromEntries([...t.versions.ackedEntries()].sort()) }
              : {}),
          },
        ]),
      ),
    }));
  }
}

function recordJson(record: SentRecord): { version: string; nonce: string; time: string } {
  return { version: record.versionInfo, nonce: record.nonce, time: new Date(record.timeMs).toISOString() };
}

export interface SynczTypeEntry {
  status: 'NOT_SENT' | 'SYNCED' | 'STALE' | 'NACKED';
  subscribed: '*' | string[];
  sent: { version: string; nonce: string; time: string } | null;
  acked: { version: string; nonce: string; time: string } | null;
  lastNack: { version: string; nonce: string; time: string; error: string; resources: string[] } | null;
  ackedResourceCount: number;
  ackedResources?: Record<string, string>;
}

export interface SynczEntry {
  nodeId: string;
  nodeCluster: string;
  /** Gateway or sidecar, with the sidecar's listener port and scope, or why its metadata was ignored. Absent in older readygate versions. */
  proxy?: ProxyProfileJson | null;
  streamId: number;
  stream: StreamKind;
  peer: string;
  /** mTLS: the client certificate's URI SANs, else `CN=…`; null without TLS client certificates. Absent in older readygate versions. */
  identity?: string | null;
  /** `envoy/1.36.4`, `grpc-go/1.70.0`: the node's user agent name and version; null when it sent none. Absent in older readygate versions. */
  userAgent?: string | null;
  connectedAt: string;
  types: Record<string, SynczTypeEntry>;
}
