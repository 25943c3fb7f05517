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
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
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
}

export interface FileSource {
  /** Absolute path of the watched file. */
  readonly path: string;
  close(): Promise<void>;
}

export const DEFAULT_POLL_INTERVAL_MS = 250;
export const DEFAULT_SETTLE_MS = 30;

/** Names of the events this module logs (the `event` field), for log filters and tests. */
export const FileSourceEvent = {
  APPLIED: 'source.file.applied',
  REJECTED: 'source.file.rejected',
  MISSING: 'source.file.missing',
  READ_FAILED: 'source.file.read-failed',
  WATCH_FAILED: 'source.file.watch-failed',
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

  constructor(options: FileSourceOptions) {
    this.path = path.resolve(options.path);
    this.#displayPath = options.path;
    this.#store = options.store;
    this.#logger = (options.logger ?? silentLogger).child({ component: 'source.file', path: options.path });
    this.#pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    this.#settleMs = options.settleMs ?? DEFAULT_SETTLE_MS;
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
    await this.#running;
  }

  async #initialLoad(): Promise<void> {
    let text: string;
    try {
      const signature = await this.#signature();
      text = await readFile(this.path, 'utf8');
      this.#lastSignature = signature;
    } catch (error) {
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
      if (isMissing(error)) {
        if (!this.#missingReported) {
          this.#missingReported = true;
          this.#logger.warn(
            { event: FileSourceEvent.MISSING },
            `endpoints file ${this.#displayPath} is missing; keeping the last good state until it is back`,
          );
        }
      } else {
        this.#logger.error(
          { event: FileSourceEvent.READ_FAILED, error: readFailure(error) },
          `endpoints file ${this.#displayPath}: cannot read it (${readFailure(error)}); keeping the last good state`,
        );
      }
      return;
    }
    if (!forceRead && signature === this.#lastSignature) return;

    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      // Gone between stat and read (a rename-replace in progress): the next event or poll retries.
      if (!isMissing(error)) {
        this.#logger.error(
          { event: FileSourceEvent.READ_FAILED, error: readFailure(error) },
          `endpoints file ${this.#displayPath}: cannot read it (${readFailure(error)}); keeping the last good state`,
        );
      }
      return;
    }
    if (this.#closed) return;
    this.#lastSignature = signature;
    this.#missingReported = false;
    if (text === this.#appliedText) {
      this.#unsettledText = undefined;
      return;
    }
    try {
      this.#apply(text);
    } catch (error) {
      this.#reject(text, errorMessage(error));
    }
  }

  #apply(text: string): void {
    const services = parseEndpointsFile(text);
    const change = this.#store.replaceAll(services);
    this.#appliedText = text;
    this.#unsettledText = undefined;
    this.#reportedInvalidText = undefined;
    this.#logger.info(
      {
        event: FileSourceEvent.APPLIED,
        services: services.length,
        changed: change.changed.length,
        removed: change.removed.length,
      },
      `endpoints file ${this.#displayPath} applied: ${services.length} services (${change.changed.length} changed, ${change.removed.length} removed)`,
    );
  }

  #reject(text: string, reason: string): void {
    if (text === this.#reportedInvalidText) return;
    if (text !== this.#unsettledText) {
      // Possibly a write caught halfway; look again once the writer had a moment to finish.
      this.#unsettledText = text;
      if (this.#settleTimer) clearTimeout(this.#settleTimer);
      this.#settleTimer = setTimeout(() => {
        this.#settleTimer = undefined;
        this.#schedule(true);
      }, this.#settleMs);
      this.#settleTimer.unref();
      return;
    }
    this.#unsettledText = undefined;
    this.#reportedInvalidText = text;
    this.#logger.error(
      { event: FileSourceEvent.REJECTED, reason },
      `endpoints file ${this.#displayPath} rejected: ${reason}; keeping the last good state`,
    );
  }

  async #signature(): Promise<string> {
    const stats = await stat(this.path, { bigint: true });
    return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}:${stats.ctimeNs}`;
  }
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
