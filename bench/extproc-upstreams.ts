/**
 * Child process for bench/extproc.ts: the upstreams that take load (200 echo, the application's 500, a
 * terminating endpoint's 500), kept out of the bench process so its CPU is the ext_proc server's alone.
 * Prints one JSON line with their addresses, then serves until stdin closes or it is signalled.
 */
import { APP_ERROR_BODY, TERMINATING_BODY } from './extproc-fixture.js';
import { okUpstream, statusUpstream } from '../test/helpers/upstreams.js';

const upstreams = {
  ok: await okUpstream({ host: '127.0.0.2' }),
  appError: await statusUpstream(500, APP_ERROR_BODY, { host: '127.0.0.3' }),
  terminating: await statusUpstream(500, TERMINATING_BODY, { host: '127.0.0.4' }),
};

const shutdown = async (): Promise<void> => {
  for (const upstream of Object.values(upstreams)) await upstream.close();
  process.exit(0);
};
process.once('SIGTERM', () => void shutdown());
process.stdin.on('end', () => void shutdown());
process.stdin.resume();

console.log(
  JSON.stringify(
    Object.fromEntries(Object.entries(upstreams).map(([name, u]) => [name, { host: u.host, port: u.port }])),
  ),
);
