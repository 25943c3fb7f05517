/**
 * One container of the demo's Deployment: an in-process HTTP server on its own 127.0.0.x address. It is
 * really started and stopped — the listening socket opens after a boot delay and is closed on exit — so
 * every failure a gateway sees is a real refused connection, a real 503 from the app, or a real
 * connection torn down mid-request.
 *
 * `GET /ready` is the readiness check (200 once warm and not shutting down); any other path is the app:
 * 503 while warming up, else 200 with the pod name.
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import { ErrorCode, ReadygateError } from '../errors.js';
import { OwnedTimers } from './timers.js';

export interface BackendOptions {
  readonly pod: string;
  readonly host: string;
  readonly port: number;
  readonly bootMs: number;
  readonly warmupMs: number;
  readonly graceMs: number;
}

export type BackendState = 'booting' | 'warming' | 'serving' | 'terminating' | 'exited';

/** Upper bound for in-flight requests to finish after the listener closes (a kill after the grace period). */
const DRAIN_LIMIT_MS = 1000;

export class DemoBackend {
  readonly pod: string;
  readonly host: string;
  readonly port: number;
  readonly #options: BackendOptions;
  readonly #server: http.Server;
  readonly #sockets = new Set<Socket>();
  readonly #timers = new OwnedTimers();
  /** Requests held by crash mode; answered never, cut when the process "dies". */
  readonly #held = new Set<http.ServerResponse>();
  #state: BackendState = 'booting';
  #crashing = false;
  #exited = false;
  readonly #exit: Promise<void>;
  #markExited: () => void = () => undefined;
  /** Requests answered, by status; the table does not need it, the demo's log does. */
  readonly answered = new Map<number, number>();

  constructor(options: BackendOptions) {
    this.#options = options;
    this.pod = options.pod;
    this.host = options.host;
    this.port = options.port;
    this.#exit = new Promise((resolve) => {
      this.#markExited = resolve;
    });
    this.#server = http.createServer((request, response) => {
      this.#handle(request, response);
    });
    // Longer than any demo phase: an idle keep-alive connection closed by the app while the gateway reuses
    // it is a different failure (and a different fix) from the ones this demo is about.
    this.#server.keepAliveTimeout = 120_000;
    this.#server.headersTimeout = 121_000;
    this.#server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
  }

  get state(): BackendState {
    return this.#state;
  }

  /** Resolves once the process is gone (listener closed, every connection closed). */
  get exited(): Promise<void> {
    return this.#exit;
  }

  /** Boots: the socket opens after `bootMs`; warm after another `warmupMs`. Resolves when listening. */
  async start(): Promise<void> {
    await this.#delay(this.#options.bootMs);
    if (this.#gone()) return;
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error): void => {
        reject(
          new ReadygateError(
            ErrorCode.LISTEN_FAILED,
            `demo backend ${this.pod} cannot listen on ${this.host}:${this.port}: ${error.message}`,
            { cause: error },
          ),
        );
      };
      this.#server.once('error', onError);
      this.#server.listen({ host: this.host, port: this.port }, () => {
        this.#server.off('error', onError);
        // A listening socket that fails later takes the process down, as it would a real app.
        this.#server.on('error', () => {
          this.#die();
        });
        resolve();
      });
    });
    // Killed while binding: the listener must not outlive the process.
    if (this.#gone()) {
      this.#server.close();
      return;
    }
    this.#state = 'warming';
    this.#timers.later(this.#options.warmupMs, () => {
      if (this.#state === 'warming') this.#state = 'serving';
    });
  }

  /**
   * SIGTERM: the readiness check fails from now on, requests keep being served for the grace period,
   * then the listener closes, in-flight requests get a moment to finish, and the process exits.
   */
  terminate(): void {
    if (this.#state === 'terminating' || this.#exited || this.#crashing) return;
    this.#state = 'terminating';
    this.#timers.later(this.#options.graceMs, () => {
      void this.#exitGracefully();
    });
  }

  /**
   * A crash mid-request: requests that arrive from now on are held (the app is stuck on them), and after
   * `holdMs` the process dies — listener and every connection closed, none of them answered.
   */
  crash(holdMs: number): void {
    if (this.#exited || this.#crashing) return;
    this.#crashing = true;
    this.#timers.later(holdMs, () => {
      this.#die();
    });
  }

  /** Teardown: gone now, whatever state it was in. */
  async kill(): Promise<void> {
    this.#die();
    await this.#exit;
  }

  #handle(request: http.IncomingMessage, response: http.ServerResponse): void {
    if (this.#crashing) {
      this.#held.add(response);
      response.once('close', () => this.#held.delete(response));
      // Read the request so the gateway knows it was delivered (a crash after, not before, the request).
      request.resume();
      return;
    }
    if (request.url === '/ready') {
      const ready = this.#state === 'serving';
      response.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' });
      response.end(ready ? 'ready\n' : `${this.#state}\n`);
      return;
    }
    const status = this.#state === 'warming' ? 503 : 200;
    this.answered.set(status, (this.answered.get(status) ?? 0) + 1);
    response.writeHead(status, { 'content-type': 'text/plain', 'x-pod': this.pod });
    response.end(status === 200 ? `${this.pod}\n` : 'warming up\n');
  }

  async #exitGracefully(): Promise<void> {
    if (this.#exited) return;
    const closed = new Promise<void>((resolve) => {
      if (!this.#server.listening) {
        resolve();
        return;
      }
      this.#server.close(() => {
        resolve();
      });
    });
    // close() stops accepting and drops idle keep-alive connections; busy ones finish their request.
    this.#server.closeIdleConnections();
    await Promise.race([closed, this.#delay(DRAIN_LIMIT_MS)]);
    this.#die();
  }

  #die(): void {
    if (this.#exited) return;
    this.#exited = true;
    this.#state = 'exited';
    this.#timers.cancelAll();
    if (this.#server.listening) this.#server.close();
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
    this.#held.clear();
    this.#markExited();
  }

  /** A method, not the field, so checks after an await are not narrowed away by the compiler. */
  #gone(): boolean {
    return this.#exited;
  }

  /** Sleeps, or ends early when the process exits (its timers die with it). */
  #delay(ms: number): Promise<void> {
    return Promise.race([
      new Promise<void>((resolve) => {
        this.#timers.later(ms, resolve);
      }),
      this.#exit,
    ]);
  }
}
