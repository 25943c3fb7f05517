/** The timers a demo component owns, so stopping it cancels every action it still had pending. */
export class OwnedTimers {
  readonly #pending = new Set<NodeJS.Timeout>();

  /** Runs `action` after `ms` unless cancelAll() comes first. */
  later(ms: number, action: () => void): void {
    const timer = setTimeout(() => {
      this.#pending.delete(timer);
      action();
    }, ms);
    this.#pending.add(timer);
  }

  cancelAll(): void {
    for (const timer of this.#pending) clearTimeout(timer);
    this.#pending.clear();
  }
}
