/**
 * The shipped envoy/gateway-ads-extproc-tls.yaml with the real Envoy: ADS and ext_proc both over mTLS
 * (readygate's grpc-js ext_proc server with certificate-provider credentials). A 500 from a terminating
 * pod becomes readygate's 503 problem document, which needs EDS over mTLS (the host metadata) and
 * ext_proc over mTLS (the mapping). Without a client certificate for the ext_proc cluster, Envoy gets no
 * connection to ext_proc and the problem document never appears.
 */
import test, { type ExecutionContext } from 'ava';
import { CAUSE_HEADER, PROBLEM_CONTENT_TYPE } from '../../src/extproc/problem.js';
import { startExtprocServer } from '../../src/extproc/server.js';
import { silentLogger } from '../../src/log.js';
import { EndpointStore } from '../../src/model/store.js';
import { startTlsReloader } from '../../src/tls/reloader.js';
import { startControlPlane } from '../../src/xds/control-plane.js';
import { startEnvoy, waitUntil, type EnvoyProcess } from '../helpers/envoy-process.js';
import {
  firstEndpointAddress,
  objectAt,
  shippedBootstrap,
  valueAt,
  type Json,
} from '../helpers/gateway-bootstrap.js';
import { SERVING_TERMINATING, endpoint, service } from '../helpers/model-fixtures.js';
import { freePort } from '../helpers/ports.js';
import { createTestPki, type CertFiles } from '../helpers/tls-certs.js';
import { statusUpstream } from '../helpers/upstreams.js';

const pki = createTestPki();
const ca = pki.ca('ca');
const xdsCert = pki.issue(ca, 'readygate', { cn: 'readygate', dns: ['readygate'], usage: 'serverAuth' });
const extprocCert = pki.issue(ca, 'readygate-extproc', {
  cn: 'readygate-extproc',
  dns: ['readygate-extproc'],
  usage: 'serverAuth',
});
const envoyCert = pki.issue(ca, 'gateway-1', { cn: 'gateway-1', usage: 'clientAuth' });
test.after.always(() => {
  pki.remove();
});

const clustersOf = (bootstrap: Json): Json[] => valueAt(bootstrap, 'static_resources', 'clusters') as Json[];

test('gateway-ads-extproc-tls.yaml is gateway-ads-extproc.yaml plus TLS on its two gRPC clusters', (t) => {
  const tlsVariant = shippedBootstrap('gateway-ads-extproc-tls.yaml');
  const plain = shippedBootstrap('gateway-ads-extproc.yaml');
  const sni: string[] = [];
  for (const cluster of clustersOf(tlsVariant)) {
    sni.push(valueAt(cluster, 'transport_socket', 'typed_config', 'sni') as string);
    delete cluster['transport_socket'];
  }
  t.deepEqual(sni, ['readygate', 'readygate-extproc']);
  t.deepEqual(tlsVariant, plain);
});

/** The shipped file with this test's ports and certificate files. */
function gateway(
  ports: { xds: number; extproc: number; listener: number },
  extprocClient: CertFiles | undefined,
): Json {
  const bootstrap = shippedBootstrap('gateway-ads-extproc-tls.yaml');
  objectAt(bootstrap, 'admin', 'address', 'socket_address')['port_value'] = 0;
  for (const cluster of clustersOf(bootstrap)) {
    const isXds = cluster['name'] === 'readygate_xds';
    firstEndpointAddress(cluster)['port_value'] = isXds ? ports.xds : ports.extproc;
    const context = objectAt(cluster, 'transport_socket', 'typed_config', 'common_tls_context');
    objectAt(context, 'validation_context', 'trusted_ca')['filename'] = ca.certFile;
    const client = isXds ? envoyCert : extprocClient;
    if (client === undefined) delete context['tls_certificates'];
    else
      context['tls_certificates'] = [
        { certificate_chain: { filename: client.certFile }, private_key: { filename: client.keyFile } },
      ];
  }
  objectAt(bootstrap, 'static_resources', 'listeners', 0, 'address', 'socket_address')['port_value'] =
    ports.listener;
  return bootstrap;
}

async function setup(t: ExecutionContext, extprocClient: CertFiles | undefined) {
  const port = await freePort('127.0.0.2');
  const upstream = await statusUpstream(500, 'the application failed', { host: '127.0.0.2', port });
  const store = new EndpointStore();
  store.replaceAll([service('web', [endpoint('127.0.0.2', SERVING_TERMINATING, 'web-old')], { port })]);
  const xdsTls = await startTlsReloader(
    { certFile: xdsCert.certFile, keyFile: xdsCert.keyFile, clientCaFile: ca.certFile },
    { logger: silentLogger },
  );
  const extprocTls = await startTlsReloader(
    { certFile: extprocCert.certFile, keyFile: extprocCert.keyFile, clientCaFile: ca.certFile },
    { logger: silentLogger },
  );
  const plane = await startControlPlane({
    store,
    xdsAddress: '127.0.0.1:0',
    tls: { reloader: xdsTls, handshakeTimeoutMs: 10_000 },
  });
  const extproc = await startExtprocServer({ address: '127.0.0.1:0', tls: extprocTls });
  const listener = await freePort();
  const envoy = await startEnvoy({
    bootstrap: gateway({ xds: plane.port, extproc: extproc.port, listener }, extprocClient),
  });
  t.teardown(async () => {
    await envoy.stop();
    await extproc.close();
    await plane.close();
    xdsTls.close();
    extprocTls.close();
    await upstream.close();
  });
  const get = (): Promise<Response> =>
    fetch(`http://127.0.0.1:${listener}/orders`, { signal: AbortSignal.timeout(5000) });
  return { envoy, get, upstream };
}

interface ClustersJson {
  cluster_statuses?: { name: string; host_statuses?: unknown[] }[];
}

async function waitForRoute(envoy: EnvoyProcess): Promise<void> {
  await waitUntil(
    async () => {
      const json = (await envoy.clusters()) as ClustersJson;
      return json.cluster_statuses?.find((c) => c.name === 'default/web:http')?.host_statuses?.length === 1;
    },
    { timeoutMs: 15_000, description: 'EDS over mTLS to deliver the terminating host' },
  );
}

test("ext_proc over mTLS: a terminating pod's 500 becomes readygate's 503 problem document", async (t) => {
  const { envoy, get } = await setup(t, envoyCert);
  await waitForRoute(envoy);
  const mapped = await waitUntil(
    async () => {
      const response = await get();
      return response.headers.get(CAUSE_HEADER) === null
        ? (await response.arrayBuffer(), undefined)
        : response;
    },
    { timeoutMs: 10_000, description: 'ext_proc to map the 500' },
  );
  t.is(mapped.status, 503);
  t.is(mapped.headers.get(CAUSE_HEADER), 'endpoint-terminating');
  t.is(mapped.headers.get('content-type'), PROBLEM_CONTENT_TYPE);
  t.true((await envoy.stat('cluster.readygate_extproc.ssl.handshake'))! >= 1);
  t.true((await envoy.stat('cluster.readygate_xds.ssl.handshake'))! >= 1);
});

test('ext_proc over mTLS: Envoy without a client certificate for ext_proc gets no ext_proc connection', async (t) => {
  const { envoy, get, upstream } = await setup(t, undefined);
  await waitForRoute(envoy);
  // Enough requests for Envoy to try ext_proc several times; none may come back mapped by readygate.
  for (let i = 0; i < 5; i++) {
    const response = await get();
    await response.arrayBuffer();
    t.is(response.headers.get(CAUSE_HEADER), null);
  }
  t.true(upstream.hits() >= 1, 'the requests reached the pod; only ext_proc was out of reach');
  t.is((await envoy.stat('cluster.readygate_extproc.ssl.handshake')) ?? 0, 0);
  t.true(
    ((await envoy.stat('cluster.readygate_extproc.upstream_cx_connect_fail')) ?? 0) +
      ((await envoy.stat('cluster.readygate_extproc.ssl.connection_error')) ?? 0) >=
      1,
  );
});
