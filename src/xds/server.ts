/**
 * The gRPC face of ADS: decodes requests, hands them to a per-stream state machine, writes the bytes it
 * returns. Responses are pre-encoded, so the response serializer is the identity function.
 */
import * as grpc from '@grpc/grpc-js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { codecFor } from '../protos/envoy-protos.js';
import type { CacheChange, ResourceCache } from './cache.js';
import { DeltaStream } from './delta.js';
import {
  DELTA_DISCOVERY_REQUEST,
  DISCOVERY_REQUEST,
  type DeltaDiscoveryRequest,
  type DiscoveryRequest,
} from './messages.js';
import { decodeDiscoveryRequest } from './request-decoder.js';
import { SotwStream } from './sotw.js';
import { SendBudget, type StreamTransport, type XdsStreamBase } from './stream-base.js';
import type { StreamKind, SyncStatus } from './sync-status.js';

export const ADS_SERVICE = 'envoy.service.discovery.v3.AggregatedDiscoveryService';
export const SOTW_METHOD_PATH = `/${ADS_SERVICE}/StreamAggregatedResources`;
export const DELTA_METHOD_PATH = `/${ADS_SERVICE}/DeltaAggregatedResources`;

/** A request that failed to decode; the handler ends its stream with INVALID_ARGUMENT. */
class UndecodableMessage {
  readonly reason: string;
  constructor(reason: string) {
    this.reason = reason;
  }
}

function guarded(decode: (bytes: Buffer) => unknown, messageName: string): (bytes: Buffer) => unknown {
  return (bytes) => {
    try {
      return decode(bytes);
    } catch (error) {
      return new UndecodableMessage(`cannot decode ${messageName}: ${errorMessage(error)}`);
    }
  };
}

function decoderFor(messageName: string): (bytes: Buffer) => unknown {
  const codec = codecFor(messageName);
  return guarded((bytes) => codec.decode(bytes), messageName);
}

function identity(bytes: Buffer): Buffer {
  return bytes;
}

function method(
  path: string,
  requestName: string,
  decode: (bytes: Buffer) => unknown = decoderFor(requestName),
): grpc.MethodDefinition<unknown, Buffer> {
  return {
    path,
    requestStream: true,
    responseStream: true,
    requestSerialize: () => {
      throw new Error('server-side definition: requests are never serialized here');
    },
    requestDeserialize: decode,
    responseSerialize: identity,
    responseDeserialize: identity,
  };
}

export const adsServiceDefinition = {
  // SotW requests are decoded by the stream handler, which knows the stream's previous requests.
  StreamAggregatedResources: method(SOTW_METHOD_PATH, DISCOVERY_REQUEST, identity),
  DeltaAggregatedResources: method(DELTA_METHOD_PATH, DELTA_DISCOVERY_REQUEST),
} satisfies grpc.ServiceDefinition;

export interface AdsServiceOptions {
  readonly cache: ResourceCache;
  readonly sync: SyncStatus;
  readonly logger: Logger;
  /** Bytes written to all streams but not yet sent (default 8 MiB: measured lower RSS and a faster connect storm than 32 MiB). */
  readonly maxBytesInFlight?: number;
}

const DEFAULT_MAX_BYTES_IN_FLIGHT = 8 * 1024 * 1024;

type AnyCall = grpc.ServerDuplexStream<unknown, Buffer>;

/** Owns the live ADS streams: fans cache changes out to them and ends them on shutdown. */
export class AdsService {
  readonly #options: AdsServiceOptions;
  readonly #streams = new Map<XdsStreamBase, AnyCall>();
  readonly #budget: SendBudget;
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

  implementation(): grpc.UntypedServiceImplementation {
    return {
      StreamAggregatedResources: (call: AnyCall) => {
        this.#attach(call, 'sotw');
      },
      DeltaAggregatedResources: (call: AnyCall) => {
        this.#attach(call, 'delta');
      },
    };
  }

  /** Ends every stream with UNAVAILABLE so Envoys reconnect (to another replica) right away. */
  closeAll(message: string): void {
    this.#closing = true;
    for (const call of this.#streams.values()) {
      call.emit('error', { code: grpc.status.UNAVAILABLE, details: message });
    }
  }

  #attach(call: AnyCall, kind: StreamKind): void {
    const { cache, sync, logger } = this.#options;
    if (this.#closing) {
      call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'readygate is shutting down' });
      return;
    }
    const syncState = sync.open(kind, call.getPeer());
    let ended = false;
    /** Bytes of this stream's writes not yet handed on; given back to the budget if the stream dies. */
    let unsent = 0;
    const budget = this.#budget;
    const transport: StreamTransport = {
      send: (bytes) => {
        if (ended) return true;
        unsent += bytes.length;
        budget.charge(bytes.length);
        return call.write(bytes, () => {
          // grpc-js skips this callback on a cancelled call; finish() settles those bytes instead.
          if (ended) return;
          unsent -= bytes.length;
          budget.release(bytes.length);
        });
      },
      fail: (code, message) => {
        if (ended) return;
        logger.warn(
          { stream: syncState.streamId, node: syncState.nodeId, code, message },
          'ending xds stream',
        );
        call.emit('error', { code, details: message });
      },
    };
    const stream =
      kind === 'sotw'
        ? new SotwStream({ cache, sync, logger, budget }, syncState, transport)
        : new DeltaStream({ cache, sync, logger, budget }, syncState, transport);
    this.#streams.set(stream, call);

    const finish = (): void => {
      if (ended) return;
      ended = true;
      stream.detach();
      budget.release(unsent);
      unsent = 0;
      this.#streams.delete(stream);
      sync.close(syncState);
      logger.info({ stream: syncState.streamId, node: syncState.nodeId }, 'xds stream closed');
    };
    const decode =
      stream instanceof SotwStream
        ? guarded((bytes) => decodeDiscoveryRequest(bytes, stream.recentResourceNames()), DISCOVERY_REQUEST)
        : (decoded: unknown) => decoded;
    call.on('data', (received: unknown) => {
      if (ended) return;
      const message = decode(received as Buffer);
      if (message instanceof UndecodableMessage) {
        transport.fail(grpc.status.INVALID_ARGUMENT, message.reason);
        return;
      }
      try {
        if (stream instanceof SotwStream) stream.handleRequest(message as DiscoveryRequest);
        else stream.handleRequest(message as DeltaDiscoveryRequest);
      } catch (error) {
        logger.error({ err: error, stream: syncState.streamId }, 'xds request handling failed');
        transport.fail(
          grpc.status.INTERNAL,
          `readygate failed to handle the request: ${errorMessage(error)}`,
        );
      }
    });
    call.on('drain', () => {
      stream.resume();
    });
    // The client half-closed: finish our side too.
    call.on('end', () => {
      finish();
      call.end();
    });
    call.on('cancelled', finish);
    call.on('close', finish);
    call.on('error', finish);
  }
}

/** Server options chosen on purpose instead of grpc-js defaults (see docs/architecture.md). */
export const GRPC_SERVER_OPTIONS: grpc.ServerOptions = {
  // Detect Envoys that vanished without a FIN, so their sync state does not linger.
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  // Channelz tracks every call; unneeded here and a past source of leaks.
  'grpc.enable_channelz': 0,
  'grpc.max_concurrent_streams': 1000,
  'grpc-node.max_session_memory': 64 * 1024 * 1024,
};
