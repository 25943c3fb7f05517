/**
 * Peer queries against a replica that accepts and never answers (a real socket on 127.0.0.1 that stays
 * silent), with garbage collection forced during the wait: the peer counts as unreachable (not agreeing)
 * at the per-peer deadline, and /drain-wait answers at its own timeout instead of hanging.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import test from 'ava';
import { Registry } from 'prom-client';
import { startAdminServer } from '../../src/admin/server.js';
import { readinessAdminRoutes } from '../../src/readiness/admin-routes.js';
import { askPeers, staticPeers } from '../../src/readiness/peers.js';
import { RoutingHistory } from '../../src/readiness/routing-history.js';
import { SyncStatus } from '../../src/xds/sync-status.js';
import { startSilentServer } from '../helpers/silent-server.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

test('a silent peer is unreachable at the deadline, GC or not, and never agreement', async (t) => {
  const silent = await startSilentServer();
  const pressure = setInterval(gc, 50);
  const started = performance.now();
  const result = await askPeers(staticPeers([silent.url]), 'gate', 'ns/p', 800);
  const elapsed = performance.now() - started;
  clearInterval(pressure);
  t.deepEqual(result, {
    ok: false,
    waitingOn: [`peer ${silent.url}`],
    nackedBy: [],
    ackedBy: [],
    unreachable: [silent.url],
    knownBy: [],
  });
  t.true(elapsed >= 790 && elapsed < 2000, `answered after ${elapsed} ms`);
  await silent.close();
});

test('/drain-wait with a silent peer: 504 naming it at the timeout, not a hang', async (t) => {
  const silent = await startSilentServer();
  const history = new RoutingHistory();
  history.record('ns/web:http', 'v1', new Map([['ns/old', 'DRAINING']]));
  const admin = await startAdminServer({
    address: '127.0.0.1:0',
    registry: new Registry(),
    readiness: () => ({ ready: true }),
    routes: readinessAdminRoutes({ sync: new SyncStatus(), history, peers: staticPeers([silent.url]) }),
  });
  const pressure = setInterval(gc, 50);
  const started = performance.now();
  const response = await fetch(`http://127.0.0.1:${admin.port}/drain-wait?pod=ns/old&timeout=1500ms`);
  const elapsed = performance.now() - started;
  clearInterval(pressure);
  t.is(response.status, 504);
  t.like(await response.json(), { drained: false, waitingOn: [`peer ${silent.url}`] });
  t.true(elapsed >= 1000 && elapsed < 4000, `answered after ${elapsed} ms`);
  await admin.close();
  await silent.close();
});
