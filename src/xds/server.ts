/**
 * The gRPC face of ADS: decodes requests, hands them to a per-stream state machine, writes the bytes it
 * returns. Responses are pre-encoded and framed by the copy that assembles them (grpc-transport.ts).
 * It sees calls and connections only through GrpcCall and GrpcConnection (grpc-call.ts), so the same
 * service runs on readygate's HTTP/2 engine and, in bench:xds, on node:http2.
 */
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { codecFor } from '../protos/envoy-protos.js';
import type { CacheChange, ResourceCache } from './cache.js';
import { DeltaStream } from './delta.js';
import { EventEmitter } from 'node:events';
import type { BidiCallHandlers, BidiMethodHandler, GrpcCall, GrpcConnection } from '../http2/grpc-call.js';
import { GrpcStatus } from '../http2/grpc-transport.js';
import { DELTA_DISCOVERY_REQUEST, DISCOVERY_REQUEST, type DeltaDiscoveryRequest } from './messages.js';
import { decodeDiscoveryRequest, type LazyDiscoveryRequest } from './request-decoder.js';
import { SotwStream } from './sotw.js';
import { SharedSubscriptions } from './shared-subscriptions.js';
import { type CloseReason, DrainWatch, SendBudget } from './send-budget.js';
import type { StreamTransport, XdsStreamBase } from './stream-base.js';
import type { StreamKind, StreamSyncState, SyncStatus } from './sync-status.js';
import type { OutboundViews } from './outbound-views.js';

export const ADS_SERVICE = 'envoy.service.discovery.v3.AggregatedDiscoveryService';
export const SOTW_METHOD_PATH = `/${ADS_SERVICE}/StreamAggregatedResources`;
export const DELTA_METHOD_PATH = `/${ADS_SERVICE}/DeltaAggregatedResources`;

/** A request that failed to decode; the stream ends with INVALID_ARGUMENT. */
class UndecodableMessage {
  readonly reason: string;
  constructor(reason: string) {
    this.reason = reason;
  }
}

function guarded<T>(
  decode: (bytes: Buffer) => T,
  messageName: string,
): (bytes: Buffer) => T | UndecodableMessage {
  return (bytes) => {
    try {
      return decode(bytes);
    } catch (error) {
      return new UndecodableMessage(`cannot decode ${messageName}: ${errorMessage(error)}`);
    }
  };
}

const deltaCodec = codecFor<DeltaDiscoveryRequest>(DELTA_DISCOVERY_REQUEST);
const decodeDeltaRequest = guarded((bytes) => deltaCodec.decode(bytes), DELTA_DISCOVERY_REQUEST);

export interface AdsServiceOptions {
  readonly cache: ResourceCache;
  readonly sync: SyncStatus;
  readonly logger: Logger;
  /** Sidecars' views; without them every Envoy is served as a gateway. */
  readonly views?: OutboundViews;
  /**
   * Bytes written to one connection's streams and not yet handed to its socket; beyond it that
   * connection's streams wait and then send their latest state (default 4 MiB).
   */
  readonly maxPendingBytesPerConnection?: number;
  /**
   * The same over all connections: paces a storm of connecting Envoys (default 64 MiB); stuck
   * connections can fill it only together, until they are closed at maxStallMs.
   */
  readonly maxPendingBytes?: number;
  /** A connection that drains nothing for this long while it has bytes to take is closed (default 30 s). */
  readonly maxStallMs?: number;
}

export const DEFAULT_MAX_PENDING_BYTES_PER_CONNECTION = 4 * 1024 * 1024;
export const DEFAULT_MAX_PENDING_BYTES = 64 * 1024 * 1024;
export const DEFAULT_MAX_STALL_MS = 30_000;
/**
 * While streams wait on the total pending budget, a connection at its own cap that has drained
 * nothing for this long (or maxStallMs, if shorter) is closed: stuck peers that fill the total
 * together at their caps delay everyone else by this plus one sweep, not by the whole stall bound.
 */
export const PRESSURE_STALL_MS = 2_000;

/** A client connection readygate closed, for metrics (readygate_xds_connections_closed_total). */
export interface ConnectionClosedEvent {
  readonly peer: string;
  readonly nodes: readonly string[];
  readonly reason: CloseReason;
}

export class AdsConnectionEvents extends EventEmitter<{ closed: [ConnectionClosedEvent] }> {}

/** One client connection's share of the send budget, its stall watch and its streams. */
interface ConnectionState {
  readonly budget: SendBudget;
  readonly watch: DrainWatch;
  readonly streams: Set<StreamSyncState>;
  /** When the next drain probe (PING) may go out. */
  nextProbeAt: number;
}

/** Owns the live ADS streams: fans cache changes out to them and ends them on shutdown. */
export class AdsService {
  readonly events = new AdsConnectionEvents();
  readonly #options: AdsServiceOptions;
  readonly #streams = new Map<XdsStreamBase, GrpcCall>();
  readonly #total: SendBudget;
  readonly #connections = new Map<GrpcConnection, ConnectionState>();
  readonly #subscriptions = new SharedSubscriptions();
  readonly #maxStallMs: number;
  readonly #sweep: NodeJS.Timeout;
  #closing = false;

  constructor(options: AdsServiceOptions) {
    this.#options = options;
    this.#total = new SendBudget(options.maxPendingBytes ?? DEFAULT_MAX_PENDING_BYTES);
    this.#maxStallMs = options.maxStallMs ?? DEFAULT_MAX_STALL_MS;
    options.cache.on('change', (change: CacheChange) => {
      // Views first: each sidecar stream reads its view's part of the change.
      options.views?.apply(change);
      for (const stream of this.#streams.keys()) stream.onCacheChange(change);
    });
    options.cache.on('released', () => {
      for (const stream of this.#streams.keys()) stream.onCacheReleased();
    });
    // A tenth of the bound between looks: a stalled connection is closed within 1.1 × the bound.
    this.#sweep = setInterval(
      () => {
        this.#closeStalled();
      },
      Math.min(1000, Math.max(50, this.#maxStallMs / 10)),
    );
    this.#sweep.unref();
  }

  get streamCount(): number {
    return this.#streams.size;
  }

  /** Bytes written to streams and not yet handed to the network, over all connections. */
  get pendingBytes(): number {
    return this.#total.inFlight;
  }

  /** The ADS methods, by HTTP/2 path, for the gRPC server. */
  methods(): ReadonlyMap<string, BidiMethodHandler> {
    return new Map<string, BidiMethodHandler>([
      [SOTW_METHOD_PATH, (call) => this.#attach(call, 'sotw')],
      [DELTA_METHOD_PATH, (call) => this.#attach(call, 'delta')],
    ]);
  }

  /** Ends every stream with UNAVAILABLE so Envoys reconnect (to another replica) right away. */
  closeAll(message: string): void {
    this.#closing = true;
    clearInterval(this.#sweep);
    for (const call of this.#streams.values()) call.finish(GrpcStatus.UNAVAILABLE, message);
  }

  #closeStalled(): void {
    const now = performance.now();
    const maxStallMs = this.#maxStallMs;
    const pressureStallMs = this.#total.waiting > 0 ? Math.min(maxStallMs, PRESSURE_STALL_MS) : undefined;
    for (const [connection, state] of this.#connections) {
      // Probes at a quarter of the bound: a peer that stopped reading is closed within 1.35 × it.
      const probe = now >= state.nextProbeAt;
      if (probe) state.nextProbeAt = now + maxStallMs / 4;
      const unanswered = connection.probeDrain(now, probe);
      const reason = state.watch.verdict(now, state.budget, unanswered, maxStallMs, pressureStallMs);
      if (reason === undefined) continue;
      const nodes = [...new Set([...state.streams].map((s) => s.nodeId).filter((id) => id !== ''))];
      this.#options.logger.warn(
        {
          event: 'xds.connection_closed',
          peer: connection.peer,
          nodes,
          reason,
          pendingBytes: state.budget.inFlight,
          streams: state.streams.size,
          ...(pressureStallMs === undefined ? {} : { totalPendingBytes: this.#total.inFlight }),
        },
        pressureStallMs === undefined
          ? `closing xds connection from ${connection.peer}: it drained nothing for ${maxStallMs} ms`
          : `closing xds connection from ${connection.peer}: it drained nothing for at least ${pressureStallMs} ms at its pending cap while streams of other connections waited for the total pending budget`,
      );
      this.#connections.delete(connection);
      state.budget.retire();
      connection.abort('readygate: the connection drained nothing for too long');
      this.events.emit('closed', { peer: connection.peer, nodes, reason });
    }
  }

  /** The connection's state, created with its first call. */
  #connectionState(connection: GrpcConnection): ConnectionState {
    let state = this.#connections.get(connection);
    if (state === undefined) {
      const now = performance.now();
      state = {
        budget: new SendBudget(
          this.#options.maxPendingBytesPerConnection ?? DEFAULT_MAX_PENDING_BYTES_PER_CONNECTION,
          this.#total,
        ),
        watch: new DrainWatch(now),
        streams: new Set(),
        nextProbeAt: now,
      };
      this.#connections.set(connection, state);
    }
    return state;
  }

  #attach(call: GrpcCall, kind: StreamKind): BidiCallHandlers {
    const { cache, sync, logger, views } = this.#options;
    if (this.#closing) {
      call.finish(GrpcStatus.UNAVAILABLE, 'readygate is shutting down');
      return { onMessage: () => undefined, onDrain: () => undefined, onClose: () => undefined };
    }
    const syncState = sync.open(kind, call.peer, call.identity);
    const connection = this.#connectionState(call.connection);
    connection.streams.add(syncState);
    let ended = false;
    /** Bytes of this stream's writes not yet handed on; given back to the budget if the stream dies. */
    let unsent = 0;
    const { budget } = connection;
    const transport: StreamTransport = {
      send: (parts, length) => {
        if (ended) return true;
        unsent += length;
        budget.charge(length);
        return call.write(parts, () => {
          if (ended) return;
          unsent -= length;
          budget.release(length);
        });
      },
      fail: (code, message) => {
        if (ended) return;
        logger.warn(
          { stream: syncState.streamId, node: syncState.nodeId, code, message },
          'ending xds stream',
        );
        call.finish(code, message);
      },
    };
    const stream =
      kind === 'sotw'
        ? new SotwStream(
            { cache, sync, logger, budget, subscriptions: this.#subscriptions, ...(views ? { views } : {}) },
            syncState,
            transport,
          )
        : new DeltaStream({ cache, sync, logger, budget, ...(views ? { views } : {}) }, syncState, transport);
    this.#streams.set(stream, call);

    const handle =
      stream instanceof SotwStream
        ? requestHandler(sotwDecoder(stream), (request) => {
            stream.handleRequest(request);
          })
        : requestHandler(decodeDeltaRequest, (request) => {
            stream.handleRequest(request);
          });
    return {
      onMessage: (bytes) => {
        if (ended) return;
        try {
          const undecodable = handle(bytes);
          if (undecodable) transport.fail(GrpcStatus.INVALID_ARGUMENT, undecodable.reason);
        } catch (error) {
          logger.error({ err: error, stream: syncState.streamId }, 'xds request handling failed');
          transport.fail(
            GrpcStatus.INTERNAL,
            `readygate failed to handle the request: ${errorMessage(error)}`,
          );
        }
      },
      onDrain: () => {
        stream.resume();
      },
      onClose: () => {
        if (ended) return;
        ended = true;
        stream.detach();
        // Its other streams close next: none of them may build a response meanwhile.
        if (!call.connection.open) budget.retire();
        // Writes the connection never took are not coming back through their callbacks.
        budget.release(unsent);
        unsent = 0;
        connection.streams.delete(syncState);
        if (connection.streams.size === 0 && this.#connections.get(call.connection) === connection) {
          this.#connections.delete(call.connection);
        }
        this.#streams.delete(stream);
        sync.close(syncState);
        logger.info({ stream: syncState.streamId, node: syncState.nodeId }, 'xds stream closed');
      },
    };
  }
}

/** SotW requests are decoded with the stream's previous resource_names as a hint (request-decoder.ts). */
function sotwDecoder(stream: SotwStream): (bytes: Buffer) => LazyDiscoveryRequest | UndecodableMessage {
  return guarded((bytes) => decodeDiscoveryRequest(bytes, stream.recentResourceNames()), DISCOVERY_REQUEST);
}

/** Decodes a request and hands it on; returns the reason when it does not decode. */
function requestHandler<T>(
  decode: (bytes: Buffer) => T | UndecodableMessage,
  handle: (request: T) => void,
): (bytes: Buffer) => UndecodableMessage | undefined {
  return (bytes) => {
    const request = decode(bytes);
    if (request instanceof UndecodableMessage) return request;
    handle(request);
    return undefined;
  };
}

/** Server settings chosen on purpose (see docs/architecture.md). */
export const ADS_SERVER_SETTINGS = {
  // Detect Envoys that vanished without a FIN, so their sync state does not linger.
  keepaliveTimeMs: 30_000,
  keepaliveTimeoutMs: 10_000,
  maxConcurrentStreams: 1000,
  maxPartialBytesPerConnection: 64 * 1024 * 1024,
  // gRPC's usual default; an Envoy's largest request (a SotW ACK naming every cluster) is far below it.
  maxReceiveMessageBytes: 4 * 1024 * 1024,
  // HTTP/2's default 64 KB window makes the server send a WINDOW_UPDATE, a write of its own, for about
  // every second SotW ACK (20 KB at 1000 clusters): 500 extra writes per change at 1000 Envoys. Envoys'
  // requests are read as they arrive, so a larger window does not let them queue more unread data.
  receiveWindowBytes: 1024 * 1024,
  // Envoy sends DATA frames up to the size the server accepts: at the 16 KB default a SotW ACK naming
  // 1000 clusters (22 KB) came in two chunks and had to be reassembled; at this size it comes whole.
  maxFrameBytes: 1024 * 1024,
} as const;
