/**
 * The real control plane (startControlPlane: our HTTP/2 engine, gRPC layer, ADS) in a process of its
 * own, so that a test can measure the server's RSS without its own memory in the figure, and attack it
 * from outside. Driven over the IPC channel: `{ edit: n }` moves the one endpoint of default/web to
 * 10.0.x.y (n = 256x + y); `{ stats: true }` answers with RSS and the limits crossed so far. Logs go to
 * stderr as JSON lines. argv[2]: JSON of Http2Limits overrides.
 *
 * Run with `node --import tsx test/helpers/ads-server-process.ts '{}'`; not to be imported (it starts
 * the server as it loads). What a test needs of it is in ads-server-protocol.ts.
 */
import type { Http2Limits } from '../../src/http2/limits.js';
import { createLogger } from '../../src/log.js';
import { EndpointStore } from '../../src/model/store.js';
import { startControlPlane } from '../../src/xds/control-plane.js';
import { editedAddress, type ServerCommand, type ServerMessage } from './ads-server-protocol.js';
import { endpoint, service } from './model-fixtures.js';

const web = (n: number) => service('web', [endpoint(editedAddress(n))]);

async function main(): Promise<void> {
  const limits = JSON.parse(process.argv[2] ?? '{}') as Partial<Http2Limits>;
  const store = new EndpointStore();
  store.replaceAll([web(0)]);
  const logger = createLogger({ level: 'warn', destination: 'stderr' });
  const plane = await startControlPlane({ store, xdsAddress: '127.0.0.1:0', logger, http2Limits: limits });
  const crossed: Record<string, number> = {};
  plane.http2Limits.on('exceeded', (limit) => {
    crossed[limit] = (crossed[limit] ?? 0) + 1;
  });
  const send = (message: ServerMessage): void => {
    process.send?.(message);
  };
  process.on('message', (command: ServerCommand) => {
    if ('edit' in command) store.upsert(web(command.edit));
    else send({ stats: { rss: process.memoryUsage.rss(), limits: { ...crossed } } });
  });
  process.on('disconnect', () => {
    void plane.close().then(() => process.exit(0));
  });
  send({ ready: plane.port });
}

void main();
