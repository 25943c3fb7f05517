/**
 * Waiting, inside readygate, until a pod is drained from every Envoy: re-checks `drainVerdict` whenever an
 * Envoy ACKs, NACKs, connects or disconnects and whenever the served EDS changes, so the answer comes on
 * the ACK that makes it true, not on a poll interval.
 */
import type { PodKey, RoutingHistory } from '../readiness/routing-history.js';
import { drainVerdict, type Verdict } from '../readiness/verdicts.js';
import type { SyncStatus } from '../xds/sync-status.js';

export interface DrainWaitSources {
  readonly sync: SyncStatus;
  readonly history: RoutingHistory;
}

/** Longest wait one request may ask for; a longer preStop wait is several requests (the CLI loops). */
export const MAX_DRAIN_WAIT_MS = 5 * 60_000;

export interface DrainWaitResult extends Verdict {
  readonly waitedMs: number;
}

/**
 * Resolves when the pod is drained everywhere, or at `timeoutMs` / when `signal` aborts with the last
 * verdict (ok false, naming the Envoys still routing to it).
 */
export function waitForDrain(
  sources: DrainWaitSources,
  pod: PodKey,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<DrainWaitResult> {
  const started = performance.now();
  const check = (): Verdict => drainVerdict(pod, sources.history, sources.sync.streams);
  const first = check();
  if (first.ok || timeoutMs <= 0 || signal?.aborted)
    return Promise.resolve({ ...first, waitedMs: performance.now() - started });
  return new Promise((resolve) => {
    const { sync, history } = sources;
    let scheduled: NodeJS.Immediate | undefined;
    const finish = (verdict: Verdict): void => {
      clearTimeout(timer);
      if (scheduled) clearImmediate(scheduled);
      for (const event of EVENTS) sync.off(event, onEvent);
      stopHistory();
      signal?.removeEventListener('abort', onAbort);
      resolve({ ...verdict, waitedMs: performance.now() - started });
    };
    // Coalesced to one check per tick: a burst of ACKs from many Envoys costs one evaluation.
    const onEvent = (): void => {
      scheduled ??= setImmediate(() => {
        scheduled = undefined;
        const verdict = check();
        if (verdict.ok) finish(verdict);
      });
    };
    const onAbort = (): void => {
      finish(check());
    };
    const timer = setTimeout(
      () => {
        finish(check());
      },
      Math.min(timeoutMs, MAX_DRAIN_WAIT_MS),
    );
    for (const event of EVENTS) sync.on(event, onEvent);
    const stopHistory = history.onChange(onEvent);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

const EVENTS = ['ack', 'nack', 'connect', 'disconnect'] as const;
