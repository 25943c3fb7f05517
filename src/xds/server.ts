/**
 * The gRPC face of ADS: decodes requests, hands them to a per-stream state machine, writes the bytes it
 * returns. Responses are pre-encoded and framed by the copy that assembles them (grpc-transport.ts).
 */
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { codecFor } from '../protos/envoy-protos.js';
import type { CacheChange, ResourceCache } from './cache.js';
import { DeltaStream } from './delta.js';
import { type BidiCallHandlers, GrpcStatus, type GrpcServerCall } from '../http2/grpc-transport.js';
import { DELTA_DISCOVERY_REQUEST, DISCOVERY_REQUEST, type DeltaDiscoveryRequest } from './messages.js';
import { decodeDiscoveryRequest, type LazyDiscoveryRequest } from './request-decoder.js';
import { SotwStream } from './sotw.js';
import { SharedSubscriptions } from './shared-subscriptions.js';
import { SendBudget, type StreamTransport, type XdsStreamBase } from './stream-base.js';
import type { StreamKind, SyncStatus } from './sync-status.js';

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
  /** Bytes written to all streams but not yet sent (default 8 MiB: measured lower RSS and a faster connect storm than 32 MiB). */
  readonly maxBytesInFlight?: number;
}

const DEFAULT_MAX_BYTES_IN_FLIGHT = 8 * 1024 * 1024;

/** Owns the live ADS streams: fans cache changes out to them and ends them on shutdown. */
export class AdsService {
  readonly #options: AdsServiceOptions;
  readonly #streams = new Map<XdsStreamBase, GrpcServerCall>();
  readonly #budget: SendBudget;
  readonly #subscriptions = new SharedSubscriptions();
  #closing = false;

  constructor(options: AdsServiceOptions) {
    this.#options = options;
    this.#budget = new SendBudget(options.maxBytesInFlight ?? DEFAULT_MAX_BYTES_IN_FLIGHT);
    options.cache.on('change', (change: CacheChange) => {
      for (const stream of this.#streams.keys()) stream.handleCacheChange(change);
    });
  }

  get streamCount(): number {
    return this.#streams.size;
  }

  /** The ADS methods, by HTTP/2 path, for the gRPC server. */
  methods(): ReadonlyMap<string, (call: GrpcServerCall) => BidiCallHandlers> {
    return new Map([
      [SOTW_METHOD_PATH, (call: GrpcServerCall) => this.#attach(call, 'sotw')],
      [DELTA_METHOD_PATH, (call: GrpcServerCall) => this.#attach(call, 'delta')],
    ]);
  }

  /** Ends every stream with UNAVAILABLE so Envoys reconnect (to another replica) right away. */
  closeAll(message: string): void {
    this.#closing = true;
    for (const call of this.#streams.values()) call.finish(GrpcStatus.UNAVAILABLE, message);
  }

  #attach(call: GrpcServerCall, kind: StreamKind): BidiCallHandlers {
    const { cache, sync, logger } = this.#options;
    if (this.#closing) {
      call.finish(GrpcStatus.UNAVAILABLE, 'readygate is shutting down');
      return { onMessage: () => undefined, onDrain: () => undefined, onClose: () => undefined };
    }
    const syncState = sync.open(kind, call.peer);
    let ended = false;
    /** Bytes of this stream's writes not yet handed on; given back to the budget if the stream dies. */
    let unsent = 0;
    const budget = this.#budget;
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
            { cache, sync, logger, budget, subscriptions: this.#subscriptions },
            syncState,
            transport,
          )
        : new DeltaStream({ cache, sync, logger, budget }, syncState, transport);
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
        // Writes the connection never took are not coming back through their callbacks.
        budget.release(unsent);
        unsent = 0;
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
