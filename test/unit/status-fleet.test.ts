/**
 * The fleet view of `readygate status`: per-type states derived from /debug/syncz documents made by the
 * real SyncStatus (the producer, driven as the SotW/Delta streams drive it), the exit code, and every
 * output format (exact table and wide columns, the stable JSON keys, YAML equal to JSON).
 */
import test from 'ava';
import { parse as parseYaml } from 'yaml';
import { renderDocument } from '../../src/cli/output.js';
import { fleetExitCode, fleetView, SyncState, type ReplicaSyncz } from '../../src/status/fleet.js';
import { age, fleetDocument, formatFleet } from '../../src/status/fleet-format.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { userAgentOf } from '../../src/xds/stream-base.js';
import { SyncStatus, type StreamSyncState, type SynczEntry } from '../../src/xds/sync-status.js';

const R1 = 'http://127.0.0.1:9102';
const R2 = 'http://127.0.0.1:9103';

let nonce = 0;
/** Sends one response of `typeUrl` on `stream`, as a protocol stream records it; returns its nonce. */
function send(sync: SyncStatus, stream: StreamSyncState, typeUrl: string, version: string): string {
  const sent = String(++nonce);
  sync.recordSent(stream, typeUrl, {
    versionInfo: version,
    nonce: sent,
    entries: [[`res-${version}`, version]],
    completeSet: false,
    bytes: 0,
  });
  return sent;
}
function ack(sync: SyncStatus, stream: StreamSyncState, typeUrl: string, version: string): void {
  sync.recordAck(stream, typeUrl, send(sync, stream, typeUrl, version), version);
}

function open(
  sync: SyncStatus,
  nodeId: string,
  kind: 'sotw' | 'delta' = 'sotw',
  identity?: string,
): StreamSyncState {
  const stream = sync.open(kind, `127.0.0.1:${40000 + nonce}`, identity);
  stream.nodeId = nodeId;
  stream.nodeCluster = 'gateways';
  stream.userAgent = 'envoy/1.36.4';
  return stream;
}

const NACK_ERROR =
  'Error adding/updating cluster(s) default/bad:http: Proto constraint validation failed\n(ClusterValidationError.ConnectTimeout: value must be greater than 0s)';

/** Replica one: synced, stale, nacked, asked-for-but-not-sent. Replica two: one synced delta stream. */
function fixture(): { replicas: ReplicaSyncz[]; nowMs: number } {
  const one = new SyncStatus();
  const synced = open(one, 'gw-synced');
  ack(one, synced, TypeUrl.CLUSTER, 'c1');
  ack(one, synced, TypeUrl.ENDPOINT, 'e1');
  const stale = open(one, 'gw-stale');
  ack(one, stale, TypeUrl.CLUSTER, 'c1');
  ack(one, stale, TypeUrl.ENDPOINT, 'e1');
  send(one, stale, TypeUrl.ENDPOINT, 'e2');
  const nacked = open(one, 'gw-nack');
  ack(one, nacked, TypeUrl.CLUSTER, 'c1');
  ack(one, nacked, TypeUrl.ENDPOINT, 'e1');
  one.recordNack(nacked, TypeUrl.CLUSTER, send(one, nacked, TypeUrl.CLUSTER, 'c2'), 'c1', NACK_ERROR);
  const waiting = open(one, 'gw-waiting');
  waiting.type(TypeUrl.CLUSTER).wildcard = true; // asked for clusters, nothing sent yet
  const two = new SyncStatus();
  const delta = open(two, 'gw-delta', 'delta');
  // A NACK of an older response does not count once a newer one is ACKed.
  two.recordNack(delta, TypeUrl.CLUSTER, send(two, delta, TypeUrl.CLUSTER, 'c0'), '', 'old error');
  ack(two, delta, TypeUrl.CLUSTER, 'c1');
  ack(two, delta, TypeUrl.ENDPOINT, 'e1');
  const syncz = (sync: SyncStatus) => JSON.parse(JSON.stringify(sync.toJSON())) as SynczEntry[];
  const newestAck = Math.max(
    ...[...syncz(one), ...syncz(two)].flatMap((e) =>
      Object.values(e.types).map((t) => (t.acked ? Date.parse(t.acked.time) : 0)),
    ),
  );
  return {
    replicas: [
      { url: R1, syncz: syncz(one) },
      { url: R2, syncz: syncz(two) },
    ],
    nowMs: newestAck + 42_000,
  };
}

const states = (view: ReturnType<typeof fleetView>) =>
  Object.fromEntries(
    view.proxies.map((p) => [p.nodeId, [p.types.CDS.state, p.types.EDS.state, p.types.LDS.state, p.synced]]),
  );

test('states per type from syncz: SYNCED, STALE, NACK (with the error), NOT_SENT; an old NACK does not count', (t) => {
  const { replicas, nowMs } = fixture();
  const view = fleetView(replicas, nowMs);
  t.deepEqual(states(view), {
    'gw-delta': ['SYNCED', 'SYNCED', 'NOT_SENT', true],
    'gw-nack': ['NACK', 'SYNCED', 'NOT_SENT', false],
    'gw-stale': ['SYNCED', 'STALE', 'NOT_SENT', false],
    'gw-synced': ['SYNCED', 'SYNCED', 'NOT_SENT', true],
    'gw-waiting': ['NOT_SENT', 'NOT_SENT', 'NOT_SENT', false],
  });
  t.deepEqual(
    view.proxies.map((p) => p.nodeId),
    ['gw-delta', 'gw-nack', 'gw-stale', 'gw-synced', 'gw-waiting'],
    'sorted by node id',
  );
  const nack = view.proxies.find((p) => p.nodeId === 'gw-nack')!;
  t.deepEqual(nack.types.CDS.nack?.error, NACK_ERROR);
  t.is(nack.types.CDS.nack?.version, 'c1', 'the version Envoy kept');
  t.deepEqual(nack.types.CDS.nack?.resources, ['res-c2']);
  t.is(nack.types.CDS.sentVersion, 'c2');
  t.is(nack.types.CDS.ackedVersion, 'c1');
  const waiting = view.proxies.find((p) => p.nodeId === 'gw-waiting')!;
  t.true(waiting.types.CDS.requested, 'asked for and not answered: counts');
  t.false(waiting.types.EDS.requested, 'never asked for: does not count');
  t.is(waiting.lastAckAgeSeconds, null);
  const delta = view.proxies.find((p) => p.nodeId === 'gw-delta')!;
  t.is(delta.types.CDS.nack, null);
  t.is(delta.replica, R2);
  t.is(delta.stream, 'delta');
  t.is(delta.lastAckAgeSeconds, 42);
  t.false(view.servesListeners);
  t.deepEqual(
    view.replicas.map((r) => [r.url, r.reachable, r.proxies]),
    [
      [R1, true, 4],
      [R2, true, 1],
    ],
  );
});

test('exit code: 1 when a proxy is not synced (even with a replica down), 3 when only a replica is down, else 0', (t) => {
  const { replicas, nowMs } = fixture();
  const down: ReplicaSyncz = { url: 'http://127.0.0.1:1', error: 'cannot reach it: ECONNREFUSED' };
  t.is(fleetExitCode(fleetView(replicas, nowMs)), 1);
  t.is(fleetExitCode(fleetView([...replicas, down], nowMs)), 1);
  const allSynced = [replicas[1]!];
  t.is(fleetExitCode(fleetView(allSynced, nowMs)), 0);
  t.is(fleetExitCode(fleetView([...allSynced, down], nowMs)), 3);
  t.is(fleetExitCode(fleetView([{ url: R1, syncz: [] }], nowMs)), 0, 'no proxy connected: nothing unsynced');
  const garbage = fleetView([{ url: R1, syncz: { not: 'a list' } }], nowMs);
  t.deepEqual(garbage.replicas, [
    {
      url: R1,
      reachable: false,
      error: `readygate's admin at ${R1} answered /debug/syncz with something that is not a list of streams`,
      proxies: 0,
    },
  ]);
  t.is(fleetExitCode(garbage), 3);
});

test('table: istioctl-style columns, NOT SENT spelled out, no IDENTITY without TLS, a line per unreachable replica', (t) => {
  const { replicas, nowMs } = fixture();
  const down: ReplicaSyncz = {
    url: 'http://127.0.0.1:1',
    error: "cannot reach readygate's admin at http://127.0.0.1:1: ECONNREFUSED",
  };
  const text = formatFleet(fleetView([...replicas, down], nowMs), { wide: false, nowMs });
  t.is(
    text,
    [
      'NAME        CDS       EDS       REPLICA                STREAM     VERSION       LAST ACK',
      'gw-delta    SYNCED    SYNCED    http://127.0.0.1:9103  ADS Delta  envoy/1.36.4  42s ago',
      'gw-nack     NACK      SYNCED    http://127.0.0.1:9102  ADS SotW   envoy/1.36.4  ' +
        ago(replicas, 'gw-nack', nowMs),
      'gw-stale    SYNCED    STALE     http://127.0.0.1:9102  ADS SotW   envoy/1.36.4  ' +
        ago(replicas, 'gw-stale', nowMs),
      'gw-synced   SYNCED    SYNCED    http://127.0.0.1:9102  ADS SotW   envoy/1.36.4  ' +
        ago(replicas, 'gw-synced', nowMs),
      'gw-waiting  NOT SENT  NOT SENT  http://127.0.0.1:9102  ADS SotW   envoy/1.36.4  never',
      "! cannot reach readygate's admin at http://127.0.0.1:1: ECONNREFUSED: the proxies on that replica are not listed.",
      '',
    ].join('\n'),
  );
  t.is(
    formatFleet(fleetView([{ url: R1, syncz: [] }], nowMs), { wide: false, nowMs }),
    'No proxies are connected to the replica(s) asked.\n',
  );
});

/** The LAST ACK cell the table must show for a node (its newest ACK, seconds before nowMs). */
function ago(replicas: ReplicaSyncz[], nodeId: string, nowMs: number): string {
  const row = fleetView(replicas, nowMs).proxies.find((p) => p.nodeId === nodeId)!;
  return `${age(row.lastAckAgeSeconds!)} ago`;
}

test('wide: cluster, peer, connected, acked versions and the NACK error; IDENTITY and LDS/RDS when present', (t) => {
  const sync = new SyncStatus();
  const grpc = open(sync, 'grpc-client', 'sotw', 'spiffe://td/ns/shop/sa/checkout');
  for (const typeUrl of [TypeUrl.LISTENER, TypeUrl.ROUTE, TypeUrl.CLUSTER, TypeUrl.ENDPOINT])
    ack(sync, grpc, typeUrl, 'v1');
  const envoy = open(sync, 'gw-1');
  ack(sync, envoy, TypeUrl.CLUSTER, 'c1');
  sync.recordNack(envoy, TypeUrl.ENDPOINT, send(sync, envoy, TypeUrl.ENDPOINT, 'e1'), '', NACK_ERROR);
  const entries = sync.toJSON();
  const nowMs = Math.max(...entries.map((e) => Date.parse(e.connectedAt))) + 200_000;
  const view = fleetView([{ url: R1, syncz: JSON.parse(JSON.stringify(entries)) }], nowMs);
  t.true(view.servesListeners);
  const lines = formatFleet(view, { wide: true, nowMs }).split('\n');
  t.deepEqual(lines[0]!.split(/ {2,}/), [
    'NAME',
    'CDS',
    'EDS',
    'LDS',
    'RDS',
    'REPLICA',
    'STREAM',
    'VERSION',
    'LAST ACK',
    'IDENTITY',
    'CLUSTER',
    'PEER',
    'CONNECTED',
    'ACKED VERSIONS',
    'NACK ERROR',
  ]);
  const cells = (line: string) => line.split(/ {2,}/);
  // Sorted by node id: grpc-client before gw-1.
  t.deepEqual(cells(lines[2]!).slice(0, 5), ['gw-1', 'SYNCED', 'NACK', 'NOT SENT', 'NOT SENT']);
  t.deepEqual(cells(lines[2]!).slice(9), [
    '-',
    'gateways',
    envoy.peer,
    '3m20s',
    'CDS:c1 EDS:-',
    'EDS: Error adding/updating cluster(s) default/bad:http: Proto constraint validation failed',
  ]);
  t.deepEqual(cells(lines[1]!).slice(0, 5), ['grpc-client', 'SYNCED', 'SYNCED', 'SYNCED', 'SYNCED']);
  t.deepEqual(cells(lines[1]!).slice(9, 10), ['spiffe://td/ns/shop/sa/checkout']);
  t.deepEqual(cells(lines[1]!).slice(13), ['CDS:v1 EDS:v1 LDS:v1 RDS:v1', '-']);
  // TLS on one proxy: the plain table has the IDENTITY column too.
  t.regex(formatFleet(view, { wide: false, nowMs }).split('\n')[0]!, /LAST ACK +IDENTITY$/);
});

test('-o json: stable keys and types; -o yaml: the same document', (t) => {
  const { replicas, nowMs } = fixture();
  const doc = fleetDocument(fleetView([...replicas, { url: 'http://127.0.0.1:1', error: 'down' }], nowMs));
  const json = JSON.parse(renderDocument('json', doc)) as Record<string, unknown>;
  t.deepEqual(Object.keys(json), ['replicas', 'proxies', 'summary']);
  t.deepEqual(json.summary, { proxies: 5, synced: 2, notSynced: 3, unreachableReplicas: 1 });
  t.deepEqual((json.replicas as unknown[])[2], {
    url: 'http://127.0.0.1:1',
    reachable: false,
    error: 'down',
    proxies: 0,
  });
  const row = (json.proxies as Record<string, unknown>[]).find((p) => p.nodeId === 'gw-nack')!;
  t.deepEqual(Object.keys(row), [
    'nodeId',
    'nodeCluster',
    'replica',
    'streamId',
    'stream',
    'peer',
    'identity',
    'userAgent',
    'connectedAt',
    'types',
    'lastAckTime',
    'lastAckAgeSeconds',
    'synced',
  ]);
  const types = row.types as Record<string, Record<string, unknown>>;
  t.deepEqual(Object.keys(types), ['CDS', 'EDS', 'LDS', 'RDS']);
  t.deepEqual(Object.keys(types.CDS!), [
    'typeUrl',
    'state',
    'requested',
    'sentVersion',
    'ackedVersion',
    'lastAckTime',
    'nack',
  ]);
  t.like(types.CDS, {
    typeUrl: TypeUrl.CLUSTER,
    state: SyncState.NACK,
    requested: true,
    sentVersion: 'c2',
    ackedVersion: 'c1',
  });
  t.deepEqual(Object.keys(types.CDS!.nack as object), ['error', 'version', 'time', 'resources']);
  t.deepEqual(types.LDS, {
    typeUrl: TypeUrl.LISTENER,
    state: 'NOT_SENT',
    requested: false,
    sentVersion: null,
    ackedVersion: null,
    lastAckTime: null,
    nack: null,
  });
  t.is(row.identity, null);
  t.is(row.synced, false);
  t.is(typeof row.streamId, 'number');
  t.is(typeof row.lastAckAgeSeconds, 'number');
  // YAML: the same data (the multi-line NACK error included), parsed back.
  t.deepEqual(parseYaml(renderDocument('yaml', doc)), json);
});

test('age: kubectl style', (t) => {
  t.deepEqual([0, 42, 119, 120, 599, 600, 10_799, 10_800, 172_799, 172_800].map(age), [
    '0s',
    '42s',
    '119s',
    '2m0s',
    '9m59s',
    '10m',
    '179m',
    '3h',
    '47h',
    '2d',
  ]);
});

test('the VERSION column: the node user agent as the stream records it (Envoy build version, gRPC version string)', (t) => {
  t.is(
    userAgentOf({
      id: 'gw',
      user_agent_name: 'envoy',
      user_agent_build_version: { version: { major_number: 1, minor_number: 36, patch: 4 } },
    }),
    'envoy/1.36.4',
  );
  t.is(userAgentOf({ id: 'c', user_agent_name: 'grpc-go', user_agent_version: '1.70.0' }), 'grpc-go/1.70.0');
  t.is(userAgentOf({ id: 'c', user_agent_name: 'grpc-node-js' }), 'grpc-node-js');
  t.is(userAgentOf({ id: 'c' }), null);
});

test('a /debug/syncz that is not one (another server, hand-made, truncated): that replica is unreadable, no crash', (t) => {
  const { replicas, nowMs } = fixture();
  const good = (replicas[1] as { syncz: SynczEntry[] }).syncz[0]!;
  const cdsOf = (entry: SynczEntry) => entry.types[TypeUrl.CLUSTER]!;
  const broken: [string, unknown][] = [
    ['an object', { streams: [] }],
    ['a list of numbers', [1, 2]],
    ['a stream without types', [{ ...good, types: undefined }]],
    ['a type entry that is null', [{ ...good, types: { [TypeUrl.CLUSTER]: null } }]],
    ['a stream kind that is not sotw or delta', [{ ...good, stream: 'rest' }]],
    ['a node id that is a number', [{ ...good, nodeId: 7 }]],
    [
      'an acked record without a time',
      [{ ...good, types: { [TypeUrl.CLUSTER]: { ...cdsOf(good), acked: { version: 'v' } } } }],
    ],
    [
      'a NACK without its error',
      [{ ...good, types: { [TypeUrl.CLUSTER]: { ...cdsOf(good), lastNack: { version: 'v', time: 't' } } } }],
    ],
    [
      'NACK resources that are not names',
      [
        {
          ...good,
          types: {
            [TypeUrl.CLUSTER]: {
              ...cdsOf(good),
              lastNack: { version: 'v', time: 't', error: 'e', resources: [1] },
            },
          },
        },
      ],
    ],
  ];
  for (const [what, syncz] of broken) {
    const view = fleetView([{ url: R1, syncz }], nowMs);
    t.deepEqual(
      view.replicas.map((r) => [r.reachable, r.proxies]),
      [[false, 0]],
      what,
    );
    t.is(fleetExitCode(view), 3, what);
  }
  // Fields newer than a replica (identity, userAgent, NACK resources) may be absent.
  const older = JSON.parse(JSON.stringify(good)) as Record<string, unknown>;
  delete older.identity;
  delete older.userAgent;
  const view = fleetView([{ url: R1, syncz: [older] }], nowMs);
  t.deepEqual(
    view.proxies.map((p) => [p.nodeId, p.identity, p.userAgent, p.synced]),
    [['gw-delta', null, null, true]],
  );
});
