import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/**
 * One root logger; modules take children with their own bindings (component, node id, stream id) so a
 * single Envoy's story can be followed with one filter.
 */
export function createLogger(
  options: { level?: string; name?: string; destination?: 'stdout' | 'stderr' } = {},
): Logger {
  const settings = {
    name: options.name ?? 'readygate',
    level: options.level ?? process.env['READYGATE_LOG_LEVEL'] ?? 'info',
    base: null,
  };
  // Commands whose stdout is their result (status, drain-wait, demo) log to stderr.
  const destination: DestinationStream | undefined =
    options.destination === 'stderr' ? pino.destination({ fd: 2, sync: true }) : undefined;
  return destination ? pino(settings, destination) : pino(settings);
}

/** A logger that writes nothing, for tests and library use. */
export const silentLogger: Logger = pino({ level: 'silent' });
