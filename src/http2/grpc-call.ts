/**
 * What a bidirectional gRPC method handler (AdsService) sees of a call and of the connection it came
 * on, apart from the server that carries them: readygate's own engine (grpc-transport.ts) in production,
 * and node:http2 in bench:xds (bench/node-http2-grpc.ts), so the whole ADS server can be measured on
 * either with nothing else changed.
 */

/**
 * A client connection as a method handler sees it: who it is, whether it still reads what it is sent,
 * and a way to end it. One object per connection, shared by its calls (AdsService keys its per-connection
 * send budget and stall watch on it).
 */
export interface GrpcConnection {
  readonly peer: string;
  /** Who the peer's verified client certificate names (mTLS); undefined without one. */
  readonly identity: string | undefined;
  /**
   * With `send`, sends a PING behind the data written since the last probe, unless one is out: its
   * answer tells that the peer still reads. Returns how long the probe out has gone unanswered (0 if
   * none).
   */
  probeDrain(now: number, send: boolean): number;
  /** False once the connection is going away: its calls are about to close, or have. */
  readonly open: boolean;
  /** GOAWAY(ENHANCE_YOUR_CALM) with `message`, then the connection is dropped; its calls close. */
  abort(message: string): void;
}

/** One server side of a bidirectional-streaming call. */
export interface GrpcCall {
  readonly peer: string;
  /** Who the peer's verified client certificate names (mTLS); undefined without one. */
  readonly identity: string | undefined;
  readonly connection: GrpcConnection;
  /** A method, not a getter: a message handler may finish the call between two reads. */
  isFinished(): boolean;
  /**
   * Writes one message made of `parts`; false means the stream's buffer is full and `onDrain` will
   * follow. `onWritten` runs once the bytes are handed to the connection's socket; if the call dies
   * first it does not run, so a caller settles what is left in `onClose`.
   */
  write(parts: readonly Buffer[], onWritten: () => void): boolean;
  /** Ends the call with a status once what was written has gone out; later calls do nothing. */
  finish(status: number, message: string): void;
}

/** What a method handler gets told about its call. */
export interface BidiCallHandlers {
  /** One request message; the bytes may be a view of a larger chunk, valid only during this call. */
  onMessage(bytes: Buffer): void;
  /** Writes were refused for a full buffer and it has drained. */
  onDrain(): void;
  /** The call is over, for any reason; called exactly once. */
  onClose(): void;
}

export type BidiMethodHandler = (call: GrpcCall) => BidiCallHandlers;

/** A gRPC server as its owner drives it: GrpcHttp2Server, or bench:xds's node:http2 server. */
export interface GrpcServer {
  /** Listens on `host:port` (0 = any free port); resolves to the bound port. */
  listen(host: string, port: number): Promise<number>;
  /** Stops accepting, ends open connections gracefully, and drops those still open after `graceMs`. */
  close(graceMs: number): Promise<void>;
}
