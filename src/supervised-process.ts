/**
 * A child process (Envoy, for the demo and the tests) kept on a short leash: its output is held as a
 * bounded log for error messages, stop() ends it (SIGTERM, then SIGKILL after 3 s) and then cleans up,
 * and every one still running when this process exits is killed, so a failure cannot leak one.
 */
import type { ChildProcess } from 'node:child_process';

const STOP_GRACE_MS = 3000;

export interface SupervisedProcess {
  readonly child: ChildProcess;
  readonly hasExited: () => boolean;
  /** The last `lines` lines it wrote, stdout and stderr interleaved as they arrived. */
  readonly logTail: (lines: number) => string;
  /** Ends the process if it still runs, then runs `cleanup`; idempotent. */
  readonly stop: () => Promise<void>;
}

export interface SuperviseOptions {
  /** Lines of output kept; older ones are dropped. */
  readonly maxLogLines: number;
  /** Runs once the process is gone, on the first stop(). */
  readonly cleanup?: () => void;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

/** SIGKILLs `child` if it is still running when this process exits. */
export function killOnExit(child: ChildProcess): void {
  running.add(child);
  const forget = (): void => {
    running.delete(child);
  };
  child.once('exit', forget);
  child.once('error', forget);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const proc of running) {
      try {
        proc.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

/** Takes charge of `child`, which must have been spawned with stdout and stderr piped. */
export function supervise(child: ChildProcess, options: SuperviseOptions): SupervisedProcess {
  killOnExit(child);
  const log: string[] = [];
  const collect = (chunk: Buffer): void => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line === '') continue;
      log.push(line);
      if (log.length > options.maxLogLines) log.shift();
    }
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', () => {
      exited = true;
      resolve();
    });
  });
  child.once('error', (error) => {
    log.push(`spawn error: ${error.message}`);
  });

  let stopping: Promise<void> | undefined;
  return {
    child,
    hasExited: () => exited,
    logTail: (lines) => log.slice(-lines).join('\n'),
    stop: () => {
      stopping ??= (async () => {
        if (!exited) {
          child.kill('SIGTERM');
          const kill = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
          await exit;
          clearTimeout(kill);
        }
        options.cleanup?.();
      })();
      return stopping;
    },
  };
}
