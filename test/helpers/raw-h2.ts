/**
 * A frame-level HTTP/2 client for limit and attack tests: it writes whatever frames a test builds, valid
 * or not, optionally never reads, and records when the server sent GOAWAY (and with which code) and when
 * it closed the connection.
 */
import net from 'node:net';
import {
  CONNECTION_PREFACE,
  encodeFrame,
  encodeSettings,
  Flags,
  FRAME_HEADER_BYTES,
  FrameType,
  readFrameHeader,
} from '../../src/http2/frames.js';
import { encodeHeaderBlock, type HeaderField } from '../../src/http2/hpack.js';

export interface RawFrame {
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly payload: Buffer;
}

export interface CutOff {
  /** The GOAWAY's error code, or undefined when the connection closed without one being read. */
  readonly goawayCode: number | undefined;
  /** performance.now() when the GOAWAY or the close arrived, whichever came first. */
  readonly at: number;
}

export class RawH2Client {
  readonly socket: net.Socket;
  readonly frames: RawFrame[] = [];
  goaway: { code: number; at: number } | undefined;
  closedAt: number | undefined;
  readonly connected: Promise<void>;
  readonly reads: boolean;
  #input: Buffer = Buffer.alloc(0);

  /** With `read: false` the socket is never read: the server's bytes pile up in the kernel. */
  constructor(port: number, options: { read?: boolean; keepFrames?: boolean } = {}) {
    const keepFrames = options.keepFrames ?? true;
    this.reads = options.read !== false;
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.setNoDelay(true);
    this.connected = new Promise((resolve) => {
      this.socket.once('connect', () => {
        resolve();
      });
    });
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => {
      this.closedAt ??= performance.now();
    });
    if (options.read === false) {
      this.socket.pause();
      return;
    }
    this.socket.on('data', (chunk: Buffer) => {
      this.#input = this.#input.length === 0 ? chunk : Buffer.concat([this.#input, chunk]);
      let at = 0;
      while (this.#input.length - at >= FRAME_HEADER_BYTES) {
        const header = readFrameHeader(this.#input, at);
        const end = at + FRAME_HEADER_BYTES + header.length;
        if (end > this.#input.length) break;
        const payload = this.#input.subarray(at + FRAME_HEADER_BYTES, end);
        if (header.type === FrameType.GOAWAY && this.goaway === undefined) {
          this.goaway = { code: payload.readUInt32BE(4), at: performance.now() };
        }
        if (keepFrames) {
          this.frames.push({ type: header.type, flags: header.flags, streamId: header.streamId, payload });
        }
        at = end;
      }
      this.#input = Buffer.from(this.#input.subarray(at));
    });
  }

  /** The connection preface and a SETTINGS frame. */
  start(settings: ReadonlyArray<readonly [number, number]> = []): void {
    this.socket.write(Buffer.concat([CONNECTION_PREFACE, encodeSettings(settings)]));
  }

  /** Writes frames; false once the socket's buffer is full (the server is not reading). */
  send(...frames: Buffer[]): boolean {
    if (this.socket.destroyed) return false;
    return this.socket.write(frames.length === 1 ? frames[0]! : Buffer.concat(frames));
  }

  /** The first sign of being cut off: a GOAWAY read or the socket closed. */
  get cutOff(): CutOff | undefined {
    if (this.goaway !== undefined && (this.closedAt === undefined || this.goaway.at <= this.closedAt)) {
      return { goawayCode: this.goaway.code, at: this.goaway.at };
    }
    if (this.closedAt !== undefined) return { goawayCode: this.goaway?.code, at: this.closedAt };
    return undefined;
  }

  of(type: number, streamId?: number): RawFrame[] {
    return this.frames.filter((f) => f.type === type && (streamId === undefined || f.streamId === streamId));
  }

  /** Waits until `done()`, polling; throws after `timeoutMs`. */
  async until(what: string, done: () => boolean, timeoutMs = 3000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!done()) {
      if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** A gRPC request's HEADERS frame for `path`. */
export function requestFrame(streamId: number, path: string, flags: number = Flags.END_HEADERS): Buffer {
  const fields: HeaderField[] = [
    [':method', 'POST'],
    [':scheme', 'http'],
    [':path', path],
    [':authority', 'test'],
    ['content-type', 'application/grpc'],
    ['te', 'trailers'],
  ];
  return encodeFrame(FrameType.HEADERS, flags, streamId, encodeHeaderBlock(fields));
}

export const pingFrame = (n: number): Buffer => {
  const payload = Buffer.alloc(8);
  payload.writeUInt32BE(n >>> 0, 4);
  return encodeFrame(FrameType.PING, 0, 0, payload);
};

export const rstStreamFrame = (streamId: number, code: number): Buffer => {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(code);
  return encodeFrame(FrameType.RST_STREAM, 0, streamId, payload);
};

export const priorityFrame = (streamId: number, dependsOn: number): Buffer => {
  const payload = Buffer.alloc(5);
  payload.writeUInt32BE(dependsOn);
  payload[4] = 15;
  return encodeFrame(FrameType.PRIORITY, 0, streamId, payload);
};
