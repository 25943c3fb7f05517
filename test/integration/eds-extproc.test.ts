/**
 * The shipped envoy/gateway-ads-extproc.yaml, end to end: endpoints and their host metadata come from
 * readygate's EDS (not static clusters), and ext_proc reads that metadata back through
 * `xds.upstream_host_metadata`. A 500 from a pod readygate sent as terminating (KEP-1669 fallback) becomes
 * 503 endpoint-terminating; the same 500 from a ready pod passes through untouched.
 */
import test from 'ava';
import { CAUSE_HEADER, PROBLEM_CONTENT_TYPE } from '../../src/extproc/problem.js';
import { startExtprocServer } from '../../src/extproc/server.js';
import { EndpointStore } from '../../src/model/store.js';
import { startControlPlane } from '../../src/xds/control-plane.js';
import { startEnvoy, waitUntil } from '../helpers/envoy-process.js';
import {
  firstEndpointAddress,
  objectAt,
  shippedBootstrap,
  valueAt,
  type Json,
} from '../helpers/gateway-bootstrap.js';
import { READY, SERVING_TERMINATING, endpoint, service } from '../helpers/model-fixtures.js';
import { freePort } from '../helpers/ports.js';
import { statusUpstream } from '../helpers/upstreams.js';

/** The shipped file with this test's ports; everything else (filters, matcher, flags) as shipped. */
function shippedGateway(ports: { xds: number; extproc: number; listener: number }): Json {
  const bootstrap = shippedBootstrap('gateway-ads-extproc.yaml');
  objectAt(bootstrap, 'admin', 'address', 'socket_address')['port_value'] = 0;
  const clusters = valueAt(bootstrap, 'static_resources', 'clusters') as Json[];
  const portOf: Record<string, number> = { readygate_xds: ports.xds, readygate_extproc: ports.extproc };
  for (const cluster of clusters) {
    const port = portOf[cluster['name'] as string];
    if (port === undefined) continue;
    firstEndpointAddress(cluster)['port_value'] = port;
  }
  objectAt(bootstrap, 'static_resources', 'listeners', 0, 'address', 'socket_address')['port_value'] =
    ports.listener;
  return bootstrap;
}

test('EDS host metadata reaches ext_proc: terminating pod 500 → 503, ready pod 500 untouched', async (t) => {
  const port = await freePort('127.0.0.2');
  const appError = 'the application failed on its own';
  const upstreams = await Promise.all(
    ['127.0.0.2', '127.0.0.3'].map((host) => statusUpstream(500, appError, { host, port })),
  );
  // The route in the shipped file sends everything to default/web:http.
  const store = new EndpointStore();
  store.replaceAll([service('web', [endpoint('127.0.0.2', SERVING_TERMINATING, 'web-old')], { port })]);
  const plane = await startControlPlane({ store, xdsAddress: '127.0.0.1:0' });
  const extproc = await startExtprocServer({ address: '127.0.0.1:0' });
  const listener = await freePort();
  const envoy = await startEnvoy({
    bootstrap: shippedGateway({ xds: plane.port, extproc: extproc.port, listener }),
  });
  t.teardown(async () => {
    await envoy.stop();
    await extproc.close();
    await plane.close();
    await Promise.all(upstreams.map((u) => u.close()));
  });
  const get = (): Promise<Response> =>
    fetch(`http://127.0.0.1:${listener}/orders`, { signal: AbortSignal.timeout(5000) });

  // Only a terminating pod left: the KEP-1669 fallback sends it HEALTHY with state terminating-fallback.
  const terminating = await waitUntil(
    async () => {
      const response = await get();
      return response.headers.get(CAUSE_HEADER) === null
        ? (await response.arrayBuffer(), undefined)
        : response;
    },
    { timeoutMs: 10_000, description: 'Envoy to route to the fallback host and ext_proc to map its 500' },
  );
  t.is(terminating.status, 503);
  t.is(terminating.headers.get(CAUSE_HEADER), 'endpoint-terminating');
  t.is(terminating.headers.get('retry-after'), '1');
  t.is(terminating.headers.get('content-type'), PROBLEM_CONTENT_TYPE);
  const problem = (await terminating.json()) as { type: string; status: number };
  t.is(problem.type, 'https://readygate.dev/problems/endpoint-terminating');
  t.is(problem.status, 503);

  // A ready pod joins: the terminating one is now DRAINING (no new requests); the ready pod's own 500 is
  // the application's answer and passes through with its body.
  store.replaceAll([
    service(
      'web',
      [endpoint('127.0.0.2', SERVING_TERMINATING, 'web-old'), endpoint('127.0.0.3', READY, 'web-new')],
      { port },
    ),
  ]);
  await waitUntil(async () => (await get()).headers.get(CAUSE_HEADER) === null, {
    timeoutMs: 10_000,
    description: 'Envoy to route only to the ready host',
  });
  for (let i = 0; i < 10; i++) {
    const response = await get();
    t.is(response.status, 500);
    t.is(response.headers.get(CAUSE_HEADER), null);
    t.is(await response.text(), appError);
  }
  // Both pods really answered: the terminating one before the ready one joined, then only the ready one.
  t.true(upstreams[0]!.hits() >= 1);
  t.true(upstreams[1]!.hits() >= 10);
});
