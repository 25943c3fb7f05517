/**
 * Keeps TLS material equal to its files. Kubernetes rotates a mounted Secret by swapping a `..data`
 * symlink in the mount directory, which changes no watched file's inode, so each file's directory is
 * watched, and the files are also re-read every few seconds in case the watch misses it (some volume
 * types and editors do not report). A change is checked like at startup before it is used; material
 * that does not check out is refused with one log line and a counter, and the last good material stays.
 */
import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import {
  checkTlsMaterial,
  digestOf,
  loadTlsMaterial,
  readTlsFiles,
  type TlsFileContents,
  type TlsFiles,
  type TlsMaterial,
} from './material.js';
import { noTlsMetrics, type TlsMetrics } from './metrics.js';

/** How often the files are re-read when no watch event came. */
export const DEFAULT_TLS_POLL_INTERVAL_MS = 5000;
/**
 * A change that does not check out is read again after this long before it is reported: a certificate
 * and its key written as two files (not one atomic symlink swap) are briefly a mismatched pair.
 */
const CONFIRM_DELAY_MS = 500;
/** Watch events come in bursts (several files, several events each); one read after the burst. */
const WATCH_SETTLE_MS = 100;

export type ReloadOutcome = 'unchanged' | 'reloaded' | 'refused' | 'unconfirmed';

export interface TlsReloaderOptions {
  readonly files: TlsFiles;
  readonly initial: TlsMaterial;
  readonly logger: Logger;
  readonly metrics?: TlsMetrics;
  readonly pollIntervalMs?: number;
  /** Reads the files (tests replace it); CONFIG_INVALID naming the file when one cannot be read. */
  readonly read?: (files: TlsFiles) => Promise<TlsFileContents>;
}

export class TlsReloader {
  readonly #options: TlsReloaderOptions;
  readonly #read: (files: TlsFiles) => Promise<TlsFileContents>;
  readonly #metrics: TlsMetrics;
  readonly #listeners = new Set<(material: TlsMaterial) => void>();
  #current: TlsMaterial;
  /** A failing state seen once and waiting for a second look before it is reported. */
  #suspect: string | undefined;
  /** The failing state last reported, so a bad file polled every 5 s is one line, not one a poll. */
  #reported: string | undefined;
  #running: Promise<ReloadOutcome> | undefined;
  #again = false;
  readonly #watchers: FSWatcher[] = [];
  readonly #timers = new Set<NodeJS.Timeout>();
  #poll: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: TlsReloaderOptions) {
    this.#options = options;
    this.#current = options.initial;
    this.#read = options.read ?? readTlsFiles;
    this.#metrics = options.metrics ?? noTlsMetrics;
  }

  get current(): TlsMaterial {
    return this.#current;
  }

  /** `listener` gets every new material; returns the unsubscribe function. */
  onChange(listener: (material: TlsMaterial) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Starts watching the files' directories and polling. */
  start(): void {
    const directories = new Set(
      [this.#options.files.certFile, this.#options.files.keyFile, this.#options.files.clientCaFile]
        .filter((file) => file !== undefined)
        .map((file) => path.dirname(path.resolve(file))),
    );
    for (const directory of directories) {
      try {
        const watcher = watch(directory, { persistent: false }, () => {
          this.#later(WATCH_SETTLE_MS);
        });
        // A directory that goes away (or a platform without watches) leaves the poll to notice.
        watcher.on('error', () => undefined);
        this.#watchers.push(watcher);
      } catch (error) {
        this.#options.logger.debug(
          { event: 'tls.watch-unavailable', directory, err: errorMessage(error) },
          `cannot watch ${directory}; polling only`,
        );
      }
    }
    this.#poll = setInterval(() => {
      void this.check();
    }, this.#options.pollIntervalMs ?? DEFAULT_TLS_POLL_INTERVAL_MS);
    this.#poll.unref();
  }

  close(): void {
    this.#closed = true;
    for (const watcher of this.#watchers) watcher.close();
    this.#watchers.length = 0;
    clearInterval(this.#poll);
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }

  /** Reads the files once and acts on what changed; checks never overlap. */
  check(): Promise<ReloadOutcome> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    const running = this.#checkOnce().finally(() => {
      this.#running = undefined;
      if (this.#again && !this.#closed) {
        this.#again = false;
        void this.check();
      }
    });
    this.#running = running;
    return running;
  }

  async #checkOnce(): Promise<ReloadOutcome> {
    const { files, logger } = this.#options;
    let state: string;
    let material: TlsMaterial | undefined;
    let problem = '';
    try {
      const contents = await this.#read(files);
      state = digestOf(contents);
      if (state === this.#current.digest) {
        this.#suspect = undefined;
        this.#reported = undefined;
        return 'unchanged';
      }
      material = checkTlsMaterial(files, contents);
    } catch (error) {
      problem = errorMessage(error);
      state = `unusable: ${problem}`;
    }
    if (this.#closed) return 'unchanged';
    if (material !== undefined) {
      this.#current = material;
      this.#suspect = undefined;
      this.#reported = undefined;
      this.#metrics.reloaded('ok');
      logger.info(
        { event: 'tls.reloaded', subject: material.certSubject, notAfter: material.certNotAfter },
        `TLS certificate reloaded: ${material.certSubject}, valid until ${material.certNotAfter}`,
      );
      for (const listener of this.#listeners) listener(material);
      return 'reloaded';
    }
    if (state === this.#reported) return 'refused';
    if (state !== this.#suspect) {
      this.#suspect = state;
      this.#later(CONFIRM_DELAY_MS);
      return 'unconfirmed';
    }
    this.#suspect = undefined;
    this.#reported = state;
    this.#metrics.reloaded('failed');
    logger.error(
      { event: 'tls.reload-failed', problem },
      `TLS files changed but cannot be used; keeping the previous certificate: ${problem}`,
    );
    return 'refused';
  }

  #later(delayMs: number): void {
    if (this.#closed) return;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      void this.check();
    }, delayMs);
    timer.unref();
    this.#timers.add(timer);
  }
}

/**
 * Loads and checks the files (CONFIG_INVALID, one line, when they do not check out) and starts
 * watching them. The caller closes the reloader.
 */
export async function startTlsReloader(
  files: TlsFiles,
  options: { readonly logger: Logger; readonly metrics?: TlsMetrics; readonly pollIntervalMs?: number },
): Promise<TlsReloader> {
  const reloader = new TlsReloader({ files, initial: await loadTlsMaterial(files), ...options });
  reloader.start();
  return reloader;
}

/** For startup logs: plain text, TLS, or mTLS. */
export function tlsMode(reloader: TlsReloader | undefined): 'off' | 'tls' | 'mtls' {
  if (!reloader) return 'off';
  return reloader.current.clientCa === undefined ? 'tls' : 'mtls';
}
