import test from 'ava';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { startControlPlaneFixture } from '../helpers/control-plane-fixture.js';
import { waitUntil } from '../helpers/envoy-process.js';
import { unpack, type SotwResponse } from '../helpers/xds-client.js';
import { SERVING_TERMINATING, endpoint, service } from '../helpers/model-fixtures.js';

const setup = startControlPlaneFixture;

const NODE = { id: 'envoy-1', cluster: 'test' };
const names = (r: SotwResponse): string[] =>
  r.resources
    .map((a) => unpack<{ name?: string; cluster_name?: string }>(a))
    .map((m) => m.name ?? m.cluster_name ?? '')
    .sort();

type Cla = {
  cluster_name: string;
  endpoints: {
    lb_endpoints: {
      endpoint: { address: { socket_address: { address: string; port_value: number } } };
      health_status?: string;
    }[];
  }[];
};
const hosts = (cla: Cla): string[] =>
  cla.endpoints
    .flatMap((l) =>
      l.lb_endpoints.map(
        (e) =>
          `${e.endpoint.address.socket_address.address}:${e.endpoint.address.socket_address.port_value} ${e.health_status ?? 'UNKNOWN'}`,
      ),
    )
    .sort();

test('wildcard CDS gets every cluster with panic threshold 0; an ACK gets no response', async (t) => {
  const { client } = await setup(t);
  const stream = client.sotw();
  stream.send({ node: NODE, type_url: TypeUrl.CLUSTER });
  const response = await stream.next();
  t.is(response.type_url, TypeUrl.CLUSTER);
  t.is(response.nonce, '1');
  t.deepEqual(names(response), ['default/empty:80', 'default/web:http']);
  const cluster = unpack<{
    common_lb_config: { healthy_panic_threshold: { value?: number }; update_merge_window?: unknown };
    type: string;
  }>(response.resources[0]!);
  t.is(cluster.type, 'EDS');
  t.is(cluster.common_lb_config.healthy_panic_threshold.value ?? 0, 0);
  t.deepEqual(cluster.common_lb_config.update_merge_window, { seconds: 0, nanos: 0 });
  stream.send({ type_url: TypeUrl.CLUSTER, version_info: response.version_info!, response_nonce: '1' });
  t.true(await stream.silentFor(200));
});

test('EDS: requested CLAs only, DRAINING for serving-terminating, and an empty cluster named with no endpoints', async (t) => {
  const { client } = await setup(t);
  const stream = client.sotw();
  stream.send({
    node: NODE,
    type_url: TypeUrl.ENDPOINT,
    resource_names: ['default/web:http', 'default/empty:80'],
  });
  const response = await stream.next();
  const clas = response.resources
    .map((a) => unpack<Cla>(a))
    .sort((a, b) => a.cluster_name.localeCompare(b.cluster_name));
  t.deepEqual(
    clas.map((c) => [c.cluster_name, hosts(c)]),
    [
      ['default/empty:80', []],
      ['default/web:http', ['127.0.0.2:8080 HEALTHY', '127.0.0.3:8080 DRAINING']],
    ],
  );
});

test('an endpoint change pushes only the changed CLA, with a new version', async (t) => {
  const { client, store } = await setup(t);
  const stream = client.sotw();
  stream.send({
    node: NODE,
    type_url: TypeUrl.ENDPOINT,
    resource_names: ['default/web:http', 'default/empty:80'],
  });
  const first = await stream.next();
  stream.send({
    type_url: TypeUrl.ENDPOINT,
    resource_names: ['default/web:http', 'default/empty:80'],
    version_info: first.version_info!,
    response_nonce: first.nonce!,
  });
  store.upsert(service('empty', [endpoint('127.0.0.9')], { key: '80', port: 80 }));
  const pushed = await stream.next();
  t.deepEqual(names(pushed), ['default/empty:80']);
  t.deepEqual(hosts(unpack<Cla>(pushed.resources[0]!)), ['127.0.0.9:80 HEALTHY']);
  t.not(pushed.version_info, first.version_info);
});

test('a request with a stale nonce is ignored', async (t) => {
  const { client, store } = await setup(t);
  const stream = client.sotw();
  stream.send({ node: NODE, type_url: TypeUrl.ENDPOINT, resource_names: ['default/web:http'] });
  const first = await stream.next();
  store.upsert(service('web', [endpoint('127.0.0.2')]));
  const second = await stream.next();
  t.is(second.nonce, '2');
  // Re-requesting a new name with nonce 1 (superseded by 2) must not be answered.
  stream.send({
    type_url: TypeUrl.ENDPOINT,
    resource_names: ['default/web:http', 'default/empty:80'],
    version_info: first.version_info!,
    response_nonce: '1',
  });
  t.true(await stream.silentFor(200));
  // The same request with the current nonce is.
  stream.send({
    type_url: TypeUrl.ENDPOINT,
    resource_names: ['default/web:http', 'default/empty:80'],
    version_info: second.version_info!,
    response_nonce: '2',
  });
  t.deepEqual(names(await stream.next()), ['default/empty:80']);
});

test("a NACK is recorded with Envoy's error text and the stream keeps working", async (t) => {
  const { client, plane, store } = await setup(t);
  const stream = client.sotw();
  stream.send({ node: NODE, type_url: TypeUrl.CLUSTER });
  const first = await stream.next();
  stream.send({
    type_url: TypeUrl.CLUSTER,
    version_info: '',
    response_nonce: first.nonce!,
    error_detail: { code: 3, message: 'bad cluster: test' },
  });
  t.true(await stream.silentFor(150));
  // The ACK is read on the server's next turn; on a busy machine that can come after the silence ended.
  await waitUntil(() => plane.sync.toJSON()[0]?.types[TypeUrl.CLUSTER]?.status === 'NACKED', {
    timeoutMs: 3000,
    description: 'the NACK recorded',
  });
  const syncz = plane.sync.toJSON();
  t.is(syncz.length, 1);
  const cds = syncz[0]!.types[TypeUrl.CLUSTER]!;
  t.is(syncz[0]!.nodeId, 'envoy-1');
  t.is(cds.status, 'NACKED');
  t.is(cds.lastNack?.error, 'bad cluster: test');
  t.is(cds.lastNack?.nonce, '1');
  store.upsert(service('other', [endpoint('127.0.0.5')]));
  const pushed = await stream.next();
  t.deepEqual(names(pushed), ['default/empty:80', 'default/other:http', 'default/web:http']);
  stream.send({
    type_url: TypeUrl.CLUSTER,
    version_info: pushed.version_info!,
    response_nonce: pushed.nonce!,
  });
  t.true(await stream.silentFor(100));
  // The ACK is read on the server's next turn; on a busy machine that can come after the silence ended.
  await waitUntil(() => plane.sync.toJSON()[0]?.types[TypeUrl.CLUSTER]?.status === 'SYNCED', {
    timeoutMs: 3000,
    description: 'the ACK recorded',
  });
  const after = plane.sync.toJSON()[0]!.types[TypeUrl.CLUSTER]!;
  t.is(after.status, 'SYNCED');
  t.is(after.acked?.version, pushed.version_info);
});

test('an unknown type URL is answered with an empty set and the stream lives on', async (t) => {
  const { client } = await setup(t);
  const stream = client.sotw();
  stream.send({
    node: NODE,
    type_url: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret',
  });
  const response = await stream.next();
  t.is(response.type_url, 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret');
  t.deepEqual(response.resources, []);
  stream.send({ type_url: TypeUrl.CLUSTER });
  t.is((await stream.next()).resources.length, 2);
});

test('unsubscribing stops updates for that name; resubscribing resends it', async (t) => {
  const { client, store } = await setup(t);
  const stream = client.sotw();
  stream.send({
    node: NODE,
    type_url: TypeUrl.ENDPOINT,
    resource_names: ['default/web:http', 'default/empty:80'],
  });
  const first = await stream.next();
  stream.send({
    type_url: TypeUrl.ENDPOINT,
    resource_names: ['default/web:http'],
    version_info: first.version_info!,
    response_nonce: first.nonce!,
  });
  t.true(await stream.silentFor(100));
  store.upsert(service('empty', [endpoint('127.0.0.9')], { key: '80', port: 80 }));
  t.true(await stream.silentFor(200));
  stream.send({
    type_url: TypeUrl.ENDPOINT,
    resource_names: ['default/web:http', 'default/empty:80'],
    version_info: first.version_info!,
    response_nonce: first.nonce!,
  });
  const resent = await stream.next();
  t.deepEqual(names(resent), ['default/empty:80']);
});

test('LDS by wildcard (an Envoy) gets no gRPC API listeners; by name (a gRPC client) gets them', async (t) => {
  const { client } = await setup(t);
  const envoy = client.sotw();
  envoy.send({ node: NODE, type_url: TypeUrl.LISTENER });
  t.deepEqual((await envoy.next()).resources, []);
  const grpcClient = client.sotw();
  grpcClient.send({
    node: { id: 'grpc-1' },
    type_url: TypeUrl.LISTENER,
    resource_names: ['web.default:8080'],
  });
  const response = await grpcClient.next();
  t.deepEqual(names(response), ['web.default:8080']);
  grpcClient.send({ type_url: TypeUrl.ROUTE, resource_names: ['web.default:8080'] });
  const route = unpack<{ virtual_hosts: { routes: { route: { cluster: string } }[] }[] }>(
    (await grpcClient.next()).resources[0]!,
  );
  t.is(route.virtual_hosts[0]!.routes[0]!.route.cluster, 'default/web:http');
});

test('after a Cluster changes, the next EDS request is answered even though the CLA did not change', async (t) => {
  const { client, store } = await setup(t);
  const stream = client.sotw();
  stream.send({ node: NODE, type_url: TypeUrl.CLUSTER });
  const cds = await stream.next();
  stream.send({ type_url: TypeUrl.CLUSTER, version_info: cds.version_info!, response_nonce: cds.nonce! });
  stream.send({ type_url: TypeUrl.ENDPOINT, resource_names: ['default/web:http', 'default/empty:80'] });
  const eds = await stream.next();
  stream.send({
    type_url: TypeUrl.ENDPOINT,
    resource_names: ['default/web:http', 'default/empty:80'],
    version_info: eds.version_info!,
    response_nonce: eds.nonce!,
  });
  t.true(await stream.silentFor(100));
  // Same endpoints, different cluster (HTTP/2 now): Envoy re-warms the cluster.
  store.upsert(
    service('web', [endpoint('127.0.0.2'), endpoint('127.0.0.3', SERVING_TERMINATING)], {
      appProtocol: 'grpc',
    }),
  );
  const cdsPush = await stream.next();
  t.is(cdsPush.type_url, TypeUrl.CLUSTER);
  // Envoy's warming re-request carries the same names and the current EDS nonce.
  stream.send({
    type_url: TypeUrl.ENDPOINT,
    resource_names: ['default/web:http', 'default/empty:80'],
    version_info: eds.version_info!,
    response_nonce: eds.nonce!,
  });
  const warm = await stream.next();
  t.is(warm.type_url, TypeUrl.ENDPOINT);
  t.deepEqual(names(warm), ['default/web:http']);
  t.is(warm.version_info, eds.version_info);
});

test('deleting a service drops its cluster from the next CDS set', async (t) => {
  const { client, store } = await setup(t);
  const stream = client.sotw();
  stream.send({ node: NODE, type_url: TypeUrl.CLUSTER });
  const first = await stream.next();
  stream.send({ type_url: TypeUrl.CLUSTER, version_info: first.version_info!, response_nonce: first.nonce! });
  store.delete('default/empty');
  const pushed = await stream.next();
  t.deepEqual(names(pushed), ['default/web:http']);
});

test('garbage bytes end only that stream, with INVALID_ARGUMENT', async (t) => {
  const { client } = await setup(t);
  const healthy = client.sotw();
  healthy.send({ node: NODE, type_url: TypeUrl.CLUSTER });
  await healthy.next();
  const broken = client.sotw();
  broken.sendRaw(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
  const end = await broken.ended();
  t.is(end.code, 3);
  t.regex(end.details, /cannot decode envoy\.service\.discovery\.v3\.DiscoveryRequest/);
  healthy.send({ type_url: TypeUrl.ENDPOINT, resource_names: ['default/web:http'] });
  t.deepEqual(names(await healthy.next()), ['default/web:http']);
});

test('a request without type_url ends the stream with a clear error', async (t) => {
  const { client } = await setup(t);
  const stream = client.sotw();
  stream.send({ node: NODE, type_url: '' });
  const end = await stream.ended();
  t.is(end.code, 3);
  t.is(end.details, 'DiscoveryRequest.type_url is required on an ADS stream');
});

test('resource bytes are encoded once and shared by every stream', async (t) => {
  const { client, plane } = await setup(t);
  const a = client.sotw();
  const b = client.sotw();
  a.send({ node: NODE, type_url: TypeUrl.ENDPOINT, resource_names: ['default/web:http'] });
  b.send({ node: { id: 'envoy-2' }, type_url: TypeUrl.ENDPOINT, resource_names: ['default/web:http'] });
  const [ra, rb] = await Promise.all([a.next(), b.next()]);
  t.deepEqual(ra.resources[0]!.value, rb.resources[0]!.value);
  const cached = plane.cache.get(TypeUrl.ENDPOINT, 'default/web:http')!;
  t.is(cached.sotwField, cached.sotwField);
  t.deepEqual(Buffer.from(ra.resources[0]!.value), cached.body);
});

test('requests spanning several HTTP/2 frames: ACKs and subscription changes on 1500 names', async (t) => {
  // 1500 names make every EDS request about 35 KB: three DATA frames, reassembled in the buffer each
  // stream reuses (grpc-transport.ts). Requests of equal size but other names must not be mistaken
  // for the previous ones.
  const count = 1500;
  const services = Array.from({ length: count }, (_, i) => service(`svc-${i}`, [endpoint('127.0.0.2')]));
  const { client, store, plane } = await setup(t, services);
  const all = services.map((s) => `default/${s.name}:http`);
  const stream = client.sotw();
  stream.send({ node: NODE, type_url: TypeUrl.ENDPOINT, resource_names: all });
  const first = await stream.next();
  t.is(first.resources.length, count);
  const ack = (response: SotwResponse, resourceNames: string[]): void => {
    stream.send({
      type_url: TypeUrl.ENDPOINT,
      resource_names: resourceNames,
      version_info: response.version_info!,
      response_nonce: response.nonce!,
    });
  };
  ack(first, all);
  t.true(await stream.silentFor(100));

  store.upsert(service('svc-7', [endpoint('127.0.0.3')]));
  const changed = await stream.next();
  t.deepEqual(names(changed), ['default/svc-7:http']);
  t.deepEqual(hosts(unpack<Cla>(changed.resources[0]!)), ['127.0.0.3:8080 HEALTHY']);
  ack(changed, all);
  t.true(await stream.silentFor(100));

  // The same size as `all`, one name swapped: svc-7 is dropped, svc-Z (not a service) is asked for.
  const swapped = all.map((name) => (name === 'default/svc-7:http' ? 'default/svc-Z:http' : name));
  t.is(Buffer.byteLength(swapped.join()), Buffer.byteLength(all.join()));
  ack(changed, swapped);
  t.true(await stream.silentFor(100));
  store.upsert(service('svc-7', [endpoint('127.0.0.4')]));
  t.true(await stream.silentFor(200));
  store.upsert(service('svc-8', [endpoint('127.0.0.5')]));
  const afterSwap = await stream.next();
  t.deepEqual(names(afterSwap), ['default/svc-8:http']);
  ack(afterSwap, swapped);
  t.true(await stream.silentFor(100));

  // Back to `all`, in a request laid out like the previous one and assembled in the same buffer: the
  // names kept from that request must be a copy, or they would now read as these and hide the change.
  ack(afterSwap, all);
  const resubscribed = await stream.next();
  t.deepEqual(names(resubscribed), ['default/svc-7:http']);
  t.deepEqual(hosts(unpack<Cla>(resubscribed.resources[0]!)), ['127.0.0.4:8080 HEALTHY']);
  ack(resubscribed, all);
  t.true(await stream.silentFor(100));

  const eds = plane.sync.streams[0]!.type(TypeUrl.ENDPOINT);
  t.is(eds.lastAcked?.nonce, resubscribed.nonce);
  t.is(eds.subscribed.size, count);
  t.true(eds.isSubscribed('default/svc-7:http'));
  t.false(eds.isSubscribed('default/svc-Z:http'));
});

test('streams that subscribe to the same names share one set of them; a changed one moves', async (t) => {
  const { client, plane, store } = await setup(t);
  const [a, b, c] = [client.sotw(), client.sotw(), client.sotw()];
  const both = ['default/web:http', 'default/empty:80'];
  a.send({ node: { id: 'a' }, type_url: TypeUrl.ENDPOINT, resource_names: both });
  b.send({ node: { id: 'b' }, type_url: TypeUrl.ENDPOINT, resource_names: both });
  c.send({ node: { id: 'c' }, type_url: TypeUrl.ENDPOINT, resource_names: ['default/web:http'] });
  const [ra] = await Promise.all([a.next(), b.next(), c.next()]);
  const subscribed = (id: string): ReadonlySet<string> | undefined =>
    plane.sync.streams.find((s) => s.nodeId === id)?.types.get(TypeUrl.ENDPOINT)?.subscribed;
  t.is(subscribed('a'), subscribed('b'));
  t.not(subscribed('a'), subscribed('c'));
  t.deepEqual([...subscribed('a')!].sort(), [...both].sort());

  // a narrows its subscription to c's: it now holds c's set, and b keeps the old one.
  a.send({
    type_url: TypeUrl.ENDPOINT,
    resource_names: ['default/web:http'],
    version_info: ra.version_info!,
    response_nonce: ra.nonce!,
  });
  t.true(await a.silentFor(100));
  t.is(subscribed('a'), subscribed('c'));
  t.deepEqual([...subscribed('b')!].sort(), [...both].sort());
  // And a still gets what it subscribes to, and only that.
  store.upsert(service('empty', [endpoint('127.0.0.9')], { key: '80', port: 80 }));
  t.true(await a.silentFor(200));
  const pushed = await b.next();
  t.deepEqual(names(pushed), ['default/empty:80']);
});
