/**
 * The file source: an endpoints file (format in file-format.ts) watched for edits and written to the
 * EndpointStore as one whole snapshot per good version of the file.
 *
 * Watching: fs.watch on the *directory*, because editors and `mv`-style atomic writes replace the file
 * (a watch on the file itself follows the old inode and goes quiet), and Kubernetes ConfigMap mounts swap
 * a `..data` symlink. Events for the file itself always trigger a read; other events in the directory
 * trigger a stat, and a read only when the file's identity or timestamps moved. A slow stat poll backs
 * the watch up where filesystem events get lost (network and some overlay filesystems).
 *
 * No debounce: events in one tick are coalesced and the file is read at once, so an edit reaches the
 * store in milliseconds. The only wait is for content that does not parse: a writer that truncates and
 * then writes is caught mid-write, so a rejection is only reported if the same content is still there a
 * moment later. An invalid version is never applied; the last good state stays in the store.
 *
 * Whether the file's current content is the one being served is visible beyond the log: the
 * readygate_file_source_valid gauge and a warning in /readyz (which stays 200: the last good version is
 * still served, and pulling every replica out of rotation over a bad edit would turn a typo into an outage).
 *
 * A file that disappears is only reported after a grace period: editors save by renaming the old file
 * away and writing a new one, and that gap is not news.
 */
import { watch, type BigIntStats, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';
import type { Readiness } from '../admin/server.js';
import { ErrorCode, ReadygateError, errorMessage } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { EndpointStore } from '../model/store.js';
import { parseEndpointsFile } from './file-format.js';

export interface FileSourceOptions {
  /** The endpoints file; relative paths resolve against the working directory. */
  readonly path: string;
  readonly store: EndpointStore;
  readonly logger?: Logger;
  /** Safety-net stat poll for lost filesystem events; 0 turns it off. Default 250 ms. */
  readonly pollIntervalMs?: number;
  /** How long unparsable content must stay unchanged before it is reported as rejected. Default 30 ms. */
  readonly settleMs?: number;
  /** --source-file-max-size: a larger file is rejected without being read. Default 32 MiB. */
  readonly maxBytes?: number;
  /** How long the file may be missing before that is reported (save-by-rename gap). Default 2 s. */
  readonly missingGraceMs?: number;
  /** Where readygate_file_source_valid is registered (serve's registry). */
  readonly registry?: Registry;
}

export interface FileSource {
  /** Absolute path of the watched file. */
  readonly path: string;
  /** false while the file's current content is rejected (invalid, too large, unreadable, missing). */
  readonly valid: boolean;
  /** Always ready once loaded (the last good version is served); a warning while the file is rejected. */
  readiness(): Readiness;
  close(): Promise<void>;
}

export const DEFAULT_POLL_INTERVAL_MS = 250;
export const DEFAULT_SETTLE_MS = 30;
export const DEFAULT_MAX_BYTES = 32 * 2 ** 20;
/**
 * Editors (vim's default backupcopy, many IDEs) rename the old file away and then write the new one; the
 * gap is milliseconds, but a loaded machine or a slow network filesystem can stretch it. Two seconds is
 * long enough for that and short enough that a real deletion is reported before anyone wonders.
 */
export const DEFAULT_MISSING_GRACE_MS = 2000;
/** From this size on, a load logs a line before parsing (parsing YAML takes about a second per MB). */
export const LARGE_FILE_BYTES = 2 ** 20;

/** Names of the events this module logs (the `event` field), for log filters and tests. */
export const FileSourceEvent = {
  APPLIED: 'source.file.applied',
  REJECTED: 'source.file.rejected',
  MISSING: 'source.file.missing',
  READ_FAILED: 'source.file.read-failed',
  WATCH_FAILED: 'source.file.watch-failed',
  LOADING: 'source.file.loading',
  VALID_AGAIN: 'source.file.valid-again',
} as const;

/**
 * Loads the file, writes it to the store, marks the store synced and starts watching. A first load
 * that fails throws ReadygateError(SOURCE_FILE_INVALID): there is no last good state to fall back on.
 */
export async function startFileSource(options: FileSourceOptions): Promise<FileSource> {
  const source = new WatchedEndpointsFile(options);
  await source.start();
  return source;
}

/** How many checks one run may chain before yielding to the event loop (a writer that never stops). */
const MAX_CHECKS_PER_RUN = 8;

class WatchedEndpointsFile implements FileSource {
  readonly path: string;
  readonly #displayPath: string;
  readonly #store: EndpointStore;
  readonly #logger: Logger;
  readonly #pollIntervalMs: number;
  readonly #settleMs: number;
  readonly #maxBytes: number;
  readonly #missingGraceMs: number;

  #watcher: FSWatcher | undefined;
  /** Inode of the directory the watch was set on; undefined when not known (first watch). */
  #watchedInode: bigint | undefined;
  #pollTimer: NodeJS.Timeout | undefined;
  #settleTimer: NodeJS.Timeout | undefined;
  #closed = false;
  /** Events before the first load completes only mark it stale, so two loads never race. */
  #loaded = false;
  #staleDuringLoad = false;

  /** A check is queued (setImmediate) or running; further events only raise the flags below. */
  #scheduled = false;
  #running: Promise<void> | undefined;
  #again = false;
  /** The next check must read even if stat looks unchanged (an event named the file itself). */
  #forceRead = false;

  /** dev:ino:size:mtime:ctime of the version last read; a stat that matches skips the read. */
  #lastSignature: string | undefined;
  #appliedText: string | undefined;
  /** Unparsable text seen once and waiting for the settle check before it is reported. */
  #unsettledText: string | undefined;
  #reportedInvalidText: string | undefined;
  #missingReported = false;
  /** When the file was first found missing in the current absence (performance.now()). */
  #missingSince: number | undefined;
  #missingTimer: NodeJS.Timeout | undefined;
  /** Why the file's current content is not the one served; undefined while it is. */
  #problem: string | undefined;
  #appliedAt: Date | undefined;

  constructor(options: FileSourceOptions) {
    this.path = path.resolve(options.path);
    this.#displayPath = options.path;
    this.#store = options.store;
    this.#logger = (options.logger ?? silentLogger).child({ component: 'source.file', path: options.path });
    this.#pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    this.#settleMs = options.settleMs ?? DEFAULT_SETTLE_MS;
    this.#maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
    this.#missingGraceMs = options.missingGraceMs ?? DEFAULT_MISSING_GRACE_MS;
    if (options.registry) this.#registerGauge(options.registry);
  }

  get valid(): boolean {
    return this.#problem === undefined;
  }

  readiness(): Readiness {
    if (this.#problem === undefined) return { ready: true };
    const since = this.#appliedAt ? ` (applied ${this.#appliedAt.toISOString()})` : '';
    return {
      ready: true,
      warnings: [
        `endpoints file ${this.#displayPath} ${this.#problem}; serving its last good version${since}`,
      ],
    };
  }

  #registerGauge(registry: Registry): void {
    if (registry.getSingleMetric('readygate_file_source_valid'))
      registry.removeSingleMetric('readygate_file_source_valid');
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- collect() is called with the gauge as this
    const source = this;
    new Gauge({
      name: 'readygate_file_source_valid',
      help: "1 while the endpoints file's current content is the one served; 0 while it is rejected (invalid, over --source-file-max-size, unreadable or missing) and its last good version is served.",
      registers: [registry],
      collect() {
        this.set(source.valid ? 1 : 0);
      },
    });
  }

  async start(): Promise<void> {
    // Watch before the first read so an edit racing the load is not missed; the check after an event
    // compares content, so an event for the version just loaded costs one read and changes nothing.
    this.#startWatcher(await directoryInode(this.path));
    try {
      await this.#initialLoad();
    } catch (error) {
      await this.close();
      throw error;
    }
    this.#loaded = true;
    if (this.#staleDuringLoad) this.#schedule(true);
    if (this.#pollIntervalMs > 0) {
      this.#pollTimer = setInterval(() => {
        void this.#reviveWatcher();
        this.#schedule(false);
      }, this.#pollIntervalMs);
      this.#pollTimer.unref();
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#watcher?.close();
    this.#watcher = undefined;
    if (this.#pollTimer) clearInterval(this.#pollTimer);
    if (this.#settleTimer) clearTimeout(this.#settleTimer);
    if (this.#missingTimer) clearTimeout(this.#missingTimer);
    await this.#running;
  }

  async #initialLoad(): Promise<void> {
    let text: string;
    try {
      const signature = await this.#signature();
      text = await this.#read();
      this.#lastSignature = signature;
    } catch (error) {
      if (error instanceof FileTooLarge) {
        throw new ReadygateError(
          ErrorCode.SOURCE_FILE_INVALID,
          `endpoints file ${this.#displayPath}: ${error.message}`,
          { cause: error },
        );
      }
      throw new ReadygateError(
        ErrorCode.SOURCE_FILE_INVALID,
        `endpoints file ${this.#displayPath}: cannot read it (${readFailure(error)})`,
        { cause: error },
      );
    }
    try {
      this.#apply(text);
    } catch (error) {
      throw new ReadygateError(
        ErrorCode.SOURCE_FILE_INVALID,
        `endpoints file ${this.#displayPath}: ${errorMessage(error)}`,
        { cause: error },
      );
    }
    this.#store.markSynced();
  }

  /**
   * Reads the file, refusing one over the limit before reading it (a stat) and after (it may have grown
   * in between), so an accidental multi-gigabyte file never reaches the parser.
   */
  async #read(): Promise<string> {
    const stats = await stat(this.path, { bigint: true });
    const size = Number(stats.size);
    if (size > this.#maxBytes) throw new FileTooLarge(size, this.#maxBytes, signatureOf(stats));
    if (size >= LARGE_FILE_BYTES) {
      this.#logger.info(
        { event: FileSourceEvent.LOADING, bytes: size },
        `loading endpoints file ${this.#displayPath} (${formatBytes(size)}); parsing takes about a second per MB of YAML (JSON is much faster)`,
      );
    }
    const bytes = await readFile(this.path);
    if (bytes.length > this.#maxBytes) {
      // It grew after the stat: judge (and remember) the file as it is now.
      throw new FileTooLarge(bytes.length, this.#maxBytes, await this.#signature());
    }
    return bytes.toString('utf8');
  }

  /**
   * A watch follows the directory's inode: if the directory was replaced (or the watch broke), events
   * stop arriving. Re-watch whatever is at the path now.
   */
  async #reviveWatcher(): Promise<void> {
    const inode = await directoryInode(this.path);
    if (this.#closed || (this.#watcher && inode === this.#watchedInode)) return;
    if (inode === undefined) return;
    this.#watcher?.close();
    this.#watcher = undefined;
    this.#startWatcher(inode);
  }

  #startWatcher(inode?: bigint): void {
    if (this.#closed) return;
    const directory = path.dirname(this.path);
    this.#watchedInode = inode;
    const base = path.basename(this.path);
    try {
      // Not persistent: the servers keep the process alive; a source on its own must not.
      const watcher = watch(directory, { persistent: false }, (_event, filename) => {
        this.#schedule(filename === null || filename === base);
      });
      watcher.on('error', (error) => {
        // The directory went away or the watch broke; the poll re-creates the watch when it can.
        this.#logger.warn(
          { event: FileSourceEvent.WATCH_FAILED, error: errorMessage(error) },
          `watching ${directory} failed (${errorMessage(error)}); relying on polling until it can be re-established`,
        );
        watcher.close();
        if (this.#watcher === watcher) this.#watcher = undefined;
      });
      this.#watcher = watcher;
    } catch (error) {
      this.#logger.warn(
        { event: FileSourceEvent.WATCH_FAILED, error: errorMessage(error) },
        `cannot watch ${directory} (${errorMessage(error)}); relying on polling`,
      );
    }
  }

  /** Coalesces everything that arrives in one tick into one check; never waits longer than that. */
  #schedule(forceRead: boolean): void {
    if (this.#closed) return;
    if (!this.#loaded) {
      this.#staleDuringLoad = true;
      return;
    }
    if (forceRead) this.#forceRead = true;
    if (this.#running) {
      this.#again = true;
      return;
    }
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#running = this.#runChecks().finally(() => {
        this.#running = undefined;
        if (this.#again) {
          this.#again = false;
          this.#schedule(false);
        }
      });
    });
  }

  async #runChecks(): Promise<void> {
    for (let round = 0; round < MAX_CHECKS_PER_RUN && !this.#closed; round += 1) {
      this.#again = false;
      const forceRead = this.#forceRead;
      this.#forceRead = false;
      await this.#check(forceRead);
      if (!this.#eventsArrivedDuringCheck()) return;
    }
  }

  #eventsArrivedDuringCheck(): boolean {
    return this.#again;
  }

  async #check(forceRead: boolean): Promise<void> {
    let signature: string;
    try {
      signature = await this.#signature();
    } catch (error) {
      this.#lastSignature = undefined;
      if (isMissing(error)) this.#noteMissing();
      else this.#readFailed(error);
      return;
    }
    this.#noteFound();
    if (!forceRead && signature === this.#lastSignature) return;

    let text: string;
    try {
      text = await this.#read();
    } catch (error) {
      if (error instanceof FileTooLarge) {
        // The verdict's own signature, not the one checked above: a writer that truncates and then
        // writes may have been seen empty by that stat and full by the read's, and keying on the
        // first would report the same too-large file again at the next event.
        this.#lastSignature = error.signature;
        this.#reject(`size:${error.signature}`, error.message, { settled: true });
        return;
      }
      // Gone between stat and read (a rename-replace in progress): the next event or poll retries.
      if (!isMissing(error)) this.#readFailed(error);
      return;
    }
    if (this.#closed) return;
    this.#lastSignature = signature;
    if (text === this.#appliedText) {
      // Back to the content being served (an edit undone): nothing to apply, but no longer rejected.
      this.#unsettledText = undefined;
      this.#reportedInvalidText = undefined;
      this.#markValid();
      return;
    }
    try {
      this.#apply(text);
    } catch (error) {
      this.#reject(text, errorMessage(error));
    }
  }

  /** A missing file is reported only if it stays missing past the grace (save-by-rename is not news). */
  #noteMissing(): void {
    if (this.#missingReported) return;
    const now = performance.now();
    this.#missingSince ??= now;
    const waited = now - this.#missingSince;
    if (waited < this.#missingGraceMs) {
      if (!this.#missingTimer) {
        this.#missingTimer = setTimeout(() => {
          this.#missingTimer = undefined;
          this.#schedule(true);
        }, this.#missingGraceMs - waited);
        this.#missingTimer.unref();
      }
      return;
    }
    this.#missingReported = true;
    this.#problem = 'is missing';
    this.#logger.warn(
      { event: FileSourceEvent.MISSING, graceMs: this.#missingGraceMs },
      `endpoints file ${this.#displayPath} is missing (for ${this.#missingGraceMs} ms); keeping the last good state until it is back`,
    );
  }

  #noteFound(): void {
    this.#missingSince = undefined;
    this.#missingReported = false;
    if (this.#missingTimer) clearTimeout(this.#missingTimer);
    this.#missingTimer = undefined;
  }

  #readFailed(error: unknown): void {
    const reason = readFailure(error);
    if (this.#problem !== `cannot be read (${reason})`)
      this.#logger.error(
        { event: FileSourceEvent.READ_FAILED, error: reason },
        `endpoints file ${this.#displayPath}: cannot read it (${reason}); keeping the last good state`,
      );
    this.#problem = `cannot be read (${reason})`;
  }

  #apply(text: string): void {
    const started = performance.now();
    const services = parseEndpointsFile(text);
    const change = this.#store.replaceAll(services);
    const ms = Math.round(performance.now() - started);
    const bytes = Buffer.byteLength(text);
    this.#appliedText = text;
    this.#appliedAt = new Date();
    this.#unsettledText = undefined;
    this.#reportedInvalidText = undefined;
    this.#logger.info(
      {
        event: FileSourceEvent.APPLIED,
        services: services.length,
        changed: change.changed.length,
        removed: change.removed.length,
        bytes,
        ms,
      },
      `endpoints file ${this.#displayPath} applied: ${services.length} services (${change.changed.length} changed, ${change.removed.length} removed; ${formatBytes(bytes)} in ${ms} ms)`,
    );
    this.#markValid();
  }

  #markValid(): void {
    if (this.#problem === undefined) return;
    const was = this.#problem;
    this.#problem = undefined;
    this.#logger.info(
      { event: FileSourceEvent.VALID_AGAIN, was },
      `endpoints file ${this.#displayPath} is valid again (it ${was}); serving its current content`,
    );
  }

  /**
   * `key` identifies the rejected content (the text, or the size signature of a file too large to
   * read), so the same rejection is logged once. Content that does not parse gets a second look after
   * settleMs; a size verdict is settled at once.
   */
  #reject(key: string, reason: string, options: { settled?: boolean } = {}): void {
    if (key === this.#reportedInvalidText) return;
    if (options.settled !== true && key !== this.#unsettledText) {
      // Possibly a write caught halfway; look again once the writer had a moment to finish.
      this.#unsettledText = key;
      if (this.#settleTimer) clearTimeout(this.#settleTimer);
      this.#settleTimer = setTimeout(() => {
        this.#settleTimer = undefined;
        this.#schedule(true);
      }, this.#settleMs);
      this.#settleTimer.unref();
      return;
    }
    this.#unsettledText = undefined;
    this.#reportedInvalidText = key;
    this.#problem = `was rejected: ${reason}`;
    this.#logger.error(
      { event: FileSourceEvent.REJECTED, reason },
      `endpoints file ${this.#displayPath} rejected: ${reason}; keeping the last good state`,
    );
  }

  async #signature(): Promise<string> {
    return signatureOf(await stat(this.path, { bigint: true }));
  }
}

/** Identity, size and timestamps: what tells one version of the file from the next without reading it. */
function signatureOf(stats: BigIntStats): string {
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}:${stats.ctimeNs}`;
}

class FileTooLarge extends Error {
  constructor(
    size: number,
    max: number,
    /** The signature of the file this verdict was made on (signatureOf). */
    readonly signature: string,
  ) {
    super(
      `the file is ${formatBytes(size)} (${size} bytes), over --source-file-max-size ${formatBytes(max)}`,
    );
  }
}

/** 10.2 MiB, 512.0 KiB, 900 B: for log lines, where exact bytes are in a field next to it. */
export function formatBytes(bytes: number): string {
  if (bytes >= 2 ** 20) return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

async function directoryInode(file: string): Promise<bigint | undefined> {
  try {
    return (await stat(path.dirname(file), { bigint: true })).ino;
  } catch {
    return undefined;
  }
}

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function readFailure(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'it is a directory';
  return code ?? errorMessage(error);
}
