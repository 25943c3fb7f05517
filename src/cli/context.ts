/**
 * What a command body receives besides its config. Command modules written elsewhere (status,
 * drain-wait, demo) import these types; they are the whole contract between the CLI and a command.
 */
import type { Logger } from '../log.js';

export interface OutputStream {
  write(text: string): unknown;
}

/** The process boundary, injectable so the CLI runs in-process in tests. */
export interface CliIo {
  readonly stdout: OutputStream;
  readonly stderr: OutputStream;
  readonly env: Readonly<Record<string, string | undefined>>;
  /**
   * Aborting it asks a long-running command to shut down as SIGTERM would. Without it, SIGTERM and
   * SIGINT are listened for while such a command runs.
   */
  readonly signal?: AbortSignal;
  /** Replaces the logger built from --log-level (tests). */
  readonly logger?: Logger;
}

export interface CommandContext {
  readonly stdout: OutputStream;
  readonly stderr: OutputStream;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly logger: Logger;
  /** Aborted on SIGTERM/SIGINT (or by the embedding caller): finish up, release everything, return. */
  readonly shutdown: AbortSignal;
}

/**
 * A command body: returns the exit code. Throwing a ReadygateError prints its message as one line;
 * CONFIG_INVALID, SOURCE_FILE_INVALID and KUBECONFIG_MISSING exit 2, every other error 1.
 */
export type CommandRunner<Config> = (config: Config, context: CommandContext) => Promise<number>;

/** Resolves when `signal` aborts (immediately if it already has). */
export function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    signal.addEventListener(
      'abort',
      () => {
        resolve();
      },
      { once: true },
    );
  });
}
