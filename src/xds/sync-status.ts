/**
 * What every connected Envoy was sent and what it accepted, per type URL and per resource. Fed by the
 * protocol state machines; read by /debug/syncz, metrics, and the readiness gate and drain-wait, which
 * need to know which resource versions each Envoy has ACKed.
 */
import { EventEmitter } from 'node:events';

export type StreamKind = 'sotw' | 'delta';

export interface SentRecord {
  readonly versionInfo: string;
  readonly nonce: string;
  readonly time: Date;
}

export interface NackRecord extends SentRecord {
  readonly error: string;
  /** Names the rejected response carried (for complete-set types: the whole set). */
  readonly resources?: readonly string[];
}

/** A resource in a response: its version, or null when the response removes it. */
export type SentEntry = readonly [name: string, version: string | null];

interface InflightResponse {
  readonly record: SentRecord;
  readonly entries: readonly SentEntry[];
  /** SotW CDS/LDS responses carry the complete set: on ACK, anything absent is gone from the client. */
  readonly completeSet: boolean;
  /** performance.now() at sending: a plain number, since this runs for every push of every stream. */
  readonly sentAtMs: number;
}

export class TypeSyncState {
  readonly typeUrl: string;
  lastSent: SentRecord | undefined;
  lastAcked: SentRecord | undefined;
  lastNack: NackRecord | undefined;
  wildcard = false;
  subscribed: ReadonlySet<string> = new Set();
  /** name → version the client has ACKed. */
  readonly ackedResources = new Map<string, string>();
  readonly inflight = new Map<string, InflightResponse>();

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
    return this.wildcard || this.subscribed.has(name);
  }
}

export class StreamSyncState {
  readonly streamId: number;
  readonly kind: StreamKind;
  readonly peer: string;
  readonly connectedAt = new Date();
  nodeId = '';
  nodeCluster = '';
  readonly types = new Map<string, TypeSyncState>();

  constructor(streamId: number, kind: StreamKind, peer: string) {
    this.streamId = streamId;
    this.kind = kind;
    this.peer = peer;
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

  open(kind: StreamKind, peer: string): StreamSyncState {
    const stream = new StreamSyncState(this.#nextStreamId++, kind, peer);
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
    const record: SentRecord = { versionInfo: sent.versionInfo, nonce: sent.nonce, time: new Date() };
    state.lastSent = record;
    state.inflight.set(sent.nonce, {
      record,
      entries: sent.entries,
      completeSet: sent.completeSet,
      sentAtMs: performance.now(),
    });
    this.emit('sent', { stream, typeUrl, record, resources: sent.entries.length, bytes: sent.bytes });
  }

  /** Applies an ACK of `nonce`; returns false when the nonce is unknown (already settled or never sent). */
  recordAck(stream: StreamSyncState, typeUrl: string, nonce: string, versionInfo: string): boolean {
    const state = stream.type(typeUrl);
    const response = settle(state, nonce);
    if (!response) return false;
    if (response.completeSet) {
      const present = new Set(response.entries.map(([name]) => name));
      for (const name of state.ackedResources.keys())
        if (!present.has(name)) state.ackedResources.delete(name);
    }
    for (const [name, version] of response.entries) {
      if (version === null) state.ackedResources.delete(name);
      else state.ackedResources.set(name, version);
    }
    state.lastAcked = { versionInfo, nonce, time: new Date() };
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
    const response = settle(state, nonce);
    if (!response) return false;
    state.lastNack = {
      versionInfo,
      nonce,
      error,
      time: new Date(),
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
      streamId: stream.streamId,
      stream: stream.kind,
      peer: stream.peer,
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
            ackedResourceCount: t.ackedResources.size,
            ...(options.resources
              ? { ackedResources: Object.fromEntries([...t.ackedResources].sort()) }
              : {}),
          },
        ]),
      ),
    }));
  }
}

/**
 * Removes the in-flight response `nonce` and every one sent before it (Envoy answers responses in order,
 * so those are settled too); returns it, or undefined when the nonce is unknown or already settled.
 */
function settle(state: TypeSyncState, nonce: string): InflightResponse | undefined {
  const response = state.inflight.get(nonce);
  if (!response) return undefined;
  for (const key of state.inflight.keys()) {
    state.inflight.delete(key);
    if (key === nonce) break;
  }
  return response;
}

function recordJson(record: SentRecord): { version: string; nonce: string; time: string } {
  return { version: record.versionInfo, nonce: record.nonce, time: record.time.toISOString() };
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
  streamId: number;
  stream: StreamKind;
  peer: string;
  connectedAt: string;
  types: Record<string, SynczTypeEntry>;
}
