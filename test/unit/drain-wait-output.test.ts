/**
 * `drain-wait -o json|yaml|wide`: the result document on stdout for the two outcomes that are results:
 * drained (exit 0), over a real admin server fed by the real SyncStatus as in drain-wait.test.ts; and
 * timed out (exit 1, which keeps its stderr line), over a server that keeps saying "still routing".
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { Registry } from 'prom-client';
import { parse as parseYaml } from 'yaml';
import { startAdminServer } from '../../src/admin/server.js';
import type { CommandContext } from '../../src/cli/context.js';
import type { OutputFormat } from '../../src/config.js';
import { runDrainWait, type DrainWaitDocument } from '../../src/drain/command.js';
import { ErrorCode, isReadygateError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { readinessAdminRoutes } from '../../src/readiness/admin-routes.js';
import { RoutingHistory } from '../../src/readiness/routing-history.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { SyncStatus } from '../../src/xds/sync-status.js';
import { ackVersion } from '../helpers/sync-fixtures.js';

const WEB = 'ns/web:http';

/** Envoys that have all ACKed the version where ns/old is DRAINING. */
async function setup(t: { teardown: (fn: () => Promise<void>) => void }, drained: readonly string[]) {
  const history = new RoutingHistory();
  history.record(WEB, 'v1', new Map([['ns/old', 'HEALTHY']]));
  history.record(WEB, 'v2', new Map([['ns/old', 'DRAINING']]));
  const sync = new SyncStatus();
  for (const nodeId of drained) {
    const stream = sync.open('sotw', 'peer');
    stream.nodeId = nodeId;
    stream.type(TypeUrl.ENDPOINT).subscribed = new Set([WEB]);
    ackVersion(sync, stream, TypeUrl.ENDPOINT, WEB, 'v2');
  }
  const admin = await startAdminServer({
    address: '127.0.0.1:0',
    registry: new Registry(),
    readiness: () => ({ ready: true }),
    routes: readinessAdminRoutes({ sync, history }),
  });
  t.teardown(() => admin.close());
  return `http://127.0.0.1:${admin.port}`;
}

async function drainWait(url: string, output: OutputFormat | undefined, timeout: number) {
  const stdout: string[] = [];
  const context: CommandContext = {
    stdout: { write: (s: string) => stdout.push(s) },
    stderr: { write: () => undefined },
    env: {},
    logger: silentLogger,
    shutdown: new AbortController().signal,
  };
  const config = {
    pod: { namespace: 'ns', name: 'old' },
    timeout,
    controlPlane: url,
    output,
    logLevel: 'info',
  };
  try {
    return { code: await runDrainWait(config as never, context), stdout: stdout.join(''), error: undefined };
  } catch (error) {
    return { code: undefined, stdout: stdout.join(''), error };
  }
}

test('drained: -o json and yaml print the document, table and wide the line', async (t) => {
  const url = await setup(t, ['envoy-a', 'envoy-b']);
  const json = await drainWait(url, 'json', 5000);
  t.is(json.code, 0);
  const doc = JSON.parse(json.stdout) as DrainWaitDocument;
  t.deepEqual(Object.keys(doc), ['pod', 'drained', 'waitedSeconds', 'waitingOn', 'nackedBy']);
  t.like(doc, { pod: 'ns/old', drained: true, waitingOn: [], nackedBy: [] });
  t.true(doc.waitedSeconds >= 0 && doc.waitedSeconds < 5 && Number.isInteger(doc.waitedSeconds * 10));
  const yaml = await drainWait(url, 'yaml', 5000);
  t.is(yaml.code, 0);
  t.like(parseYaml(yaml.stdout), { pod: 'ns/old', drained: true, waitingOn: [], nackedBy: [] });
  for (const format of [undefined, 'table', 'wide'] as const) {
    const line = await drainWait(url, format, 5000);
    t.is(line.code, 0);
    t.regex(line.stdout, /^ns\/old is drained from every Envoy \(waited \d+\.\ds\)\n$/);
  }
});

/**
 * A fake /drain-wait that answers every poll at once with 504 "still routing". Why not the real one: it
 * answers 504 only at the deadline the command asks for, 300 ms before the command's own, so on a starved
 * machine the command can give up first and the outcome is "unreachable" (exit 3) rather than the
 * timed-out result this test is about. Answering early makes the outcome depend only on the command.
 */
async function stillRouting(
  t: { teardown: (fn: () => void) => void },
  waitingOn: string[],
  nackedBy: string[],
) {
  const server = createServer((_request, response) => {
    response.writeHead(504, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ pod: 'ns/old', drained: false, waitingOn, nackedBy }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

test('timed out: -o json and yaml print drained false naming the Envoys; the error stays (exit 1)', async (t) => {
  const url = await stillRouting(t, ['stuck-envoy', 'nacking-envoy'], ['nacking-envoy']);
  for (const format of ['json', 'yaml'] as const) {
    const run = await drainWait(url, format, 600);
    t.true(isReadygateError(run.error, ErrorCode.WAIT_TIMEOUT), String(run.error));
    const doc = (format === 'json' ? JSON.parse(run.stdout) : parseYaml(run.stdout)) as DrainWaitDocument;
    t.like(doc, {
      pod: 'ns/old',
      drained: false,
      waitingOn: ['stuck-envoy', 'nacking-envoy'],
      nackedBy: ['nacking-envoy'],
    });
    t.true(doc.waitedSeconds >= 0.6 && doc.waitedSeconds < 10, `${doc.waitedSeconds}`);
  }
  const table = await drainWait(url, 'table', 600);
  t.true(isReadygateError(table.error, ErrorCode.WAIT_TIMEOUT));
  t.is(table.stdout, '', 'the table form says it on stderr only, as before');
});
