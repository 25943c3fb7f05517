/** `readygate extproc`: the ext_proc failure mapper on its own, until SIGTERM/SIGINT. */
import type { ExtprocConfig } from '../config.js';
import { startExtprocServer } from '../extproc/server.js';
import { untilAborted, type CommandContext } from './context.js';

export async function runExtproc(config: ExtprocConfig, context: CommandContext): Promise<number> {
  const { logger } = context;
  const server = await startExtprocServer({ address: config.address.address, debug: config.debug, logger });
  try {
    logger.info(
      { event: 'extproc.started', address: server.address },
      `readygate ext_proc serving on ${server.address}`,
    );
    await untilAborted(context.shutdown);
    logger.info({ event: 'extproc.stopping' }, 'shutting down');
  } finally {
    await server.close();
  }
  return 0;
}
