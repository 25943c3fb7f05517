/**
 * @grpc/grpc-js-xds as a second, independent xDS client: a proxyless gRPC channel on
 * xds:///<service>.<namespace>:<port> gets readygate's Listener, RouteConfiguration, Cluster and CLA, and
 * so sends RPCs only to eligible endpoints, following changes. (This file runs in its own process, so the
 * bootstrap env var and the resolver registration do not leak into other tests.)
 */
import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { EndpointStore } from '../../src/model/store.js';
import { grpcListenerName } from '../../src/model/types.js';
import { startControlPlane } from '../../src/xds/control-plane.js';
import { waitUntil } from '../helpers/envoy-process.js';
import { READY, SERVING_TERMINATING, endpoint, service } from '../helpers/model-fixtures.js';
import { echoDefinition, echoServer } from '../helpers/grpc-echo.js';
import { freePort } from '../helpers/ports.js';

test('a grpc-js xds:/// channel reaches only eligible endpoints and follows changes', async (t) => {
  const port = await freePort('127.0.0.2');
  const servers = await Promise.all(['127.0.0.2', '127.0.0.3'].map((h) => echoServer(h, port)));
  const store = new EndpointStore();
  const web = (endpoints: ReturnType<typeof endpoint>[]) =>
    service('web', endpoints, { port, appProtocol: 'grpc' });
  store.replaceAll([web([endpoint('127.0.0.2', READY), endpoint('127.0.0.3', SERVING_TERMINATING)])]);
  const plane = await startControlPlane({ store, xdsAddress: '127.0.0.1:0' });

  process.env['GRPC_XDS_BOOTSTRAP_CONFIG'] = JSON.stringify({
    xds_servers: [
      { server_uri: plane.address, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] },
    ],
    node: { id: 'grpc-client-1', locality: {} },
  });
  const xds = await import('@grpc/grpc-js-xds');
  xds.register();
  const Client = grpc.makeGenericClientConstructor(echoDefinition, 'Echo');
  const target = `xds:///${grpcListenerName({ namespace: 'default', name: 'web' }, port)}`;
  const client = new Client(target, grpc.credentials.createInsecure());
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

  const call = (): Promise<string> =>
    new Promise((resolve, reject) => {
      (
        client as unknown as {
          WhoAmI: (req: Buffer, opts: grpc.CallOptions, cb: grpc.requestCallback<Buffer>) => void;
        }
      ).WhoAmI(Buffer.alloc(0), { deadline: Date.now() + 5000 }, (error, response) => {
        if (error) reject(error);
        else resolve(response!.toString());
      });
    });
  const servedBy = async (n: number): Promise<string[]> => {
    const seen = new Set<string>();
    for (let i = 0; i < n; i++) seen.add(await call());
    return [...seen].sort();
  };

  t.deepEqual(await servedBy(20), ['127.0.0.2']);
  const sync = plane.sync.toJSON().find((s) => s.nodeId === 'grpc-client-1')!;
  t.deepEqual(Object.keys(sync.types).sort(), [
    'type.googleapis.com/envoy.config.cluster.v3.Cluster',
    'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
    'type.googleapis.com/envoy.config.listener.v3.Listener',
    'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  ]);

  // .3 becomes ready and .2 goes away: the channel follows within a bounded time.
  store.upsert(web([endpoint('127.0.0.3', READY)]));
  await waitUntil(async () => JSON.stringify(await servedBy(10)) === '["127.0.0.3"]', {
    timeoutMs: 10_000,
    description: 'the gRPC channel to use only 127.0.0.3',
  });
  t.deepEqual(await servedBy(20), ['127.0.0.3']);
});
