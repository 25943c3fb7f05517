/**
 * drain-wait over a real admin server: the long poll answers on the ACK that makes the pod drained, the
 * CLI body exits 0 then, and at its timeout fails naming the Envoy that has not ACKed.
 */
import test from 'ava';
import { Registry } from 'prom-client';
import { startAdminServer } from '../../src/admin/server.js';
import type { CommandContext } from '../../src/cli/context.js';
import { runDrainWait } from '../../src/drain/command.js';
import { ErrorCode, isReadygateError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { readinessAdminRoutes } from '../../src/readiness/admin-routes.js';
import { RoutingHistory } from '../../src/readiness/routing-history.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { SyncStatus } from '../../src/xds/sync-status.js';
import { ackVersion } from '../helpers/sync-fixtures.js';

const WEB = 'ns/web:http';

async function setup() {
  const history = new RoutingHistory();
  history.record(WEB, 'v1', new Map([['ns/old', 'HEALTHY']]));
  history.record(WEB, 'v2', new Map([['ns/old', 'DRAINING']]));
  const sync = new SyncStatus();
  const envoy = (nodeId: string) => {
    const stream = sync.open('sotw', 'peer');
    stream.nodeId = nodeId;
    stream.type(TypeUrl.ENDPOINT).subscribed = new Set([WEB]);
    ackVersion(sync, stream, TypeUrl.ENDPOINT, WEB, 'v1');
    return () => {
      ackVersion(sync, stream, TypeUrl.ENDPOINT, WEB, 'v2');
    };
  };
  const admin = await startAdminServer({
    address: '127.0.0.1:0',
    registry: new Registry(),
    readiness: () => ({ ready: true }),
    routes: readinessAdminRoutes({ sync, history }),
  });
  return { admin, envoy, url: `http://127.0.0.1:${admin.port}` };
}

function context(): { context: CommandContext; out: string[] } {
  const out: string[] = [];
  return {
    out,
    context: {
      stdout: { write: (s: string) => out.push(s) },
      stderr: { write: (s: string) => out.push(s) },
      env: {},
      logger: silentLogger,
      shutdown: new AbortController().signal,
    },
  };
}

test('the long poll answers on the ACK that drains the pod; the CLI exits 0', async (t) => {
  const { admin, envoy, url } = await setup();
  const ackA = envoy('envoy-a');
  const ackB = envoy('envoy-b');
  const { context: ctx, out } = context();
  const started = performance.now();
  const run = runDrainWait(
    { pod: { namespace: 'ns', name: 'old' }, timeout: 10_000, controlPlane: url, logLevel: 'info' } as never,
    ctx,
  );
  setTimeout(ackA, 100);
  setTimeout(ackB, 300);
  t.is(await run, 0);
  const elapsed = performance.now() - started;
  t.true(elapsed >= 290 && elapsed < 2000, `returned after the last ACK (${elapsed} ms)`);
  t.regex(out.join(''), /ns\/old is drained from every Envoy/);
  await admin.close();
});

test('at the timeout: exit 1 (WAIT_TIMEOUT) naming the Envoy that has not ACKed; HTTP 504 says the same', async (t) => {
  const { admin, envoy, url } = await setup();
  envoy('stuck-envoy');
  const ack = envoy('good-envoy');
  ack();
  const { context: ctx } = context();
  const error = await t.throwsAsync(
    runDrainWait(
      { pod: { namespace: 'ns', name: 'old' }, timeout: 300, controlPlane: url, logLevel: 'info' } as never,
      ctx,
    ),
  );
  t.true(isReadygateError(error, ErrorCode.WAIT_TIMEOUT));
  t.regex(error.message, /stuck-envoy/);
  t.notRegex(error.message, /good-envoy/);
  const response = await fetch(`${url}/drain-wait?pod=ns/old&timeout=50ms`);
  t.is(response.status, 504);
  t.deepEqual(((await response.json()) as { waitingOn: string[] }).waitingOn, ['stuck-envoy']);
  t.is((await fetch(`${url}/drain-wait?pod=not-a-pod`)).status, 400);
  t.is((await fetch(`${url}/drain-wait?pod=ns/never-seen&timeout=5s`)).status, 200, 'unknown pod: drained');
  await admin.close();
});

test('control plane unreachable for the whole wait: ADMIN_UNREACHABLE', async (t) => {
  const { context: ctx } = context();
  const error = await t.throwsAsync(
    runDrainWait(
      {
        pod: { namespace: 'ns', name: 'old' },
        timeout: 300,
        controlPlane: 'http://127.0.0.1:1',
        logLevel: 'info',
      } as never,
      ctx,
    ),
  );
  t.true(isReadygateError(error, ErrorCode.ADMIN_UNREACHABLE));
});
