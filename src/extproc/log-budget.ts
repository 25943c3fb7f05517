/**
 * At most one log line per key per interval: the first event of a key logs, the ones after it within the
 * interval are only counted, and the next line that logs says how many were left out. Pure (the clock is
 * passed in), so an outage that maps thousands of 5xx a second writes one line per cause per interval
 * while /metrics keeps the exact counts.
 */
export class LogBudget {
  readonly #intervalMs: number;
  readonly #keys = new Map<string, { lastMs: number; suppressed: number }>();

  constructor(intervalMs: number) {
    this.#intervalMs = intervalMs;
  }

  /**
   * Whether an event of `key` at `nowMs` may log; if so, how many of its events were suppressed since
   * the last line. undefined: count it, do not log.
   */
  take(key: string, nowMs: number): { suppressed: number } | undefined {
    const entry = this.#keys.get(key);
    if (entry === undefined || nowMs - entry.lastMs >= this.#intervalMs) {
      const suppressed = entry?.suppressed ?? 0;
      this.#keys.set(key, { lastMs: nowMs, suppressed: 0 });
      return { suppressed };
    }
    entry.suppressed++;
    return undefined;
  }
}
