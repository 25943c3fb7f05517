/**
 * What one HTTP/2 peer may make the server do: the engine's flood and resource limits as one typed
 * object, with defaults no looser than nghttp2's and Envoy's (docs/security.md, "HTTP/2 limits", gives
 * each default and its source), the token bucket that meters them, and the reports of peers cut off
 * for crossing them. connection.ts and grpc-transport.ts enforce them.
 */
import { EventEmitter } from 'node:events';

/** A token bucket: `burst` tokens at the start and at most, `perSecond` tokens back each second. */
export interface RateLimit {
  readonly burst: number;
  readonly perSecond: number;
}

export interface Http2Limits {
  /**
   * Control frames (SETTINGS and PING ACKs, RST_STREAM, WINDOW_UPDATE, GOAWAY) we may have written that
   * the socket has not yet handed to the kernel. nghttp2 and Envoy both stop at 1000.
   */
  readonly maxOutboundControlFrames: number;
  /** PINGs (not ACKs) the peer may send. grpc-go's enforcement allows one per 5 min without calls. */
  readonly pings: RateLimit;
  /** SETTINGS frames (not ACKs) the peer may send; each costs an ACK and a pass over the streams. */
  readonly settings: RateLimit;
  /** Entries in one SETTINGS frame (nghttp2: 32). */
  readonly maxSettingsEntries: number;
  /** CONTINUATION frames in one header block (nghttp2: 8). */
  readonly maxContinuationFrames: number;
  /**
   * Empty frames in a row: DATA without END_STREAM, HEADERS and CONTINUATION, each with no payload.
   * Envoy's max_consecutive_inbound_frames_with_empty_payload, default 1.
   */
  readonly maxConsecutiveEmptyFrames: number;
  /**
   * Streams that end by a reset, the peer's RST_STREAM or ours for a bad request (CVE-2023-44487,
   * rapid reset). nghttp2's stream reset rate limit: 1000 at once, 33 per second.
   */
  readonly streamResets: RateLimit;
  /** Streams the peer may open (stream churn). An Envoy opens one ADS stream per connection. */
  readonly newStreams: RateLimit;
  /** PRIORITY frames per stream opened, plus one stream's worth (Envoy: 100). */
  readonly maxPriorityFramesPerStream: number;
  /** WINDOW_UPDATE frames per DATA frame we sent, as Envoy counts them (Envoy: 10). */
  readonly maxWindowUpdatesPerDataFrameSent: number;
  /** From accepting the connection until its preface and first SETTINGS have arrived. */
  readonly prefaceTimeoutMs: number;
  /** A connection with no open stream for this long gets GOAWAY(NO_ERROR). */
  readonly idleTimeoutMs: number;
  /**
   * How long a frame that has begun to arrive (its header, part of its payload) or a header block
   * (HEADERS without END_HEADERS) may take to complete. Time while we do not read (our output backed
   * up) does not count.
   */
  readonly frameTimeoutMs: number;
  /** Connections open at once on one server; the next one is closed as it is accepted. */
  readonly maxConnections: number;
  /**
   * The decoded request header list (SETTINGS_MAX_HEADER_LIST_SIZE); larger gets 431, and over 4 times
   * this ends the connection (`header_list_bytes`).
   */
  readonly maxHeaderListBytes: number;
  /** The HPACK dynamic table we let the peer use (SETTINGS_HEADER_TABLE_SIZE). */
  readonly headerTableBytes: number;
}

export const DEFAULT_HTTP2_LIMITS: Http2Limits = {
  maxOutboundControlFrames: 1000,
  // Far more than any keepalive (gRPC clients may not ping more often than every 10 s), far less than
  // a flood.
  pings: { burst: 10, perSecond: 1 },
  settings: { burst: 10, perSecond: 1 },
  maxSettingsEntries: 32,
  maxContinuationFrames: 8,
  maxConsecutiveEmptyFrames: 1,
  streamResets: { burst: 1000, perSecond: 33 },
  newStreams: { burst: 1000, perSecond: 100 },
  maxPriorityFramesPerStream: 100,
  maxWindowUpdatesPerDataFrameSent: 10,
  // An Envoy sends its preface with its first write; 5 s covers a loaded node and no slow-loris.
  prefaceTimeoutMs: 5_000,
  // An Envoy keeps its ADS stream open for the connection's life: a connection without a stream for
  // 5 minutes is not an Envoy at work.
  idleTimeoutMs: 5 * 60_000,
  // An Envoy writes a frame whole; even a 1 MiB frame needs only 100 KB/s to arrive in time.
  frameTimeoutMs: 10_000,
  maxConnections: 10_000,
  // gRPC requests carry a few short headers; this is far above them and far below abuse.
  maxHeaderListBytes: 16 * 1024,
  headerTableBytes: 4096,
};

/** The names limits go by in metrics (`limit` label) and logs. */
export const Http2Limit = {
  OUTBOUND_CONTROL_FRAMES: 'outbound_control_frames',
  PING_FLOOD: 'ping_flood',
  SETTINGS_FLOOD: 'settings_flood',
  CONTINUATION_FLOOD: 'continuation_flood',
  HEADER_BLOCK_BYTES: 'header_block_bytes',
  HEADER_LIST_BYTES: 'header_list_bytes',
  EMPTY_FRAMES: 'empty_frames',
  STREAM_RESETS: 'stream_resets',
  NEW_STREAMS: 'new_streams',
  PRIORITY_FLOOD: 'priority_flood',
  WINDOW_UPDATE_FLOOD: 'window_update_flood',
  PREFACE_TIMEOUT: 'preface_timeout',
  IDLE_TIMEOUT: 'idle_timeout',
  FRAME_TIMEOUT: 'frame_timeout',
  MAX_CONNECTIONS: 'max_connections',
} as const;
export type Http2LimitName = (typeof Http2Limit)[keyof typeof Http2Limit];

/** `overrides` on top of the defaults; throws RangeError on a value that is not a sane limit. */
export function resolveHttp2Limits(overrides: Partial<Http2Limits> = {}): Http2Limits {
  const limits = { ...DEFAULT_HTTP2_LIMITS, ...overrides };
  for (const [name, value] of Object.entries<number | RateLimit>(limits)) {
    const numbers = typeof value === 'number' ? [value] : [value.burst, value.perSecond];
    for (const n of numbers) {
      if (!Number.isFinite(n) || n < 0) throw new RangeError(`http2 limit ${name} must be a number ≥ 0`);
    }
  }
  return limits;
}

/** Connections cut off for crossing a limit, as events (for metrics and tests). */
export class Http2LimitReports extends EventEmitter<{ exceeded: [limit: Http2LimitName, peer: string] }> {
  readonly #counts = new Map<Http2LimitName, number>();

  report(limit: Http2LimitName, peer: string): void {
    this.#counts.set(limit, (this.#counts.get(limit) ?? 0) + 1);
    this.emit('exceeded', limit, peer);
  }

  /** How many connections crossed `limit` so far. */
  count(limit: Http2LimitName): number {
    return this.#counts.get(limit) ?? 0;
  }

  /**
   * Log lines about misbehaving peers: up to 20 at once and 5 a second after that. `take()` returns
   * undefined when a line is to be dropped, else how many were dropped since the last one written.
   */
  logBudget(rate: RateLimit = { burst: 20, perSecond: 5 }): { take(): number | undefined } {
    const bucket = new TokenBucket(rate, Date.now());
    let dropped = 0;
    return {
      take: () => {
        if (!bucket.take(Date.now())) {
          dropped += 1;
          return undefined;
        }
        const count = dropped;
        dropped = 0;
        return count;
      },
    };
  }
}

/** A token bucket over a millisecond clock; one per connection per rate limit. */
export class TokenBucket {
  readonly #limit: RateLimit;
  #tokens: number;
  #updatedAt: number;

  constructor(limit: RateLimit, now: number) {
    this.#limit = limit;
    this.#tokens = limit.burst;
    this.#updatedAt = now;
  }

  /** Takes one token; false when none is left. */
  take(now: number): boolean {
    const elapsed = now - this.#updatedAt;
    if (elapsed > 0) {
      this.#tokens = Math.min(this.#limit.burst, this.#tokens + (elapsed * this.#limit.perSecond) / 1000);
      this.#updatedAt = now;
    }
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}
