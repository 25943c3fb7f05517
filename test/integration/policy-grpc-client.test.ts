/**
 * readygate.io/* policy for proxyless gRPC clients (@grpc/grpc-js-xds): a Service with ring-hash on a
 * header, breakers and outlier detection is accepted (no NACK of its Cluster or RouteConfiguration), and
 * the hash policy readygate puts on its own route pins each key to one endpoint. (Own file, own process:
 * the bootstrap env var and the resolver registration must not leak into other tests.)
 */
import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { EndpointStore } from '../../src/model/store.js';
import { grpcListenerName } from '../../src/model/types.js';
import { startControlPlane } from '../../src/xds/control-plane.js';
import { endpoint, service } from '../helpers/model-fixtures.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { echoDefinition, echoServer } from '../helpers/grpc-echo.js';
import { freePort } from '../helpers/ports.js';

test('ring-hash on a header: grpc-js accepts the policy and pins each key to one endpoint', async (t) => {
  const port = await freePort('127.0.0.2');
  const hosts = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
  const servers = await Promise.all(hosts.map((h) => echoServer(h, port)));
  const store = new EndpointStore();
  store.replaceAll([
    {
      ...service(
        'web',
        hosts.map((h) => endpoint(h)),
        { port, appProtocol: 'grpc' },
      ),
      annotations: {
        'readygate.io/lb-policy': 'ring-hash',
        'readygate.io/hash-header': 'x-user',
        'readygate.io/max-requests': '100',
        'readygate.io/connect-timeout': '500ms',
      },
    },
  ]);
  const plane = await startControlPlane({ store, xdsAddress: '127.0.0.1:0' });
  process.env['GRPC_XDS_BOOTSTRAP_CONFIG'] = JSON.stringify({
    xds_servers: [
      { server_uri: plane.address, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] },
    ],
    node: { id: 'grpc-policy', locality: {} },
  });
  const xds = await import('@grpc/grpc-js-xds');
  xds.register();
  const Client = grpc.makeGenericClientConstructor(echoDefinition, 'Echo');
  const client = new Client(
    `xds:///${grpcListenerName({ namespace: 'default', name: 'web' }, port)}`,
    grpc.credentials.createInsecure(),
  );
  t.teardown(async () => {
    client.close();
    await plane.close();
    await Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.tryShutdown(() => {
              resolve();
            });
          }),
      ),
    );
  });
  const call = (user: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const metadata = new grpc.Metadata();
      metadata.set('x-user', user);
      (
        client as unknown as {
          WhoAmI: (
            req: Buffer,
            md: grpc.Metadata,
            opts: grpc.CallOptions,
            cb: grpc.requestCallback<Buffer>,
          ) => void;
        }
      ).WhoAmI(Buffer.alloc(0), metadata, { deadline: Date.now() + 5000 }, (error, response) => {
        if (error) reject(error);
        else resolve(response!.toString());
      });
    });
  // Twelve keys on a ring of three hosts all landing on one host has odds of 3 × (1/3)^12 (≈ 6 in a
  // million); pick_first or round robin would show as one host for all, or several per key.
  const users = Array.from({ length: 12 }, (_, i) => `user-${i}`);
  const reached = new Set<string>();
  for (const user of users) {
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add(await call(user));
    t.is(seen.size, 1, `${user} went to ${[...seen].join(', ')}`);
    for (const host of seen) reached.add(host);
  }
  t.true(reached.size >= 2, `every key went to ${[...reached].join(', ')}`);
  const sync = plane.sync.toJSON().find((s) => s.nodeId === 'grpc-policy')!;
  t.is(sync.types[TypeUrl.CLUSTER]!.lastNack, null);
  t.is(sync.types[TypeUrl.ROUTE]!.lastNack, null);
});
