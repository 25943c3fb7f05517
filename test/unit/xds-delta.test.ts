import test from 'ava';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { startControlPlaneFixture } from '../helpers/control-plane-fixture.js';
import { waitUntil } from '../helpers/envoy-process.js';
import { unpack, type DeltaResponse } from '../helpers/xds-client.js';
import { SERVING_TERMINATING, endpoint, service } from '../helpers/model-fixtures.js';

const setup = startControlPlaneFixture;

const NODE = { id: 'envoy-delta', cluster: 'test' };
const sent = (r: DeltaResponse): string[] => r.resources.map((x) => x.name ?? '').sort();
const versions = (r: DeltaResponse): Record<string, string> =>
  Object.fromEntries(r.resources.map((x) => [x.name ?? '', x.version ?? '']));
const ack = (r: DeltaResponse) => ({ type_url: r.type_url!, response_nonce: r.nonce! });

test('wildcard CDS: every cluster with its content-hash version', async (t) => {
  const { client, plane } = await setup(t);
  const stream = client.delta();
  stream.send({ node: NODE, type_url: TypeUrl.CLUSTER });
  const response = await stream.next();
  t.deepEqual(sent(response), ['default/empty:80', 'default/web:http']);
  t.is(versions(response)['default/web:http'], plane.cache.get(TypeUrl.CLUSTER, 'default/web:http')!.version);
  t.regex(versions(response)['default/web:http']!, /^[0-9a-f]{16}$/);
  t.deepEqual(response.removed_resources, []);
  stream.send(ack(response));
  t.true(await stream.silentFor(150));
  // The ACK is read on the server's next turn; on a busy machine that can come after the silence ended.
  await waitUntil(() => plane.sync.toJSON()[0]?.types[TypeUrl.CLUSTER]?.status === 'SYNCED', {
    timeoutMs: 3000,
    description: 'the ACK recorded',
  });
});

test('a wildcard subscription with nothing to send is answered once, empty: Envoy initialises on it', async (t) => {
  // No Services at all: without an answer an Envoy waits out its CDS initial_fetch_timeout (15 s by
  // default, for ever at 0s as the shipped gateway bootstraps set it) before it reports ready.
  const { client, store } = await setup(t, []);
  const stream = client.delta();
  stream.send({ node: NODE, type_url: TypeUrl.CLUSTER });
  const clusters = await stream.next();
  t.is(clusters.type_url, TypeUrl.CLUSTER);
  t.deepEqual(sent(clusters), []);
  t.deepEqual(clusters.removed_resources, []);
  t.not(clusters.nonce ?? '', '');
  // A gateway's LDS: readygate serves gateways no listeners, and still answers the subscription.
  stream.send({ type_url: TypeUrl.LISTENER });
  const listeners = await stream.next();
  t.is(listeners.type_url, TypeUrl.LISTENER);
  t.deepEqual(sent(listeners), []);
  stream.send(ack(clusters));
  stream.send(ack(listeners));
  t.true(await stream.silentFor(150), 'answered once, not again on the ACKs');
  // The first Service still reaches the stream.
  store.upsert(service('web', [endpoint('10.0.0.1')]));
  t.deepEqual(sent(await stream.next()), ['default/web:http']);
});

test('EDS: subscribed names answered; an unknown name comes back in removed_resources', async (t) => {
  const { client } = await setup(t);
  const stream = client.delta();
  stream.send({
    node: NODE,
    type_url: TypeUrl.ENDPOINT,
    resource_names_subscribe: ['default/web:http', 'default/nope:http'],
  });
  const response = await stream.next();
  t.deepEqual(sent(response), ['default/web:http']);
  t.deepEqual(response.removed_resources, ['default/nope:http']);
  const cla = unpack<{ endpoints: { lb_endpoints: { health_status?: string }[] }[] }>(
    response.resources[0]!.resource!,
  );
  t.deepEqual(cla.endpoints.flatMap((l) => l.lb_endpoints.map((e) => e.health_status)).sort(), [
    'DRAINING',
    'HEALTHY',
  ]);
});

test('changes send only the changed resource; deletion sends removed_resources', async (t) => {
  const { client, store } = await setup(t);
  const cds = client.delta();
  cds.send({ node: NODE, type_url: TypeUrl.CLUSTER });
  const first = await cds.next();
  cds.send(ack(first));
  cds.send({
    type_url: TypeUrl.ENDPOINT,
    resource_names_subscribe: ['default/web:http', 'default/empty:80'],
  });
  const eds = await cds.next();
  t.deepEqual(sent(eds), ['default/empty:80', 'default/web:http']);
  cds.send(ack(eds));
  store.upsert(service('web', [endpoint('127.0.0.2')]));
  const push = await cds.next();
  t.is(push.type_url, TypeUrl.ENDPOINT);
  t.deepEqual(sent(push), ['default/web:http']);
  cds.send(ack(push));
  store.delete('default/empty');
  const removedCds = await cds.next();
  t.is(removedCds.type_url, TypeUrl.CLUSTER);
  t.deepEqual(removedCds.removed_resources, ['default/empty:80']);
  const removedEds = await cds.next();
  t.is(removedEds.type_url, TypeUrl.ENDPOINT);
  t.deepEqual(removedEds.removed_resources, ['default/empty:80']);
});

test('reconnect with initial_resource_versions: only what changed meanwhile is sent', async (t) => {
  const { client, store } = await setup(t);
  const before = client.delta();
  before.send({
    node: NODE,
    type_url: TypeUrl.ENDPOINT,
    resource_names_subscribe: ['default/web:http', 'default/empty:80'],
  });
  const held = versions(await before.next());
  before.close();
  store.upsert(service('empty', [endpoint('127.0.0.9')], { key: '80', port: 80 }));
  const after = client.delta();
  after.send({
    node: NODE,
    type_url: TypeUrl.ENDPOINT,
    resource_names_subscribe: ['default/web:http', 'default/empty:80'],
    initial_resource_versions: held,
  });
  const response = await after.next();
  t.deepEqual(sent(response), ['default/empty:80']);
  t.deepEqual(response.removed_resources, []);
});

test('re-subscribing a held name is answered again; unsubscribed names get no updates', async (t) => {
  const { client, store } = await setup(t);
  const stream = client.delta();
  stream.send({
    node: NODE,
    type_url: TypeUrl.ENDPOINT,
    resource_names_subscribe: ['default/web:http', 'default/empty:80'],
  });
  const first = await stream.next();
  stream.send({ ...ack(first), resource_names_subscribe: ['default/web:http'] });
  t.deepEqual(sent(await stream.next()), ['default/web:http']);
  stream.send({ type_url: TypeUrl.ENDPOINT, resource_names_unsubscribe: ['default/empty:80'] });
  t.true(await stream.silentFor(100));
  store.upsert(service('empty', [endpoint('127.0.0.9')], { key: '80', port: 80 }));
  t.true(await stream.silentFor(200));
});

test('subscription changes are honoured even with a stale nonce', async (t) => {
  const { client, store } = await setup(t);
  const stream = client.delta();
  stream.send({ node: NODE, type_url: TypeUrl.ENDPOINT, resource_names_subscribe: ['default/web:http'] });
  await stream.next();
  store.upsert(service('web', [endpoint('127.0.0.2')]));
  await stream.next();
  stream.send({
    type_url: TypeUrl.ENDPOINT,
    response_nonce: '1',
    resource_names_subscribe: ['default/empty:80'],
  });
  t.deepEqual(sent(await stream.next()), ['default/empty:80']);
});

test('a NACK is recorded and a later change still flows', async (t) => {
  const { client, plane, store } = await setup(t);
  const stream = client.delta();
  stream.send({ node: NODE, type_url: TypeUrl.ENDPOINT, resource_names_subscribe: ['default/web:http'] });
  const first = await stream.next();
  stream.send({ ...ack(first), error_detail: { code: 13, message: 'rejected: duplicate host' } });
  t.true(await stream.silentFor(100));
  // The ACK is read on the server's next turn; on a busy machine that can come after the silence ended.
  await waitUntil(() => plane.sync.toJSON()[0]?.types[TypeUrl.ENDPOINT]?.status === 'NACKED', {
    timeoutMs: 3000,
    description: 'the NACK recorded',
  });
  const eds = plane.sync.toJSON()[0]!.types[TypeUrl.ENDPOINT]!;
  t.is(eds.status, 'NACKED');
  t.is(eds.lastNack?.error, 'rejected: duplicate host');
  store.upsert(service('web', [endpoint('127.0.0.4')]));
  t.deepEqual(sent(await stream.next()), ['default/web:http']);
});

test('a modified cluster gets its CLA resent right after it, for warming', async (t) => {
  const { client, store } = await setup(t);
  const stream = client.delta();
  stream.send({ node: NODE, type_url: TypeUrl.CLUSTER });
  stream.send(ack(await stream.next()));
  stream.send({
    type_url: TypeUrl.ENDPOINT,
    resource_names_subscribe: ['default/web:http', 'default/empty:80'],
  });
  const eds = await stream.next();
  stream.send(ack(eds));
  store.upsert(
    service('web', [endpoint('127.0.0.2'), endpoint('127.0.0.3', SERVING_TERMINATING)], {
      appProtocol: 'grpc',
    }),
  );
  const cds = await stream.next();
  t.is(cds.type_url, TypeUrl.CLUSTER);
  t.deepEqual(sent(cds), ['default/web:http']);
  const warm = await stream.next();
  t.is(warm.type_url, TypeUrl.ENDPOINT);
  t.deepEqual(sent(warm), ['default/web:http']);
  t.is(versions(warm)['default/web:http'], versions(eds)['default/web:http']);
});
