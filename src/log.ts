import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * One root logger; modules take children with their own bindings (component, node id, stream id) so a
 * single Envoy's story can be followed with one filter.
 */
export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  return pino({
    name: options.name ?? 'readygate',
    level: options.level ?? process.env['READYGATE_LOG_LEVEL'] ?? 'info',
    base: null,
  });
}

/** A logger that writes nothing, for tests and library use. */
export const silentLogger: Logger = pino({ level: 'silent' });
