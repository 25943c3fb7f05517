/**
 * `readygate drain-wait` end to end: the real CLI against readygate's admin server, a real Envoy, and a raw
 * xDS client playing a stuck proxy. drain-wait must return only after the Envoy ACKed the version where the
 * pod is DRAINING (checked against sync status and Envoy's own /clusters), and at its timeout exit 1
 * naming the client that never ACKed. A pod no replica knows exits 4 at once (never "drained"); an
 * admin that accepts and never answers costs exactly --timeout (exit 3), with GC forced meanwhile.
 */
import anyTest, { type TestFn } from 'ava';
import { Registry } from 'prom-client';
import { startAdminServer, type AdminServer } from '../../src/admin/server.js';
import { main } from '../../src/cli/main.js';
import { EndpointStore } from '../../src/model/store.js';
import { startReadiness, type Readiness } from '../../src/readiness/index.js';
import { startControlPlane, type ControlPlane } from '../../src/xds/control-plane.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { startEnvoy, waitUntil, type EnvoyProcess } from '../helpers/envoy-process.js';
import { gatewayBootstrap } from '../helpers/gateway-bootstrap.js';
import { READY, SERVING_TERMINATING, endpoint, service } from '../helpers/model-fixtures.js';
import { freePort } from '../helpers/ports.js';
import { runCliUnderGc, startSilentServer } from '../helpers/silent-server.js';
import { XdsTestClient } from '../helpers/xds-client.js';

interface Context {
  store: EndpointStore;
  plane: ControlPlane;
  readiness: Readiness;
  admin: AdminServer;
  envoy: EnvoyProcess;
  port: number;
}
const test = anyTest as TestFn<Context>;
const WEB = 'default/web:http';
const NODE = 'envoy-drain';

test.before(async (t) => {
  const port = await freePort('127.0.0.2');
  const store = new EndpointStore();
  store.replaceAll([
    service(
      'web',
      [
        endpoint('127.0.0.2', READY, 'old'),
        endpoint('127.0.0.3', READY, 'new'),
        endpoint('127.0.0.4', READY, 'old2'),
      ],
      {
        port,
      },
    ),
  ]);
  const plane = await startControlPlane({ store, xdsAddress: '127.0.0.1:0' });
  // File-source shape: no kubeConfig, so only the routes (no gate controller).
  const readiness = await startReadiness({ cache: plane.cache, sync: plane.sync });
  const admin = await startAdminServer({
    address: '127.0.0.1:0',
    registry: new Registry(),
    readiness: () => ({ ready: true }),
    routes: readiness.routes,
  });
  const envoy = await startEnvoy({
    bootstrap: gatewayBootstrap({
      xdsPort: plane.port,
      listenerPort: await freePort(),
      nodeId: NODE,
      apiType: 'GRPC',
    }),
  });
  t.context = { store, plane, readiness, admin, envoy, port };
  await waitForAck(plane, NODE);
});

test.after.always(async (t) => {
  const { envoy, admin, readiness, plane } = t.context as Partial<Context>;
  await envoy?.stop();
  await admin?.close();
  await readiness?.close();
  await plane?.close();
});

async function waitForAck(plane: ControlPlane, nodeId: string): Promise<void> {
  await waitUntil(
    () => {
      const current = plane.cache.get(TypeUrl.ENDPOINT, WEB)?.version;
      const stream = plane.sync.streams.find((s) => s.nodeId === nodeId);
      return (
        current !== undefined && stream?.types.get(TypeUrl.ENDPOINT)?.versions.ackedVersion(WEB) === current
      );
    },
    { timeoutMs: 10_000, description: `ACK of ${WEB} from ${nodeId}` },
  );
}

async function envoyHealth(envoy: EnvoyProcess, address: string): Promise<string | undefined> {
  const json = (await envoy.clusters()) as {
    cluster_statuses?: {
      name: string;
      host_statuses?: {
        address: { socket_address: { address: string } };
        health_status?: { eds_health_status?: string };
      }[];
    }[];
  };
  const host = json.cluster_statuses
    ?.find((c) => c.name === WEB)
    ?.host_statuses?.find((h) => h.address.socket_address.address === address);
  return host ? (host.health_status?.eds_health_status ?? 'HEALTHY') : undefined;
}

function cli(args: string[]): { run: Promise<number>; out: () => string } {
  let text = '';
  const sink = { write: (s: string) => (text += s) };
  return { run: main(['drain-wait', ...args], { stdout: sink, stderr: sink, env: {} }), out: () => text };
}

test.serial('returns 0 only after the Envoy ACKed the version where the pod is DRAINING', async (t) => {
  const { store, plane, envoy, admin, port } = t.context;
  const controlPlane = `http://127.0.0.1:${admin.port}`;
  const { run, out } = cli(['--pod', 'default/old', '--timeout', '20s', '--control-plane', controlPlane]);
  let settled = false;
  void run.then(() => (settled = true));
  await new Promise((resolve) => setTimeout(resolve, 500));
  t.false(settled, 'the pod is still HEALTHY in what the Envoy ACKed: drain-wait must wait');

  // The pod starts terminating: readygate sends it DRAINING.
  let snapshot: { acked?: string | undefined; current?: string | undefined; health?: string | undefined } =
    {};
  void run.then(async () => {
    const stream = plane.sync.streams.find((s) => s.nodeId === NODE);
    snapshot = {
      acked: stream?.types.get(TypeUrl.ENDPOINT)?.versions.ackedVersion(WEB),
      current: plane.cache.get(TypeUrl.ENDPOINT, WEB)?.version,
      health: await envoyHealth(envoy, '127.0.0.2'),
    };
  });
  store.upsert(
    service(
      'web',
      [
        endpoint('127.0.0.2', SERVING_TERMINATING, 'old'),
        endpoint('127.0.0.3', READY, 'new'),
        endpoint('127.0.0.4', READY, 'old2'),
      ],
      {
        port,
      },
    ),
  );
  t.is(await run, 0, out());
  await waitUntil(() => snapshot.acked !== undefined, { timeoutMs: 5000, description: 'snapshot' });
  t.is(snapshot.acked, snapshot.current, 'at return, the Envoy had ACKed the newest EDS version');
  t.is(snapshot.health, 'DRAINING', "and Envoy's own view says DRAINING");
  t.regex(out(), /default\/old is drained from every Envoy/);
});

test.serial('times out with exit 1 naming the proxy that never ACKed the draining version', async (t) => {
  const { store, plane, admin, port } = t.context;
  // A raw xDS client: ACKs the first EDS response (pod HEALTHY there), then never ACKs again.
  const client = new XdsTestClient(plane.address);
  const stream = client.sotw();
  t.teardown(() => {
    stream.close();
    client.close();
  });
  stream.send({ node: { id: 'stuck-proxy' }, type_url: TypeUrl.ENDPOINT, resource_names: [WEB] });
  const first = await stream.next(5000);
  stream.send({
    node: { id: 'stuck-proxy' },
    type_url: TypeUrl.ENDPOINT,
    resource_names: [WEB],
    version_info: first.version_info ?? '',
    response_nonce: first.nonce ?? '',
  });
  await waitUntil(
    () =>
      plane.sync.streams
        .find((s) => s.nodeId === 'stuck-proxy')
        ?.types.get(TypeUrl.ENDPOINT)
        ?.versions.ackedVersion(WEB) !== undefined,
    { timeoutMs: 5000, description: 'the raw client ACKed once' },
  );
  store.upsert(
    service(
      'web',
      [endpoint('127.0.0.3', READY, 'new'), endpoint('127.0.0.4', SERVING_TERMINATING, 'old2')],
      { port },
    ),
  );
  await waitForAck(plane, NODE);
  const started = performance.now();
  const { run, out } = cli([
    '--pod',
    'default/old2',
    '--timeout',
    '1500ms',
    '--control-plane',
    `http://127.0.0.1:${admin.port}`,
  ]);
  t.is(await run, 1);
  const elapsed = performance.now() - started;
  t.true(elapsed >= 1400 && elapsed < 5000, `gave up at the timeout (${Math.round(elapsed)} ms)`);
  t.regex(out(), /timed out after 1\.\ds: Envoys still routing new requests to default\/old2: stuck-proxy/);
  t.notRegex(out(), new RegExp(NODE), 'the real Envoy had ACKed and is not named');
  // Once the stuck proxy goes away, nothing holds the drain.
  stream.close();
  const again = cli([
    '--pod',
    'default/old2',
    '--timeout',
    '5s',
    '--control-plane',
    `http://127.0.0.1:${admin.port}`,
  ]);
  t.is(await again.run, 0, again.out());
});

test.serial('a pod no replica knows: exit 4 at once with a clear line, through the built CLI', async (t) => {
  const { admin, envoy } = t.context;
  const controlPlane = `http://127.0.0.1:${admin.port}`;
  const inProcess = cli(['--pod', 'default/olb', '--timeout', '20s', '--control-plane', controlPlane]);
  t.is(await inProcess.run, 4);
  t.is(
    inProcess.out(),
    'readygate: drain-wait: no readygate replica knows pod default/olb: no endpoint of it in any Service or EDS version it serves (check --pod: namespace and name)\n',
  );
  const built = await runCliUnderGc([
    'drain-wait',
    '--pod',
    'other/old',
    '--timeout',
    '20s',
    '--control-plane',
    controlPlane,
  ]);
  t.is(built.code, 4, built.stderr);
  t.true(
    built.elapsedMs < 10_000,
    `answered at once, not at the 20 s timeout (${Math.round(built.elapsedMs)} ms)`,
  );
  t.regex(built.stderr, /no readygate replica knows pod other\/old/);
  t.not(await envoyHealth(envoy, '127.0.0.3'), undefined, 'the real pods are still served');
});

test.serial(
  'an admin that accepts and never answers: exit 3 at --timeout 3s, GC forced meanwhile',
  async (t) => {
    const silent = await startSilentServer();
    t.teardown(() => silent.close());
    const run = await runCliUnderGc([
      'drain-wait',
      '--pod',
      'default/old',
      '--timeout',
      '3s',
      '--control-plane',
      silent.url,
    ]);
    t.is(run.code, 3, run.stderr);
    // Node's own start (~0.3-1 s on a loaded machine) is inside elapsedMs; the deadline itself is 3 s.
    t.true(run.elapsedMs >= 3000 && run.elapsedMs < 6000, `exited after ${Math.round(run.elapsedMs)} ms`);
    t.true(run.majorGcs >= 10, `${run.majorGcs} major GCs ran during the wait`);
    t.regex(
      run.stderr,
      /^readygate: drain-wait gave up after 3(\.\d)?s: readygate at http:\/\/127\.0\.0\.1:\d+ did not answer \(no complete answer within \d+ ms\)\n$/,
    );
    t.is(run.stdout, '');
    t.is(silent.accepted(), 1, 'one long poll, held open until the deadline');
  },
);
