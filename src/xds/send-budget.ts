/**
 * Bounds on what ADS responses may hold in memory before the network takes them, and the rule that
 * says when a connection has stopped draining. Pure bookkeeping: no timers, no sockets; the ADS
 * service (server.ts) calls in with the time.
 *
 * One process-wide budget used to bound every stream's unsent bytes. A client that never grants
 * flow-control window (or a SIGSTOPped Envoy, whose socket fills) keeps its bytes unsent for ever, so
 * a few such streams held the whole budget and no update reached anyone (issue 16). Now each
 * connection has its own budget, a child of the process-wide one: a stuck connection exhausts its
 * own, and only its own streams wait. The total paces a storm of connecting Envoys and bounds the
 * memory of all pending pushes; stuck connections can fill it only together (16 at the defaults,
 * each at its own cap). While streams wait on the total, a connection at its own cap that drains
 * nothing is closed after a short bound (DrainWatch, `pressureStallMs`) instead of the full stall
 * bound, which gives its bytes back. Letting stuck connections' bytes
 * stop counting toward the total would have kept healthy streams from ever waiting on them, but at
 * the price of the total's memory bound: a client could then park its cap's worth on one connection
 * after another.
 */

/**
 * Bytes written to streams but not yet handed to the network. Streams over budget do not queue
 * responses: they wait, and build their (latest) response once bytes drain, so a slow client gets the
 * current state once instead of a backlog of versions.
 */
export class SendBudget {
  readonly #maxBytes: number;
  readonly #parent: SendBudget | undefined;
  #inFlight = 0;
  /** Counts releases: a stall check compares it between looks, with no clock read per write. */
  #releases = 0;
  readonly #waiting = new Set<() => void>();
  /** Waits handed to the parent (the waiter → what the parent holds), to cancel there. */
  readonly #delegated = new Map<() => void, () => void>();
  #retired = false;

  /**
   * With `parent`, bytes count against both, and a stream may send while both have room, or while
   * this budget holds nothing at all (see available()).
   */
  constructor(maxBytes: number, parent?: SendBudget) {
    this.#maxBytes = maxBytes;
    this.#parent = parent;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  get releases(): number {
    return this.#releases;
  }

  /** At or over its own cap: its streams wait on it, whatever room the parent has. */
  get full(): boolean {
    return this.#inFlight >= this.#maxBytes;
  }

  /** Streams waiting on this budget itself (not on its parent). */
  get waiting(): number {
    return this.#waiting.size;
  }

  /**
   * Room here and in the parent. (Letting a connection with nothing pending pass a full total looked
   * like better isolation, but in a connect storm every Envoy then buffered its whole initial state at
   * once: 543 MB RSS instead of 220 MB at 300 streams in bench:xds.)
   */
  available(): boolean {
    return this.#inFlight < this.#maxBytes && (this.#parent === undefined || this.#parent.available());
  }

  charge(bytes: number): void {
    this.#inFlight += bytes;
    this.#parent?.charge(bytes);
  }

  release(bytes: number): void {
    if (bytes === 0) return;
    this.#inFlight -= bytes;
    this.#releases += 1;
    // The parent first: its waiters are other connections' streams, which this release may unblock.
    this.#parent?.release(bytes);
    this.#wake();
  }

  /** Calls `resume` once bytes are available again (FIFO), waiting where the block is. */
  waitFor(resume: () => void): void {
    if (this.#retired) return;
    if (this.#parent !== undefined && this.#inFlight < this.#maxBytes) this.#delegate(resume);
    else this.#waiting.add(resume);
  }

  cancel(resume: () => void): void {
    this.#waiting.delete(resume);
    const delegated = this.#delegated.get(resume);
    if (delegated !== undefined) {
      this.#delegated.delete(resume);
      this.#parent?.cancel(delegated);
    } else {
      this.#parent?.cancel(resume);
    }
  }

  /**
   * The connection is going away: nothing waiting on it is resumed. Without this, each of its streams
   * closing gave its bytes back and woke the next, which built a response for a dead connection.
   * Releases still reach the parent, where they wake other connections' streams.
   */
  retire(): void {
    this.#retired = true;
    this.#waiting.clear();
    for (const delegated of this.#delegated.values()) this.#parent?.cancel(delegated);
    this.#delegated.clear();
  }

  #delegate(resume: () => void): void {
    if (this.#delegated.has(resume)) return;
    const delegated = (): void => {
      this.#delegated.delete(resume);
      resume();
    };
    this.#delegated.set(resume, delegated);
    this.#parent?.waitFor(delegated);
  }

  #wake(): void {
    if (this.#retired) return;
    for (const resume of this.#waiting) {
      if (this.#inFlight >= this.#maxBytes) return;
      this.#waiting.delete(resume);
      // Room here but none in the total: wait there, or nothing would wake it.
      if (this.#parent !== undefined && !this.#parent.available()) this.#delegate(resume);
      else resume();
    }
  }
}

/** Why readygate closed a client connection (the label of readygate_xds_connections_closed_total). */
export type CloseReason = 'stalled';

/** What the stall check remembers about one connection between looks. */
export class DrainWatch {
  /** A budget is new with its connection: no releases yet, and the clock starts at construction. */
  #releasesSeen = 0;
  /** When this connection was last seen making progress, or with nothing pending. */
  #progressAt: number;

  constructor(now: number) {
    this.#progressAt = now;
  }

  /**
   * Whether the connection must be closed now, and why: it drained nothing for `maxStallMs`.
   * `budget` is the connection's own budget: bytes pending there and no release since the last look
   * that saw one is no progress. `unansweredProbeMs` is how long a PING sent behind its written data
   * has gone unanswered (0 if none is out): a peer that stopped reading with our bytes in its socket
   * buffers drains nothing, though nothing is pending here. `pressureStallMs`, given while streams of
   * other connections wait on the total budget, is the shorter bound for a connection at its cap.
   */
  verdict(
    now: number,
    budget: SendBudget,
    unansweredProbeMs: number,
    maxStallMs: number,
    pressureStallMs?: number,
  ): CloseReason | undefined {
    if (budget.inFlight === 0 || budget.releases !== this.#releasesSeen) {
      this.#releasesSeen = budget.releases;
      this.#progressAt = now;
    }
    if (Math.max(now - this.#progressAt, unansweredProbeMs) >= maxStallMs) return 'stalled';
    // Other connections' streams wait on the total pending budget: a connection at its own cap that
    // drains nothing is closed sooner, so that stuck peers pace healthy ones only briefly. Only at
    // its cap: in a connect storm the total is waited on as a matter of course, and a healthy Envoy
    // slow to take its initial state (well below the cap) must not be closed for it.
    if (pressureStallMs !== undefined && budget.full && now - this.#progressAt >= pressureStallMs)
      return 'stalled';
    return undefined;
  }
}
