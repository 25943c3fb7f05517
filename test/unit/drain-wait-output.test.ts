/**
 * `drain-wait -o json|yaml|wide`: the result document on stdout for the two outcomes that are results
 * (drained: exit 0; timed out: exit 1, which keeps its stderr line), over a real admin server fed by the
 * real SyncStatus, as in drain-wait.test.ts.
 */
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

/** Envoy `drained` has ACKed the version where ns/old is DRAINING; `stuck` only the one routing to it. */
async function setup(
  t: { teardown: (fn: () => Promise<void>) => void },
  envoys: { drained: string[]; stuck: string[] },
) {
  const history = new RoutingHistory();
  history.record(WEB, 'v1', new Map([['ns/old', 'HEALTHY']]));
  history.record(WEB, 'v2', new Map([['ns/old', 'DRAINING']]));
  const sync = new SyncStatus();
  for (const [nodeId, version] of [
    ...envoys.drained.map((id) => [id, 'v2'] as const),
    ...envoys.stuck.map((id) => [id, 'v1'] as const),
  ]) {
    const stream = sync.open('sotw', 'peer');
    stream.nodeId = nodeId;
    stream.type(TypeUrl.ENDPOINT).subscribed = new Set([WEB]);
    ackVersion(sync, stream, TypeUrl.ENDPOINT, WEB, version);
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
  const url = await setup(t, { drained: ['envoy-a', 'envoy-b'], stuck: [] });
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

test('timed out: -o json prints drained false naming the Envoy still routing; the error stays (exit 1)', async (t) => {
  const url = await setup(t, { drained: ['good-envoy'], stuck: ['stuck-envoy'] });
  // Long enough that readygate's 504 (due 300 ms before the deadline) arrives in time on a loaded machine;
  // a deadline that passes before any answer is "unreachable" (exit 3), not this outcome.
  const json = await drainWait(url, 'json', 2500);
  t.true(isReadygateError(json.error, ErrorCode.WAIT_TIMEOUT));
  const doc = JSON.parse(json.stdout) as DrainWaitDocument;
  t.like(doc, { pod: 'ns/old', drained: false, waitingOn: ['stuck-envoy'], nackedBy: [] });
  t.true(doc.waitedSeconds >= 2.4 && doc.waitedSeconds < 15, `${doc.waitedSeconds}`);
  const table = await drainWait(url, 'table', 2500);
  t.true(isReadygateError(table.error, ErrorCode.WAIT_TIMEOUT));
  t.is(table.stdout, '', 'the table form says it on stderr only, as before');
});
