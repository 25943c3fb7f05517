/**
 * Sync-gated serving (issue 15): with `holdUntilSynced`, a control plane whose store has not seen its
 * source's first complete view accepts streams and answers nothing; once the store is synced every held
 * stream gets the synced state (never the empty cache of before).
 */
import test from 'ava';
import { EndpointStore } from '../../src/model/store.js';
import { startControlPlane } from '../../src/xds/control-plane.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { webAndEmpty } from '../helpers/control-plane-fixture.js';
import { XdsTestClient, type DeltaResponse, type SotwResponse } from '../helpers/xds-client.js';

const NODE = { id: 'envoy-held', cluster: 'test' };

async function heldPlane(t: { teardown: (fn: () => Promise<void> | void) => void }) {
  const store = new EndpointStore();
  const plane = await startControlPlane({ store, xdsAddress: '127.0.0.1:0', holdUntilSynced: true });
  const client = new XdsTestClient(plane.address);
  t.teardown(async () => {
    client.close();
    await plane.close();
  });
  return { store, plane, client };
}

const sotwNames = (r: SotwResponse): number => r.resources.length;
const deltaNames = (r: DeltaResponse): string[] => r.resources.map((x) => x.name ?? '').sort();

test('SotW and Delta streams get nothing before the first sync, then the synced clusters', async (t) => {
  const { store, plane, client } = await heldPlane(t);
  t.true(plane.cache.held);
  const sotw = client.sotw();
  const delta = client.delta();
  sotw.send({ node: NODE, type_url: TypeUrl.CLUSTER });
  sotw.send({ type_url: TypeUrl.LISTENER });
  delta.send({ node: { ...NODE, id: 'envoy-held-delta' }, type_url: TypeUrl.CLUSTER });
  // Held: neither the (empty) CDS set nor the empty LDS set goes out, however long we wait.
  t.true(await sotw.silentFor(400));
  t.true(await delta.silentFor(50));

  // A partial write before sync (what a half-listed source could do) is not released either.
  store.replaceAll(webAndEmpty().slice(0, 1));
  t.true(await sotw.silentFor(200));

  store.replaceAll(webAndEmpty());
  store.markSynced();
  const first = await sotw.next();
  t.is(first.type_url, TypeUrl.CLUSTER);
  t.is(sotwNames(first), 2, 'the first CDS response holds every synced cluster');
  const listeners = await sotw.next();
  t.is(listeners.type_url, TypeUrl.LISTENER);
  t.is(sotwNames(listeners), 0);
  const deltaFirst = await delta.next();
  t.deepEqual(deltaNames(deltaFirst), ['default/empty:80', 'default/web:http']);
  t.false(plane.cache.held);
});

test('a store synced before the control plane starts is served at once', async (t) => {
  const store = new EndpointStore();
  store.replaceAll(webAndEmpty());
  store.markSynced();
  const plane = await startControlPlane({ store, xdsAddress: '127.0.0.1:0', holdUntilSynced: true });
  const client = new XdsTestClient(plane.address);
  t.teardown(async () => {
    client.close();
    await plane.close();
  });
  t.false(plane.cache.held);
  const sotw = client.sotw();
  sotw.send({ node: NODE, type_url: TypeUrl.CLUSTER });
  t.is(sotwNames(await sotw.next()), 2);
});
