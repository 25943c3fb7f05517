/**
 * gRPC's wire protocol over our HTTP/2 server (connection.ts), for ADS's two bidirectional
 * methods and nothing else.
 *
 * grpc-js copied every request into a fresh buffer, pushed each message through two object-mode
 * streams and copied every response once more to frame it; node:http2 beneath it cost twice what the
 * same bytes cost over plain sockets. With 1000 Envoys those were most of the control plane's CPU per
 * change (docs/benchmarks.md). Here a request that arrives within one chunk is decoded where it lies,
 * and a response is framed, gRPC and HTTP/2 headers both, by the copy that assembles it. The rest of
 * what a gRPC server owes its clients is kept: status trailers, UNIMPLEMENTED for unknown methods, 415
 * for non-gRPC requests, a receive limit, keepalive pings, graceful close.
 */
// Imported, not the global: in Node 24 the global Buffer is a getter, and these run per frame.
import { Buffer } from 'node:buffer';
import net from 'node:net';
import { formatHostPort, listenOn } from '../net.js';
import { DATA_FRAME_HEADROOM, Http2ServerConnection, type Http2ServerStream } from './connection.js';
import { ErrorCode } from './frames.js';
import type { BidiMethodHandler, GrpcCall, GrpcConnection, GrpcServer } from './grpc-call.js';
import type { HeaderField } from './hpack.js';
import { Http2Limit, type Http2LimitName, type Http2Limits, resolveHttp2Limits } from './limits.js';

/** gRPC status codes used here (https://grpc.github.io/grpc/core/md_doc_statuscodes.html). */
export const GrpcStatus = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

/** A request the framing layer refuses; the call ends with this status. */
export class GrpcFramingError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

const HEADER_BYTES = 5;
/** The largest reassembly buffer a stream keeps for reuse: an ACK naming about 3000 clusters. */
const MAX_SPARE_BYTES = 64 * 1024;

/**
 * Splits a stream of DATA chunks into gRPC messages (1 byte compressed flag, 4 bytes big-endian length,
 * the message). A message within one chunk is returned as a view of that chunk. A message split across
 * chunks is assembled in a buffer the reader reuses for later messages: from a client that keeps to
 * 16 KB frames, a 20 KB SotW ACK (1000 clusters) always spans two, and a fresh buffer for each of 1000
 * Envoys' ACKs was 20 MB of garbage per change. So every message returned by push() must be used up,
 * or copied, before the next push().
 */
export class GrpcMessageReader {
  readonly #maxMessageBytes: number;
  readonly #header = Buffer.alloc(HEADER_BYTES);
  #headerFill = 0;
  /** The message being reassembled from several chunks, and how much of it has arrived. */
  #partial: Buffer | undefined;
  #partialFill = 0;
  /** The reassembly buffer kept for reuse; larger messages get one of their own each time. */
  #spare: Buffer | undefined;
  #partialInSpare = false;

  constructor(maxMessageBytes: number) {
    this.#maxMessageBytes = maxMessageBytes;
  }

  /** Every message `chunk` completes, in order; throws GrpcFramingError on a message it refuses. */
  push(chunk: Buffer): Buffer[] {
    const messages: Buffer[] = [];
    /** Set once a message returned by this call lives in the spare buffer: it must not be refilled. */
    let spareReturned = false;
    let at = 0;
    while (at < chunk.length) {
      if (this.#partial !== undefined) {
        const take = Math.min(chunk.length - at, this.#partial.length - this.#partialFill);
        chunk.copy(this.#partial, this.#partialFill, at, at + take);
        this.#partialFill += take;
        at += take;
        if (this.#partialFill === this.#partial.length) {
          messages.push(this.#partial);
          if (this.#partialInSpare) spareReturned = true;
          this.#partial = undefined;
        }
        continue;
      }
      let length: number;
      if (this.#headerFill === 0 && chunk.length - at >= HEADER_BYTES) {
        this.#checkFlag(chunk.readUInt8(at));
        length = chunk.readUInt32BE(at + 1);
        at += HEADER_BYTES;
      } else {
        const take = Math.min(chunk.length - at, HEADER_BYTES - this.#headerFill);
        chunk.copy(this.#header, this.#headerFill, at, at + take);
        this.#headerFill += take;
        at += take;
        if (this.#headerFill < HEADER_BYTES) break;
        this.#headerFill = 0;
        this.#checkFlag(this.#header.readUInt8(0));
        length = this.#header.readUInt32BE(1);
      }
      if (length > this.#maxMessageBytes) {
        throw new GrpcFramingError(
          GrpcStatus.RESOURCE_EXHAUSTED,
          `received message larger than max (${length} vs ${this.#maxMessageBytes})`,
        );
      }
      if (chunk.length - at >= length) {
        messages.push(chunk.subarray(at, at + length));
        at += length;
      } else {
        this.#partial = this.#assemblyBuffer(length, spareReturned);
        this.#partialFill = 0;
      }
    }
    return messages;
  }

  #assemblyBuffer(length: number, spareReturned: boolean): Buffer {
    const spare = this.#spare;
    if (!spareReturned && spare !== undefined && spare.length >= length) {
      this.#partialInSpare = true;
      return spare.subarray(0, length);
    }
    // Kept only up to a bound: 1000 streams each holding a spare of the 4 MiB limit would be 4 GB.
    this.#partialInSpare = !spareReturned && length <= MAX_SPARE_BYTES;
    if (!this.#partialInSpare) return Buffer.allocUnsafe(length);
    this.#spare = Buffer.allocUnsafeSlow(length);
    return this.#spare;
  }

  /** The size of the message being reassembled, which this reader holds until it completes. */
  get partialBytes(): number {
    return this.#partial?.length ?? 0;
  }

  /** True between messages: a client that half-closes here sent nothing cut off. */
  get atBoundary(): boolean {
    return this.#partial === undefined && this.#headerFill === 0;
  }

  #checkFlag(flag: number): void {
    if (flag === 0) return;
    throw new GrpcFramingError(
      GrpcStatus.INTERNAL,
      flag === 1
        ? 'received a compressed message; readygate accepts only grpc-encoding identity'
        : `invalid gRPC message flag ${flag}`,
    );
  }
}

/**
 * Prefixes `parts` with the gRPC message header, in the one copy that joins them, after `headroom`
 * bytes left free for the HTTP/2 frame header.
 */
export function frameMessage(parts: readonly Buffer[], headroom = 0): Buffer {
  let length = 0;
  for (const part of parts) length += part.length;
  const framed = Buffer.allocUnsafe(headroom + HEADER_BYTES + length);
  framed[headroom] = 0;
  framed.writeUInt32BE(length, headroom + 1);
  let at = headroom + HEADER_BYTES;
  for (const part of parts) at += part.copy(framed, at);
  return framed;
}

/**
 * grpc-message is percent-encoded: bytes outside printable ASCII, and '%' itself
 * (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md).
 */
export function encodeGrpcMessage(message: string): string {
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** A client connection of this server, as its method handlers see it (GrpcConnection). */
export class GrpcPeerConnection implements GrpcConnection {
  readonly peer: string;
  /** Who the peer's verified client certificate names (mTLS); undefined without one. */
  readonly identity: string | undefined;
  readonly #connection: Http2ServerConnection;
  /** Set by every write (one store, no clock read); a drain probe goes out only behind new data. */
  wroteSinceProbe = false;
  #probeSentAt: number | undefined;

  constructor(connection: Http2ServerConnection, peer: string, identity: string | undefined) {
    this.#connection = connection;
    this.peer = peer;
    this.identity = identity;
  }

  /**
   * With `send`, sends a PING behind the data written since the last probe, unless one is out: its
   * answer proves the peer has read that data. Returns how long the probe out has gone unanswered
   * (0 if none). A peer that stopped reading (SIGSTOPped, say) with our bytes in its socket buffers
   * leaves nothing pending here until those buffers fill, megabytes later; the probe notices sooner.
   */
  probeDrain(now: number, send: boolean): number {
    if (this.#probeSentAt !== undefined) return now - this.#probeSentAt;
    if (!send || !this.wroteSinceProbe) return 0;
    // One PING at a time per connection: if the keepalive's is out, try again at the next look.
    const sent = this.#connection.ping(() => {
      this.#probeSentAt = undefined;
    });
    if (sent) {
      this.wroteSinceProbe = false;
      this.#probeSentAt = now;
    }
    return 0;
  }

  /** False once the connection is going away: its calls are about to close, or have. */
  get open(): boolean {
    return !this.#connection.ended;
  }

  /** GOAWAY(ENHANCE_YOUR_CALM) with `message`, then the connection is destroyed; its calls close. */
  abort(message: string): void {
    this.#connection.abort(ErrorCode.ENHANCE_YOUR_CALM, message);
  }
}

/** One server side of a bidirectional-streaming call on this server (GrpcCall). */
export class GrpcServerCall implements GrpcCall {
  readonly peer: string;
  /** Who the peer's verified client certificate names (mTLS); undefined without one. */
  readonly identity: string | undefined;
  readonly connection: GrpcPeerConnection;
  readonly #stream: Http2ServerStream;
  #finished = false;

  constructor(stream: Http2ServerStream, connection: GrpcPeerConnection) {
    this.#stream = stream;
    this.connection = connection;
    this.peer = connection.peer;
    this.identity = connection.identity;
  }

  /** A method, not a getter: a message handler may finish the call between two reads. */
  isFinished(): boolean {
    return this.#finished;
  }

  /**
   * Writes one message made of `parts`; false means the buffer is full and `onDrain` will follow.
   * `onWritten` runs once the bytes are handed to the connection; if the call dies first it does not
   * run, so a caller settles what is left in `onClose`.
   */
  write(parts: readonly Buffer[], onWritten: () => void): boolean {
    if (this.#finished || this.#stream.closed) return true;
    this.connection.wroteSinceProbe = true;
    return this.#stream.write(frameMessage(parts, DATA_FRAME_HEADROOM), true, onWritten);
  }

  /**
   * Ends the call with a status, once what was written has gone out; later calls do nothing. A client
   * still sending is then told to stop with RST_STREAM(NO_ERROR) (RFC 9113 §8.1).
   */
  finish(status: number, message: string): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#stream.end(statusTrailers(status, message));
  }
}

function statusTrailers(status: number, message: string): HeaderField[] {
  return message === ''
    ? [['grpc-status', String(status)]]
    : [
        ['grpc-status', String(status)],
        ['grpc-message', encodeGrpcMessage(message)],
      ];
}

export interface GrpcHttp2ServerOptions {
  /** Path (`/package.Service/Method`) → handler. Any other path is answered UNIMPLEMENTED. */
  readonly methods: ReadonlyMap<string, BidiMethodHandler>;
  /** Per connection (SETTINGS_MAX_CONCURRENT_STREAMS); more are refused with REFUSED_STREAM. */
  readonly maxConcurrentStreams: number;
  /**
   * What a connection's calls may hold in messages still being received; a call that takes it over
   * ends with RESOURCE_EXHAUSTED. Without it, 1000 streams each sending most of a 4 MiB message would
   * hold 4 GB.
   */
  readonly maxPartialBytesPerConnection: number;
  readonly maxReceiveMessageBytes: number;
  /** HTTP/2 receive window, per stream and per connection (RFC 9113 §6.9). */
  readonly receiveWindowBytes: number;
  /** The largest DATA frame payload the server accepts (SETTINGS_MAX_FRAME_SIZE, RFC 9113 §6.5.2). */
  readonly maxFrameBytes: number;
  /** Ping each connection this often, and drop it if the ping is not answered in time. */
  readonly keepaliveTimeMs: number;
  readonly keepaliveTimeoutMs: number;
  /** A connection ended for breaking HTTP/2, or its peer reported it did. */
  readonly onProtocolError?: (peer: string, message: string) => void;
  /** Flood and resource limits, over the defaults (limits.ts, docs/security.md). */
  readonly limits?: Partial<Http2Limits>;
  /** A peer crossed a limit and its connection is being cut off; at most once per connection. */
  readonly onLimitExceeded?: (peer: string, limit: Http2LimitName, message: string) => void;
  /**
   * Makes the listening server, which hands each connection over ready for HTTP/2 with the peer's
   * identity (e.g. TLS with a verified client certificate, src/tls/server.ts). Default: plain TCP (h2c).
   */
  readonly createListener?: (accept: AcceptConnection, highWaterMark: number) => net.Server;
}

/** A connection ready for HTTP/2's preface, and who its peer is when that is known (mTLS). */
export type AcceptConnection = (socket: net.Socket, identity: string | undefined) => void;

/**
 * What a connection's socket may hold beyond what the kernel took before its streams wait for 'drain'.
 * At the 16 KB default a large response (the first EDS at 1000 clusters × 10 endpoints is 1.1 MB) went
 * out one frame per write and event-loop turn; 1000 connections at this size hold at most about 64 MB.
 */
const SOCKET_HIGH_WATER_BYTES = 64 * 1024;

const NOT_GRPC_BODY = Buffer.from(
  "This is readygate's xDS port: it answers gRPC only (POST, content-type application/grpc).\n",
);

export class GrpcHttp2Server implements GrpcServer {
  readonly #options: GrpcHttp2ServerOptions;
  readonly #limits: Http2Limits;
  readonly #server: net.Server;
  readonly #connections = new Set<Http2ServerConnection>();

  constructor(options: GrpcHttp2ServerOptions) {
    this.#options = options;
    this.#limits = resolveHttp2Limits(options.limits);
    const accept: AcceptConnection = (socket, identity) => {
      this.#accept(socket, identity);
    };
    this.#server =
      options.createListener?.(accept, SOCKET_HIGH_WATER_BYTES) ??
      net.createServer({ noDelay: true, highWaterMark: SOCKET_HIGH_WATER_BYTES }, (socket) => {
        accept(socket, undefined);
      });
  }

  /** Listens on `host:port` (0 = any free port); resolves to the bound port. */
  listen(host: string, port: number): Promise<number> {
    return listenOn(this.#server, host, port);
  }

  /**
   * Stops accepting connections and sends GOAWAY on open ones; connections still open after
   * `graceMs` are dropped.
   */
  close(graceMs: number): Promise<void> {
    return new Promise((resolve) => {
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        for (const connection of this.#connections) connection.destroy();
        finish();
      }, graceMs);
      this.#server.close(finish);
      for (const connection of this.#connections) connection.close();
    });
  }

  #accept(socket: net.Socket, identity: string | undefined): void {
    const peer =
      socket.remoteAddress === undefined || socket.remotePort === undefined
        ? 'unknown'
        : formatHostPort(socket.remoteAddress, socket.remotePort);
    const { keepaliveTimeMs, keepaliveTimeoutMs, onProtocolError, onLimitExceeded } = this.#options;
    if (this.#connections.size >= this.#limits.maxConnections) {
      // Closed before any HTTP/2 state exists: a connection costs nothing until it is let in.
      onLimitExceeded?.(peer, Http2Limit.MAX_CONNECTIONS, `over ${this.#limits.maxConnections} connections`);
      socket.destroy();
      return;
    }
    /** Bytes this connection's calls hold in messages still arriving. */
    const partial = { bytes: 0 };
    const connection = new Http2ServerConnection(
      socket,
      {
        maxConcurrentStreams: this.#options.maxConcurrentStreams,
        receiveWindowBytes: this.#options.receiveWindowBytes,
        maxFrameBytes: this.#options.maxFrameBytes,
        limits: this.#limits,
      },
      {
        onStream: (stream, headers) => {
          this.#route(stream, headers, client, partial);
        },
        onProtocolError: (message) => onProtocolError?.(peer, message),
        onLimitExceeded: (limit, message) => onLimitExceeded?.(peer, limit, message),
        onClose: () => {
          clearInterval(keepalive);
          this.#connections.delete(connection);
        },
      },
    );
    const client = new GrpcPeerConnection(connection, peer, identity);
    this.#connections.add(connection);
    // One ping at a time: the next interval's ping waits until this one is answered or timed out.
    const keepalive = setInterval(() => {
      // A drain probe holds the connection's one PING slot; unanswered, it counts as the keepalive's.
      if (client.probeDrain(performance.now(), false) >= keepaliveTimeoutMs) {
        connection.destroy();
        return;
      }
      let answered = false;
      const deadline = setTimeout(() => {
        // Timers run before I/O: after an event-loop turn longer than the timeout, the answer may be
        // waiting unread in the socket. Reading comes before setImmediate, so look once more then.
        setImmediate(() => {
          if (!answered) connection.destroy();
        });
      }, keepaliveTimeoutMs);
      deadline.unref();
      const sent = connection.ping(() => {
        answered = true;
        clearTimeout(deadline);
      });
      if (!sent) clearTimeout(deadline);
    }, keepaliveTimeMs);
    keepalive.unref();
  }

  #route(
    stream: Http2ServerStream,
    headers: readonly HeaderField[],
    client: GrpcPeerConnection,
    partial: { bytes: number },
  ): void {
    const header = (name: string): string | undefined => headers.find(([key]) => key === name)?.[1];
    const contentType = header('content-type') ?? '';
    if (header(':method') !== 'POST' || !contentType.startsWith('application/grpc')) {
      // Answered once the request is complete, as an HTTP server does; the body is for whoever points
      // curl or a browser at the xDS port.
      stream.handlers = {
        onData: () => undefined,
        onEnd: () => {
          stream.respond([
            [':status', '415'],
            ['content-type', 'text/plain; charset=utf-8'],
          ]);
          stream.write(NOT_GRPC_BODY, false);
          stream.end();
        },
        onDrain: () => undefined,
        onClose: () => undefined,
      };
      return;
    }
    const path = header(':path') ?? '';
    const handler = this.#options.methods.get(path);
    if (!handler) {
      stream.respond(
        [
          [':status', '200'],
          ['content-type', 'application/grpc'],
          ...statusTrailers(GrpcStatus.UNIMPLEMENTED, `unknown method ${path}`),
        ],
        true,
      );
      return;
    }
    stream.respond([
      [':status', '200'],
      ['content-type', 'application/grpc'],
      ['grpc-accept-encoding', 'identity'],
    ]);
    const call = new GrpcServerCall(stream, client);
    const handlers = handler(call);
    const reader = new GrpcMessageReader(this.#options.maxReceiveMessageBytes);
    const limit = this.#options.maxPartialBytesPerConnection;
    /** What this call adds to `partial` now. */
    let held = 0;
    const account = (): void => {
      partial.bytes += reader.partialBytes - held;
      held = reader.partialBytes;
    };
    stream.handlers = {
      onData: (chunk) => {
        if (call.isFinished()) return;
        let messages: Buffer[];
        try {
          messages = reader.push(chunk);
        } catch (error) {
          account();
          const refused = error as GrpcFramingError;
          call.finish(refused.status, refused.message);
          return;
        }
        account();
        if (partial.bytes > limit) {
          call.finish(
            GrpcStatus.RESOURCE_EXHAUSTED,
            `messages still arriving on this connection hold over ${limit} bytes`,
          );
          return;
        }
        for (const message of messages) {
          if (call.isFinished()) return;
          handlers.onMessage(message);
        }
      },
      onDrain: () => {
        handlers.onDrain();
      },
      // The client half-closed: nothing more will come, so the call ends with OK.
      onEnd: () => {
        if (reader.atBoundary) call.finish(GrpcStatus.OK, '');
        else call.finish(GrpcStatus.INTERNAL, 'the request stream ended inside a message');
      },
      onClose: () => {
        partial.bytes -= held;
        handlers.onClose();
      },
    };
  }
}
