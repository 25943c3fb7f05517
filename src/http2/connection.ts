/**
 * The server side of one HTTP/2 connection (RFC 9113) over a TCP socket, for gRPC's bidirectional
 * streams: requests come in as HEADERS then DATA, responses go out as HEADERS, DATA and trailing HEADERS.
 *
 * Why not node:http2: for a change pushed to 1000 Envoys, each on its own connection, node:http2 spent
 * about twice what the same bytes cost over plain sockets (docs/benchmarks.md), in nghttp2, its C++
 * bindings and a stream object per direction. Here a frame is parsed where it lies in the socket's
 * chunk, and a response goes out as one socket write whose frame header sits in room its producer
 * left in front of the message.
 *
 * No server push, no priorities (PRIORITY frames are checked and ignored). TLS sits below it: the socket
 * may be a TLSSocket (src/tls/server.ts), and the engine reads and writes it as it would a TCP socket.
 */
// Imported, not the global: in Node 24 the global Buffer is a getter, and these run per frame.
import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import {
  CONNECTION_PREFACE,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_WINDOW_BYTES,
  encodeFrame,
  encodeGoaway,
  encodeRstStream,
  encodeSettings,
  encodeWindowUpdate,
  ErrorCode,
  errorCodeName,
  Flags,
  FRAME_HEADER_BYTES,
  FrameType,
  LARGEST_MAX_FRAME_BYTES,
  MAX_WINDOW_BYTES,
  readFrameHeader,
  Setting,
  writeFrameHeader,
} from './frames.js';
import { encodeHeaderBlock, type HeaderField, HpackDecoder, HpackError } from './hpack.js';
import { Http2Limit, type Http2LimitName, type Http2Limits, TokenBucket } from './limits.js';

export interface Http2ConnectionOptions {
  readonly maxConcurrentStreams: number;
  /** Our receive window, per stream and for the connection. */
  readonly receiveWindowBytes: number;
  /** The largest frame payload we accept (SETTINGS_MAX_FRAME_SIZE). */
  readonly maxFrameBytes: number;
  /** What the peer may make us do before it is cut off (limits.ts, docs/security.md). */
  readonly limits: Http2Limits;
}

/** What the connection tells its owner. */
export interface Http2ConnectionEvents {
  /** A new request stream with valid headers. The owner sets the stream's handlers before returning. */
  onStream(stream: Http2ServerStream, headers: readonly HeaderField[]): void;
  /** The connection was ended for a protocol violation (ours to send, or the peer's GOAWAY with an error). */
  onProtocolError?(message: string): void;
  /**
   * The peer crossed one of the limits and the connection is being cut off (GOAWAY, then the socket is
   * destroyed); called at most once per connection.
   */
  onLimitExceeded?(limit: Http2LimitName, message: string): void;
  /** The socket is closed and every stream has been closed. */
  onClose(): void;
}

/** The handlers a stream's owner sets. */
export interface Http2StreamHandlers {
  onData(chunk: Buffer): void;
  /** The client half-closed: no more data will come. */
  onEnd(): void;
  /** Writes were refused for a full queue and the queue has emptied. */
  onDrain(): void;
  /** The stream is over (completed, reset by either side, or the connection is gone). Exactly once. */
  onClose(): void;
}

/** Room a producer leaves in front of a DATA payload so the frame header can be written in place. */
export const DATA_FRAME_HEADROOM = FRAME_HEADER_BYTES;
/** Queued DATA above this makes write() return false, as a node stream's highWaterMark would. */
export const STREAM_HIGH_WATER_BYTES = 16 * 1024;
/** Header blocks (HEADERS + CONTINUATION) are refused above this, before decoding: a CONTINUATION flood. */
const MIN_HEADER_BLOCK_LIMIT = 64 * 1024;
/**
 * A header list this many times the advertised limit ends the connection: up to the limit a client gets
 * 431, as RFC 9113 §10.5.1 suggests; far past it only an HPACK expansion bomb gets (references to a large
 * table entry decode to megabytes from a few kilobytes), and each such block costs a decoding pass.
 */
const HEADER_LIST_ABANDON_FACTOR = 4;
/** Streams we reset whose in-flight frames are ignored rather than answered (RFC 9113 §5.4.2). */
const REMEMBERED_RESETS = 128;
/**
 * How long a connection we cut off may take to read our GOAWAY before its socket is destroyed: a peer
 * that never reads would otherwise hold it open.
 */
const GOAWAY_GRACE_MS = 500;

const NO_HANDLERS: Http2StreamHandlers = {
  onData: () => undefined,
  onEnd: () => undefined,
  onDrain: () => undefined,
  onClose: () => undefined,
};

interface QueuedData {
  readonly buffer: Buffer;
  /** The next unsent payload byte, and the end of the payload. */
  at: number;
  readonly end: number;
  /** The 9 bytes before the payload are free for a frame header (see DATA_FRAME_HEADROOM). */
  readonly headroom: boolean;
  readonly onWritten: (() => void) | undefined;
}

/** A connection error (RFC 9113 §5.4.1): GOAWAY with this code, then the connection ends. */
class ConnectionError extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}

/** The peer crossed a limit: GOAWAY(ENHANCE_YOUR_CALM), reported as the limit it crossed. */
class LimitExceeded extends ConnectionError {
  readonly limit: Http2LimitName;
  constructor(limit: Http2LimitName, message: string) {
    super(ErrorCode.ENHANCE_YOUR_CALM, message);
    this.limit = limit;
  }
}

/** One request stream: the server's half of a call. */
export class Http2ServerStream {
  readonly id: number;
  handlers: Http2StreamHandlers = NO_HANDLERS;
  readonly #connection: Http2ServerConnection;
  #sendWindow: number;
  /** Our receive window for this stream, and what has been consumed since the last WINDOW_UPDATE. */
  receiveWindow: number;
  unacknowledgedBytes = 0;
  readonly queue: QueuedData[] = [];
  queuedBytes = 0;
  /**
   * How the response ends once the queue is empty: a trailing HEADERS block, or an empty DATA frame
   * with END_STREAM (null); undefined until end().
   */
  ending: Buffer | null | undefined;
  #responded = false;
  #localEnded = false;
  #remoteEnded = false;
  #closed = false;
  #needDrain = false;

  /** The request's content-length, if it gave one: the DATA received must add up to it. */
  readonly declaredLength: number | undefined;
  receivedLength = 0;

  constructor(
    connection: Http2ServerConnection,
    id: number,
    windows: { send: number; receive: number },
    request: { endStream: boolean; declaredLength: number | undefined },
  ) {
    this.#connection = connection;
    this.id = id;
    // Set before the owner sees the stream, so a response it completes at once closes it cleanly.
    this.#remoteEnded = request.endStream;
    this.declaredLength = request.declaredLength;
    this.#sendWindow = windows.send;
    this.receiveWindow = windows.receive;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get remoteEnded(): boolean {
    return this.#remoteEnded;
  }

  get sendWindow(): number {
    return this.#sendWindow;
  }

  /** Sends the response headers; with `endStream` the response is complete (no body, no trailers). */
  respond(fields: readonly HeaderField[], endStream = false): void {
    if (this.#closed || this.#responded) return;
    this.#responded = true;
    this.#connection.sendHeaders(this.id, encodeHeaderBlock(fields), endStream);
    if (endStream) this.#endLocal();
  }

  /**
   * Queues `buffer` as DATA. With `headroom`, its first DATA_FRAME_HEADROOM bytes are not payload but
   * room for the frame header, which lets a message that fits one frame go out in a single write.
   * Returns false once more than a high-water mark is queued; onDrain follows when it has all gone.
   * `onWritten` runs when the last byte is handed to the socket; not at all if the stream dies first.
   */
  write(buffer: Buffer, headroom: boolean, onWritten?: () => void): boolean {
    if (this.#closed || this.ending !== undefined) return true;
    const at = headroom ? DATA_FRAME_HEADROOM : 0;
    this.queue.push({ buffer, at, end: buffer.length, headroom, onWritten });
    this.queuedBytes += buffer.length - at;
    this.#connection.wantsToSend(this);
    if (this.queuedBytes <= STREAM_HIGH_WATER_BYTES) return true;
    this.#needDrain = true;
    return false;
  }

  /**
   * Ends the response once the queued data is out: with trailing headers if given, else with an empty
   * DATA frame that carries END_STREAM. If the client is still sending, RST_STREAM(NO_ERROR) follows:
   * the response is complete and the rest of the request is not wanted (RFC 9113 §8.1).
   */
  end(trailers?: readonly HeaderField[]): void {
    if (this.#closed || this.ending !== undefined || this.#localEnded) return;
    this.ending = trailers === undefined ? null : encodeHeaderBlock(trailers);
    this.#connection.wantsToSend(this);
  }

  /** Ends the stream at once with RST_STREAM. */
  reset(code: number): void {
    if (this.#closed) return;
    this.#connection.resetStream(this, code);
  }

  // The connection's side of the stream.

  adjustSendWindow(delta: number): boolean {
    this.#sendWindow += delta;
    return this.#sendWindow <= MAX_WINDOW_BYTES;
  }

  /** Called by the connection as it hands bytes to the socket. */
  tookFromQueue(bytes: number): void {
    this.queuedBytes -= bytes;
    this.#sendWindow -= bytes;
  }

  /** The connection sent the end of the response. */
  endSent(): void {
    this.#endLocal();
  }

  drained(): void {
    if (!this.#needDrain || this.queuedBytes > 0 || this.#closed) return;
    this.#needDrain = false;
    this.handlers.onDrain();
  }

  /** The request is complete. `announced` is for a request that ended with its HEADERS. */
  remoteEnd(announced = false): void {
    if (this.#remoteEnded && !announced) return;
    if (this.declaredLength !== undefined && this.receivedLength !== this.declaredLength) {
      this.reset(ErrorCode.PROTOCOL_ERROR);
      return;
    }
    this.#remoteEnded = true;
    this.handlers.onEnd();
    if (this.#localEnded) this.#connection.closeStream(this);
  }

  #endLocal(): void {
    this.#localEnded = true;
    if (this.#remoteEnded) this.#connection.closeStream(this);
    else this.#connection.resetStream(this, ErrorCode.NO_ERROR);
  }

  /** Marks the stream closed and tells its owner; the connection has already forgotten it. */
  markClosed(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.ending = undefined;
    this.handlers.onClose();
  }
}

/** A header block being received over HEADERS and CONTINUATION frames. */
interface HeaderBlockInProgress {
  readonly streamId: number;
  readonly endStream: boolean;
  /** A stream cannot depend on itself (RFC 9113 §5.3.1): a stream error once the block is decoded. */
  readonly selfDependent: boolean;
  readonly fragments: Buffer[];
  bytes: number;
  continuations: number;
  /** When the block began, for the frame timeout; set once it spans more than its HEADERS frame. */
  startedAt: number;
}

/**
 * A DATA frame whose header has arrived and whose payload is still arriving. Its payload goes to the
 * stream piece by piece as the socket delivers it, instead of being joined into one buffer first: over
 * TLS, reads come in 16 KB records, so a 16 KB DATA frame always straddled two reads and every SotW
 * ACK was copied once more here (docs/benchmarks.md).
 */
interface DataFrameInProgress {
  /** Where the payload goes; undefined once it is to be dropped (the stream was reset or has closed). */
  stream: Http2ServerStream | undefined;
  readonly flags: number;
  readonly length: number;
  remaining: number;
}

export class Http2ServerConnection {
  readonly #socket: Socket;
  readonly #options: Http2ConnectionOptions;
  readonly #events: Http2ConnectionEvents;
  readonly #decoder: HpackDecoder;
  readonly #streams = new Map<number, Http2ServerStream>();
  /** Streams with queued data or trailers, in the order they asked to send. */
  readonly #sending = new Set<Http2ServerStream>();
  readonly #recentResets: number[] = [];
  #prefaceSeen = false;
  #settingsSeen = false;
  /** Input that did not make a whole frame yet. */
  #carry: Buffer[] = [];
  #carryBytes = 0;
  #carryNeed = 0;
  #block: HeaderBlockInProgress | undefined;
  #dataFrame: DataFrameInProgress | undefined;
  #lastStreamId = 0;
  /** The peer's settings that shape what we send. */
  #peerInitialWindow = DEFAULT_WINDOW_BYTES;
  #peerMaxFrameBytes = DEFAULT_MAX_FRAME_BYTES;
  /** The peer changed its HPACK table size: our next header block starts by shrinking ours to 0. */
  #tableSizeUpdatePending = false;
  #sendWindow = DEFAULT_WINDOW_BYTES;
  #receiveWindow: number;
  #unacknowledgedBytes = 0;
  #flushing = false;
  #goawaySent = false;
  #peerGoaway = false;
  #ended = false;
  #pingPayload: Buffer | undefined;
  #pingAnswered: (() => void) | undefined;
  #pingCounter = 0;

  // What the peer has spent of its limits (limits.ts).
  readonly #limits: Http2Limits;
  readonly #pings: TokenBucket;
  readonly #settingsFrames: TokenBucket;
  readonly #streamResets: TokenBucket;
  readonly #newStreams: TokenBucket;
  /** Control frames written since the socket last had nothing buffered. */
  #queuedControlFrames = 0;
  #consecutiveEmptyFrames = 0;
  #streamsOpened = 0;
  #priorityFrames = 0;
  #windowUpdateFrames = 0;
  #dataFramesSent = 0;
  /** The preface timeout until the first SETTINGS, then the idle timeout while no stream is open. */
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Frames handled so far: an incomplete frame with a new count is a new one (#watchIncomplete). */
  #framesHandled = 0;
  /** When the incomplete frame or header block began, and #framesHandled then; undefined when none. */
  #incompleteSince: number | undefined;
  #incompleteAfterFrames = -1;
  /** Armed while something is incomplete; it looks again rather than being re-armed by every read. */
  #frameTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(socket: Socket, options: Http2ConnectionOptions, events: Http2ConnectionEvents) {
    this.#socket = socket;
    this.#options = options;
    this.#events = events;
    this.#receiveWindow = options.receiveWindowBytes;
    const limits = options.limits;
    this.#limits = limits;
    this.#decoder = new HpackDecoder(limits.headerTableBytes);
    const now = Date.now();
    this.#pings = new TokenBucket(limits.pings, now);
    this.#settingsFrames = new TokenBucket(limits.settings, now);
    this.#streamResets = new TokenBucket(limits.streamResets, now);
    this.#newStreams = new TokenBucket(limits.newStreams, now);
    this.#timer = setTimeout(() => {
      this.#cutOff(
        new LimitExceeded(
          Http2Limit.PREFACE_TIMEOUT,
          `no preface and SETTINGS within ${limits.prefaceTimeoutMs} ms`,
        ),
      );
    }, limits.prefaceTimeoutMs);
    this.#timer.unref();
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.#onData(chunk);
    });
    socket.on('drain', () => {
      // Reading stopped while our output was backed up (#onData); it resumes as the peer reads.
      if (!this.#ended) socket.resume();
      this.flush();
    });
    // Errors (a reset by the peer, a write after it left) end the connection through 'close'.
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.#onSocketClose();
    });
    socket.write(
      Buffer.concat([
        encodeSettings([
          [Setting.MAX_CONCURRENT_STREAMS, options.maxConcurrentStreams],
          [Setting.INITIAL_WINDOW_SIZE, options.receiveWindowBytes],
          [Setting.MAX_FRAME_SIZE, options.maxFrameBytes],
          [Setting.MAX_HEADER_LIST_SIZE, limits.maxHeaderListBytes],
          [Setting.HEADER_TABLE_SIZE, limits.headerTableBytes],
          [Setting.ENABLE_PUSH, 0],
        ]),
        // The connection's window is not a setting; it only grows by WINDOW_UPDATE.
        ...(options.receiveWindowBytes > DEFAULT_WINDOW_BYTES
          ? [encodeWindowUpdate(0, options.receiveWindowBytes - DEFAULT_WINDOW_BYTES)]
          : []),
      ]),
    );
  }

  /**
   * Sends a PING; `onAnswer` runs when its ACK arrives. False if one is already outstanding (one at a
   * time is all a keepalive needs).
   */
  ping(onAnswer: () => void): boolean {
    if (this.#pingPayload !== undefined || this.#ended) return false;
    const payload = Buffer.alloc(8);
    payload.writeUInt32BE(++this.#pingCounter, 4);
    this.#pingPayload = payload;
    this.#pingAnswered = onAnswer;
    this.#write(encodeFrame(FrameType.PING, 0, 0, payload));
    return true;
  }

  /**
   * GOAWAY(NO_ERROR): no new streams; the connection ends once the open ones have. Streams the client
   * opens meanwhile are ignored, and the GOAWAY's last stream id tells it they were not processed, so
   * it retries them on another connection (RFC 9113 §6.8).
   */
  close(): void {
    if (this.#ended || this.#goawaySent) return;
    this.#goawaySent = true;
    this.#write(encodeGoaway(this.#lastStreamId, ErrorCode.NO_ERROR, ''));
    this.#endIfIdle();
  }

  /** True once the connection is closing or closed: its streams are about to close, or have. */
  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Ends the connection for its owner's reason (a peer that stopped reading): GOAWAY with `code`, every
   * stream closed now, the socket destroyed once the GOAWAY has had a moment to leave, since a peer
   * that does not read would hold an ended socket open.
   */
  abort(code: number, message: string): void {
    if (this.#ended) return;
    this.#write(encodeGoaway(this.#lastStreamId, code, message));
    this.#ended = true;
    this.#closeAllStreams();
    this.#socket.end();
    setTimeout(() => this.#socket.destroy(), 1000).unref();
  }

  /** Drops the connection now; its streams are closed before this returns. */
  destroy(): void {
    clearTimeout(this.#timer);
    this.#ended = true;
    this.#closeAllStreams();
    this.#socket.destroy();
  }

  // For Http2ServerStream.

  sendHeaders(streamId: number, block: Buffer, endStream: boolean): void {
    const flags = Flags.END_HEADERS | (endStream ? Flags.END_STREAM : 0);
    this.#writeHeaderBlock(streamId, this.#withTableSizeUpdate(block), flags);
  }

  resetStream(stream: Http2ServerStream, code: number): void {
    if (!this.#streams.has(stream.id)) return;
    this.#writeControl(encodeRstStream(stream.id, code));
    this.#recentResets.push(stream.id);
    if (this.#recentResets.length > REMEMBERED_RESETS) this.#recentResets.shift();
    this.closeStream(stream);
  }

  closeStream(stream: Http2ServerStream): void {
    if (!this.#streams.delete(stream.id)) return;
    this.#sending.delete(stream);
    stream.markClosed();
    this.#endIfIdle();
    if (this.#streams.size === 0) this.#armIdleTimer();
  }

  wantsToSend(stream: Http2ServerStream): void {
    if (this.#sending.size === 0 && !this.#flushing) {
      // The usual case: an idle connection and one stream with one message. It skips the Set, which
      // would empty again at once, and V8 gives a Set that empties a new table: garbage per write.
      this.#flush(stream);
      return;
    }
    this.#sending.add(stream);
    this.flush();
  }

  /** Sends what windows and the socket allow, in the order streams asked. */
  flush(): void {
    this.#flush(undefined);
  }

  /** `first`, when given, is a stream to serve before the waiting ones, which it has not joined. */
  #flush(first: Http2ServerStream | undefined): void {
    if (this.#flushing || this.#ended || (first === undefined && this.#sending.size === 0)) {
      if (first !== undefined) this.#sending.add(first);
      return;
    }
    this.#flushing = true;
    const written: Array<() => void> = [];
    const drained: Http2ServerStream[] = [];
    // A response larger than a frame goes out as header and payload pieces; corked, they leave in one
    // writev instead of a write each. A lone message that fits one frame is a single write, and
    // uncorking costs node a new buffer list each time, so it goes out uncorked.
    const cork = first === undefined || !this.#fitsOneWrite(first);
    if (cork) this.#socket.cork();
    try {
      if (first !== undefined && !this.#sendStream(first, written, drained)) this.#sending.add(first);
      // Streams that ask to send while this runs (from callbacks) are visited too: a Set's iteration
      // includes what is added during it.
      for (const stream of this.#sending) {
        if (this.#socket.writableNeedDrain) break;
        if (this.#sendStream(stream, written, drained)) this.#sending.delete(stream);
      }
    } finally {
      this.#flushing = false;
      if (cork) this.#socket.uncork();
    }
    for (const onWritten of written) onWritten();
    for (const stream of drained) stream.drained();
  }

  /** Sends what `stream` may now; true when nothing of it is left to send. */
  #sendStream(stream: Http2ServerStream, written: Array<() => void>, drained: Http2ServerStream[]): boolean {
    if (this.#socket.writableNeedDrain) return false;
    this.#sendFrom(stream, written);
    if (stream.queue.length > 0) return false;
    drained.push(stream);
    if (stream.ending !== undefined) this.#sendEnd(stream, stream.ending);
    return true;
  }

  /** One queued message that goes out as one frame in its own headroom, and nothing after it. */
  #fitsOneWrite(stream: Http2ServerStream): boolean {
    const item = stream.queue[0];
    if (stream.queue.length !== 1 || item === undefined || stream.ending !== undefined) return false;
    const remaining = item.end - item.at;
    return (
      item.headroom &&
      item.at === DATA_FRAME_HEADROOM &&
      remaining <= Math.min(this.#sendWindow, stream.sendWindow, this.#peerMaxFrameBytes)
    );
  }

  #sendEnd(stream: Http2ServerStream, trailers: Buffer | null): void {
    if (trailers === null) {
      this.#write(encodeFrame(FrameType.DATA, Flags.END_STREAM, stream.id));
      this.#dataFramesSent += 1;
    } else {
      const block = this.#withTableSizeUpdate(trailers);
      this.#writeHeaderBlock(stream.id, block, Flags.END_HEADERS | Flags.END_STREAM);
    }
    stream.endSent();
  }

  #sendFrom(stream: Http2ServerStream, written: Array<() => void>): void {
    for (let item = stream.queue[0]; item !== undefined; item = stream.queue[0]) {
      if (this.#socket.writableNeedDrain) return;
      const remaining = item.end - item.at;
      const allowed = Math.min(this.#sendWindow, stream.sendWindow, this.#peerMaxFrameBytes);
      // An empty payload still needs its frame; otherwise wait for a WINDOW_UPDATE.
      if (allowed <= 0 && remaining > 0) return;
      const length = Math.min(remaining, allowed);
      if (item.headroom && item.at === DATA_FRAME_HEADROOM && length === remaining) {
        // The common case: the whole message in one frame, its header in the room left for it.
        writeFrameHeader(item.buffer, 0, length, FrameType.DATA, 0, stream.id);
        this.#socket.write(item.buffer);
      } else {
        const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
        writeFrameHeader(header, 0, length, FrameType.DATA, 0, stream.id);
        this.#socket.write(header);
        if (length > 0) this.#socket.write(item.buffer.subarray(item.at, item.at + length));
      }
      item.at += length;
      this.#dataFramesSent += 1;
      this.#sendWindow -= length;
      stream.tookFromQueue(length);
      if (item.at === item.end) {
        stream.queue.shift();
        if (item.onWritten) written.push(item.onWritten);
      }
    }
  }

  #withTableSizeUpdate(block: Buffer): Buffer {
    if (!this.#tableSizeUpdatePending) return block;
    this.#tableSizeUpdatePending = false;
    // A dynamic table size update to 0 (RFC 7541 §6.3): our encoder never uses the table anyway.
    return Buffer.concat([Buffer.from([0x20]), block]);
  }

  #writeHeaderBlock(streamId: number, block: Buffer, flags: number): void {
    if (block.length <= this.#peerMaxFrameBytes) {
      this.#write(encodeFrame(FrameType.HEADERS, flags, streamId, block));
      return;
    }
    const frames: Buffer[] = [];
    for (let at = 0; at < block.length; at += this.#peerMaxFrameBytes) {
      const last = at + this.#peerMaxFrameBytes >= block.length;
      const fragment = block.subarray(at, Math.min(block.length, at + this.#peerMaxFrameBytes));
      const type = at === 0 ? FrameType.HEADERS : FrameType.CONTINUATION;
      const frameFlags = (at === 0 ? flags & Flags.END_STREAM : 0) | (last ? Flags.END_HEADERS : 0);
      frames.push(encodeFrame(type, frameFlags, streamId, fragment));
    }
    this.#write(Buffer.concat(frames));
  }

  #write(bytes: Buffer): void {
    if (!this.#socket.destroyed) this.#socket.write(bytes);
  }

  /**
   * A frame we owe the peer for something it sent. They are counted while the socket holds unsent
   * bytes, so that a peer that provokes them faster than it reads is stopped (#parse) before they pile up.
   */
  #writeControl(bytes: Buffer): void {
    if (this.#socket.writableLength === 0) this.#queuedControlFrames = 0;
    this.#queuedControlFrames += 1;
    // Past the cap the connection is cut off after this frame (#parse); nothing more is owed.
    if (this.#queuedControlFrames <= this.#limits.maxOutboundControlFrames) this.#write(bytes);
  }

  /** A new stream refused with RST_STREAM; it counts against the peer's stream resets. */
  #refuseStream(streamId: number, code: number): void {
    this.#spendStreamReset();
    this.#writeControl(encodeRstStream(streamId, code));
  }

  #spendStreamReset(): void {
    if (!this.#streamResets.take(Date.now())) {
      this.#exceeded(
        Http2Limit.STREAM_RESETS,
        `stream resets beyond ${this.#describe(this.#limits.streamResets)}`,
      );
    }
  }

  #exceeded(limit: Http2LimitName, message: string): never {
    throw new LimitExceeded(limit, message);
  }

  #describe(rate: { burst: number; perSecond: number }): string {
    return `a burst of ${rate.burst} and ${rate.perSecond} per second`;
  }

  #armIdleTimer(): void {
    if (this.#ended || !this.#settingsSeen) return;
    clearTimeout(this.#timer);
    const idleMs = this.#limits.idleTimeoutMs;
    this.#timer = setTimeout(() => {
      if (this.#streams.size > 0 || this.#ended) return;
      this.#events.onLimitExceeded?.(Http2Limit.IDLE_TIMEOUT, `no stream open for ${idleMs} ms`);
      this.#cutOff(new ConnectionError(ErrorCode.NO_ERROR, 'idle'));
    }, idleMs);
    this.#timer.unref();
  }

  #endIfIdle(): void {
    if ((this.#goawaySent || this.#peerGoaway) && this.#streams.size === 0 && !this.#ended) {
      this.#ended = true;
      this.#socket.end();
    }
  }

  // Input.

  #onData(chunk: Buffer): void {
    if (this.#ended) return;
    // Everything this input makes us send (SETTINGS ACKs, window updates, responses) leaves in one write.
    this.#socket.cork();
    try {
      this.#take(chunk);
    } catch (error) {
      if (!(error instanceof ConnectionError)) throw error;
      this.#cutOff(error);
    }
    this.flush();
    this.#socket.uncork();
    this.#pauseWhileBackedUp();
    this.#watchIncomplete();
  }

  /** Handles `chunk`: the rest of a DATA frame in progress, then whole frames, keeping what is left. */
  #take(chunk: Buffer): void {
    let input = chunk;
    if (this.#dataFrame !== undefined) {
      const taken = this.#continueDataFrame(input);
      if (taken === input.length) return;
      input = input.subarray(taken);
    }
    if (this.#carryBytes > 0) {
      this.#carry.push(input);
      this.#carryBytes += input.length;
      if (this.#carryBytes < this.#carryNeed) return;
      input = Buffer.concat(this.#carry, this.#carryBytes);
      this.#carry = [];
      this.#carryBytes = 0;
    }
    const at = this.#parse(input);
    // After a connection error the carry is never read: input stops at #ended.
    if (at < input.length) {
      const rest = input.subarray(at);
      this.#carry = [rest];
      this.#carryBytes = rest.length;
      this.#carryNeed = !this.#prefaceSeen
        ? CONNECTION_PREFACE.length
        : rest.length < FRAME_HEADER_BYTES
          ? FRAME_HEADER_BYTES
          : FRAME_HEADER_BYTES + readFrameHeader(rest, 0).length;
    }
  }

  /**
   * Notes when input began to hold an incomplete frame or header block, and arms the frame timeout
   * (limits.frameTimeoutMs) if it is not armed. A read that completes the frame, even if it ends in
   * the middle of the next one, starts the clock again: a peer making progress is never cut off.
   */
  #watchIncomplete(): void {
    if (this.#ended || !this.#settingsSeen) return;
    const block = this.#block;
    if (block !== undefined) {
      this.#incompleteSince = block.startedAt;
      this.#incompleteAfterFrames = -1;
    } else if (this.#carryBytes === 0 && this.#dataFrame === undefined) {
      this.#incompleteSince = undefined;
      return;
    } else if (this.#incompleteSince === undefined || this.#incompleteAfterFrames !== this.#framesHandled) {
      this.#incompleteSince = Date.now();
      this.#incompleteAfterFrames = this.#framesHandled;
    }
    if (this.#frameTimer === undefined) this.#armFrameTimer(this.#limits.frameTimeoutMs);
  }

  #armFrameTimer(ms: number): void {
    this.#frameTimer = setTimeout(() => {
      this.#frameTimer = undefined;
      this.#checkIncomplete();
    }, ms);
    this.#frameTimer.unref();
  }

  #checkIncomplete(): void {
    const since = this.#incompleteSince;
    if (this.#ended || since === undefined) return;
    const limitMs = this.#limits.frameTimeoutMs;
    const now = Date.now();
    if (this.#socket.isPaused()) {
      // We stopped reading (#pauseWhileBackedUp): the peer could not have completed it. Its time
      // starts again once we read.
      this.#incompleteSince = now;
      if (this.#block !== undefined) this.#block.startedAt = now;
      this.#armFrameTimer(limitMs);
      return;
    }
    const elapsed = now - since;
    if (elapsed < limitMs) {
      this.#armFrameTimer(limitMs - elapsed);
      return;
    }
    this.#cutOff(
      new LimitExceeded(
        Http2Limit.FRAME_TIMEOUT,
        `${this.#block !== undefined ? 'a header block' : 'a frame'} incomplete for over ${limitMs} ms`,
      ),
    );
  }

  /**
   * Stops reading while the peer does not read what we already owe it: whatever it sends meanwhile
   * waits in its own buffers, not ours. 'drain' resumes.
   */
  #pauseWhileBackedUp(): void {
    if (this.#socket.writableNeedDrain && !this.#ended) this.#socket.pause();
  }

  /** Handles every whole frame in `input`; returns where the first incomplete one starts. */
  #parse(input: Buffer): number {
    let at = 0;
    if (!this.#prefaceSeen) {
      if (input.length < CONNECTION_PREFACE.length) {
        if (!CONNECTION_PREFACE.subarray(0, input.length).equals(input)) {
          throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'not an HTTP/2 connection preface');
        }
        return 0;
      }
      if (!input.subarray(0, CONNECTION_PREFACE.length).equals(CONNECTION_PREFACE)) {
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'not an HTTP/2 connection preface');
      }
      this.#prefaceSeen = true;
      at = CONNECTION_PREFACE.length;
    }
    while (input.length - at >= FRAME_HEADER_BYTES && !this.#ended) {
      const header = readFrameHeader(input, at);
      if (header.length > this.#options.maxFrameBytes) {
        throw new ConnectionError(
          ErrorCode.FRAME_SIZE_ERROR,
          `frame of ${header.length} bytes is over the ${this.#options.maxFrameBytes} accepted`,
        );
      }
      const end = at + FRAME_HEADER_BYTES + header.length;
      if (end > input.length) {
        if (!this.#canStreamData(header)) break;
        this.#beginDataFrame(header);
        at += FRAME_HEADER_BYTES;
        at += this.#continueDataFrame(input.subarray(at));
      } else {
        this.#onFrame(header, input.subarray(at + FRAME_HEADER_BYTES, end));
        this.#framesHandled += 1;
        at = end;
      }
      if (this.#queuedControlFrames > this.#limits.maxOutboundControlFrames) {
        this.#exceeded(
          Http2Limit.OUTBOUND_CONTROL_FRAMES,
          `over ${this.#limits.maxOutboundControlFrames} control frames owed and not yet sent`,
        );
      }
    }
    return at;
  }

  #onFrame(frame: { length: number; type: number; flags: number; streamId: number }, payload: Buffer): void {
    if (!this.#settingsSeen && frame.type !== FrameType.SETTINGS) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'the first frame was not SETTINGS');
    }
    if (this.#block !== undefined && frame.type !== FrameType.CONTINUATION) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'a header block was interrupted by another frame');
    }
    this.#countEmpty(frame.type, frame.flags, payload.length);
    switch (frame.type) {
      case FrameType.DATA:
        this.#onDataFrame(frame.flags, frame.streamId, payload);
        return;
      case FrameType.HEADERS:
        this.#onHeadersFrame(frame.flags, frame.streamId, payload);
        return;
      case FrameType.CONTINUATION:
        this.#onContinuationFrame(frame.flags, frame.streamId, payload);
        return;
      case FrameType.PRIORITY:
        this.#onPriorityFrame(frame.streamId, payload);
        return;
      case FrameType.RST_STREAM:
        this.#onRstStreamFrame(frame.streamId, payload);
        return;
      case FrameType.SETTINGS:
        this.#onSettingsFrame(frame.flags, frame.streamId, payload);
        return;
      case FrameType.PUSH_PROMISE:
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'a client sent PUSH_PROMISE');
      case FrameType.PING:
        this.#onPingFrame(frame.flags, frame.streamId, payload);
        return;
      case FrameType.GOAWAY:
        this.#onGoawayFrame(frame.streamId, payload);
        return;
      case FrameType.WINDOW_UPDATE:
        this.#onWindowUpdateFrame(frame.streamId, payload);
        return;
      default:
      // Unknown frame types are ignored (RFC 9113 §4.1).
    }
  }

  /**
   * Envoy's rule: DATA, HEADERS and CONTINUATION frames that carry nothing and end nothing cost work
   * and no window; only so many in a row. Only such frames with a payload reset the count.
   */
  #countEmpty(type: number, flags: number, length: number): void {
    const ends =
      type === FrameType.CONTINUATION ? (flags & Flags.END_HEADERS) !== 0 : (flags & Flags.END_STREAM) !== 0;
    if (type !== FrameType.DATA && type !== FrameType.HEADERS && type !== FrameType.CONTINUATION) return;
    if (length > 0 || ends) {
      if (length > 0) this.#consecutiveEmptyFrames = 0;
      return;
    }
    this.#consecutiveEmptyFrames += 1;
    if (this.#consecutiveEmptyFrames > this.#limits.maxConsecutiveEmptyFrames) {
      this.#exceeded(
        Http2Limit.EMPTY_FRAMES,
        `over ${this.#limits.maxConsecutiveEmptyFrames} empty frames in a row`,
      );
    }
  }

  /** Strips padding (RFC 9113 §6.1); `skip` octets of other fields follow the pad length. */
  #unpad(flags: number, payload: Buffer, skip = 0): Buffer {
    if ((flags & Flags.PADDED) === 0) return payload.subarray(skip);
    if (payload.length < 1)
      throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'padded frame without pad length');
    const padding = payload.readUInt8(0);
    if (padding >= payload.length - skip) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'padding is as long as the frame');
    }
    return payload.subarray(1 + skip, payload.length - padding);
  }

  #isIdle(streamId: number): boolean {
    return streamId > this.#lastStreamId;
  }

  /** A frame for a stream no longer open: ignored if we reset it, else STREAM_CLOSED (RFC 9113 §5.1). */
  #onClosedStream(streamId: number, what: string): void {
    if (this.#recentResets.includes(streamId)) return;
    throw new ConnectionError(ErrorCode.STREAM_CLOSED, `${what} on closed stream ${streamId}`);
  }

  #onDataFrame(flags: number, streamId: number, payload: Buffer): void {
    this.#chargeDataFrame(streamId, payload.length);
    const data = this.#unpad(flags, payload);
    const stream = this.#dataFrameStream(streamId, payload.length);
    if (stream === undefined || !this.#deliverData(stream, data)) return;
    this.#endDataFrame(stream, flags, payload.length);
  }

  /**
   * A DATA frame whose payload is not all here yet is taken piece by piece when it carries no padding
   * (which can only be stripped once it is whole) and comes where a DATA frame may; otherwise it
   * waits in the carry and #onFrame judges it whole.
   */
  #canStreamData(header: { length: number; type: number; flags: number }): boolean {
    return (
      header.type === FrameType.DATA &&
      (header.flags & Flags.PADDED) === 0 &&
      this.#settingsSeen &&
      this.#block === undefined
    );
  }

  #beginDataFrame(header: { length: number; flags: number; streamId: number }): void {
    // Its payload is not empty (it is incomplete), so this only ends a run of empty frames.
    this.#countEmpty(FrameType.DATA, header.flags, header.length);
    this.#chargeDataFrame(header.streamId, header.length);
    this.#dataFrame = {
      stream: this.#dataFrameStream(header.streamId, header.length),
      flags: header.flags,
      length: header.length,
      remaining: header.length,
    };
  }

  /** Hands the next piece of the DATA frame in progress to its stream; returns the bytes it took. */
  #continueDataFrame(input: Buffer): number {
    const frame = this.#dataFrame;
    if (frame === undefined) return 0;
    const taken = Math.min(frame.remaining, input.length);
    frame.remaining -= taken;
    const stream = frame.stream;
    if (stream !== undefined && taken > 0 && !this.#deliverData(stream, input.subarray(0, taken))) {
      frame.stream = undefined;
    }
    if (frame.remaining === 0) {
      this.#dataFrame = undefined;
      this.#framesHandled += 1;
      if (frame.stream !== undefined) this.#endDataFrame(frame.stream, frame.flags, frame.length);
    }
    return taken;
  }

  /** The connection's part of a DATA frame's checks, on its declared length. */
  #chargeDataFrame(streamId: number, length: number): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'DATA on stream 0');
    if (this.#isIdle(streamId))
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `DATA on idle stream ${streamId}`);
    // Flow control counts the whole payload, padding included, whatever becomes of the stream.
    if (length > this.#receiveWindow) {
      throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'DATA beyond the connection window');
    }
    this.#receiveWindow -= length;
    this.#consumed(undefined, length);
  }

  /** The stream a DATA frame's payload goes to, or undefined when it is dropped (and the stream reset). */
  #dataFrameStream(streamId: number, length: number): Http2ServerStream | undefined {
    const stream = this.#streams.get(streamId);
    if (stream === undefined) {
      this.#onClosedStream(streamId, 'DATA');
      return undefined;
    }
    if (stream.remoteEnded) {
      stream.reset(ErrorCode.STREAM_CLOSED);
      return undefined;
    }
    if (length > stream.receiveWindow) {
      stream.reset(ErrorCode.FLOW_CONTROL_ERROR);
      return undefined;
    }
    stream.receiveWindow -= length;
    return stream;
  }

  /** Gives `data` to the stream; false if the stream is closed or now reset for it. */
  #deliverData(stream: Http2ServerStream, data: Buffer): boolean {
    if (stream.closed) return false;
    stream.receivedLength += data.length;
    if (stream.declaredLength !== undefined && stream.receivedLength > stream.declaredLength) {
      stream.reset(ErrorCode.PROTOCOL_ERROR);
      return false;
    }
    if (data.length > 0) stream.handlers.onData(data);
    return !stream.closed;
  }

  #endDataFrame(stream: Http2ServerStream, flags: number, length: number): void {
    if (stream.closed) return;
    if ((flags & Flags.END_STREAM) !== 0) stream.remoteEnd();
    else this.#consumed(stream, length);
  }

  /** Returns consumed bytes to the peer's window once half of it is used, as nghttp2 does. */
  #consumed(stream: Http2ServerStream | undefined, bytes: number): void {
    const window = this.#options.receiveWindowBytes;
    if (stream === undefined) {
      this.#unacknowledgedBytes += bytes;
      if (this.#unacknowledgedBytes >= window / 2) {
        this.#writeControl(encodeWindowUpdate(0, this.#unacknowledgedBytes));
        this.#receiveWindow += this.#unacknowledgedBytes;
        this.#unacknowledgedBytes = 0;
      }
      return;
    }
    stream.unacknowledgedBytes += bytes;
    if (stream.unacknowledgedBytes >= window / 2) {
      this.#writeControl(encodeWindowUpdate(stream.id, stream.unacknowledgedBytes));
      stream.receiveWindow += stream.unacknowledgedBytes;
      stream.unacknowledgedBytes = 0;
    }
  }

  #onHeadersFrame(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0 || streamId % 2 === 0) {
      throw new ConnectionError(
        ErrorCode.PROTOCOL_ERROR,
        `HEADERS on stream ${streamId}, not a client stream`,
      );
    }
    const hasPriority = (flags & Flags.PRIORITY) !== 0;
    const fragment = this.#unpad(flags, payload, hasPriority ? 5 : 0);
    const dependsOn = hasPriority
      ? payload.readUInt32BE((flags & Flags.PADDED) !== 0 ? 1 : 0) & 0x7fffffff
      : undefined;
    const block: HeaderBlockInProgress = {
      streamId,
      endStream: (flags & Flags.END_STREAM) !== 0,
      selfDependent: dependsOn === streamId,
      fragments: [fragment],
      bytes: fragment.length,
      continuations: 0,
      startedAt: 0,
    };
    this.#checkBlockSize(block.bytes);
    if ((flags & Flags.END_HEADERS) !== 0) {
      this.#onHeaderBlock(block);
      return;
    }
    block.startedAt = Date.now();
    this.#block = block;
  }

  /** Refused before decoding: a peer could otherwise make us hold and decode CONTINUATION without end. */
  #checkBlockSize(bytes: number): void {
    if (bytes > Math.max(MIN_HEADER_BLOCK_LIMIT, 2 * this.#limits.maxHeaderListBytes)) {
      this.#exceeded(Http2Limit.HEADER_BLOCK_BYTES, `header block of over ${bytes} bytes`);
    }
  }

  #onContinuationFrame(flags: number, streamId: number, payload: Buffer): void {
    const block = this.#block;
    if (block === undefined || block.streamId !== streamId) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `unexpected CONTINUATION on stream ${streamId}`);
    }
    block.continuations += 1;
    if (block.continuations > this.#limits.maxContinuationFrames) {
      this.#exceeded(
        Http2Limit.CONTINUATION_FLOOD,
        `over ${this.#limits.maxContinuationFrames} CONTINUATION frames in one header block`,
      );
    }
    block.fragments.push(payload);
    block.bytes += payload.length;
    this.#checkBlockSize(block.bytes);
    if ((flags & Flags.END_HEADERS) === 0) return;
    this.#block = undefined;
    this.#onHeaderBlock(block);
  }

  #onHeaderBlock(block: HeaderBlockInProgress): void {
    let fields: HeaderField[];
    try {
      const [only] = block.fragments;
      const whole =
        block.fragments.length === 1 && only !== undefined
          ? only
          : Buffer.concat(block.fragments, block.bytes);
      fields = this.#decoder.decode(
        whole,
        this.#limits.maxHeaderListBytes,
        HEADER_LIST_ABANDON_FACTOR * this.#limits.maxHeaderListBytes,
      );
    } catch (error) {
      if (error instanceof HpackError) throw new ConnectionError(ErrorCode.COMPRESSION_ERROR, error.message);
      throw error;
    }
    if (this.#decoder.abandoned) {
      this.#exceeded(
        Http2Limit.HEADER_LIST_BYTES,
        `header list of over ${HEADER_LIST_ABANDON_FACTOR} × ${this.#limits.maxHeaderListBytes} bytes decoded`,
      );
    }
    const oversized = this.#decoder.oversized;
    const { streamId } = block;
    const existing = this.#streams.get(streamId);
    if (existing !== undefined) {
      // Trailers from the client: they must end the stream, and carry no pseudo-headers.
      if (existing.remoteEnded) {
        existing.reset(ErrorCode.STREAM_CLOSED);
      } else if (!block.endStream || fields.some(([name]) => name.startsWith(':'))) {
        existing.reset(ErrorCode.PROTOCOL_ERROR);
      } else {
        existing.remoteEnd();
      }
      return;
    }
    if (!this.#isIdle(streamId)) {
      this.#onClosedStream(streamId, 'HEADERS');
      return;
    }
    this.#lastStreamId = streamId;
    // After our GOAWAY, new streams are ignored (RFC 9113 §6.8).
    if (this.#goawaySent || this.#peerGoaway) return;
    if (!this.#newStreams.take(Date.now())) {
      this.#exceeded(Http2Limit.NEW_STREAMS, `new streams beyond ${this.#describe(this.#limits.newStreams)}`);
    }
    this.#streamsOpened += 1;
    const declaredLength = contentLength(fields);
    if (
      block.selfDependent ||
      malformedRequest(fields) !== undefined ||
      Number.isNaN(declaredLength) ||
      (block.endStream && declaredLength !== undefined && declaredLength > 0)
    ) {
      this.#refuseStream(streamId, ErrorCode.PROTOCOL_ERROR);
      return;
    }
    if (this.#streams.size >= this.#options.maxConcurrentStreams) {
      this.#refuseStream(streamId, ErrorCode.REFUSED_STREAM);
      return;
    }
    const stream = new Http2ServerStream(
      this,
      streamId,
      { send: this.#peerInitialWindow, receive: this.#options.receiveWindowBytes },
      { endStream: block.endStream, declaredLength },
    );
    this.#streams.set(streamId, stream);
    clearTimeout(this.#timer);
    if (oversized) {
      stream.respond([[':status', '431']], true);
      return;
    }
    this.#events.onStream(stream, fields);
    if (block.endStream && !stream.closed) stream.remoteEnd(true);
  }

  #onPriorityFrame(streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'PRIORITY on stream 0');
    this.#priorityFrames += 1;
    const allowed = this.#limits.maxPriorityFramesPerStream * (1 + this.#streamsOpened);
    if (this.#priorityFrames > allowed) {
      this.#exceeded(Http2Limit.PRIORITY_FLOOD, `over ${allowed} PRIORITY frames for the streams opened`);
    }
    if (payload.length !== 5) {
      this.#writeControl(encodeRstStream(streamId, ErrorCode.FRAME_SIZE_ERROR));
      return;
    }
    if ((payload.readUInt32BE(0) & 0x7fffffff) === streamId) {
      const stream = this.#streams.get(streamId);
      if (stream) stream.reset(ErrorCode.PROTOCOL_ERROR);
      else this.#writeControl(encodeRstStream(streamId, ErrorCode.PROTOCOL_ERROR));
    }
  }

  #onRstStreamFrame(streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
    if (payload.length !== 4)
      throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'RST_STREAM must be 4 bytes');
    if (this.#isIdle(streamId)) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `RST_STREAM on idle stream ${streamId}`);
    }
    this.#spendStreamReset();
    const stream = this.#streams.get(streamId);
    if (stream !== undefined) this.closeStream(stream);
  }

  #onSettingsFrame(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if ((flags & Flags.ACK) !== 0) {
      if (payload.length !== 0)
        throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
      return;
    }
    if (payload.length % 6 !== 0) {
      throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'SETTINGS length is not a multiple of 6');
    }
    if (payload.length / 6 > this.#limits.maxSettingsEntries) {
      this.#exceeded(
        Http2Limit.SETTINGS_FLOOD,
        `SETTINGS with over ${this.#limits.maxSettingsEntries} entries`,
      );
    }
    if (!this.#settingsFrames.take(Date.now())) {
      this.#exceeded(Http2Limit.SETTINGS_FLOOD, `SETTINGS beyond ${this.#describe(this.#limits.settings)}`);
    }
    if (!this.#settingsSeen) {
      this.#settingsSeen = true;
      // The preface timeout ends here; the connection has no stream yet, so the idle timeout starts.
      this.#armIdleTimer();
    }
    for (let at = 0; at < payload.length; at += 6) {
      const id = payload.readUInt16BE(at);
      const value = payload.readUInt32BE(at + 2);
      switch (id) {
        case Setting.HEADER_TABLE_SIZE:
          this.#tableSizeUpdatePending = true;
          break;
        case Setting.ENABLE_PUSH:
          if (value > 1)
            throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `SETTINGS_ENABLE_PUSH of ${value}`);
          break;
        case Setting.INITIAL_WINDOW_SIZE: {
          if (value > MAX_WINDOW_BYTES) {
            throw new ConnectionError(
              ErrorCode.FLOW_CONTROL_ERROR,
              `SETTINGS_INITIAL_WINDOW_SIZE of ${value}`,
            );
          }
          const delta = value - this.#peerInitialWindow;
          this.#peerInitialWindow = value;
          for (const stream of this.#streams.values()) {
            if (!stream.adjustSendWindow(delta)) {
              throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'a stream window grew beyond 2^31-1');
            }
          }
          break;
        }
        case Setting.MAX_FRAME_SIZE:
          if (value < DEFAULT_MAX_FRAME_BYTES || value > LARGEST_MAX_FRAME_BYTES) {
            throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `SETTINGS_MAX_FRAME_SIZE of ${value}`);
          }
          this.#peerMaxFrameBytes = value;
          break;
        default:
        // Settings we do not act on (concurrency, header list size) or do not know are ignored.
      }
    }
    this.#writeControl(encodeFrame(FrameType.SETTINGS, Flags.ACK, 0));
  }

  #onPingFrame(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'PING on a stream');
    if (payload.length !== 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'PING must be 8 bytes');
    if ((flags & Flags.ACK) === 0) {
      if (!this.#pings.take(Date.now())) {
        this.#exceeded(Http2Limit.PING_FLOOD, `PINGs beyond ${this.#describe(this.#limits.pings)}`);
      }
      this.#writeControl(encodeFrame(FrameType.PING, Flags.ACK, 0, payload));
      return;
    }
    if (this.#pingPayload?.equals(payload)) {
      const answered = this.#pingAnswered;
      this.#pingPayload = undefined;
      this.#pingAnswered = undefined;
      answered?.();
    }
  }

  #onGoawayFrame(streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'GOAWAY on a stream');
    if (payload.length < 8)
      throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'GOAWAY shorter than 8 bytes');
    const first = !this.#peerGoaway;
    this.#peerGoaway = true;
    const code = payload.readUInt32BE(4);
    // Reported once: a peer may send GOAWAY again, and each would be a log line.
    if (code !== ErrorCode.NO_ERROR && first) {
      const debug = payload.subarray(8).toString('utf8');
      this.#events.onProtocolError?.(`peer sent GOAWAY ${errorCodeName(code)}${debug ? `: ${debug}` : ''}`);
    }
    this.#endIfIdle();
  }

  #onWindowUpdateFrame(streamId: number, payload: Buffer): void {
    if (payload.length !== 4)
      throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'WINDOW_UPDATE must be 4 bytes');
    this.#windowUpdateFrames += 1;
    const allowed =
      5 + 2 * (this.#streamsOpened + this.#limits.maxWindowUpdatesPerDataFrameSent * this.#dataFramesSent);
    if (this.#windowUpdateFrames > allowed) {
      this.#exceeded(
        Http2Limit.WINDOW_UPDATE_FLOOD,
        `over ${allowed} WINDOW_UPDATE frames for the DATA frames sent and streams opened`,
      );
    }
    const increment = payload.readUInt32BE(0) & 0x7fffffff;
    if (streamId === 0) {
      if (increment === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
      this.#sendWindow += increment;
      if (this.#sendWindow > MAX_WINDOW_BYTES) {
        throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'connection window beyond 2^31-1');
      }
      return;
    }
    if (this.#isIdle(streamId)) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `WINDOW_UPDATE on idle stream ${streamId}`);
    }
    const stream = this.#streams.get(streamId);
    if (increment === 0) {
      if (stream) stream.reset(ErrorCode.PROTOCOL_ERROR);
      else this.#writeControl(encodeRstStream(streamId, ErrorCode.PROTOCOL_ERROR));
      return;
    }
    // A closed stream's window no longer matters (RFC 9113 §6.9).
    if (stream === undefined) return;
    if (!stream.adjustSendWindow(increment)) stream.reset(ErrorCode.FLOW_CONTROL_ERROR);
  }

  /**
   * A connection error or a crossed limit: reported, GOAWAY with its code, every stream closed, the
   * socket ended, and destroyed a moment later.
   */
  #cutOff(error: ConnectionError): void {
    if (this.#ended) return;
    clearTimeout(this.#timer);
    if (error instanceof LimitExceeded) this.#events.onLimitExceeded?.(error.limit, error.message);
    else if (error.code !== ErrorCode.NO_ERROR) {
      this.#events.onProtocolError?.(`${errorCodeName(error.code)}: ${error.message}`);
    }
    this.#write(encodeGoaway(this.#lastStreamId, error.code, error.message));
    this.#ended = true;
    this.#closeAllStreams();
    this.#socket.end();
    // A peer that never reads would keep the socket open; it gets a moment to read our GOAWAY.
    setTimeout(() => this.#socket.destroy(), GOAWAY_GRACE_MS).unref();
  }

  #closeAllStreams(): void {
    const streams = [...this.#streams.values()];
    this.#streams.clear();
    this.#sending.clear();
    for (const stream of streams) stream.markClosed();
  }

  #onSocketClose(): void {
    clearTimeout(this.#timer);
    clearTimeout(this.#frameTimer);
    this.#ended = true;
    this.#closeAllStreams();
    this.#pingPayload = undefined;
    this.#pingAnswered = undefined;
    this.#events.onClose();
  }
}

/** Why a request's headers are malformed (RFC 9113 §8.3), or undefined when they are not. */
function malformedRequest(fields: readonly HeaderField[]): string | undefined {
  const seen = new Set<string>();
  let regularSeen = false;
  for (const [name, value] of fields) {
    if (name.startsWith(':')) {
      if (regularSeen) return `pseudo-header ${name} after regular headers`;
      if (name !== ':method' && name !== ':scheme' && name !== ':path' && name !== ':authority') {
        return `pseudo-header ${name} in a request`;
      }
      if (seen.has(name)) return `pseudo-header ${name} twice`;
      seen.add(name);
      continue;
    }
    regularSeen = true;
    if (name !== name.toLowerCase()) return `header name ${name} is not lowercase`;
    if (CONNECTION_SPECIFIC.has(name)) return `connection-specific header ${name}`;
    if (name === 'te' && value !== 'trailers') return `te header of ${value}`;
  }
  if (!seen.has(':method') || !seen.has(':scheme') || !seen.has(':path')) {
    return 'a request lacks :method, :scheme or :path';
  }
  const path = fields.find(([name]) => name === ':path')?.[1];
  if (path === '') return 'empty :path';
  return undefined;
}

const CONNECTION_SPECIFIC = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
]);

/** The request's content-length: undefined if absent, NaN if not one non-negative integer. */
function contentLength(fields: readonly HeaderField[]): number | undefined {
  const values = fields.filter(([name]) => name === 'content-length').map(([, value]) => value);
  if (values.length === 0) return undefined;
  if (values.length > 1 || !/^[0-9]{1,15}$/.test(values[0] ?? '')) return NaN;
  return Number(values[0]);
}
