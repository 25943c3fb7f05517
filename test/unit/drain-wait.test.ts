/**
 * drain-wait over a real admin server: the long poll answers on the ACK that makes the pod drained, the
 * CLI body exits 0 then, and at its timeout fails naming the Envoy that has not ACKed.
 */
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import test, { type ExecutionContext } from 'ava';
import { Registry } from 'prom-client';
import { startAdminServer } from '../../src/admin/server.js';
import type { CommandContext } from '../../src/cli/context.js';
import { runDrainWait } from '../../src/drain/command.js';
import { ErrorCode, ExitCode, isReadygateError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { readinessAdminRoutes } from '../../src/readiness/admin-routes.js';
import { staticPeers } from '../../src/readiness/peers.js';
import { RoutingHistory } from '../../src/readiness/routing-history.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { SyncStatus } from '../../src/xds/sync-status.js';
import { ackVersion } from '../helpers/sync-fixtures.js';

const WEB = 'ns/web:http';

async function setup(t: ExecutionContext) {
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
  // Closed even when an assertion fails: a server left listening keeps the AVA worker alive.
  t.teardown(() => admin.close());
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
  const { envoy, url } = await setup(t);
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
});

test('at the timeout: exit 1 (WAIT_TIMEOUT) naming the Envoy that has not ACKed; HTTP 504 says the same', async (t) => {
  const { envoy, url } = await setup(t);
  envoy('stuck-envoy');
  const ack = envoy('good-envoy');
  ack();
  const { context: ctx } = context();
  const error = await t.throwsAsync(
    runDrainWait(
      { pod: { namespace: 'ns', name: 'old' }, timeout: 1500, controlPlane: url, logLevel: 'info' } as never,
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
  const unknown = await fetch(`${url}/drain-wait?pod=ns/never-seen&timeout=5s`);
  t.is(unknown.status, 404, 'a pod no replica knows is not "drained"');
  t.like(await unknown.json(), { pod: 'ns/never-seen', unknown: true });
});

test('near the timeout it asks every 100 ms, not in a tight loop of 1 ms long polls', async (t) => {
  const { envoy, url } = await setup(t);
  envoy('stuck-envoy');
  // Counts the long polls on their way to the real admin server.
  let asked = 0;
  const counter = createHttpServer((request, response) => {
    asked += 1;
    fetch(`${url}${request.url ?? '/'}`)
      .then(async (answer) => {
        response.writeHead(answer.status, { 'content-type': 'application/json' });
        response.end(await answer.text());
      })
      .catch(() => response.destroy());
  });
  await new Promise<void>((resolve) => counter.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        counter.close(() => {
          resolve();
        });
      }),
  );
  const { context: ctx } = context();
  const error = await t.throwsAsync(
    runDrainWait(
      {
        pod: { namespace: 'ns', name: 'old' },
        timeout: 1500,
        controlPlane: `http://127.0.0.1:${(counter.address() as AddressInfo).port}`,
        logLevel: 'info',
      } as never,
      ctx,
    ),
  );
  t.true(isReadygateError(error, ErrorCode.WAIT_TIMEOUT));
  // One long poll of 1.2 s, answered 504 with 0.3 s left, then at most one short one every 100 ms until
  // the deadline: 2 to 4 in all (it was 60-260 of them, a tight loop of 1 ms long polls).
  t.true(asked >= 2 && asked <= 4, `asked ${asked} times`);
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

test('a pod no replica knows: POD_UNKNOWN (exit 4) at once, naming the pod; never "drained"', async (t) => {
  const { envoy, url } = await setup(t);
  envoy('envoy-a');
  const { context: ctx, out } = context();
  const started = performance.now();
  const error = await t.throwsAsync(
    runDrainWait(
      {
        pod: { namespace: 'ns', name: 'typo' },
        timeout: 10_000,
        controlPlane: url,
        logLevel: 'info',
      } as never,
      ctx,
    ),
  );
  t.true(isReadygateError(error, ErrorCode.POD_UNKNOWN));
  t.is(isReadygateError(error) ? error.exitCode : undefined, ExitCode.POD_UNKNOWN);
  t.regex(error.message, /no readygate replica knows pod ns\/typo/);
  t.true(performance.now() - started < 2000, 'answered at once, not at the timeout');
  t.deepEqual(out, []);
});

test('a pod only a peer knows, or only the source names, is not unknown', async (t) => {
  const sync = new SyncStatus();
  const peerHistory = new RoutingHistory();
  peerHistory.record(WEB, 'v1', new Map([['ns/elsewhere', 'DRAINING']]));
  const peer = await startAdminServer({
    address: '127.0.0.1:0',
    registry: new Registry(),
    readiness: () => ({ ready: true }),
    routes: readinessAdminRoutes({ sync: new SyncStatus(), history: peerHistory }),
  });
  t.teardown(() => peer.close());
  const sourcePods = { synced: true, has: (pod: string) => pod === 'ns/never-ready' };
  const admin = await startAdminServer({
    address: '127.0.0.1:0',
    registry: new Registry(),
    readiness: () => ({ ready: true }),
    routes: readinessAdminRoutes({
      sync,
      history: new RoutingHistory(),
      peers: staticPeers([`http://127.0.0.1:${peer.port}`]),
      sourcePods,
    }),
  });
  t.teardown(() => admin.close());
  const url = `http://127.0.0.1:${admin.port}`;
  // 10 s only bounds the wait: a drained pod is answered as soon as the peer replies (1 s raced a busy box).
  t.is((await fetch(`${url}/drain-wait?pod=ns/elsewhere&timeout=10s`)).status, 200, 'the peer knows it');
  t.is((await fetch(`${url}/drain-wait?pod=ns/never-ready&timeout=10s`)).status, 200, 'the source names it');
  t.is((await fetch(`${url}/drain-wait?pod=ns/nobody&timeout=10s`)).status, 404);
  sourcePods.synced = false;
  const early = await fetch(`${url}/drain-wait?pod=ns/nobody&timeout=1s`);
  t.is(early.status, 503, 'before the first sync nothing can be called unknown');
});

test('an admin that accepts and never answers: exit 3 (unknown) at --timeout, with GC during the wait', async (t) => {
  const sockets: Socket[] = [];
  const silent = createServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  });
  const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const pressure = setInterval(gc, 50);
  const { context: ctx } = context();
  const started = performance.now();
  const error = await t.throwsAsync(
    runDrainWait(
      { pod: { namespace: 'ns', name: 'old' }, timeout: 1500, controlPlane: url, logLevel: 'info' } as never,
      ctx,
    ),
  );
  const elapsed = performance.now() - started;
  clearInterval(pressure);
  t.true(isReadygateError(error, ErrorCode.ADMIN_UNREACHABLE));
  t.is(isReadygateError(error) ? error.exitCode : undefined, ExitCode.UNKNOWN);
  t.regex(error.message, /did not answer \(no complete answer within \d+ ms\)/);
  t.true(elapsed >= 1490 && elapsed < 2500, `gave up after ${elapsed} ms`);
});
