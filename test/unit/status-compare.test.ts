/**
 * `readygate status`'s comparison core: Envoy admin JSON (shaped like Envoy 1.36's) against readygate's
 * /debug views, one table row per situation, asserting the exact verdict per cluster and the exit-1 flag.
 */
import test from 'ava';
import {
  clusterStatPrefix,
  compareStatus,
  envoyNodeId,
  isReadygateClusterName,
  replicaOfNode,
  Verdict,
  type EnvoyDocuments,
  type ReadygateDocuments,
  type StatusReport,
} from '../../src/status/compare.js';
import { DRIFT_MARKER, formatReport } from '../../src/status/format.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import type { SynczEntry } from '../../src/xds/sync-status.js';

type Hosts = Record<string, string>; // address → EDS health

interface EnvoySpec {
  nodeId?: string;
  active?: Record<string, Hosts>;
  warming?: string[];
  /** Extra host health_status fields per address, e.g. { failed_outlier_check: true }. */
  hostFlags?: Record<string, Record<string, unknown>>;
  stats?: Record<string, number | string>;
}

/** Envoy admin documents as Envoy 1.36 renders them (fields status reads, plus realistic neighbours). */
function envoyDocs(spec: EnvoySpec = {}): EnvoyDocuments {
  const active = spec.active ?? {};
  const clusterStatuses = [
    {
      name: 'readygate_xds',
      host_statuses: [
        {
          address: { socket_address: { address: '127.0.0.1', port_value: 18000 } },
          health_status: { eds_health_status: 'HEALTHY' },
        },
      ],
    },
    ...Object.entries(active).map(([name, hosts]) => ({
      name,
      added_via_api: true,
      host_statuses: Object.entries(hosts).map(([address, health]) => {
        const colon = address.lastIndexOf(':');
        return {
          address: {
            socket_address: {
              address: address.slice(0, colon),
              port_value: Number(address.slice(colon + 1)),
            },
          },
          health_status: {
            ...(health === 'UNKNOWN' ? {} : { eds_health_status: health }),
            ...spec.hostFlags?.[address],
          },
          weight: 1,
        };
      }),
    })),
  ];
  const dumpEntry = (name: string) => ({
    version_info: 'v-cds',
    cluster: { '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster', name },
    last_updated: '2026-01-01T00:00:00Z',
  });
  return {
    serverInfo: {
      state: 'LIVE',
      node: {
        id: spec.nodeId ?? 'gw-1',
        cluster: 'gateways',
        user_agent_build_version: { version: { major_number: 1, minor_number: 36, patch: 4 } },
      },
    },
    clusters: { cluster_statuses: clusterStatuses },
    configDump: {
      configs: [
        { '@type': 'type.googleapis.com/envoy.admin.v3.BootstrapConfigDump', bootstrap: {} },
        {
          '@type': 'type.googleapis.com/envoy.admin.v3.ClustersConfigDump',
          static_clusters: [{ cluster: { name: 'readygate_xds' } }],
          dynamic_active_clusters: Object.keys(active).map(dumpEntry),
          ...(spec.warming ? { dynamic_warming_clusters: spec.warming.map(dumpEntry) } : {}),
        },
      ],
    },
    stats: {
      stats: Object.entries({
        'control_plane.connected_state': 1,
        'cluster_manager.cds.update_rejected': 0,
        ...spec.stats,
      }).map(([name, value]) => ({ name, value })),
    },
  };
}

interface TypeSpec {
  status?: 'SYNCED' | 'STALE' | 'NACKED' | 'NOT_SENT';
  acked?: Record<string, string>;
  nack?: string;
}

interface ReadygateSpec {
  /** cluster → hosts readygate sends (address → HEALTHY|DRAINING). */
  hosts?: Record<string, Hosts>;
  /** Current versions; default `c-<name>` / `e-<name>` for every cluster in `hosts`. */
  cds?: Record<string, string>;
  eds?: Record<string, string>;
  /** Streams on readygate; default one stream for gw-1 that ACKed every current version. */
  streams?: { nodeId: string; streamId: number; connectedAt?: string; cds?: TypeSpec; eds?: TypeSpec }[];
}

function readygateDocs(spec: ReadygateSpec = {}): ReadygateDocuments {
  const hosts = spec.hosts ?? {};
  const names = Object.keys(hosts);
  const cds = spec.cds ?? Object.fromEntries(names.map((n) => [n, `c-${n}`]));
  const eds = spec.eds ?? Object.fromEntries(names.map((n) => [n, `e-${n}`]));
  const typeEntry = (t: TypeSpec | undefined, current: Record<string, string>) => {
    const status = t?.status ?? 'SYNCED';
    const record = { version: 'set-1', nonce: '1', time: '2026-01-01T00:00:00.000Z' };
    return {
      status,
      subscribed: '*',
      sent: status === 'NOT_SENT' ? null : record,
      acked: status === 'NOT_SENT' ? null : record,
      lastNack: t?.nack === undefined ? null : { ...record, nonce: '2', error: t.nack },
      ackedResourceCount: Object.keys(t?.acked ?? current).length,
      ackedResources: t?.acked ?? current,
    };
  };
  const streams = spec.streams ?? [{ nodeId: 'gw-1', streamId: 1 }];
  return {
    endpoints: Object.entries(hosts).map(([cluster, h]) => ({
      cluster,
      hosts: Object.entries(h).map(([address, health]) => ({
        address,
        health,
        state: health === 'DRAINING' ? 'terminating' : 'ready',
        pod: `pod-${address}`,
      })),
    })),
    resources: {
      [TypeUrl.CLUSTER]: cds,
      [TypeUrl.ENDPOINT]: eds,
      [TypeUrl.LISTENER]: {},
      [TypeUrl.ROUTE]: {},
    },
    syncz: streams.map((s) => ({
      nodeId: s.nodeId,
      nodeCluster: 'gateways',
      streamId: s.streamId,
      stream: 'sotw',
      peer: '127.0.0.1:40000',
      connectedAt: s.connectedAt ?? '2026-01-01T00:00:00.000Z',
      types: { [TypeUrl.CLUSTER]: typeEntry(s.cds, cds), [TypeUrl.ENDPOINT]: typeEntry(s.eds, eds) },
    })),
  };
}

const WEB = 'default/web:http';
const API = 'shop/api:8080';
const webHosts: Hosts = { '10.0.0.1:8080': 'HEALTHY', '10.0.0.2:8080': 'DRAINING' };

function verdicts(report: StatusReport): Record<string, Verdict> {
  return Object.fromEntries(report.clusters.map((c) => [c.name, c.verdict]));
}

interface Row {
  title: string;
  envoy: EnvoySpec;
  readygate: ReadygateSpec | undefined;
  verdicts: Record<string, Verdict>;
  drift: boolean;
  /** Substrings expected among the reasons of a cluster. */
  reasons?: Record<string, string[]>;
  notes?: string[];
  /** Expected StatusReport.unknown (default false). */
  unknown?: boolean;
}

const rows: Row[] = [
  {
    title: 'same hosts and health, every current version ACKed',
    envoy: { active: { [WEB]: webHosts, [API]: { '10.0.1.1:8080': 'HEALTHY' } } },
    readygate: { hosts: { [WEB]: webHosts, [API]: { '10.0.1.1:8080': 'HEALTHY' } } },
    verdicts: { [WEB]: Verdict.IN_SYNC, [API]: Verdict.IN_SYNC },
    drift: false,
  },
  {
    title: "Envoy's UNKNOWN EDS health counts as HEALTHY",
    envoy: { active: { [WEB]: { '10.0.0.1:8080': 'UNKNOWN' } } },
    readygate: { hosts: { [WEB]: { '10.0.0.1:8080': 'HEALTHY' } } },
    verdicts: { [WEB]: Verdict.IN_SYNC },
    drift: false,
  },
  {
    title: 'Envoy lacks a host readygate sends',
    envoy: { active: { [WEB]: { '10.0.0.1:8080': 'HEALTHY' } } },
    readygate: { hosts: { [WEB]: webHosts } },
    verdicts: { [WEB]: Verdict.HOSTS_DIFFER },
    drift: true,
    reasons: { [WEB]: ['10.0.0.2:8080 (Envoy absent, readygate DRAINING)'] },
  },
  {
    title: 'Envoy routes to a host readygate marks DRAINING',
    envoy: { active: { [WEB]: { '10.0.0.1:8080': 'HEALTHY', '10.0.0.2:8080': 'HEALTHY' } } },
    readygate: { hosts: { [WEB]: webHosts } },
    verdicts: { [WEB]: Verdict.HOSTS_DIFFER },
    drift: true,
    reasons: { [WEB]: ['10.0.0.2:8080 (Envoy HEALTHY, readygate DRAINING)'] },
  },
  {
    title: 'EDS version ACKed is not the current one',
    envoy: { active: { [WEB]: webHosts } },
    readygate: {
      hosts: { [WEB]: webHosts },
      streams: [{ nodeId: 'gw-1', streamId: 1, eds: { status: 'STALE', acked: { [WEB]: 'e-old' } } }],
    },
    verdicts: { [WEB]: Verdict.STALE_VERSION },
    drift: true,
    reasons: {
      [WEB]: [`EDS version: Envoy ACKed e-old, readygate serves e-${WEB} (an EDS response is in flight)`],
    },
  },
  {
    title: 'cluster version ACKed is not the current one (wins over differing hosts: it explains them)',
    envoy: { active: { [WEB]: { '10.0.0.9:8080': 'HEALTHY' } } },
    readygate: {
      hosts: { [WEB]: webHosts },
      streams: [{ nodeId: 'gw-1', streamId: 1, cds: { acked: { [WEB]: 'c-old' } } }],
    },
    verdicts: { [WEB]: Verdict.STALE_VERSION },
    drift: true,
    reasons: { [WEB]: ['Cluster version: Envoy ACKed c-old'] },
  },
  {
    title: 'readygate serves a cluster Envoy does not have',
    envoy: { active: { [WEB]: webHosts } },
    readygate: { hosts: { [WEB]: webHosts, [API]: { '10.0.1.1:8080': 'HEALTHY' } } },
    verdicts: { [API]: Verdict.MISSING_IN_ENVOY, [WEB]: Verdict.IN_SYNC },
    drift: true,
    reasons: { [API]: ['Envoy does not have it'] },
  },
  {
    title: 'a cluster still warming in Envoy is missing, with the reason',
    envoy: { active: { [WEB]: webHosts }, warming: [API] },
    readygate: { hosts: { [WEB]: webHosts, [API]: { '10.0.1.1:8080': 'HEALTHY' } } },
    verdicts: { [API]: Verdict.MISSING_IN_ENVOY, [WEB]: Verdict.IN_SYNC },
    drift: true,
    reasons: { [API]: ['only as warming', 'Envoy is warming this cluster'] },
  },
  {
    title: 'the latest CDS response was NACKed and the new cluster is missing',
    envoy: { active: { [WEB]: webHosts } },
    readygate: {
      hosts: { [WEB]: webHosts, [API]: { '10.0.1.1:8080': 'HEALTHY' } },
      streams: [
        {
          nodeId: 'gw-1',
          streamId: 1,
          cds: { status: 'NACKED', acked: { [WEB]: `c-${WEB}` }, nack: 'Invalid duration: seconds: -1\n' },
          eds: { acked: { [WEB]: `e-${WEB}` } },
        },
      ],
    },
    verdicts: { [API]: Verdict.NACKED, [WEB]: Verdict.IN_SYNC },
    drift: true,
    reasons: { [API]: ["rejected readygate's latest CDS response"] },
    notes: ["Envoy rejected readygate's latest CDS response: Invalid duration: seconds: -1"],
  },
  {
    title: 'the latest EDS response was NACKed and the cluster is stale',
    envoy: { active: { [WEB]: webHosts } },
    readygate: {
      hosts: { [WEB]: webHosts },
      streams: [
        {
          nodeId: 'gw-1',
          streamId: 1,
          eds: { status: 'NACKED', acked: { [WEB]: 'e-old' }, nack: 'Unexpected EDS cluster' },
        },
      ],
    },
    verdicts: { [WEB]: Verdict.NACKED },
    drift: true,
    reasons: { [WEB]: ["rejected readygate's latest EDS response"] },
  },
  {
    title: 'a NACK naming a cluster marks it even when its versions match',
    envoy: { active: { [WEB]: webHosts, [API]: { '10.0.1.1:8080': 'HEALTHY' } } },
    readygate: {
      hosts: { [WEB]: webHosts, [API]: { '10.0.1.1:8080': 'HEALTHY' } },
      streams: [
        { nodeId: 'gw-1', streamId: 1, cds: { status: 'NACKED', nack: `Error adding cluster ${API}` } },
      ],
    },
    verdicts: { [API]: Verdict.NACKED, [WEB]: Verdict.IN_SYNC },
    drift: true,
  },
  {
    title: 'a NACK superseded by an ACK is history, not drift',
    envoy: { active: { [WEB]: webHosts } },
    readygate: {
      hosts: { [WEB]: webHosts },
      streams: [{ nodeId: 'gw-1', streamId: 1, cds: { status: 'SYNCED', nack: 'old problem' } }],
    },
    verdicts: { [WEB]: Verdict.IN_SYNC },
    drift: false,
    notes: ['since superseded by an accepted one): old problem'],
  },
  {
    title: 'a readygate-shaped cluster readygate does not serve; static and foreign names are ignored',
    envoy: {
      active: { [WEB]: webHosts, 'other/gone:grpc': { '10.0.2.1:9000': 'HEALTHY' }, outbound_foo: {} },
    },
    readygate: { hosts: { [WEB]: webHosts } },
    verdicts: { 'other/gone:grpc': Verdict.UNKNOWN_TO_READYGATE, [WEB]: Verdict.IN_SYNC },
    drift: true,
  },
  {
    title: 'Envoy has no stream on this control plane: versions unknown, hosts still compared',
    envoy: {
      active: { [WEB]: webHosts, [API]: { '10.0.1.1:8080': 'HEALTHY' } },
      stats: { 'control_plane.connected_state': 0 },
    },
    readygate: {
      hosts: { [WEB]: webHosts, [API]: { '10.0.1.2:8080': 'HEALTHY' } },
      streams: [{ nodeId: 'someone-else', streamId: 7 }],
    },
    verdicts: { [API]: Verdict.HOSTS_DIFFER, [WEB]: Verdict.UNVERIFIED },
    drift: true,
    notes: [
      'not connected to any control plane',
      'Envoy node "gw-1" has no stream on the readygate replica(s) asked',
    ],
  },
  {
    title: 'no stream on the replica asked and hosts agree: UNVERIFIED, unknown (never "in sync")',
    envoy: { active: { [WEB]: webHosts } },
    readygate: { hosts: { [WEB]: webHosts }, streams: [{ nodeId: 'someone-else', streamId: 7 }] },
    verdicts: { [WEB]: Verdict.UNVERIFIED },
    drift: false,
    unknown: true,
    notes: ['ask them all (--control-plane repeated, or --peers-dns)'],
  },
  {
    title: 'several streams share the node id: the newest one is compared',
    envoy: { active: { [WEB]: webHosts } },
    readygate: {
      hosts: { [WEB]: webHosts },
      streams: [
        { nodeId: 'gw-1', streamId: 2, eds: { acked: { [WEB]: 'e-old' } } },
        { nodeId: 'gw-1', streamId: 5 },
      ],
    },
    verdicts: { [WEB]: Verdict.IN_SYNC },
    drift: false,
    notes: ['2 streams on readygate use node id "gw-1"; comparing with the newest (stream 5)'],
  },
  {
    title: 'Envoy only: nothing compared, no NACK counters → exit 0',
    envoy: { active: { [WEB]: webHosts } },
    readygate: undefined,
    verdicts: { [WEB]: Verdict.NOT_COMPARED },
    drift: false,
    notes: ['No --control-plane given'],
  },
  {
    title: 'Envoy only: a cluster whose EDS updates were rejected is NACKED',
    envoy: {
      active: { [WEB]: webHosts, [API]: {} },
      stats: { [`${clusterStatPrefix(API)}update_rejected`]: 2 },
    },
    readygate: undefined,
    verdicts: { [API]: Verdict.NACKED, [WEB]: Verdict.NOT_COMPARED },
    drift: true,
    reasons: { [API]: ['Envoy rejected 2 EDS update(s)', 'cluster.shop/api_8080.update_rejected'] },
  },
  {
    title: 'Envoy only: rejected CDS updates are drift for the node',
    envoy: { active: { [WEB]: webHosts }, stats: { 'cluster_manager.cds.update_rejected': 1 } },
    readygate: undefined,
    verdicts: { [WEB]: Verdict.NOT_COMPARED },
    drift: true,
    notes: ['Envoy rejected 1 CDS update(s) since it started'],
  },
];

for (const row of rows) {
  test(`compare: ${row.title}`, (t) => {
    const report = compareStatus(envoyDocs(row.envoy), row.readygate && readygateDocs(row.readygate));
    t.deepEqual(verdicts(report), row.verdicts);
    t.is(report.drift, row.drift);
    t.is(report.unknown, row.unknown ?? false);
    for (const [cluster, expected] of Object.entries(row.reasons ?? {})) {
      const reasons = report.clusters.find((c) => c.name === cluster)?.reasons.join('\n') ?? '';
      for (const text of expected)
        t.true(reasons.includes(text), `${cluster} reasons lack "${text}":\n${reasons}`);
    }
    const notes = report.notes.join('\n');
    for (const text of row.notes ?? []) t.true(notes.includes(text), `notes lack "${text}":\n${notes}`);
  });
}

test('compare: host rows carry Envoy health flags and both sides, sorted by address', (t) => {
  const report = compareStatus(
    envoyDocs({
      active: {
        [WEB]: { '10.0.0.2:8080': 'DRAINING', '10.0.0.1:8080': 'HEALTHY', '10.0.0.3:8080': 'HEALTHY' },
      },
      hostFlags: {
        '10.0.0.2:8080': { failed_outlier_check: true },
        '10.0.0.3:8080': { pending_dynamic_removal: true },
      },
    }),
    readygateDocs({ hosts: { [WEB]: webHosts } }),
  );
  const web = report.clusters.find((c) => c.name === WEB)!;
  t.deepEqual(
    web.hosts.map((h) => [
      h.address,
      h.envoy?.edsHealth,
      h.envoy?.healthFlags,
      h.readygate?.health,
      h.differs,
    ]),
    [
      ['10.0.0.1:8080', 'HEALTHY', 'healthy', 'HEALTHY', false],
      ['10.0.0.2:8080', 'DRAINING', '/failed_outlier_check/eds_status_draining', 'DRAINING', false],
      ['10.0.0.3:8080', 'HEALTHY', '/pending_dynamic_removal', undefined, true],
    ],
  );
  t.is(web.verdict, Verdict.HOSTS_DIFFER);
});

test('compare: per-cluster Envoy stats are read under the sanitized stat name', (t) => {
  const prefix = clusterStatPrefix(WEB);
  t.is(prefix, 'cluster.default/web_http.');
  const report = compareStatus(
    envoyDocs({
      active: { [WEB]: webHosts },
      stats: {
        [`${prefix}version_text`]: 'abc',
        [`${prefix}lb_healthy_panic`]: 3,
        [`${prefix}membership_healthy`]: 1,
        [`${prefix}membership_excluded`]: 1,
        [`${prefix}membership_total`]: 2,
      },
    }),
    readygateDocs({ hosts: { [WEB]: webHosts } }),
  );
  const web = report.clusters[0]!;
  t.like(web.envoy, {
    active: true,
    warming: false,
    edsVersionText: 'abc',
    lbHealthyPanic: 3,
    membershipHealthy: 1,
    membershipExcluded: 1,
    membershipTotal: 2,
  });
  t.true(web.reasons.some((r) => r.includes('3 request(s) in panic mode')));
  t.is(web.verdict, Verdict.IN_SYNC);
});

test('compare: malformed admin JSON degrades to "unknown", never throws', (t) => {
  const report = compareStatus(
    { serverInfo: null, clusters: 'nope', configDump: { configs: 5 }, stats: [] },
    { endpoints: {}, resources: null, syncz: 'x' },
  );
  t.is(report.node.id, '');
  t.deepEqual(report.clusters, []);
  t.false(report.drift);
});

test('cluster names: only <namespace>/<service>:<port> counts as readygate-shaped', (t) => {
  for (const name of ['default/web:http', 'a/b:8080', 'team-1/svc-2:grpc-web'])
    t.true(isReadygateClusterName(name), name);
  for (const name of ['readygate_xds', 'default/web', 'web:http', 'Default/web:http', 'a/b/c:http', 'a/b:'])
    t.false(isReadygateClusterName(name), name);
});

test('format: drifting clusters are marked and named in the summary; in-sync ones are not', (t) => {
  const report = compareStatus(
    envoyDocs({ active: { [WEB]: webHosts, [API]: { '10.0.1.1:8080': 'HEALTHY' } } }),
    readygateDocs({ hosts: { [WEB]: webHosts, [API]: { '10.0.1.2:8080': 'HEALTHY' } } }),
  );
  const text = formatReport(report, {
    envoy: 'http://127.0.0.1:9901',
    controlPlane: 'http://127.0.0.1:9102',
  });
  const lines = text.split('\n');
  t.true(lines.includes(`${API}  HOSTS_DIFFER  ${DRIFT_MARKER}`), text);
  t.true(lines.includes(`${WEB}  IN_SYNC`), text);
  t.is(lines.at(-2), `2 cluster(s), 1 drifting: ${API}.`);
  t.regex(text, /^ {2}10\.0\.1\.2:8080 +- +- +HEALTHY +ready +pod-10\.0\.1\.2:8080 +\*$/m);
});

test('format: in sync and Envoy-only summaries', (t) => {
  const inSync = compareStatus(
    envoyDocs({ active: { [WEB]: webHosts } }),
    readygateDocs({ hosts: { [WEB]: webHosts } }),
  );
  t.true(formatReport(inSync, { envoy: 'e', controlPlane: 'c' }).endsWith('1 cluster(s), all in sync.\n'));
  t.false(formatReport(inSync, { envoy: 'e', controlPlane: 'c' }).includes(DRIFT_MARKER));
  const envoyOnly = compareStatus(envoyDocs({ active: { [WEB]: webHosts } }));
  t.true(
    formatReport(envoyOnly, { envoy: 'e' }).endsWith(
      '1 cluster(s) in Envoy, no NACKs (not compared with readygate: no --control-plane).\n',
    ),
  );
});

test('format: an Envoy on no replica asked is summarised as UNKNOWN, not in sync', (t) => {
  const report = compareStatus(
    envoyDocs({ active: { [WEB]: webHosts } }),
    readygateDocs({ hosts: { [WEB]: webHosts }, streams: [{ nodeId: 'someone-else', streamId: 7 }] }),
  );
  const text = formatReport(report, { envoy: 'e', controlPlane: 'c' });
  t.true(
    text.endsWith(
      '1 cluster(s); sync UNKNOWN: this Envoy has no stream on the readygate replica(s) asked.\n',
    ),
    text,
  );
  t.false(text.includes('in sync.'));
});

test("replicaOfNode: the replica holding the node's stream, the latest connected when several do", (t) => {
  const on = (nodeId: string, connectedAt: string) =>
    readygateDocs({ hosts: {}, streams: [{ nodeId, streamId: 1, connectedAt }] });
  const a = on('gw-1', '2026-12-04T10:00:00.000Z');
  const b = on('gw-2', '2026-12-04T10:00:00.000Z');
  const c = on('gw-1', '2026-12-04T11:00:00.000Z');
  t.is(replicaOfNode([b, a], 'gw-1'), 1);
  t.is(replicaOfNode([a, b, c], 'gw-1'), 2);
  t.is(replicaOfNode([b], 'gw-1'), -1);
  t.is(replicaOfNode([], 'gw-1'), -1);
  t.is(envoyNodeId(envoyDocs({ active: {} })), 'gw-1');
});

test("format: an Envoy's mTLS identity shows next to its peer; nothing is added without one", (t) => {
  const envoy = envoyDocs({ active: { [WEB]: webHosts } });
  const docs = readygateDocs({ hosts: { [WEB]: webHosts } });
  const plain = compareStatus(envoy, docs);
  t.is(plain.controlPlane?.stream?.identity, null);
  t.regex(formatReport(plain, { envoy: 'e', controlPlane: 'c' }), /from 127\.0\.0\.1:40000, connected /);
  const mutual = compareStatus(envoy, {
    ...docs,
    syncz: (docs.syncz as SynczEntry[]).map((entry) => ({ ...entry, identity: 'spiffe://td/gateway-1' })),
  });
  t.is(mutual.controlPlane?.stream?.identity, 'spiffe://td/gateway-1');
  t.regex(
    formatReport(mutual, { envoy: 'e', controlPlane: 'c' }),
    /from 127\.0\.0\.1:40000 \(mTLS spiffe:\/\/td\/gateway-1\), connected /,
  );
});
