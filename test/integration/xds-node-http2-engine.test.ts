/**
 * bench:xds's second engine: the whole control plane with ADS served on node:http2
 * (bench/node-http2-grpc.ts, startControlPlane's grpcServer option). Real exchanges with exact outcomes,
 * so that a comparison of the two engines cannot run on a bench engine that has quietly stopped working.
 */
import http2 from 'node:http2';
import test from 'ava';
import { nodeHttp2GrpcServer } from '../../bench/node-http2-grpc.js';
import { DEFAULT_HTTP2_LIMITS } from '../../src/http2/limits.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { ADS_SERVER_SETTINGS, SOTW_METHOD_PATH } from '../../src/xds/server.js';
import { frameMessage } from '../../src/http2/grpc-transport.js';
import { startControlPlaneFixture } from '../helpers/control-plane-fixture.js';
import { waitUntil } from '../helpers/envoy-process.js';
import { endpoint, service } from '../helpers/model-fixtures.js';
import { unpack, type SotwResponse } from '../helpers/xds-client.js';

const NODE = { id: 'envoy-1', cluster: 'test' };
const names = (r: SotwResponse): string[] =>
  r.resources
    .map((a) => unpack<{ name?: string; cluster_name?: string }>(a))
    .map((m) => m.name ?? m.cluster_name ?? '')
    .sort();

const setup = (t: Parameters<typeof startControlPlaneFixture>[0]) =>
  startControlPlaneFixture(t, undefined, { grpcServer: nodeHttp2GrpcServer });

test('SotW CDS on node:http2: every cluster, the ACK recorded, and a change pushed on the same stream', async (t) => {
  const { client, plane, store } = await setup(t);
  const stream = client.sotw();
  stream.send({ node: NODE, type_url: TypeUrl.CLUSTER });
  const response = await stream.next();
  t.is(response.type_url, TypeUrl.CLUSTER);
  t.is(response.nonce, '1');
  t.deepEqual(names(response), ['default/empty:80', 'default/web:http']);
  stream.send({ type_url: TypeUrl.CLUSTER, version_info: response.version_info!, response_nonce: '1' });
  await waitUntil(() => plane.sync.toJSON()[0]?.types[TypeUrl.CLUSTER]?.status === 'SYNCED', {
    timeoutMs: 3000,
    description: 'the ACK recorded',
  });
  t.is(plane.sync.toJSON()[0]!.types[TypeUrl.CLUSTER]!.acked?.version, response.version_info);
  t.is(plane.sync.streams[0]!.kind, 'sotw');

  store.upsert(service('other', [endpoint('127.0.0.4')]));
  const pushed = await stream.next();
  t.is(pushed.nonce, '2');
  t.deepEqual(names(pushed), ['default/empty:80', 'default/other:http', 'default/web:http']);
});

test('delta EDS on node:http2: the subscribed CLA with its endpoint', async (t) => {
  const { client } = await setup(t);
  const stream = client.delta();
  stream.send({ node: NODE, type_url: TypeUrl.ENDPOINT, resource_names_subscribe: ['default/web:http'] });
  const response = await stream.next();
  t.is(response.type_url, TypeUrl.ENDPOINT);
  t.deepEqual(
    response.resources.map((r) => r.name),
    ['default/web:http'],
  );
  t.deepEqual(response.removed_resources, []);
});

test('an undecodable request ends only its stream, with INVALID_ARGUMENT in the trailers', async (t) => {
  const { client } = await setup(t);
  const healthy = client.sotw();
  healthy.send({ node: NODE, type_url: TypeUrl.CLUSTER });
  await healthy.next();
  const broken = client.sotw();
  broken.sendRaw(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
  const end = await broken.ended();
  t.is(end.code, 3, end.details);
  t.regex(end.details, /cannot decode envoy\.service\.discovery\.v3\.DiscoveryRequest/);
  healthy.send({ type_url: TypeUrl.ENDPOINT, resource_names: ['default/web:http'] });
  t.deepEqual(names(await healthy.next()), ['default/web:http']);
});

test('node:http2 announces the ADS settings and our limits, and answers an unknown method UNIMPLEMENTED', async (t) => {
  const { plane } = await setup(t);
  const session = http2.connect(`http://${plane.address}`);
  t.teardown(() => {
    session.destroy();
  });
  const settings = await new Promise<http2.Settings>((resolve) => session.once('remoteSettings', resolve));
  t.like(settings, {
    maxConcurrentStreams: ADS_SERVER_SETTINGS.maxConcurrentStreams,
    initialWindowSize: ADS_SERVER_SETTINGS.receiveWindowBytes,
    maxFrameSize: ADS_SERVER_SETTINGS.maxFrameBytes,
    maxHeaderListSize: DEFAULT_HTTP2_LIMITS.maxHeaderListBytes,
    headerTableSize: DEFAULT_HTTP2_LIMITS.headerTableBytes,
  });
  const request = session.request({
    ':method': 'POST',
    ':path': '/no.Such/Method',
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  const headers = await new Promise<http2.IncomingHttpHeaders>((resolve) =>
    request.once('response', resolve),
  );
  t.is(headers['grpc-status'], '12');
  t.is(headers['grpc-message'], 'unknown method /no.Such/Method');
});

test('a call finished while the client still sends: trailers first, then RST_STREAM(NO_ERROR), and the stream is gone', async (t) => {
  const { plane } = await setup(t);
  const session = http2.connect(`http://${plane.address}`);
  t.teardown(() => {
    session.destroy();
  });
  const request = session.request({
    ':method': 'POST',
    ':path': SOTW_METHOD_PATH,
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  request.on('error', () => undefined);
  const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => request.once('trailers', resolve));
  const closed = new Promise<number>((resolve) =>
    request.once('close', () => {
      resolve(request.rstCode);
    }),
  );
  // Undecodable, and the request side stays open.
  request.write(frameMessage([Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01])]));
  t.is((await trailers)['grpc-status'], '3');
  t.is(await closed, http2.constants.NGHTTP2_NO_ERROR);
  await waitUntil(() => plane.sync.streams.length === 0, {
    timeoutMs: 3000,
    description: 'the stream closed on the server',
  });
  t.pass();
});

test('a response over the 16 KB stream mark: write() says full, and the next response waits for the drain and comes', async (t) => {
  const many = Array.from({ length: 300 }, (_, i) =>
    service(`svc-${i}`, [endpoint(`10.0.${i >> 8}.${i & 255}`)]),
  );
  const { client, store } = await startControlPlaneFixture(t, many, { grpcServer: nodeHttp2GrpcServer });
  const stream = client.sotw();
  stream.send({ node: NODE, type_url: TypeUrl.CLUSTER });
  const first = await stream.next();
  t.is(first.resources.length, 300);
  t.true(first.resources.reduce((bytes, r) => bytes + r.value.length, 0) > 16 * 1024);
  stream.send({ type_url: TypeUrl.CLUSTER, version_info: first.version_info!, response_nonce: first.nonce! });
  store.upsert(service('svc-300', [endpoint('10.0.2.44')]));
  const pushed = await stream.next();
  t.is(pushed.resources.length, 301);
});
