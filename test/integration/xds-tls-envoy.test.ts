/**
 * ADS over mTLS with the real Envoy, from the shipped envoy/gateway-ads-tls.yaml: Envoy with a client
 * certificate from the client CA gets its clusters and shows up with its identity; Envoy with no
 * certificate, or one from another CA, is refused in the handshake (and counted); a rotation of the
 * server's files is used by new handshakes while Envoy's established stream stays up; a rotation to
 * files that do not belong together is refused and the previous certificate kept.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import test, { type ExecutionContext } from 'ava';
import { silentLogger } from '../../src/log.js';
import { EndpointStore } from '../../src/model/store.js';
import { createTlsMetrics } from '../../src/tls/metrics.js';
import { startTlsReloader, type TlsReloader } from '../../src/tls/reloader.js';
import { startControlPlane, type ControlPlane } from '../../src/xds/control-plane.js';
import { startEnvoy, waitUntil, type EnvoyProcess } from '../helpers/envoy-process.js';
import { gatewayBootstrap } from '../helpers/gateway-bootstrap.js';
import { endpoint, service } from '../helpers/model-fixtures.js';
import { freePort } from '../helpers/ports.js';
import { createTestPki, type CertFiles } from '../helpers/tls-certs.js';
import { SecretMount, counterValue, handshake, useEnvoyTlsFiles } from '../helpers/tls-fixtures.js';

const pki = createTestPki();
const ca = pki.ca('ca');
const otherCa = pki.ca('other-ca');
const serverCert = (name: string): CertFiles =>
  pki.issue(ca, name, {
    cn: 'readygate',
    dns: ['readygate', 'localhost'],
    ips: ['127.0.0.1'],
    usage: 'serverAuth',
  });
const serverV1 = serverCert('readygate-v1');
const serverV2 = serverCert('readygate-v2');
const ENVOY_IDENTITY = 'spiffe://readygate.test/gateway/gateway-1';
const envoyClient = pki.issue(ca, 'gateway-1', {
  cn: 'gateway-1',
  uris: [ENVOY_IDENTITY],
  usage: 'clientAuth',
});
const stranger = pki.issue(otherCa, 'stranger', { cn: 'stranger', usage: 'clientAuth' });
test.after.always(() => {
  pki.remove();
});

interface Setup {
  readonly store: EndpointStore;
  readonly plane: ControlPlane;
  readonly reloader: TlsReloader;
  readonly registry: Registry;
  readonly mount: SecretMount;
}

async function setup(t: ExecutionContext, name: string): Promise<Setup> {
  const mount = new SecretMount(pki, name, { cert: serverV1, ca });
  const registry = new Registry();
  const metrics = createTlsMetrics(registry);
  const reloader = await startTlsReloader(
    { certFile: mount.certFile, keyFile: mount.keyFile, clientCaFile: mount.caFile },
    { logger: silentLogger, metrics, pollIntervalMs: 1000 },
  );
  const store = new EndpointStore();
  store.replaceAll([service('web', [endpoint('127.0.0.2')], { port: 8080 })]);
  const plane = await startControlPlane({
    store,
    xdsAddress: '127.0.0.1:0',
    tls: { reloader, handshakeTimeoutMs: 10_000, metrics },
  });
  t.teardown(async () => {
    await plane.close();
    reloader.close();
  });
  return { store, plane, reloader, registry, mount };
}

async function envoyWith(
  t: ExecutionContext,
  plane: ControlPlane,
  files: { clientCert: CertFiles | undefined; trustedCa: string },
  waitReady: boolean,
): Promise<EnvoyProcess> {
  const bootstrap = gatewayBootstrap({
    file: 'gateway-ads-tls.yaml',
    xdsPort: plane.port,
    listenerPort: await freePort(),
    nodeId: 'gateway-1',
    apiType: 'GRPC',
  });
  const envoy = await startEnvoy({ bootstrap: useEnvoyTlsFiles(bootstrap, files), waitReady });
  t.teardown(() => envoy.stop());
  return envoy;
}

interface ClustersJson {
  cluster_statuses?: {
    name: string;
    host_statuses?: { address: { socket_address: { address: string } } }[];
  }[];
}

async function envoyHostsOf(envoy: EnvoyProcess, cluster: string): Promise<string[] | undefined> {
  const json = (await envoy.clusters()) as ClustersJson;
  const status = json.cluster_statuses?.find((c) => c.name === cluster);
  return status?.host_statuses?.map((h) => h.address.socket_address.address).sort();
}

async function waitForHosts(envoy: EnvoyProcess, expected: string[]): Promise<void> {
  await waitUntil(
    async () => JSON.stringify(await envoyHostsOf(envoy, 'default/web:http')) === JSON.stringify(expected),
    {
      timeoutMs: 15_000,
      description: `Envoy's default/web:http hosts to be ${expected.join(',')}`,
    },
  );
}

const failures = (registry: Registry, reason: string): Promise<number> =>
  counterValue(registry, 'readygate_tls_handshake_failures_total', { listener: 'xds', reason });

test('mTLS: Envoy with a client certificate from the client CA gets its clusters, and syncz names it', async (t) => {
  const { plane, store, registry } = await setup(t, 'happy');
  const envoy = await envoyWith(t, plane, { clientCert: envoyClient, trustedCa: ca.certFile }, true);
  await waitForHosts(envoy, ['127.0.0.2']);
  const [entry, ...others] = plane.sync.toJSON();
  t.is(others.length, 0);
  t.is(entry?.nodeId, 'gateway-1');
  t.is(entry?.identity, ENVOY_IDENTITY);
  t.true((await envoy.stat('cluster.readygate_xds.ssl.handshake'))! >= 1);
  t.is(await envoy.stat('cluster.readygate_xds.ssl.connection_error'), 0);
  // Edits keep flowing over the encrypted stream.
  store.upsert(service('web', [endpoint('127.0.0.2'), endpoint('127.0.0.3')], { port: 8080 }));
  await waitForHosts(envoy, ['127.0.0.2', '127.0.0.3']);
  t.is(await failures(registry, 'client_certificate'), 0);
});

for (const [label, clientCert] of [
  ['no client certificate', undefined],
  ['a client certificate from another CA', stranger],
] as const) {
  test(`mTLS: Envoy with ${label} is refused in the handshake and gets nothing`, async (t) => {
    const { plane, registry } = await setup(t, label.replaceAll(' ', '-'));
    const envoy = await envoyWith(t, plane, { clientCert, trustedCa: ca.certFile }, false);
    // Envoy retries with backoff; two refusals show it is refused every time, not once by accident.
    await waitUntil(async () => (await failures(registry, 'client_certificate')) >= 2, {
      timeoutMs: 15_000,
      description: 'two refused handshakes',
    });
    t.deepEqual(plane.sync.toJSON(), []);
    // Not control_plane.connected_state: Envoy sets it to 1 as it starts each attempt's gRPC stream,
    // before TCP and TLS, so between two refusals it can read 1. No configuration ever arrived:
    t.is(await envoy.stat('cluster_manager.cds.update_success'), 0);
    t.is(await envoyHostsOf(envoy, 'default/web:http'), undefined);
  });
}

test('mTLS: Envoy that does not trust the server certificate refuses readygate', async (t) => {
  const { plane } = await setup(t, 'untrusted-server');
  const envoy = await envoyWith(t, plane, { clientCert: envoyClient, trustedCa: otherCa.certFile }, false);
  await waitUntil(async () => ((await envoy.stat('cluster.readygate_xds.ssl.fail_verify_error')) ?? 0) >= 1, {
    timeoutMs: 15_000,
    description: "Envoy's fail_verify_error",
  });
  t.deepEqual(plane.sync.toJSON(), []);
  t.is(await envoy.stat('cluster.readygate_xds.ssl.handshake'), 0);
  t.is(await envoyHostsOf(envoy, 'default/web:http'), undefined);
});

test('rotation: new handshakes get the new certificate, the established Envoy stream stays up; bad files are refused', async (t) => {
  const { plane, store, reloader, registry, mount } = await setup(t, 'rotation');
  const envoy = await envoyWith(t, plane, { clientCert: envoyClient, trustedCa: ca.certFile }, true);
  await waitForHosts(envoy, ['127.0.0.2']);
  const [before] = plane.sync.toJSON();
  const serial = (files: CertFiles): string => new X509Certificate(readCert(files)).serialNumber;
  t.is(
    (await handshake(plane.port, { ca: ca.certFile, client: envoyClient })).serverSerial,
    serial(serverV1),
  );

  mount.rotate({ cert: serverV2, ca });
  await waitUntil(
    async () => (await counterValue(registry, 'readygate_tls_reloads_total', { result: 'ok' })) === 1,
    {
      timeoutMs: 10_000,
      description: 'the reload',
    },
  );
  const after = await handshake(plane.port, { ca: ca.certFile, client: envoyClient });
  t.is(after.serverSerial, serial(serverV2));
  t.is(after.alpn, 'h2');
  // node's client offers AES-256-GCM first; the server's order wins.
  t.is(after.cipher, 'TLS_AES_128_GCM_SHA256');
  // The same stream, on the same connection, still carries edits.
  store.upsert(service('web', [endpoint('127.0.0.4')], { port: 8080 }));
  await waitForHosts(envoy, ['127.0.0.4']);
  const streams = plane.sync.toJSON();
  t.is(streams.length, 1);
  t.is(streams[0]?.streamId, before?.streamId);
  t.is(await envoy.stat('cluster.readygate_xds.upstream_cx_total'), 1);

  // A certificate with somebody else's key: refused once the second look confirms it, v2 stays.
  mount.rotate({ cert: { certFile: serverV1.certFile, keyFile: serverV2.keyFile }, ca });
  await waitUntil(
    async () => (await counterValue(registry, 'readygate_tls_reloads_total', { result: 'failed' })) === 1,
    { timeoutMs: 10_000, description: 'the refused reload' },
  );
  t.is(reloader.current.certSubject, 'CN=readygate');
  t.is(
    (await handshake(plane.port, { ca: ca.certFile, client: envoyClient })).serverSerial,
    serial(serverV2),
  );
  // Polled again and again, the same bad files are one refusal, not one per poll.
  await new Promise((resolve) => setTimeout(resolve, 2500));
  t.is(await counterValue(registry, 'readygate_tls_reloads_total', { result: 'failed' }), 1);
  t.is(plane.sync.toJSON()[0]?.streamId, before?.streamId);
});

function readCert(files: CertFiles): Buffer {
  return readFileSync(files.certFile);
}
