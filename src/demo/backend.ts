/**
 * One container of the demo's Deployment: an in-process HTTP server on its own 127.0.0.x address. It is
 * really started and stopped — the listening socket opens after a boot delay and is closed on exit — so
 * every failure a gateway sees is a real refused connection, a real 503 from the app, or a real
 * connection torn down mid-request.
 *
 * `GET /ready` is the readiness check (200 once warm and not shutting down); any other path is the app:
 * 503 while warming up, else 200 with the pod name — later by a cold penalty for a while after the
 * warm-up, when the pod is configured cold (the slow-start replica).
 */
import http from 'node:http';
import net, { type Socket } from 'node:net';
import { ErrorCode, ReadygateError } from '../errors.js';
import { OwnedTimers } from './timers.js';

export interface BackendOptions {
  readonly pod: string;
  readonly host: string;
  readonly port: number;
  readonly bootMs: number;
  readonly warmupMs: number;
  /** Cold after the warm-up: answers are slower by up to `coldLatencyMs`, falling to 0 over this. 0: none. */
  readonly coldMs?: number;
  readonly coldLatencyMs?: number;
  /** Called when the warm-up ends (the app starts serving, and its cold period, if any, starts). */
  readonly onWarm?: () => void;
  /** SHUTDOWN_LINGER_MS unless given (tests shorten it). */
  readonly shutdownLingerMs?: number;
}

export type BackendState = 'booting' | 'warming' | 'serving' | 'terminating' | 'exited';

/**
 * After SIGTERM, how long open connections are still served (each answer with `Connection: close`)
 * before the process exits and cuts what is left. An Envoy ACKs an EDS update on its main thread before
 * its workers apply it, and on a CPU-starved machine (all of this shares one) requests still reached a
 * pod up to about a second after drain-wait returned on that ACK; a request cut then is a 502. 2 s is the
 * app's shutdown budget for that, as docs/rollouts.md leaves "the rest of the grace period" to it.
 */
const SHUTDOWN_LINGER_MS = 2000;
/** Bound on the event-loop turns an exiting (or crashing) app spends on requests that already arrived. */
const MAX_EXIT_TURNS = 20;

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
  /** performance.now() when the warm-up ended; undefined before. */
  #warmAt: number | undefined;
  #crashing = false;
  #exited = false;
  readonly #exit: Promise<void>;
  #markExited: () => void = () => undefined;
  /** Requests answered, by status; the table does not need it, the demo's log does. */
  readonly answered = new Map<number, number>();
  /** App requests (not probes) the crash held and cut: each is one request that reached the app. */
  heldRequests = 0;
  /** App requests that arrived after SIGTERM (answered, with `Connection: close`). */
  requestsAfterSigterm = 0;
  /** Connections still open when the process exited (cut, with whatever was unread on them). */
  connectionsCut = 0;
  /**
   * App requests answered after the linger ended, read in the last turns before exit: requests that had
   * arrived while the event loop was stalled (see #answerWhatArrived).
   */
  requestsAtExit = 0;

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
      if (this.#state !== 'warming') return;
      this.#state = 'serving';
      this.#warmAt = performance.now();
      this.#options.onWarm?.();
    });
  }

  /**
   * SIGTERM, as a careful app handles it: the listener closes after one turn of the event loop, which
   * accepts connections already queued in its backlog (new connections are refused from then on);
   * requests still arriving on open keep-alive connections are answered with `Connection: close`, and
   * after SHUTDOWN_LINGER_MS (or once every connection is closed) the process exits. Serving on after the
   * pod was deleted is the preStop hook's job (a sleep, or drain-wait), not the app's.
   */
  terminate(): void {
    if (this.#state === 'terminating' || this.#exited || this.#crashing) return;
    this.#state = 'terminating';
    void this.#exitGracefully();
  }

  /**
   * A crash mid-request: requests that arrive from now on are held (the app is stuck on them), and after
   * `holdMs` the process dies — listener and every connection closed, none of them answered.
   */
  crash(holdMs: number): void {
    if (this.#exited || this.#crashing) return;
    this.#crashing = true;
    this.#timers.later(holdMs, () => {
      void this.#crashExit();
    });
  }

  /**
   * The crash's end. Its timer, like the shutdown linger's, runs before I/O in its turn of the event loop:
   * after a stall, requests a gateway had already written (unread in an open connection's buffer, or on a
   * connection still in the listen backlog) would be cut without the app ever seeing them — a 502 the
   * demo could not tell from one for a request that never reached the pod (a CI run saw 6 × 502 with 5
   * held). So the app first reads what already arrived, holding and counting it, then dies.
   */
  async #crashExit(): Promise<void> {
    await this.#turnsUntilQuiet(() => this.heldRequests);
    this.#die();
  }

  /** Teardown: gone now, whatever state it was in. */
  async kill(): Promise<void> {
    this.#die();
    await this.#exit;
  }

  #handle(request: http.IncomingMessage, response: http.ServerResponse): void {
    if (this.#crashing) {
      this.#held.add(response);
      if (request.url !== '/ready') this.heldRequests++;
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
    if (this.#state === 'terminating') {
      this.requestsAfterSigterm++;
      response.setHeader('connection', 'close');
    }
    const status = this.#state === 'warming' ? 503 : 200;
    this.answered.set(status, (this.answered.get(status) ?? 0) + 1);
    const answer = (): void => {
      response.writeHead(status, { 'content-type': 'text/plain', 'x-pod': this.pod });
      response.end(status === 200 ? `${this.pod}\n` : 'warming up\n');
    };
    const penalty = status === 200 ? this.#coldPenaltyMs() : 0;
    // The timer dies with the process (#die cancels it, and destroys the socket): a cold answer a crash
    // or an exit overtakes is cut like any other request in flight.
    if (penalty > 0) this.#timers.later(penalty, answer);
    else answer();
  }

  /** How much later a request received now is answered: the cold period's linear decay, 0 when warm. */
  #coldPenaltyMs(): number {
    const coldMs = this.#options.coldMs ?? 0;
    const latency = this.#options.coldLatencyMs ?? 0;
    if (this.#warmAt === undefined || coldMs <= 0 || latency <= 0) return 0;
    const elapsed = performance.now() - this.#warmAt;
    return elapsed >= coldMs ? 0 : Math.round(latency * (1 - elapsed / coldMs));
  }

  async #exitGracefully(): Promise<void> {
    if (this.#exited) return;
    // Connections the kernel completed but the app has not accepted yet (its event loop busy or stalled)
    // sit in the listen backlog, often with a request already written on them by a gateway that picked
    // this pod before it learnt of the deletion. Closing the listener resets every one of them — a 502
    // `upstream-connection-termination` for each such request, through every gateway at once, with no
    // connection counted as cut (issue 17). One turn of the event loop accepts them first; from then on
    // they are open connections like the others, answered with `Connection: close`, and the listener
    // closes: new connections are refused.
    await nextTurn();
    if (this.#gone()) return;
    // net.Server's close, not http.Server's: the latter also closes idle keep-alive connections at once,
    // and a connection is "idle" to Node while a request the gateway already wrote to it sits unread in
    // the socket buffer — closing it cuts that request (a 502 for a request sent before the gateway
    // stopped routing here). Open connections are instead answered with `Connection: close` (#handle).
    if (this.#server.listening) net.Server.prototype.close.call(this.#server);
    await Promise.race([
      this.#allClosed(),
      this.#delay(this.#options.shutdownLingerMs ?? SHUTDOWN_LINGER_MS),
    ]);
    await this.#answerWhatArrived();
    this.#die();
  }

  /**
   * The linger is a timer, and timers run before I/O in each turn of the event loop: after a stall (the
   * demo's pods, control planes and load generator share one loop, which a starved machine stalls for
   * seconds) the linger's timer ran first and #die cut connections whose requests — written by a gateway
   * before it stopped routing here — sat unread in their buffers: a burst of 502
   * `upstream-connection-termination` through every gateway at once (issue 17). So before exiting, the
   * app lets the loop read and answer what already arrived, turn by turn until a turn brings nothing new
   * (bounded: a gateway that keeps sending after SIGTERM is not waited for).
   */
  async #answerWhatArrived(): Promise<void> {
    this.requestsAtExit += await this.#turnsUntilQuiet(() => this.requestsAfterSigterm);
  }

  /**
   * Lets the event loop run turn by turn until a turn adds nothing to `count` (bounded by MAX_EXIT_TURNS,
   * and over once the process is gone); resolves to how much `count` grew meanwhile.
   */
  async #turnsUntilQuiet(count: () => number): Promise<number> {
    const start = count();
    for (let turn = 0; turn < MAX_EXIT_TURNS && !this.#exited; turn++) {
      const before = count();
      await nextTurn();
      if (count() === before) break;
    }
    return count() - start;
  }

  /** Resolves when no connection is open any more. */
  async #allClosed(): Promise<void> {
    while (this.#sockets.size > 0 && !this.#exited) {
      await Promise.race([
        new Promise<void>((resolve) => {
          const [first] = this.#sockets;
          first?.once('close', () => {
            resolve();
          });
        }),
        this.#exit,
      ]);
    }
  }

  #die(): void {
    if (this.#exited) return;
    this.#exited = true;
    this.#state = 'exited';
    this.#timers.cancelAll();
    // http.Server's close also stops its connection-checking timer; not listening any more is fine here.
    this.#server.close(() => undefined);
    this.connectionsCut = this.#sockets.size;
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

/**
 * Resolves once a whole I/O phase of the event loop (accepts, reads) has run after the call. One
 * setImmediate is not enough: called from an I/O callback, it runs right after the current poll phase,
 * before connections that arrived meanwhile are accepted; the second one comes after the next poll.
 */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => {
    setImmediate(() => {
      setImmediate(resolve);
    });
  });
}
