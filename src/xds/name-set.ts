/**
 * A set of resource names that fills and empties on every push to every stream: the names changed
 * since the last push, the names that must be sent. A Set would do, except that V8 gives a Set a new
 * table each time it is cleared or emptied. At 1000 streams that was a table per stream per change,
 * each living until the next change: long enough to be copied by a young-generation GC, then promoted,
 * then left for a full GC. Here a removed name stays as an entry marked absent, and absent entries are
 * dropped together once more than a few have piled up.
 */
export class NameSet {
  /** name → present; false entries are removed names kept for reuse. */
  readonly #entries = new Map<string, boolean>();
  #size = 0;

  get size(): number {
    return this.#size;
  }

  has(name: string): boolean {
    return this.#entries.get(name) === true;
  }

  add(name: string): void {
    if (this.#entries.get(name) === true) return;
    this.#entries.set(name, true);
    this.#size += 1;
  }

  delete(name: string): boolean {
    if (this.#entries.get(name) !== true) return false;
    this.#entries.set(name, false);
    this.#size -= 1;
    this.#dropAbsentIfMany();
    return true;
  }

  clear(): void {
    if (this.#size === 0) return;
    for (const name of this.#entries.keys()) this.#entries.set(name, false);
    this.#size = 0;
    this.#dropAbsentIfMany();
  }

  /** The names, in the order first added. An array: a generator's per-name results were most of a push's garbage. */
  toArray(): string[] {
    const names: string[] = [];
    this.#entries.forEach((present, name) => {
      if (present) names.push(name);
    });
    return names;
  }

  #dropAbsentIfMany(): void {
    // Once they are many and most of the Map: dropping is O(entries), so it must not run every time.
    const absent = this.#entries.size - this.#size;
    if (absent <= MAX_ABSENT_ENTRIES || absent < this.#size) return;
    if (this.#size === 0) {
      this.#entries.clear();
      return;
    }
    this.#entries.forEach((present, name) => {
      if (!present) this.#entries.delete(name);
    });
  }
}

const MAX_ABSENT_ENTRIES = 32;
