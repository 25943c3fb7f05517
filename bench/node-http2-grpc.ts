/**
 * readygate's ADS methods served on node:http2 (nghttp2) instead of readygate's own HTTP/2 engine, for
 * bench:xds (BENCH_ENGINES) to measure the whole control plane on both in one run (issue 16: keep the
 * engine only if, with every defence in place, it still beats node:http2 with equivalent limits). It
 * takes the options startControlPlane gives GrpcHttp2Server (its `grpcServer` option) and keeps the
 * same gRPC framing (GrpcMessageReader, frameMessage), the same status trailers, UNIMPLEMENTED for
 * unknown methods and 415 for non-gRPC requests, the same receive limits, the same backpressure (16 KB
 * per stream) and the same keepalive; only the HTTP/2 underneath differs. h2c only: with a TLS listener
 * (`createListener`) it throws.
 *
 * Our limits (src/http2/limits.ts, docs/security.md) and what stands for each here; "built in" means
 * nghttp2's own default (nghttp2 1.70.0 in Node 24.22), which node:http2 has no option for:
 *
 * | Ours (default)                              | node:http2 here                                          |
 * | ------------------------------------------- | -------------------------------------------------------- |
 * | maxOutboundControlFrames 1000               | nghttp2's max_outbound_ack, 1000 (built in)              |
 * | pings: burst 10, 1/s                        | none in node:http2 (only the 1000 unsent ACKs above)     |
 * | settings: burst 10, 1/s                     | none in node:http2 (only the 1000 unsent ACKs above)     |
 * | maxSettingsEntries 32                       | maxSettings 32                                           |
 * | maxContinuationFrames 8                     | nghttp2's max_continuations, 8 (built in)                |
 * | header block bytes: 64 KB before decoding   | none in node:http2 (nghttp2 decodes a block as it comes) |
 * | maxHeaderListBytes 16 KB (431 past it)      | settings.maxHeaderListSize 16384 (RST_STREAM past it)    |
 * | header list 4 × 16 KB ends the connection   | none: past 16 KB the stream is reset, the session lives  |
 * |  (fields counted as RFC 9113 §6.5.2: +32)   | maxHeaderListPairs 512 (16 KB / 32: never binds first)   |
 * | headerTableBytes 4096                       | settings.headerTableSize 4096                            |
 * | maxConsecutiveEmptyFrames 1                 | maxSessionInvalidFrames 0: the 2nd empty DATA frame (or  |
 * |                                             |  nghttp2-invalid frame) ends the session; counted over   |
 * |                                             |  the session's life, not in a row; empty HEADERS and     |
 * |                                             |  CONTINUATION: none                                      |
 * | streamResets: burst 1000, 33/s              | streamResetBurst 1000, streamResetRate 33                |
 * |  (our refusals of excess streams count too) | maxSessionRejectedStreams 1000 (counted apart, no refill)|
 * | newStreams: burst 1000, 100/s               | none in node:http2                                       |
 * | maxPriorityFramesPerStream 100              | none in node:http2                                       |
 * | maxWindowUpdatesPerDataFrameSent 10         | none in node:http2                                       |
 * | prefaceTimeoutMs 5 s                        | a timer here from the session's start to the first       |
 * |                                             |  SETTINGS ('remoteSettings'); unknownProtocolTimeout the |
 * |                                             |  same (it applies to TLS without ALPN h2 only)           |
 * | idleTimeoutMs 5 min                         | a timer here while the session has no stream; node's own |
 * |                                             |  session timeout counts bytes, which keepalive PINGs     |
 * |                                             |  would always reset                                      |
 * | frameTimeoutMs 10 s                         | none in node:http2 (nghttp2 has no timers); keepalive    |
 * |                                             |  ends such a peer after 30 + 10 s                        |
 * | maxConnections 10000                        | server.maxConnections 10000 ('drop' reports it)          |
 * | (no session memory cap; what a connection   | maxSessionMemory 72 (node's MB are 10^6 bytes): 64 MiB   |
 * |  holds is bounded by the 64 MiB of messages |  + 4 MiB, so node refuses no stream ours would take      |
 * |  arriving and AdsService's 4 MiB pending)   |                                                          |
 * | keepalive PING 30 s, 10 s to answer         | the same here, one PING at a time (maxOutstandingPings 1)|
 * | receive window, frame size, streams         | settings and setLocalWindowSize from ADS_SERVER_SETTINGS |
 * | maxReceiveMessageBytes, maxPartialBytes...  | the same here (GrpcMessageReader, same accounting)       |
 * | 16 KB queued per stream before write()      | the same here: node's own mark is 64 KiB in Node 24 and  |
 * |  says false                                 |  no option sets it for server streams                    |
 * | no reading while our output is over the     | node stops reading while a socket write is in progress   |
 * |  socket's 64 KB high-water mark             |  (built in)                                              |
 */
import http2, { constants, type IncomingHttpHeaders, type ServerHttp2Session } from 'node:http2';
import type { Socket } from 'node:net';
import type {
  BidiCallHandlers,
  BidiMethodHandler,
  GrpcCall,
  GrpcConnection,
  GrpcServer,
} from '../src/http2/grpc-call.js';
import { STREAM_HIGH_WATER_BYTES } from '../src/http2/connection.js';
import {
  encodeGrpcMessage,
  frameMessage,
  type GrpcFramingError,
  type GrpcHttp2ServerOptions,
  GrpcMessageReader,
  GrpcStatus,
} from '../src/http2/grpc-transport.js';
import { Http2Limit, type Http2Limits, resolveHttp2Limits } from '../src/http2/limits.js';
import { formatHostPort, listenOn } from '../src/net.js';
import { DEFAULT_MAX_PENDING_BYTES_PER_CONNECTION } from '../src/xds/server.js';

const NOT_GRPC_BODY = Buffer.from(
  "This is readygate's xDS port: it answers gRPC only (POST, content-type application/grpc).\n",
);
/** As Http2ServerConnection.abort: how long a peer cut off may take to read our GOAWAY. */
const ABORT_GRACE_MS = 1000;

/** node:http2's own options for `limits` and the ADS settings, as the header's table gives them. */
export function nodeHttp2Options(options: GrpcHttp2ServerOptions, limits: Http2Limits): http2.ServerOptions {
  return {
    settings: {
      headerTableSize: limits.headerTableBytes,
      enablePush: false,
      initialWindowSize: options.receiveWindowBytes,
      maxFrameSize: options.maxFrameBytes,
      maxConcurrentStreams: options.maxConcurrentStreams,
      maxHeaderListSize: limits.maxHeaderListBytes,
    },
    maxSettings: limits.maxSettingsEntries,
    // Each field counts its name, its value and 32 bytes (RFC 9113 §6.5.2), here and in node: no list
    // within the byte limit has more fields than this, so the byte limit is the one that binds.
    maxHeaderListPairs: Math.floor(limits.maxHeaderListBytes / 32),
    // One PING of our own at a time, as our engine: the keepalive's or a drain probe.
    maxOutstandingPings: 1,
    // node counts an empty DATA frame without END_STREAM (and any frame nghttp2 finds invalid) and
    // ends the session when one more than this has come: with 0, at the second, as ours does at the
    // second empty frame in a row.
    maxSessionInvalidFrames: limits.maxConsecutiveEmptyFrames - 1,
    streamResetBurst: limits.streamResets.burst,
    streamResetRate: limits.streamResets.perSecond,
    maxSessionRejectedStreams: limits.streamResets.burst,
    maxSessionMemory: Math.ceil(
      (options.maxPartialBytesPerConnection + DEFAULT_MAX_PENDING_BYTES_PER_CONNECTION) / 1e6,
    ),
    unknownProtocolTimeout: limits.prefaceTimeoutMs,
  };
}

/** One client connection (HTTP/2 session): its identity, its one PING slot, its way out. */
class NodeHttp2Connection implements GrpcConnection {
  readonly peer: string;
  readonly identity = undefined;
  readonly session: ServerHttp2Session;
  readonly #socket: Socket;
  /** Set by every write; a drain probe goes out only behind new data. */
  wroteSinceProbe = false;
  #pingOut = false;
  #probeSentAt: number | undefined;

  constructor(session: ServerHttp2Session, socket: Socket, peer: string) {
    this.session = session;
    this.#socket = socket;
    this.peer = peer;
  }

  /** Sends a PING unless one is out; `onAnswer` runs when its ACK comes. */
  ping(onAnswer: () => void): boolean {
    if (this.#pingOut || !this.open) return false;
    this.#pingOut = true;
    const sent = this.session.ping((error) => {
      this.#pingOut = false;
      if (error === null) onAnswer();
    });
    if (!sent) this.#pingOut = false;
    return sent;
  }

  /**
   * As GrpcPeerConnection.probeDrain, but weaker: nghttp2 sends control frames (a PING) before DATA it
   * still holds (waiting for window, or behind a socket write in progress), so the answer shows that the
   * peer reads, not that it has read the data written before the probe. A peer that stopped reading
   * still answers nothing and is closed as on our engine; one that reads but grants no window answers,
   * and is caught by the send budget instead (its writes' callbacks never come).
   */
  probeDrain(now: number, send: boolean): number {
    if (this.#probeSentAt !== undefined) return now - this.#probeSentAt;
    if (!send || !this.wroteSinceProbe) return 0;
    const sent = this.ping(() => {
      this.#probeSentAt = undefined;
    });
    if (sent) {
      this.wroteSinceProbe = false;
      this.#probeSentAt = now;
    }
    return 0;
  }

  get open(): boolean {
    return !this.session.destroyed;
  }

  abort(message: string): void {
    if (this.session.destroyed) return;
    this.session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM, 0, Buffer.from(message));
    // Streams closed now, the GOAWAY flushed; node then ends the socket, which a peer that does not
    // read would hold open: dropped after a grace, as our engine does.
    this.session.destroy();
    setTimeout(() => this.#socket.destroy(), ABORT_GRACE_MS).unref();
  }
}

/** One call: a gRPC stream on a node:http2 stream. */
class NodeHttp2Call implements GrpcCall {
  readonly peer: string;
  readonly identity = undefined;
  readonly connection: NodeHttp2Connection;
  readonly #stream: http2.ServerHttp2Stream;
  /** Bytes written and not yet handed to the socket (their write callbacks pending). */
  #queuedBytes = 0;
  #needDrain = false;
  #finished = false;
  #trailers: http2.OutgoingHttpHeaders = { 'grpc-status': String(GrpcStatus.OK) };
  onDrain: () => void = () => undefined;

  constructor(stream: http2.ServerHttp2Stream, connection: NodeHttp2Connection) {
    this.#stream = stream;
    this.connection = connection;
    this.peer = connection.peer;
    stream.on('wantTrailers', () => {
      stream.sendTrailers(this.#trailers);
      // As our engine (RFC 9113 §8.1): the response is complete, the rest of the request is not wanted,
      // and the call closes now rather than when the client ends its side. Not at once: this runs while
      // nghttp2 is sending, and nghttp2 sends an RST_STREAM before anything still queued (node_http2.cc
      // says as much), the trailers included: grpc-js saw "Call ended without gRPC status". The
      // session's write of the trailers is scheduled before this immediate.
      setImmediate(() => {
        if (!stream.readableEnded && !stream.destroyed) stream.close(constants.NGHTTP2_NO_ERROR);
      });
    });
  }

  isFinished(): boolean {
    return this.#finished;
  }

  write(parts: readonly Buffer[], onWritten: () => void): boolean {
    const stream = this.#stream;
    if (this.#finished || stream.destroyed || stream.writableEnded) return true;
    this.connection.wroteSinceProbe = true;
    const framed = frameMessage(parts);
    this.#queuedBytes += framed.length;
    // The callback comes once the session's socket write that carried these bytes has completed; with
    // an error (the stream died first) onWritten does not run, as on our engine.
    stream.write(framed, (error) => {
      this.#queuedBytes -= framed.length;
      if (error !== undefined && error !== null) return;
      onWritten();
      if (this.#needDrain && this.#queuedBytes === 0) {
        this.#needDrain = false;
        this.onDrain();
      }
    });
    if (this.#queuedBytes <= STREAM_HIGH_WATER_BYTES) return true;
    this.#needDrain = true;
    return false;
  }

  finish(status: number, message: string): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#trailers =
      message === ''
        ? { 'grpc-status': String(status) }
        : { 'grpc-status': String(status), 'grpc-message': encodeGrpcMessage(message) };
    if (this.#stream.destroyed || this.#stream.writableEnded) return;
    // The trailers follow the data written so far ('wantTrailers').
    this.#stream.end();
  }
}

/** The ADS methods over node:http2, driven by startControlPlane like GrpcHttp2Server. */
export class NodeHttp2GrpcServer implements GrpcServer {
  readonly #options: GrpcHttp2ServerOptions;
  readonly #limits: Http2Limits;
  readonly #server: http2.Http2Server;
  readonly #connections = new Set<NodeHttp2Connection>();
  /** The socket node:http2 is making a session of ('connection' runs just before 'session'). */
  #accepting: Socket | undefined;

  constructor(options: GrpcHttp2ServerOptions) {
    if (options.createListener !== undefined) {
      throw new Error('bench/node-http2-grpc.ts serves h2c only; run node:http2 without TLS');
    }
    this.#options = options;
    this.#limits = resolveHttp2Limits(options.limits);
    const server = http2.createServer(nodeHttp2Options(options, this.#limits));
    server.maxConnections = this.#limits.maxConnections;
    server.on('drop', (data?: { remoteAddress?: string; remotePort?: number }) => {
      const peer =
        data?.remoteAddress === undefined || data.remotePort === undefined
          ? 'unknown'
          : formatHostPort(data.remoteAddress, data.remotePort);
      options.onLimitExceeded?.(
        peer,
        Http2Limit.MAX_CONNECTIONS,
        `over ${this.#limits.maxConnections} connections`,
      );
    });
    server.prependListener('connection', (socket: Socket) => {
      socket.setNoDelay(true);
      this.#accepting = socket;
    });
    server.on('session', (session: ServerHttp2Session) => {
      const socket = this.#accepting;
      this.#accepting = undefined;
      if (socket === undefined) {
        session.destroy();
        return;
      }
      this.#accept(session, socket);
    });
    this.#server = server;
  }

  listen(host: string, port: number): Promise<number> {
    return listenOn(this.#server, host, port);
  }

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
        for (const connection of this.#connections) connection.session.destroy();
        finish();
      }, graceMs);
      this.#server.close(finish);
      for (const connection of this.#connections) connection.session.close();
    });
  }

  #accept(session: ServerHttp2Session, socket: Socket): void {
    const { keepaliveTimeMs, keepaliveTimeoutMs, onProtocolError, onLimitExceeded } = this.#options;
    const limits = this.#limits;
    const peer =
      socket.remoteAddress === undefined || socket.remotePort === undefined
        ? 'unknown'
        : formatHostPort(socket.remoteAddress, socket.remotePort);
    const connection = new NodeHttp2Connection(session, socket, peer);
    this.#connections.add(connection);
    // The connection's receive window is not a setting; ours grows it by WINDOW_UPDATE at once too.
    session.setLocalWindowSize(this.#options.receiveWindowBytes);
    /** Bytes this connection's calls hold in messages still arriving. */
    const partial = { bytes: 0 };
    let streams = 0;
    let idle: NodeJS.Timeout | undefined;
    const armIdle = (): void => {
      idle = setTimeout(() => {
        onLimitExceeded?.(peer, Http2Limit.IDLE_TIMEOUT, `no stream open for ${limits.idleTimeoutMs} ms`);
        session.close();
      }, limits.idleTimeoutMs);
      idle.unref();
    };
    const preface = setTimeout(() => {
      onLimitExceeded?.(
        peer,
        Http2Limit.PREFACE_TIMEOUT,
        `no preface and SETTINGS within ${limits.prefaceTimeoutMs} ms`,
      );
      connection.abort('preface timeout');
    }, limits.prefaceTimeoutMs);
    preface.unref();
    session.once('remoteSettings', () => {
      clearTimeout(preface);
      if (streams === 0) armIdle();
    });
    session.on('stream', (stream, headers) => {
      streams += 1;
      clearTimeout(idle);
      stream.on('close', () => {
        streams -= 1;
        if (streams === 0 && !session.closed && !session.destroyed) armIdle();
      });
      this.#route(stream, headers, connection, partial);
    });
    session.on('error', (error: Error & { code?: string }) => {
      if (error.code === 'ERR_HTTP2_TOO_MANY_INVALID_FRAMES') {
        onLimitExceeded?.(peer, Http2Limit.EMPTY_FRAMES, error.message);
      } else {
        onProtocolError?.(peer, error.message);
      }
    });
    // One ping at a time, as GrpcHttp2Server's keepalive: an unanswered drain probe counts as its PING.
    const keepalive = setInterval(() => {
      if (connection.probeDrain(performance.now(), false) >= keepaliveTimeoutMs) {
        session.destroy();
        return;
      }
      let answered = false;
      const deadline = setTimeout(() => {
        // Timers run before I/O: look once more after this turn's reads.
        setImmediate(() => {
          if (!answered) session.destroy();
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
    session.on('close', () => {
      clearInterval(keepalive);
      clearTimeout(preface);
      clearTimeout(idle);
      this.#connections.delete(connection);
    });
  }

  #route(
    stream: http2.ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    connection: NodeHttp2Connection,
    partial: { bytes: number },
  ): void {
    // Resets by the peer, writes after it left: the call ends through 'close'.
    stream.on('error', () => undefined);
    const contentType = headers['content-type'] ?? '';
    if (headers[':method'] !== 'POST' || !contentType.startsWith('application/grpc')) {
      stream.resume();
      stream.on('end', () => {
        stream.respond({ ':status': 415, 'content-type': 'text/plain; charset=utf-8' });
        stream.end(NOT_GRPC_BODY);
      });
      return;
    }
    const path = headers[':path'] ?? '';
    const handler: BidiMethodHandler | undefined = this.#options.methods.get(path);
    if (handler === undefined) {
      stream.respond(
        {
          ':status': 200,
          'content-type': 'application/grpc',
          'grpc-status': String(GrpcStatus.UNIMPLEMENTED),
          'grpc-message': encodeGrpcMessage(`unknown method ${path}`),
        },
        { endStream: true },
      );
      // After the session's write of the response, as in NodeHttp2Call's wantTrailers: nghttp2 sends an
      // RST_STREAM ahead of what is still queued, and on Node 26 a close in this turn dropped the
      // response (the client saw the stream end with no headers at all, and the test waited for ever).
      setImmediate(() => {
        if (!stream.readableEnded && !stream.destroyed) stream.close(constants.NGHTTP2_NO_ERROR);
      });
      return;
    }
    stream.respond(
      { ':status': 200, 'content-type': 'application/grpc', 'grpc-accept-encoding': 'identity' },
      { waitForTrailers: true },
    );
    const call = new NodeHttp2Call(stream, connection);
    const handlers: BidiCallHandlers = handler(call);
    call.onDrain = () => {
      handlers.onDrain();
    };
    const reader = new GrpcMessageReader(this.#options.maxReceiveMessageBytes);
    const limit = this.#options.maxPartialBytesPerConnection;
    /** What this call adds to `partial` now. */
    let held = 0;
    const account = (): void => {
      partial.bytes += reader.partialBytes - held;
      held = reader.partialBytes;
    };
    stream.on('data', (chunk: Buffer) => {
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
    });
    // The client half-closed: nothing more will come, so the call ends with OK.
    stream.on('end', () => {
      if (reader.atBoundary) call.finish(GrpcStatus.OK, '');
      else call.finish(GrpcStatus.INTERNAL, 'the request stream ended inside a message');
    });
    stream.on('close', () => {
      partial.bytes -= held;
      handlers.onClose();
    });
  }
}

/** For startControlPlane's `grpcServer` option. */
export function nodeHttp2GrpcServer(options: GrpcHttp2ServerOptions): NodeHttp2GrpcServer {
  return new NodeHttp2GrpcServer(options);
}
