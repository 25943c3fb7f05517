/** `readygate extproc`: the ext_proc failure mapper on its own, until SIGTERM/SIGINT. */
import type { ExtprocConfig } from '../config.js';
import { startExtprocServer } from '../extproc/server.js';
import { tlsFilesFromFlags } from '../tls/material.js';
import { startTlsReloader } from '../tls/reloader.js';
import { untilAborted, type CommandContext } from './context.js';

export async function runExtproc(config: ExtprocConfig, context: CommandContext): Promise<number> {
  const { logger } = context;
  const tlsFiles = tlsFilesFromFlags(config);
  const tls = tlsFiles ? await startTlsReloader(tlsFiles, { logger }) : undefined;
  let server;
  try {
    server = await startExtprocServer({
      address: config.address.address,
      debug: config.debug,
      logger,
      ...(tls ? { tls } : {}),
    });
  } catch (error) {
    tls?.close();
    throw error;
  }
  try {
    logger.info(
      { event: 'extproc.started', address: server.address },
      `readygate ext_proc serving on ${server.address}`,
    );
    await untilAborted(context.shutdown);
    logger.info({ event: 'extproc.stopping' }, 'shutting down');
  } finally {
    await server.close();
    tls?.close();
  }
  return 0;
}
