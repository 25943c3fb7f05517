/**
 * gRPC's wire protocol over node:http2, for ADS's two bidirectional methods and nothing else.
 *
 * grpc-js copied every request into a fresh buffer, pushed each message through two object-mode
 * streams and copied every response once more to frame it. With 1000 Envoys that was most of the
 * control plane's CPU beyond the bare HTTP/2 cost of a change (docs/benchmarks.md). Here a request that
 * arrives within one chunk is decoded where it lies, and a response is framed by the copy that
 * assembles it. The rest of what a gRPC server owes its clients is kept: status trailers, UNIMPLEMENTED
 * for unknown methods, 415 for non-gRPC requests, a receive limit, keepalive pings, graceful close.
 */
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { formatHostPort } from '../net.js';

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

/** Prefixes `parts` with the gRPC message header, in the one copy that joins them. */
export function frameMessage(parts: readonly Buffer[]): Buffer {
  let length = 0;
  for (const part of parts) length += part.length;
  const framed = Buffer.allocUnsafe(HEADER_BYTES + length);
  framed[0] = 0;
  framed.writeUInt32BE(length, 1);
  let at = HEADER_BYTES;
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

/** What a method handler gets told about its call. */
export interface BidiCallHandlers {
  /** One request message; the bytes may be a view of a larger chunk. */
  onMessage(bytes: Buffer): void;
  /** Writes were refused for a full buffer and it has drained. */
  onDrain(): void;
  /** The call is over, for any reason; called exactly once. */
  onClose(): void;
}

/** One server side of a bidirectional-streaming call. */
export class GrpcServerCall {
  readonly peer: string;
  readonly #stream: http2.ServerHttp2Stream;
  #finished = false;
  #trailers: http2.OutgoingHttpHeaders | undefined;

  constructor(stream: http2.ServerHttp2Stream, peer: string) {
    this.#stream = stream;
    this.peer = peer;
    stream.on('wantTrailers', () => {
      stream.sendTrailers(this.#trailers ?? statusTrailers(GrpcStatus.OK, ''));
    });
  }

  /** A method, not a getter: a message handler may finish the call between two reads. */
  isFinished(): boolean {
    return this.#finished;
  }

  /**
   * Writes one message made of `parts`; false means the buffer is full and `onDrain` will follow.
   * `onWritten` runs once the bytes are handed to the connection; if the call dies first it may run
   * with the teardown or not at all, so a caller settles what is left in `onClose`.
   */
  write(parts: readonly Buffer[], onWritten: () => void): boolean {
    if (this.#finished || this.#stream.destroyed) return true;
    return this.#stream.write(frameMessage(parts), onWritten);
  }

  /** Ends the call with a status; later calls do nothing. */
  finish(status: number, message: string): void {
    if (this.#finished) return;
    this.#finished = true;
    const stream = this.#stream;
    if (stream.destroyed || stream.closed) return;
    this.#trailers = statusTrailers(status, message);
    stream.end();
    // The client may keep sending after our status; RST_STREAM(NO_ERROR) tells it to stop
    // (RFC 9113 §8.1) once the trailers are out. A client that already half-closed needs nothing.
    if (!stream.readableEnded) {
      stream.once('wantTrailers', () => {
        setImmediate(() => {
          if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
        });
      });
    }
  }
}

function statusTrailers(status: number, message: string): http2.OutgoingHttpHeaders {
  return message === ''
    ? { 'grpc-status': String(status) }
    : { 'grpc-status': String(status), 'grpc-message': encodeGrpcMessage(message) };
}

export type BidiMethodHandler = (call: GrpcServerCall) => BidiCallHandlers;

export interface GrpcHttp2ServerOptions {
  /** Path (`/package.Service/Method`) → handler. Any other path is answered UNIMPLEMENTED. */
  readonly methods: ReadonlyMap<string, BidiMethodHandler>;
  readonly maxConcurrentStreams: number;
  /** Per connection, in MB (node:http2's maxSessionMemory). */
  readonly maxSessionMemoryMb: number;
  readonly maxReceiveMessageBytes: number;
  /** HTTP/2 receive window, per stream and per connection (RFC 9113 §6.9). */
  readonly receiveWindowBytes: number;
  /** The largest DATA frame payload the server accepts (SETTINGS_MAX_FRAME_SIZE, RFC 9113 §6.5.2). */
  readonly maxFrameBytes: number;
  /** Ping each connection this often, and drop it if the ping is not answered in time. */
  readonly keepaliveTimeMs: number;
  readonly keepaliveTimeoutMs: number;
}

export class GrpcHttp2Server {
  readonly #options: GrpcHttp2ServerOptions;
  readonly #server: http2.Http2Server;
  readonly #sessions = new Set<http2.ServerHttp2Session>();

  constructor(options: GrpcHttp2ServerOptions) {
    this.#options = options;
    this.#server = http2.createServer({
      maxSessionMemory: options.maxSessionMemoryMb,
      settings: {
        maxConcurrentStreams: options.maxConcurrentStreams,
        initialWindowSize: options.receiveWindowBytes,
        maxFrameSize: options.maxFrameBytes,
      },
    });
    this.#server.on('session', (session) => {
      this.#track(session);
    });
    this.#server.on('stream', (stream, headers) => {
      this.#route(stream, headers);
    });
  }

  /** Listens on `host:port` (0 = any free port); resolves to the bound port. */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (error: Error): void => {
        reject(error);
      };
      this.#server.once('error', onError);
      this.#server.listen(port, host, () => {
        this.#server.off('error', onError);
        resolve((this.#server.address() as AddressInfo).port);
      });
    });
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
        for (const session of this.#sessions) session.destroy();
        finish();
      }, graceMs);
      this.#server.close(finish);
      for (const session of this.#sessions) session.close();
    });
  }

  #track(session: http2.ServerHttp2Session): void {
    this.#sessions.add(session);
    // The connection's window is not a SETTINGS value; it only grows by a WINDOW_UPDATE.
    session.setLocalWindowSize(this.#options.receiveWindowBytes);
    // A connection's errors end that connection only.
    session.on('error', () => {
      session.destroy();
    });
    const { keepaliveTimeMs, keepaliveTimeoutMs } = this.#options;
    // One ping at a time: the next interval's ping waits until this one is answered or timed out.
    let awaitingPong = false;
    const keepalive = setInterval(() => {
      if (awaitingPong || session.destroyed || session.closed) return;
      const deadline = setTimeout(() => {
        session.destroy();
      }, keepaliveTimeoutMs);
      deadline.unref();
      awaitingPong = session.ping((error) => {
        awaitingPong = false;
        clearTimeout(deadline);
        if (error && !session.destroyed) session.destroy();
      });
      if (!awaitingPong) clearTimeout(deadline);
    }, keepaliveTimeMs);
    keepalive.unref();
    session.once('close', () => {
      clearInterval(keepalive);
      this.#sessions.delete(session);
    });
  }

  #route(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    // Errors (a reset, a dead connection) surface as 'close'; without a listener they would throw.
    stream.on('error', () => undefined);
    const contentType = headers['content-type'] ?? '';
    if (headers[':method'] !== 'POST' || !contentType.startsWith('application/grpc')) {
      stream.respond({ ':status': 415 }, { endStream: true });
      return;
    }
    const path = headers[':path'] ?? '';
    const handler = this.#options.methods.get(path);
    if (!handler) {
      stream.respond(
        {
          ':status': 200,
          'content-type': 'application/grpc',
          ...statusTrailers(GrpcStatus.UNIMPLEMENTED, `unknown method ${path}`),
        },
        { endStream: true },
      );
      return;
    }
    stream.respond(
      { ':status': 200, 'content-type': 'application/grpc', 'grpc-accept-encoding': 'identity' },
      { waitForTrailers: true },
    );
    const call = new GrpcServerCall(stream, peerOf(stream.session));
    const handlers = handler(call);
    const reader = new GrpcMessageReader(this.#options.maxReceiveMessageBytes);
    stream.on('data', (chunk: Buffer) => {
      if (call.isFinished()) return;
      let messages: Buffer[];
      try {
        messages = reader.push(chunk);
      } catch (error) {
        const refused = error as GrpcFramingError;
        call.finish(refused.status, refused.message);
        return;
      }
      for (const message of messages) {
        if (call.isFinished()) return;
        handlers.onMessage(message);
      }
    });
    stream.on('drain', () => {
      handlers.onDrain();
    });
    // The client half-closed: nothing more will come, so the call ends with OK.
    stream.on('end', () => {
      if (reader.atBoundary) call.finish(GrpcStatus.OK, '');
      else call.finish(GrpcStatus.INTERNAL, 'the request stream ended inside a message');
    });
    stream.once('close', () => {
      handlers.onClose();
    });
  }
}

function peerOf(session: http2.Http2Session | undefined): string {
  const socket = session?.socket;
  if (socket?.remoteAddress === undefined || socket.remotePort === undefined) return 'unknown';
  return formatHostPort(socket.remoteAddress, socket.remotePort);
}
