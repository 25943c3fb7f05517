/**
 * The `readygate` command line: picks the command, gathers flags, `READYGATE_*` env vars and the
 * `--config` file, validates them (src/config.ts) and runs the command body.
 *
 * Exit codes: 0 success; 1 a runtime failure (or a command's own "not OK", like status drift);
 * 2 invalid flags, env vars, config file or endpoints file; 3 status or drain-wait could not check (an
 * admin or replica did not answer); 4 drain-wait's pod is unknown to every replica (docs/cli.md). Every
 * failure is one `readygate: ...` line on stderr; stack traces never reach the user.
 */
import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import {
  COMMAND_NAMES,
  CONFIG_ENV,
  commandHelp,
  configFileValues,
  environmentValues,
  isCommandName,
  optionEntries,
  parseCommandLine,
  parseConfigText,
  resolveConfig,
  topLevelHelp,
  type CommandConfigs,
  type CommandName,
  type LogFormat,
  type LogLevel,
  unknownEnvironmentVariables,
} from '../config.js';
import { ErrorCode, ReadygateError, errorMessage, isReadygateError } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import { COMMAND_RUNNERS, type CommandEntry } from './commands.js';
import type { CliIo, CommandContext } from './context.js';
import { readPackageVersion } from './version.js';

export type { CliIo } from './context.js';

/** Errors that mean "the input is wrong", as opposed to "something failed while running". */
const USAGE_ERRORS: readonly ErrorCode[] = [
  ErrorCode.CONFIG_INVALID,
  ErrorCode.SOURCE_FILE_INVALID,
  // A kubeconfig that is missing or unreadable is wrong input, like a bad --config.
  ErrorCode.KUBECONFIG_MISSING,
];

type CommandTable = { readonly [C in CommandName]: CommandEntry<C> };

/** Everything main takes from the process, each replaceable (tests, embedding). */
export interface MainOptions extends Partial<CliIo> {
  /** Replaces entries of the dispatch table, e.g. to run a fake command body in a test. */
  readonly commands?: Partial<CommandTable>;
}

export async function main(argv: readonly string[], options: MainOptions = {}): Promise<number> {
  const io = options;
  const cli: CliIo = {
    stdout: io.stdout ?? process.stdout,
    stderr: io.stderr ?? process.stderr,
    env: io.env ?? process.env,
    ...(io.signal ? { signal: io.signal } : {}),
    ...(io.logger ? { logger: io.logger } : {}),
  };
  try {
    return await dispatch(argv, cli, { ...COMMAND_RUNNERS, ...options.commands });
  } catch (error) {
    cli.stderr.write(`readygate: ${oneLine(errorMessage(error))}\n`);
    if (isReadygateError(error) && error.exitCode !== undefined) return error.exitCode;
    return isReadygateError(error) && USAGE_ERRORS.includes(error.code) ? 2 : 1;
  }
}

async function dispatch(argv: readonly string[], io: CliIo, commands: CommandTable): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined) {
    throw usage('no command given (commands: ' + COMMAND_NAMES.join(', ') + '; see readygate --help)');
  }
  if (first === '--help' || first === '-h') {
    io.stdout.write(topLevelHelp(await readPackageVersion()));
    return 0;
  }
  // The same as `readygate version` (its -o flag included).
  if (first === '--version') return runCommand('version', rest, io, commands);
  if (first === 'help') {
    const topic = rest[0];
    if (topic === undefined) io.stdout.write(topLevelHelp(await readPackageVersion()));
    else if (isCommandName(topic)) io.stdout.write(commandHelp(topic));
    else throw unknownCommand(topic);
    return 0;
  }
  if (first.startsWith('-')) {
    throw usage(`unknown flag ${first} before the command (flags go after it: readygate <command> [flags])`);
  }
  if (!isCommandName(first)) throw unknownCommand(first);
  return runCommand(first, rest, io, commands);
}

// C ties the resolved config to its command's runner inside the body; the signature alone does not show it.
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
async function runCommand<C extends CommandName>(
  command: C,
  args: readonly string[],
  io: CliIo,
  commands: CommandTable,
): Promise<number> {
  // --help wins over everything else on the line, even flags that would not validate.
  const beforeTerminator = args.includes('--') ? args.slice(0, args.indexOf('--')) : args;
  if (beforeTerminator.includes('--help') || beforeTerminator.includes('-h')) {
    io.stdout.write(commandHelp(command));
    return 0;
  }

  const commandLine = parseCommandLine(command, args);
  const env = environmentValues(command, io.env);
  const envConfigPath = nonEmpty(io.env[CONFIG_ENV]);
  const configPath = commandLine.configPath ?? envConfigPath;
  // Say where the path came from: a bad READYGATE_CONFIG blamed on a --config nobody typed misleads.
  const configLabel =
    commandLine.configPath !== undefined
      ? `--config ${commandLine.configPath}`
      : `${CONFIG_ENV}=${envConfigPath ?? ''}`;
  const file =
    configPath === undefined
      ? undefined
      : configFileValues(
          command,
          configPath,
          parseConfigText(configPath, await readConfigFile(configPath, configLabel)),
        );
  const config = withTypoHint(io.env, () =>
    resolveConfig(command, { flags: commandLine.values, env, ...(file ? { file } : {}) }),
  );
  await checkReadableFiles(command, config);

  const entry = commands[command] as CommandEntry<C>;
  const runner = await entry.load();
  if (!runner) {
    io.stderr.write(`readygate: ${command} is not available in this build\n`);
    return 1;
  }

  const { logLevel, logFormat } = config as {
    readonly logLevel: LogLevel;
    readonly logFormat: LogFormat | undefined;
  };
  const logger = io.logger ?? commandLogger(command, logLevel, logFormat);
  warnAboutUnknownVariables(io.env, logger);
  const shutdown = new AbortController();
  const stopListening = entry.longRunning ? listenForShutdown(shutdown, io, logger) : () => undefined;
  const context: CommandContext = {
    stdout: io.stdout,
    stderr: io.stderr,
    env: io.env,
    logger,
    shutdown: shutdown.signal,
  };
  try {
    return await runner(config, context);
  } catch (error) {
    // Expected failures carry a code and a message that says it all; anything else is a bug, and its
    // stack is one --log-level debug away (stderr still gets one line).
    if (!isReadygateError(error))
      logger.debug({ event: 'cli.unexpected-error', err: error }, 'unexpected error');
    throw error;
  } finally {
    stopListening();
  }
}

/**
 * How long a long-running command may take to shut down after SIGTERM/SIGINT before the process exits
 * anyway (code 1, one line on stderr). Closing is bounded part by part (xDS streams get 2 s), but a peer
 * that never answers (a hung Kubernetes API) can hold sockets open; the process must still end.
 */
export const SHUTDOWN_BOUND_MS = 10_000;

/**
 * While a long-running command runs, SIGTERM/SIGINT (or the caller's signal) ask it to shut down. A
 * second signal means the operator gave up waiting: exit at once. Either way the process ends within
 * SHUTDOWN_BOUND_MS of the first signal.
 */
function listenForShutdown(controller: AbortController, io: CliIo, logger: Logger): () => void {
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals += 1;
    if (signals > 1) {
      io.stderr.write(`readygate: second ${signal}, exiting without finishing the shutdown\n`);
      process.exit(signal === 'SIGINT' ? 130 : 143);
    }
    logger.info({ event: 'cli.signal', signal }, `${signal} received, shutting down`);
    // Unref'd: it never keeps a process alive that has finished, and fires if something else does.
    setTimeout(() => {
      io.stderr.write(
        `readygate: shutdown did not finish within ${SHUTDOWN_BOUND_MS / 1000} s of ${signal}; exiting\n`,
      );
      process.exit(1);
    }, SHUTDOWN_BOUND_MS).unref();
    controller.abort();
  };
  const onAbort = (): void => {
    controller.abort();
  };
  if (io.signal) {
    // Embedded (tests): the caller owns the process's signals.
    if (io.signal.aborted) controller.abort();
    io.signal.addEventListener('abort', onAbort, { once: true });
    return () => {
      io.signal?.removeEventListener('abort', onAbort);
    };
  }
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return () => {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  };
}

/** Servers log to stdout (their output is the log); one-shot commands keep stdout for their results. */
function commandLogger(command: CommandName, level: LogLevel, format: LogFormat | undefined): Logger {
  if (command === 'serve' || command === 'extproc') return createLogger({ level, format });
  return createLogger({ level, format, destination: 'stderr' });
}

/**
 * A misspelt READYGATE_* variable would otherwise be silently ignored; warn once per run (a warning,
 * not an error: one environment often serves several commands and readygate versions).
 */
function warnAboutUnknownVariables(env: CliIo['env'], logger: Logger): void {
  for (const { name, suggestion } of unknownEnvironmentVariables(env)) {
    logger.warn(
      { event: 'cli.unknown-env', variable: name, ...(suggestion ? { suggestion } : {}) },
      `unknown environment variable ${name} is ignored${suggestion ? ` (did you mean ${suggestion}?)` : ''}`,
    );
  }
}

/**
 * A required value reported missing while a misspelt variable for it is set: the misspelling is the news
 * (the unknown-variable warning would come only after a logger exists, i.e. never on this path).
 */
function withTypoHint<T>(env: CliIo['env'], resolve: () => T): T {
  try {
    return resolve();
  } catch (error) {
    const missing = isReadygateError(error, ErrorCode.CONFIG_INVALID)
      ? /^--\S+ is required \(or set (READYGATE_\w+)\)$/.exec(error.message)?.[1]
      : undefined;
    const typo = unknownEnvironmentVariables(env).find((variable) => variable.suggestion === missing);
    if (missing === undefined || typo === undefined) throw error;
    throw new ReadygateError(
      ErrorCode.CONFIG_INVALID,
      `${(error as Error).message}; ${typo.name} is set: did you mean ${missing}?`,
      { cause: error },
    );
  }
}

async function readConfigFile(path: string, label: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw new ReadygateError(ErrorCode.CONFIG_INVALID, `${label}: cannot read it (${fileProblem(error)})`, {
      cause: error,
    });
  }
}

/** Options marked readableFile (e.g. --kubeconfig) must name a readable file before anything starts. */
async function checkReadableFiles<C extends CommandName>(
  command: C,
  config: CommandConfigs[C],
): Promise<void> {
  const values = config as Readonly<Record<string, unknown>>;
  for (const [key, option] of optionEntries(command)) {
    const path = values[key];
    if (!option.readableFile || typeof path !== 'string') continue;
    try {
      await access(path, constants.R_OK);
    } catch (error) {
      throw new ReadygateError(
        ErrorCode.CONFIG_INVALID,
        `--${option.flag} ${path}: cannot read it (${fileProblem(error)})`,
        {
          cause: error,
        },
      );
    }
  }
}

function fileProblem(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'it is a directory';
  return typeof code === 'string' ? code : errorMessage(error);
}

function usage(message: string): ReadygateError {
  return new ReadygateError(ErrorCode.CONFIG_INVALID, message);
}

function unknownCommand(name: string): ReadygateError {
  return usage(`unknown command "${name}" (commands: ${COMMAND_NAMES.join(', ')}; see readygate --help)`);
}

function nonEmpty(text: string | undefined): string | undefined {
  return text === undefined || text === '' ? undefined : text;
}

/** Messages from deep inside libraries can span lines; the CLI promises one. */
function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, ' ').trim();
}
