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

const table = (count: number, version: (i: number) => string): Map<string, string> =>
  new Map(Array.from({ length: count }, (_, i) => [`n${i}`, version(i)]));

test('a stream sent exactly a shared table adopts it; later pushes and ACKs work on top of it', (t) => {
  const v = new ResourceVersions();
  for (let i = 0; i < 5; i++) v.setSent(`n${i}`, 'v1');
  v.acknowledge(
    Array.from({ length: 5 }, (_, i) => [`n${i}`, 'v1'] as const),
    false,
  );
  const shared = table(5, () => 'v1');
  t.true(v.adopt(shared));
  t.is(v.sentApartCount, 0);
  t.deepEqual(acked(v), Object.fromEntries(shared));
  v.setSent('n2', 'v2');
  v.deleteSent('n4');
  t.is(v.sentApartCount, 2);
  t.is(shared.get('n2'), 'v1', 'the shared table is never written');
  t.is(v.sentVersion('n2'), 'v2');
  t.is(v.ackedVersion('n2'), 'v1');
  t.false(v.hasSent('n4'));
  t.deepEqual(v.sentNames().sort(), ['n0', 'n1', 'n2', 'n3']);
  v.acknowledge(
    [
      ['n2', 'v2'],
      ['n4', null],
    ],
    false,
  );
  t.deepEqual(acked(v), { n0: 'v1', n1: 'v1', n2: 'v2', n3: 'v1' });
  t.is(v.ackedCount(), 4);
  // Back in step with a newer table: adopted, and nothing is kept apart.
  t.true(v.adopt(new Map([...shared].filter(([n]) => n !== 'n4')).set('n2', 'v2')));
  t.is(v.sentApartCount, 0);
  t.deepEqual(acked(v), { n0: 'v1', n1: 'v1', n2: 'v2', n3: 'v1' });
});

test('a table that differs in one name or one version is refused and changes nothing', (t) => {
  const v = new ResourceVersions();
  for (let i = 0; i < 4; i++) v.setSent(`n${i}`, 'v1');
  t.false(v.adopt(table(3, () => 'v1')), 'one name short');
  t.false(v.adopt(table(5, () => 'v1')), 'one name more');
  t.false(v.adopt(table(4, (i) => (i === 3 ? 'v2' : 'v1'))), 'one version off');
  t.is(v.sentApartCount, 4);
  t.deepEqual(v.sentNames().sort(), ['n0', 'n1', 'n2', 'n3']);
  // Adopted, then a name removed and put back at the table's version: in step again.
  const shared = table(4, () => 'v1');
  t.true(v.adopt(shared));
  v.deleteSent('n1');
  t.false(v.adopt(shared));
  v.setSent('n1', 'v1');
  t.is(v.sentApartCount, 0);
  t.true(v.adopt(shared));
});

test('streams share one table and each keeps its own differences', (t) => {
  const shared = table(3, () => 'v1');
  const [a, b] = [new ResourceVersions(), new ResourceVersions()];
  for (const v of [a, b]) {
    for (const name of shared.keys()) v.setSent(name, 'v1');
    t.true(v.adopt(shared));
  }
  a.setSent('n0', 'v2');
  t.is(a.sentVersion('n0'), 'v2');
  t.is(b.sentVersion('n0'), 'v1');
  t.is(b.sentApartCount, 0);
});

test('share() asks for the current table only once enough names are apart, and waits after a refusal', (t) => {
  const v = new ResourceVersions();
  let asked = 0;
  const full = table(200, () => 'v1');
  const current = () => {
    asked += 1;
    return full;
  };
  for (let i = 0; i < 50; i++) v.setSent(`n${i}`, 'v1');
  v.share(current);
  t.is(asked, 0, 'fewer than 64 names apart: not worth a comparison');
  for (let i = 50; i < 150; i++) v.setSent(`n${i}`, 'v1');
  v.share(current);
  v.share(current);
  t.is(asked, 1, 'asked once; 150 of 200 names sent, so refused');
  t.is(v.sentApartCount, 150);
  for (let i = 150; i < 200; i++) v.setSent(`n${i}`, 'v1');
  v.share(current);
  t.is(asked, 1, 'waits for 64 more names apart after a refusal');
  for (let i = 0; i < 20; i++) v.setSent(`n${i}`, 'v2');
  for (let i = 0; i < 20; i++) v.setSent(`n${i}`, 'v1');
  v.share(current);
  t.is(asked, 1, 'names changed and changed back are not more names apart');
  v.deleteSent('n0');
  v.setSent('n0', 'v1');
  t.is(v.sentApartCount, 200);
  t.true(v.adopt(full));
  t.is(v.sentApartCount, 0);
});
