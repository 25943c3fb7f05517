/**
 * Constant open-loop load through a setup's gateways (requests alternate between them, as a load balancer
 * in front of gateway replicas would spread them): requests start on a fixed schedule (not when the previous
 * one finished, so a slow or failing gateway cannot lower the offered rate), over keep-alive connections,
 * with a cap on requests in flight. Bounded in count and in time. Every response is recorded with its
 * status, when it was sent and how long it took.
 */
import http from 'node:http';
import type { Sample } from './tally.js';

export interface LoadOptions {
  readonly host: string;
  /** The gateways' listener ports; request n goes to ports[n % ports.length]. */
  readonly ports: readonly number[];
  readonly rate: number;
  readonly concurrency: number;
  readonly requestTimeoutMs: number;
  /** Hard bounds: the generator stops at whichever comes first. */
  readonly maxDurationMs: number;
  /** The run's time origin (performance.now() based); sample times are relative to it. */
  readonly origin: number;
  /** The phase a request belongs to, read when it is sent. */
  readonly phase: () => string;
}

export interface LoadRun {
  readonly samples: Sample[];
  /** Due requests not sent because `concurrency` were already in flight. */
  skipped(): number;
  /**
   * Resolves once every request sent so far has its sample (answered, failed or timed out; so within the
   * request timeout). Requests sent after the call are not waited for.
   */
  answered(): Promise<void>;
  /** Stops sending, waits (bounded) for requests in flight, closes the connections. */
  stop(): Promise<Sample[]>;
}

const TICK_MS = 5;
const MAX_BODY = 512;

/** The first line of a body, at most 240 characters. */
export function firstLine(body: string): string {
  const line = body.split('\n', 1)[0]?.trim() ?? '';
  return line.length > 240 ? `${line.slice(0, 239)}…` : line;
}

export function startLoad(options: LoadOptions): LoadRun {
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.concurrency });
  const samples: Sample[] = [];
  const started = performance.now();
  const maxRequests = Math.ceil((options.rate * options.maxDurationMs) / 1000);
  let sent = 0;
  let inFlight = 0;
  let skipped = 0;
  let drained: (() => void) | undefined;
  /** Sequence numbers of the requests in flight, in send order (so the oldest is first). */
  const open = new Set<number>();
  let nextSequence = 0;
  /** answered() callers: each waits until no request at or below its sequence number is open. */
  const waiters: { upTo: number; resolve: () => void }[] = [];
  const wakeWaiters = (): void => {
    const oldest = open.values().next();
    for (let i = waiters.length - 1; i >= 0; i--) {
      const waiter = waiters[i];
      if (waiter && (oldest.done === true || oldest.value > waiter.upTo)) {
        waiters.splice(i, 1);
        waiter.resolve();
      }
    }
  };

  const send = (): void => {
    const sentAt = performance.now();
    const phase = options.phase();
    const sequence = nextSequence++;
    const via = sequence % options.ports.length;
    open.add(sequence);
    inFlight++;
    let recorded = false;
    const record = (status: number, extra: Partial<Sample> = {}): void => {
      if (recorded) return;
      recorded = true;
      inFlight--;
      open.delete(sequence);
      wakeWaiters();
      const now = performance.now();
      samples.push({
        t: Math.round(sentAt - options.origin),
        phase,
        via,
        status,
        latencyMs: Math.round((now - sentAt) * 10) / 10,
        ...extra,
      });
      if (inFlight === 0) drained?.();
    };
    const request = http.get(
      {
        agent,
        host: options.host,
        port: options.ports[via],
        path: '/',
        timeout: options.requestTimeoutMs,
      },
      (response) => {
        const status = response.statusCode ?? 0;
        const extra: { -readonly [K in keyof Sample]?: Sample[K] } = {};
        if (response.headers['retry-after'] !== undefined) extra.retryAfter = true;
        const cause = response.headers['x-readygate-cause'];
        if (typeof cause === 'string') extra.cause = cause;
        const pod = response.headers['x-pod'];
        if (typeof pod === 'string') extra.pod = pod;
        // A failure's body names its reason (Envoy's local reply, the app's warm-up answer); keep its
        // first line, bounded. Successful bodies are only drained.
        const keepBody = status < 200 || status >= 300;
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => {
          if (keepBody && body.length < MAX_BODY) body += chunk;
        });
        response.once('end', () => {
          if (keepBody) extra.body = firstLine(body);
          record(status, extra);
        });
        response.on('error', () => {
          record(0, { error: 'response aborted' });
        });
      },
    );
    request.once('timeout', () => {
      request.destroy(new Error('timeout'));
    });
    request.on('error', (error: NodeJS.ErrnoException) => {
      record(0, { error: error.code ?? error.message });
    });
  };

  const timer = setInterval(() => {
    const elapsed = performance.now() - started;
    if (elapsed >= options.maxDurationMs || sent >= maxRequests) {
      clearInterval(timer);
      return;
    }
    // Catch up to the schedule after a late tick, but never beyond the bound on count.
    const due = Math.min(Math.floor((elapsed * options.rate) / 1000) + 1, maxRequests) - sent;
    for (let i = 0; i < due; i++) {
      sent++;
      if (inFlight >= options.concurrency) skipped++;
      else send();
    }
  }, TICK_MS);

  return {
    samples,
    skipped: () => skipped,
    answered: () =>
      new Promise<void>((resolve) => {
        waiters.push({ upTo: nextSequence - 1, resolve });
        wakeWaiters();
      }),
    stop: async () => {
      clearInterval(timer);
      if (inFlight > 0) {
        await new Promise<void>((resolve) => {
          const limit = setTimeout(resolve, options.requestTimeoutMs + 500);
          drained = () => {
            clearTimeout(limit);
            resolve();
          };
        });
      }
      agent.destroy();
      return samples;
    },
  };
}
