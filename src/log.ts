import { pino, type DestinationStream, type Logger } from 'pino';
import type { LogFormat } from './config.js';

export type { Logger };

/**
 * Without --log-format: text for a person at a terminal, JSON for everything that collects logs (a pipe,
 * a file, a container runtime). The same rule as kubectl's and most CLIs' colour/format defaults.
 */
export function defaultLogFormat(explicit: LogFormat | undefined, streamIsTerminal: boolean): LogFormat {
  return explicit ?? (streamIsTerminal ? 'text' : 'json');
}

export interface LoggerOptions {
  readonly level?: string;
  readonly name?: string;
  readonly destination?: 'stdout' | 'stderr';
  /** Default: text when the destination is a terminal, json otherwise (see defaultLogFormat). */
  readonly format?: LogFormat | undefined;
}

/**
 * One root logger; modules take children with their own bindings (component, node id, stream id) so a
 * single Envoy's story can be followed with one filter.
 *
 * JSON lines carry `time` as ISO-8601 UTC (`2026-12-05T07:03:39.123Z`): readable, sortable, and what log
 * pipelines parse without configuration (epoch milliseconds was neither).
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const fd = options.destination === 'stderr' ? 2 : 1;
  const stream = fd === 2 ? process.stderr : process.stdout;
  const format = defaultLogFormat(options.format, stream.isTTY);
  const settings = {
    name: options.name ?? 'readygate',
    level: options.level ?? process.env['READYGATE_LOG_LEVEL'] ?? 'info',
    base: null,
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  // Synchronous writes: a line logged just before exit (a fatal config problem, a signal) is not lost.
  const sink = pino.destination({ fd, sync: true });
  const destination: DestinationStream = format === 'text' ? textDestination(sink) : sink;
  return pino(settings, destination);
}

/** Turns pino's JSON lines into text lines on their way to `sink`. */
export function textDestination(sink: { write(text: string): unknown }): DestinationStream {
  return {
    write(line: string) {
      sink.write(formatTextLine(line) + '\n');
    },
  };
}

const LEVEL_NAMES: Readonly<Record<number, string>> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};

/** Fields the text line shows in its fixed columns, or that only matter to machines. */
const TEXT_OMITTED = new Set(['time', 'level', 'msg', 'name']);

/**
 * One pino JSON line as `2026-12-05 08:03:39.123 INFO  message key=value ...`: local time (the
 * terminal's clock), the level padded to five, the message, then every other field as key=value with
 * values quoted when they contain spaces, quotes or `=`, and objects as compact JSON.
 */
export function formatTextLine(line: string): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.trimEnd();
  }
  const time = typeof record['time'] === 'string' ? new Date(record['time']) : new Date();
  const level = LEVEL_NAMES[Number(record['level'])] ?? String(record['level']);
  const parts = [localTimestamp(time), level.padEnd(5)];
  if (typeof record['msg'] === 'string' && record['msg'] !== '') parts.push(record['msg']);
  for (const [key, value] of Object.entries(record)) {
    if (TEXT_OMITTED.has(key) || value === undefined) continue;
    parts.push(`${key}=${textValue(key, value)}`);
  }
  return parts.join(' ');
}

/** `YYYY-MM-DD HH:MM:SS.mmm` in the process's local time zone. */
export function localTimestamp(time: Date): string {
  const two = (n: number): string => String(n).padStart(2, '0');
  return (
    `${time.getFullYear()}-${two(time.getMonth() + 1)}-${two(time.getDate())} ` +
    `${two(time.getHours())}:${two(time.getMinutes())}:${two(time.getSeconds())}.` +
    String(time.getMilliseconds()).padStart(3, '0')
  );
}

function textValue(key: string, value: unknown): string {
  // An error's message is what a person needs; the stack stays in JSON logs (and --log-level debug).
  if ((key === 'err' || key === 'error') && typeof value === 'object' && value !== null) {
    const message = (value as { message?: unknown }).message;
    if (typeof message === 'string') return quoteIfNeeded(message);
  }
  if (typeof value === 'string') return quoteIfNeeded(value);
  if (typeof value === 'object' && value !== null) return JSON.stringify(value);
  return String(value);
}

function quoteIfNeeded(text: string): string {
  return text === '' || /[\s"=\\]/.test(text) ? JSON.stringify(text) : text;
}

/** A logger that writes nothing, for tests and library use. */
export const silentLogger: Logger = pino({ level: 'silent' });
