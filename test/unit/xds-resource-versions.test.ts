import test from 'ava';
import { ResourceVersions, SyncStatus } from '../../src/xds/sync-status.js';

const acked = (v: ResourceVersions): Record<string, string> => Object.fromEntries(v.ackedEntries());

test('a sent version is ACKed only when its response is', (t) => {
  const v = new ResourceVersions();
  v.setSent('a', '1');
  t.is(v.sentVersion('a'), '1');
  t.is(v.ackedVersion('a'), undefined);
  t.is(v.ackedCount(), 0);
  v.acknowledge([['a', '1']], false);
  t.is(v.ackedVersion('a'), '1');
  t.deepEqual(acked(v), { a: '1' });
  t.is(v.ackedCount(), 1);
});

test('two responses in flight: ACKing the first gives its version, ACKing the second the newest', (t) => {
  const v = new ResourceVersions();
  v.setSent('a', '1');
  v.acknowledge([['a', '1']], false);
  v.setSent('a', '2');
  v.setSent('a', '3');
  t.is(v.ackedVersion('a'), '1');
  v.acknowledge([['a', '2']], false);
  t.is(v.ackedVersion('a'), '2');
  t.is(v.sentVersion('a'), '3');
  v.acknowledge([['a', '3']], false);
  t.is(v.ackedVersion('a'), '3');
  t.deepEqual(acked(v), { a: '3' });
});

test('a rejected response leaves the ACKed version where it was, however long', (t) => {
  const v = new ResourceVersions();
  v.setSent('a', '1');
  v.setSent('b', '1');
  v.acknowledge(
    [
      ['a', '1'],
      ['b', '1'],
    ],
    false,
  );
  v.setSent('a', '2'); // NACKed: no acknowledge for it
  v.setSent('b', '2');
  v.acknowledge([['b', '2']], false);
  t.deepEqual(acked(v), { a: '1', b: '2' });
  t.is(v.ackedCount(), 2);
});

test('removals: a delta removal and a name missing from a complete set are gone once ACKed', (t) => {
  const delta = new ResourceVersions();
  delta.setSent('a', '1');
  delta.acknowledge([['a', '1']], false);
  delta.deleteSent('a');
  t.is(delta.ackedVersion('a'), '1');
  delta.acknowledge([['a', null]], false);
  t.is(delta.ackedVersion('a'), undefined);
  t.is(delta.ackedCount(), 0);

  const sotw = new ResourceVersions();
  for (const name of ['a', 'b', 'c']) sotw.setSent(name, '1');
  sotw.acknowledge(
    [
      ['a', '1'],
      ['b', '1'],
      ['c', '1'],
    ],
    true,
  );
  sotw.deleteSent('c');
  sotw.setSent('b', '2');
  t.deepEqual(acked(sotw), { a: '1', b: '1', c: '1' });
  sotw.acknowledge(
    [
      ['a', '1'],
      ['b', '2'],
    ],
    true,
  );
  t.deepEqual(acked(sotw), { a: '1', b: '2' });
  t.is(sotw.ackedCount(), 2);
});

test('versions the client claims to hold (delta reconnect) are not ACKed until a response is', (t) => {
  const v = new ResourceVersions();
  v.setSent('a', '1');
  t.true(v.hasSent('a'));
  t.is(v.ackedVersion('a'), undefined);
  t.deepEqual([...v.sentNames()], ['a']);
});

test('SyncStatus applies an ACK to the stream and type it names, in order', (t) => {
  const sync = new SyncStatus();
  const stream = sync.open('delta', 'peer');
  const eds = 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment';
  const versions = stream.type(eds).versions;
  versions.setSent('web', 'v1');
  sync.recordSent(stream, eds, {
    versionInfo: 's1',
    nonce: '1',
    entries: [['web', 'v1']],
    completeSet: false,
    bytes: 1,
  });
  versions.setSent('web', 'v2');
  sync.recordSent(stream, eds, {
    versionInfo: 's2',
    nonce: '2',
    entries: [['web', 'v2']],
    completeSet: false,
    bytes: 1,
  });
  t.true(sync.recordAck(stream, eds, '1', 's1'));
  t.is(versions.ackedVersion('web'), 'v1');
  t.true(sync.recordAck(stream, eds, '2', 's2'));
  t.is(versions.ackedVersion('web'), 'v2');
  t.false(sync.recordAck(stream, eds, '1', 's1'), 'an ACK of a settled nonce changes nothing');
  t.is(versions.ackedVersion('web'), 'v2');
  t.is(sync.toJSON({ resources: true })[0]?.types[eds]?.ackedResourceCount, 1);
  t.deepEqual(sync.toJSON({ resources: true })[0]?.types[eds]?.ackedResources, { web: 'v2' });
});

test('many pushes and ACKs over 40 names: a rejected one keeps its ACKed version throughout', (t) => {
  const v = new ResourceVersions();
  for (let i = 0; i < 40; i++) {
    v.setSent(`n${i}`, 'v0');
    v.acknowledge([[`n${i}`, 'v0']], false);
  }
  v.setSent('n7', 'rejected'); // NACKed: never acknowledged
  // Each other name is pushed and ACKed again, several times over.
  for (let round = 1; round <= 3; round++) {
    for (let i = 0; i < 40; i++) {
      if (i === 7) continue;
      v.setSent(`n${i}`, `v${round}`);
      v.acknowledge([[`n${i}`, `v${round}`]], false);
    }
  }
  t.is(v.ackedCount(), 40);
  t.is(v.ackedVersion('n7'), 'v0');
  t.is(v.sentVersion('n7'), 'rejected');
  t.is(v.ackedVersion('n39'), 'v3');
  const expected = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`n${i}`, i === 7 ? 'v0' : 'v3']));
  t.deepEqual(acked(v), expected);
  // A name ACKed and then pushed again has its old ACKed version until the new one is ACKed.
  v.setSent('n1', 'v4');
  t.is(v.ackedVersion('n1'), 'v3');
  v.acknowledge([['n1', 'v4']], false);
  t.is(v.ackedVersion('n1'), 'v4');
  t.is(v.ackedCount(), 40);
});

test('an ACK settles the responses sent before it; their nonces are unknown afterwards', (t) => {
  const sync = new SyncStatus();
  const stream = sync.open('sotw', 'peer');
  const cds = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
  for (const nonce of ['1', '2', '3']) {
    stream.type(cds).versions.setSent('web', `v${nonce}`);
    sync.recordSent(stream, cds, {
      versionInfo: `s${nonce}`,
      nonce,
      entries: [['web', `v${nonce}`]],
      completeSet: true,
      bytes: 1,
    });
  }
  t.true(sync.recordAck(stream, cds, '2', 's2'));
  t.false(sync.recordAck(stream, cds, '1', 's1'));
  t.is(stream.type(cds).inflight('1'), undefined);
  t.is(stream.type(cds).inflight('3')?.record.versionInfo, 's3');
  t.is(stream.type(cds).status, 'STALE');
  t.true(sync.recordAck(stream, cds, '3', 's3'));
  t.is(stream.type(cds).status, 'SYNCED');
  t.is(stream.type(cds).inflight('3'), undefined);
  t.is(stream.type(cds).versions.ackedVersion('web'), 'v3');
});
