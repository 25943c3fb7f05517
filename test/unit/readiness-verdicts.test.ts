/**
 * "Who has what": the routing history built from real encoded CLAs, and the gate/drain verdicts over
 * synthetic per-stream sync states (no gRPC: the states are written as a stream would leave them).
 */
import test from 'ava';
import { EndpointStore } from '../../src/model/store.js';
import type { EndpointModel } from '../../src/model/types.js';
import { RoutingHistory, summarizeAssignment, type PodRouting } from '../../src/readiness/routing-history.js';
import { drainVerdict, gateVerdict, requireProxies } from '../../src/readiness/verdicts.js';
import { TranslationPipeline } from '../../src/xds/control-plane.js';
import { ResourceCache } from '../../src/xds/cache.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { SyncStatus, type StreamSyncState } from '../../src/xds/sync-status.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/xds/translate.js';
import { READY, SERVING_TERMINATING, endpoint, service } from '../helpers/model-fixtures.js';
import { silentLogger } from '../../src/log.js';
import { ackVersion } from '../helpers/sync-fixtures.js';

const WEB = 'default/web:http';
const API = 'default/api:http';

/** A history fed by hand: version → {pod: routing}. */
function historyOf(clusters: Record<string, Record<string, Record<string, PodRouting>>>): RoutingHistory {
  const history = new RoutingHistory();
  for (const [cluster, versions] of Object.entries(clusters))
    for (const [version, pods] of Object.entries(versions))
      history.record(cluster, version, new Map(Object.entries(pods)));
  return history;
}

interface EnvoySpec {
  /** EDS names subscribed ('*' = wildcard). */
  eds?: string[];
  /** CDS wildcard, as Envoy subscribes. */
  cds?: boolean;
  acked?: Record<string, string>;
  /** The latest EDS/CDS response was rejected. */
  nack?: 'eds' | 'cds';
}

function envoy(sync: SyncStatus, nodeId: string, spec: EnvoySpec): StreamSyncState {
  const stream = sync.open('sotw', 'ipv4:127.0.0.1:1');
  stream.nodeId = nodeId;
  const eds = stream.type(TypeUrl.ENDPOINT);
  if (spec.eds?.includes('*')) eds.wildcard = true;
  else eds.subscribed = new Set(spec.eds ?? []);
  for (const [name, version] of Object.entries(spec.acked ?? {}))
    ackVersion(sync, stream, TypeUrl.ENDPOINT, name, version);
  const cds = stream.type(TypeUrl.CLUSTER);
  cds.wildcard = spec.cds ?? false;
  if (spec.nack) {
    const state = spec.nack === 'eds' ? eds : cds;
    const record = { versionInfo: 'v', nonce: '9', timeMs: Date.now() };
    state.lastSent = record;
    state.lastNack = { ...record, error: 'rejected' };
  }
  return stream;
}

const history = historyOf({
  [WEB]: {
    v1: { 'default/old': 'HEALTHY' },
    v2: { 'default/old': 'HEALTHY', 'default/new': 'HEALTHY' },
    v3: { 'default/old': 'DRAINING', 'default/new': 'HEALTHY' },
  },
  [API]: { a1: { 'default/new': 'HEALTHY' } },
});

interface Row {
  title: string;
  envoys: Record<string, EnvoySpec>;
  gate: { ok: boolean; waitingOn: string[]; nackedBy?: string[] };
  drainOld: { ok: boolean; waitingOn: string[] };
}

const both = { eds: [WEB, API], cds: true };
const rows: Row[] = [
  {
    title: 'no Envoy connected: local gate ok (nobody to wait for; requireProxies holds it), old pod drained',
    envoys: {},
    gate: { ok: true, waitingOn: [] },
    drainOld: { ok: true, waitingOn: [] },
  },
  {
    title: 'every Envoy on the newest versions',
    envoys: {
      a: { ...both, acked: { [WEB]: 'v3', [API]: 'a1' } },
      b: { ...both, acked: { [WEB]: 'v3', [API]: 'a1' } },
    },
    gate: { ok: true, waitingOn: [] },
    drainOld: { ok: true, waitingOn: [] },
  },
  {
    title: 'an older version that already routes to the new pod counts for the gate, not for drain',
    envoys: { a: { ...both, acked: { [WEB]: 'v2', [API]: 'a1' } } },
    gate: { ok: true, waitingOn: [] },
    drainOld: { ok: false, waitingOn: ['a'] },
  },
  {
    title: 'one Envoy still on v1 holds the gate; the old pod is still HEALTHY there',
    envoys: {
      a: { ...both, acked: { [WEB]: 'v3', [API]: 'a1' } },
      b: { ...both, acked: { [WEB]: 'v1', [API]: 'a1' } },
    },
    gate: { ok: false, waitingOn: ['b'] },
    drainOld: { ok: false, waitingOn: ['b'] },
  },
  {
    title: 'the gate needs every cluster of the pod: api not ACKed yet',
    envoys: { a: { ...both, acked: { [WEB]: 'v3' } } },
    gate: { ok: false, waitingOn: ['a'] },
    drainOld: { ok: true, waitingOn: [] },
  },
  {
    title: 'an Envoy subscribed only to api is asked only about api',
    envoys: { a: { eds: [API], acked: { [API]: 'a1' } } },
    gate: { ok: true, waitingOn: [] },
    drainOld: { ok: true, waitingOn: [] },
  },
  {
    title: 'CDS wildcard without the EDS subscription yet: expected to learn web, so it holds the gate',
    envoys: { a: { eds: [API], cds: true, acked: { [API]: 'a1' } } },
    gate: { ok: false, waitingOn: ['a'] },
    drainOld: { ok: true, waitingOn: [] },
  },
  {
    title: 'an Envoy that rejected its latest EDS response is waited on and named as NACKing',
    envoys: {
      a: { ...both, acked: { [WEB]: 'v1', [API]: 'a1' }, nack: 'eds' },
      b: { ...both, acked: { [WEB]: 'v3', [API]: 'a1' } },
    },
    gate: { ok: false, waitingOn: ['a'], nackedBy: ['a'] },
    drainOld: { ok: false, waitingOn: ['a'] },
  },
  {
    title: 'a NACK does not hold the gate once the Envoy has a version routing to the pod',
    envoys: { a: { ...both, acked: { [WEB]: 'v3', [API]: 'a1' }, nack: 'eds' } },
    gate: { ok: true, waitingOn: [] },
    drainOld: { ok: true, waitingOn: [] },
  },
  {
    title: 'an ACKed version the history never saw proves nothing: gate waits, drain waits',
    envoys: { a: { ...both, acked: { [WEB]: 'v0-unknown', [API]: 'a1' } } },
    gate: { ok: false, waitingOn: ['a'] },
    drainOld: { ok: false, waitingOn: ['a'] },
  },
  {
    title: 'an Envoy that dropped web (unsubscribed) routes nothing there any more',
    envoys: { a: { eds: [API], acked: { [WEB]: 'v1', [API]: 'a1' } } },
    gate: { ok: true, waitingOn: [] },
    drainOld: { ok: true, waitingOn: [] },
  },
  {
    title: 'wildcard EDS (proxyless clients) counts as subscribed to everything',
    envoys: { a: { eds: ['*'], acked: { [WEB]: 'v1', [API]: 'a1' } } },
    gate: { ok: false, waitingOn: ['a'] },
    drainOld: { ok: false, waitingOn: ['a'] },
  },
];

for (const row of rows) {
  test(`verdicts: ${row.title}`, (t) => {
    const sync = new SyncStatus();
    for (const [nodeId, spec] of Object.entries(row.envoys)) envoy(sync, nodeId, spec);
    const gate = gateVerdict('default/new', history, sync.streams);
    t.is(gate.ok, row.gate.ok, 'gate ok');
    t.deepEqual(gate.waitingOn, row.gate.waitingOn, 'gate waitingOn');
    t.deepEqual(gate.nackedBy, row.gate.nackedBy ?? [], 'gate nackedBy');
    t.deepEqual(gate.clusters, [API, WEB]);
    const drain = drainVerdict('default/old', history, sync.streams);
    t.is(drain.ok, row.drainOld.ok, 'drain ok');
    t.deepEqual(drain.waitingOn, row.drainOld.waitingOn, 'drain waitingOn');
  });
}

test('gate: a pod in no current cluster is not-routed, never ok', (t) => {
  const sync = new SyncStatus();
  const verdict = gateVerdict('default/absent', history, sync.streams);
  t.false(verdict.ok);
  t.is(verdict.reason, 'not-routed');
  // The old pod is DRAINING in web's current version: not routed either.
  t.is(gateVerdict('default/old', history, sync.streams).reason, 'not-routed');
});

test('drain: a pod no version mentions is drained at once; node ids are deduplicated and sorted', (t) => {
  const sync = new SyncStatus();
  envoy(sync, 'z', { eds: [WEB], acked: { [WEB]: 'v1' } });
  envoy(sync, 'z', { eds: [WEB], acked: { [WEB]: 'v1' } });
  envoy(sync, 'm', { eds: [WEB], acked: { [WEB]: 'v2' } });
  t.true(drainVerdict('default/unknown', history, sync.streams).ok);
  t.deepEqual(drainVerdict('default/old', history, sync.streams).waitingOn, ['m', 'z']);
});

test('history is bounded per cluster; evicted versions read as unknown, re-recorded ones move to the front', (t) => {
  const h = new RoutingHistory({ versionsPerCluster: 2 });
  h.record(WEB, 'v1', new Map([['default/p', 'HEALTHY']]));
  h.record(WEB, 'v2', new Map());
  h.record(WEB, 'v1', new Map([['default/p', 'HEALTHY']]));
  h.record(WEB, 'v3', new Map());
  t.is(h.summary(WEB, 'v2'), undefined);
  t.truthy(h.summary(WEB, 'v1'));
  t.is(h.currentVersion(WEB), 'v3');
  h.record(WEB, 'v4', new Map());
  t.deepEqual(h.clustersMentioning('default/p'), [], 'forgotten once no retained version mentions it');
});

test('summarizeAssignment: HEALTHY/UNKNOWN route, DRAINING drains, others and pod-less hosts are absent', (t) => {
  const host = (pod: string | undefined, health?: string) => ({
    ...(health ? { health_status: health } : {}),
    metadata: {
      filter_metadata: {
        readygate: {
          fields: {
            namespace: { string_value: 'ns' },
            ...(pod ? { pod: { string_value: pod } } : {}),
          },
        },
      },
    },
  });
  const summary = summarizeAssignment({
    endpoints: [
      {
        lb_endpoints: [
          host('a', 'HEALTHY'),
          host('b'),
          host('c', 'DRAINING'),
          host('d', 'UNHEALTHY'),
          host(undefined),
        ],
      },
      { lb_endpoints: [host('c', 'HEALTHY'), host('e', 'DRAINING')] },
    ],
  });
  t.deepEqual(Object.fromEntries(summary), {
    'ns/a': 'HEALTHY',
    'ns/b': 'HEALTHY',
    'ns/c': 'HEALTHY',
    'ns/e': 'DRAINING',
  });
});

test('follow: the history is built from what the cache really encoded, and follows removals', (t) => {
  const store = new EndpointStore();
  const cache = new ResourceCache();
  const pipeline = new TranslationPipeline(store, cache, DEFAULT_TRANSLATE_OPTIONS, silentLogger);
  const h = new RoutingHistory();
  let notified = 0;
  h.onChange(() => (notified += 1));
  const stop = h.follow(cache);
  const gatePending: EndpointModel = { ...endpoint('10.0.0.2', { ready: false }, 'new'), gatePending: true };
  store.upsert(service('web', [endpoint('10.0.0.1', READY, 'old'), gatePending]));
  pipeline.flush();
  const v1 = cache.get(TypeUrl.ENDPOINT, WEB)!.version;
  t.deepEqual(Object.fromEntries(h.summary(WEB, v1)!), {
    'default/old': 'HEALTHY',
    'default/new': 'HEALTHY',
  });
  store.upsert(
    service('web', [endpoint('10.0.0.1', SERVING_TERMINATING, 'old'), endpoint('10.0.0.2', READY, 'new')]),
  );
  pipeline.flush();
  const v2 = cache.get(TypeUrl.ENDPOINT, WEB)!.version;
  t.deepEqual(Object.fromEntries(h.summary(WEB, v2)!), {
    'default/old': 'DRAINING',
    'default/new': 'HEALTHY',
  });
  t.deepEqual(h.currentHealthyClusters('default/new'), [WEB]);
  t.deepEqual(h.currentHealthyClusters('default/old'), []);
  store.delete('default/web');
  pipeline.flush();
  t.is(h.currentVersion(WEB), undefined);
  t.truthy(h.summary(WEB, v1), 'past versions stay: Envoys may still hold them');
  t.is(notified, 3);
  stop();
  pipeline.close();
});

test('gate: ackedBy names the Envoys routing to the pod; requireProxies holds an ok verdict below the minimum', (t) => {
  const sync = new SyncStatus();
  const none = gateVerdict('default/new', history, sync.streams);
  t.like(none, { ok: true, ackedBy: [] });
  t.like(requireProxies(none, 1), { ok: false, reason: 'too-few-proxies' });
  t.like(requireProxies(none, 0), { ok: true }, '0 = no minimum');
  envoy(sync, 'b', { ...both, acked: { [WEB]: 'v3', [API]: 'a1' } });
  envoy(sync, 'a', { ...both, acked: { [WEB]: 'v2', [API]: 'a1' } });
  envoy(sync, 'unrelated', { eds: [] });
  const two = gateVerdict('default/new', history, sync.streams);
  t.deepEqual(two.ackedBy, ['a', 'b'], 'subscribed and routing; the unrelated Envoy is not counted');
  t.like(requireProxies(two, 2), { ok: true });
  t.like(requireProxies(two, 3), { ok: false, reason: 'too-few-proxies' });
  envoy(sync, 'c', { ...both, acked: { [WEB]: 'v1', [API]: 'a1' } });
  const behind = gateVerdict('default/new', history, sync.streams);
  t.like(behind, { ok: false, waitingOn: ['c'] });
  t.deepEqual(behind.ackedBy, ['a', 'b']);
  t.is(requireProxies(behind, 1).reason, undefined, 'an Envoy behind is the reason, not the count');
});
