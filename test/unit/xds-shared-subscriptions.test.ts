import test from 'ava';
import { SharedSubscriptions } from '../../src/xds/shared-subscriptions.js';

const EDS = 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment';
const CDS = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';

test('equal bytes share one subscription, decoded once, until the last holder releases it', (t) => {
  const table = new SharedSubscriptions();
  let decoded = 0;
  const decode = () => {
    decoded += 1;
    return { names: new Set(['a', 'b']), wildcard: false };
  };
  const first = table.acquire(EDS, Buffer.from('ab'), decode);
  const second = table.acquire(EDS, Buffer.from('ab'), decode);
  t.is(second, first);
  t.is(decoded, 1);
  t.deepEqual([...first.names], ['a', 'b']);
  t.is(table.size, 1);
  table.release(first);
  t.is(table.size, 1);
  t.is(table.acquire(EDS, Buffer.from('ab'), decode), first, 'still held by one stream');
  table.release(first);
  table.release(second);
  t.is(table.size, 0);
  t.not(table.acquire(EDS, Buffer.from('ab'), decode), first, 'made anew once nobody held it');
  t.is(decoded, 2);
});

test('other bytes, or the same bytes for another type, are another subscription', (t) => {
  const table = new SharedSubscriptions();
  const decode = () => ({ names: new Set<string>(), wildcard: true });
  const a = table.acquire(EDS, Buffer.from('ab'), decode);
  const b = table.acquire(EDS, Buffer.from('ba'), decode);
  const c = table.acquire(CDS, Buffer.from('ab'), decode);
  t.not(a, b);
  t.not(a, c);
  t.is(table.size, 3);
  // Releasing one that is not the table's (a stale reference) changes nothing.
  table.release({ ...a });
  t.is(table.size, 3);
});

test('the subscription keeps its own copy of the bytes: the transport reuses its buffers', (t) => {
  const table = new SharedSubscriptions();
  const bytes = Buffer.from('ab');
  const held = table.acquire(EDS, bytes, () => ({ names: new Set(['x']), wildcard: false }));
  bytes.write('zz');
  t.is(held.bytes.toString(), 'ab');
});
