/**
 * The core of `readygate status`: what one Envoy holds (its admin JSON) against what readygate would send
 * it (readygate's /debug views). Pure: the command fetches the documents and hands them in, so every
 * verdict is table-tested without a network (test/unit/status-compare.test.ts).
 *
 * Versions are compared on readygate's side, not Envoy's: Envoy's config dump carries no version for an
 * EDS resource, and in SotW the version_info it keeps is the version of the whole response, not of one
 * ClusterLoadAssignment. readygate records per resource what each stream ACKed (/debug/syncz?resources=true)
 * and serves per resource a content-hash version (/debug/resources), so "acked ≠ current" is exact.
 * What Envoy really holds (hosts and their health) is read from Envoy itself.
 */
import type { SynczEntry, SynczTypeEntry } from '../xds/sync-status.js';
import { TypeUrl } from '../xds/resource-types.js';
import { inScope, parseEgressText, serviceKeyOfCluster } from '../xds/node-metadata.js';

/** What Envoy's admin returned, parsed JSON as fetched. */
export interface EnvoyDocuments {
  /** `/server_info`: node id, Envoy version, state. */
  readonly serverInfo: unknown;
  /** `/clusters?format=json`: active clusters and their hosts. */
  readonly clusters: unknown;
  /** `/config_dump?include_eds`: cluster versions, warming clusters, error states. */
  readonly configDump: unknown;
  /** `/stats?format=json` (filtered to what status needs). */
  readonly stats: unknown;
}

/** What readygate's admin returned. */
export interface ReadygateDocuments {
  /** `/debug/endpoints`: per cluster, the hosts readygate sends. */
  readonly endpoints: unknown;
  /** `/debug/resources`: type URL → name → current version. */
  readonly resources: unknown;
  /** `/debug/syncz?resources=true`: per stream, per type, what was sent, ACKed and NACKed. */
  readonly syncz: unknown;
}

export const Verdict = {
  IN_SYNC: 'IN_SYNC',
  /** Same versions (or versions unverifiable) but Envoy's hosts or their health differ from readygate's. */
  HOSTS_DIFFER: 'HOSTS_DIFFER',
  /** Envoy has not ACKed readygate's current version of the cluster or its load assignment. */
  STALE_VERSION: 'STALE_VERSION',
  /** Envoy rejected the latest version readygate sent for this cluster. */
  NACKED: 'NACKED',
  /** readygate serves the cluster; Envoy has no active cluster of that name (absent or still warming). */
  MISSING_IN_ENVOY: 'MISSING_IN_ENVOY',
  /** Envoy has a dynamic cluster shaped like readygate's names that readygate does not serve. */
  UNKNOWN_TO_READYGATE: 'UNKNOWN_TO_READYGATE',
  /** No --control-plane: nothing to compare with, and no NACK evidence either. */
  NOT_COMPARED: 'NOT_COMPARED',
  /**
   * Hosts agree, but this Envoy has no stream on any readygate replica asked, so which version it holds
   * cannot be checked: not "in sync" (exit 3, unknown).
   */
  UNVERIFIED: 'UNVERIFIED',
} as const;
export type Verdict = (typeof Verdict)[keyof typeof Verdict];

/** Verdicts that make `status` exit 1. */
export function isDrift(verdict: Verdict): boolean {
  return verdict !== Verdict.IN_SYNC && verdict !== Verdict.NOT_COMPARED && verdict !== Verdict.UNVERIFIED;
}

export interface EnvoyHost {
  /** `ip:port`, written like readygate's /debug/endpoints (IPv6 unbracketed) so the two compare as text. */
  readonly address: string;
  /** What EDS said: HEALTHY, DRAINING, UNHEALTHY, DEGRADED, … (UNKNOWN when Envoy omits it). */
  readonly edsHealth: string;
  /** Envoy's `health_flags` as in the text `/clusters` output: `healthy` or `/flag/flag…`. */
  readonly healthFlags: string;
}

export interface ReadygateHost {
  readonly address: string;
  /** HEALTHY or DRAINING: what readygate puts in the load assignment. */
  readonly health: string;
  /** Why the host is in the assignment (ready, terminating, gate-pending, …). */
  readonly state: string;
  readonly pod: string | null;
}

export interface HostRow {
  readonly address: string;
  readonly envoy: EnvoyHost | null;
  readonly readygate: ReadygateHost | null;
  /** Present on one side only, or with a different EDS health on each. */
  readonly differs: boolean;
}

export interface VersionPair {
  /** What this Envoy's stream ACKed, per readygate's records; null when never ACKed (or no stream). */
  readonly acked: string | null;
  /** What readygate serves now; null when it does not serve the resource. */
  readonly current: string | null;
}

export interface EnvoyClusterView {
  /** In `/clusters` (active) — false while warming or when absent. */
  readonly active: boolean;
  /** In config_dump's dynamic_warming_clusters: waiting for its first (or a fresh) ClusterLoadAssignment. */
  readonly warming: boolean;
  /** Cluster version_info Envoy records (per resource in Delta, per response in SotW). */
  readonly cdsVersionInfo: string | null;
  /** `cluster.<name>.version_text`: version_info of the last EDS response Envoy applied to this cluster. */
  readonly edsVersionText: string | null;
  /** `cluster.<name>.update_rejected`: EDS updates for this cluster Envoy rejected since it started. */
  readonly edsUpdateRejected: number | null;
  /** `cluster.<name>.lb_healthy_panic`: requests balanced in panic mode since Envoy started. */
  readonly lbHealthyPanic: number | null;
  readonly membershipHealthy: number | null;
  readonly membershipExcluded: number | null;
  readonly membershipTotal: number | null;
  /** config_dump error_state of the cluster, when Envoy recorded a failed update of it. */
  readonly errorState: string | null;
}

export interface ClusterReport {
  readonly name: string;
  readonly verdict: Verdict;
  /** Every reason for the verdict and anything else worth knowing, one sentence each. */
  readonly reasons: readonly string[];
  /** null when Envoy does not know the cluster at all. */
  readonly envoy: EnvoyClusterView | null;
  /** Union of both sides' hosts, by address. */
  readonly hosts: readonly HostRow[];
  /** null without --control-plane. */
  readonly versions: { readonly cds: VersionPair; readonly eds: VersionPair } | null;
  /** Whether readygate serves this cluster (null without --control-plane). */
  readonly servedByReadygate: boolean | null;
}

export interface TypeSyncView {
  readonly status: SynczTypeEntry['status'];
  readonly sentVersion: string | null;
  readonly ackedVersion: string | null;
  readonly lastNack: {
    readonly version: string;
    readonly time: string;
    readonly error: string;
    /** The resources the rejected response carried; null from a readygate that does not report them. */
    readonly resources: readonly string[] | null;
    /** The latest response of this type was the one rejected: Envoy is still on an older version. */
    readonly current: boolean;
  } | null;
}

export interface NodeReport {
  readonly id: string;
  readonly cluster: string;
  readonly envoyVersion: string;
  readonly state: string;
  /** `control_plane.connected_state`: 1 when Envoy's ADS stream is up (to whichever control plane). */
  readonly connectedToControlPlane: boolean | null;
  /** `cluster_manager.cds.update_rejected`: CDS responses Envoy rejected since it started. */
  readonly cdsUpdateRejected: number | null;
  readonly cdsVersionText: string | null;
  readonly warmingClusters: number | null;
}

export interface ControlPlaneReport {
  /** The stream this Envoy holds on readygate, matched by node id; null when it has none. */
  readonly stream: {
    readonly streamId: number;
    readonly kind: string;
    readonly peer: string;
    /** mTLS: who the Envoy's client certificate names; null without one (or from an older readygate). */
    readonly identity: string | null;
    readonly connectedAt: string;
  } | null;
  readonly cds: TypeSyncView | null;
  readonly eds: TypeSyncView | null;
}

export interface StatusReport {
  readonly node: NodeReport;
  /** null without --control-plane. */
  readonly controlPlane: ControlPlaneReport | null;
  readonly clusters: readonly ClusterReport[];
  /** Findings about the node as a whole (not connected, NACKs, ambiguous node id). */
  readonly notes: readonly string[];
  /** Any cluster drifting, or a NACK that is not tied to one cluster. */
  readonly drift: boolean;
  /**
   * No drift found, but compared with readygate without finding this Envoy's stream: its versions were
   * not checked, so it is not known to be in sync (`status` exits 3).
   */
  readonly unknown: boolean;
}

/** `<namespace>/<service>:<port>`: only such clusters are readygate's business (design.md, fixed). */
const READYGATE_CLUSTER_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-a-z0-9]*[a-z0-9])?:[A-Za-z0-9-]+$/;

export function isReadygateClusterName(name: string): boolean {
  return READYGATE_CLUSTER_NAME.test(name);
}

/**
 * Envoy's stat name for a cluster. Envoy replaces `:` in stat name segments with `_` (it is the
 * tag/value separator in its stats sinks), so `default/web:http` is counted as `cluster.default/web_http.*`.
 */
export function clusterStatPrefix(name: string): string {
  return `cluster.${name.replaceAll(':', '_')}.`;
}

/** The admin stats filter `status` asks for: everything compareStatus reads, nothing more. */
export const STATS_FILTER =
  '^(control_plane\\.connected_state|cluster_manager\\.(warming_clusters|cds\\.(update_rejected|version_text))' +
  '|cluster\\..+\\.(update_rejected|version_text|lb_healthy_panic|membership_(healthy|excluded|total)))$';

// ---------------------------------------------------------------------------------------------------
// Tolerant readers: admin JSON comes over the network and from several Envoy versions, so a missing or
// oddly typed field becomes "unknown", never an exception.
// ---------------------------------------------------------------------------------------------------

type Json = Readonly<Record<string, unknown>>;

function obj(value: unknown): Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Json) : {};
}
function arr(value: unknown): readonly unknown[] {
  return Array.isArray(value) ? (value as unknown[]) : [];
}
function str(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}
function num(value: unknown): number | null {
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  // Envoy's JSON renders 64-bit counters as numbers, but proto JSON elsewhere uses strings for them.
  if (typeof value === 'string' && /^\d+$/.test(value)) return Number(value);
  return null;
}

function parseStats(stats: unknown): Map<string, number | string> {
  const values = new Map<string, number | string>();
  for (const entry of arr(obj(stats)['stats'])) {
    const name = str(obj(entry)['name']);
    const value = obj(entry)['value'];
    if (name === null) continue;
    if (typeof value === 'number' || typeof value === 'string') values.set(name, value);
  }
  return values;
}

function statNumber(stats: ReadonlyMap<string, number | string>, name: string): number | null {
  return num(stats.get(name));
}
function statText(stats: ReadonlyMap<string, number | string>, name: string): string | null {
  const value = stats.get(name);
  return typeof value === 'string' ? value : null;
}

/** `ip:port` of a socket address, IPv6 unbracketed like readygate's /debug/endpoints. */
function socketAddress(address: unknown): string | null {
  const socket = obj(obj(address)['socket_address']);
  const ip = str(socket['address']);
  const port = num(socket['port_value']);
  return ip === null || port === null ? null : `${ip}:${port}`;
}

/** Envoy's text-format `health_flags` (source/common/upstream/host_utility.cc) from the JSON fields. */
const FLAG_FIELDS: readonly (readonly [field: string, flag: string])[] = [
  ['failed_active_health_check', '/failed_active_hc'],
  ['failed_outlier_check', '/failed_outlier_check'],
  ['failed_active_degraded_check', '/degraded_active_hc'],
  ['pending_dynamic_removal', '/pending_dynamic_removal'],
  ['pending_active_hc', '/pending_active_hc'],
  ['excluded_via_immediate_hc_fail', '/excluded_via_immediate_hc_fail'],
  ['active_hc_timeout', '/active_hc_timeout'],
];
const EDS_FLAGS: Readonly<Record<string, string>> = {
  UNHEALTHY: '/failed_eds_health',
  TIMEOUT: '/failed_eds_health',
  DEGRADED: '/degraded_eds_health',
  DRAINING: '/eds_status_draining',
};

function healthFlags(healthStatus: Json, edsHealth: string): string {
  let flags = FLAG_FIELDS.filter(([field]) => healthStatus[field] === true)
    .map(([, flag]) => flag)
    .join('');
  flags += EDS_FLAGS[edsHealth] ?? '';
  return flags === '' ? 'healthy' : flags;
}

/** Envoy treats an UNKNOWN EDS health as HEALTHY; compare them as equal. */
function sameHealth(envoy: string, readygate: string): boolean {
  const normal = (h: string): string => (h === 'UNKNOWN' ? 'HEALTHY' : h);
  return normal(envoy) === normal(readygate);
}

interface EnvoyCluster {
  readonly name: string;
  readonly addedViaApi: boolean;
  readonly hosts: EnvoyHost[];
}

function envoyActiveClusters(clusters: unknown): Map<string, EnvoyCluster> {
  const out = new Map<string, EnvoyCluster>();
  for (const raw of arr(obj(clusters)['cluster_statuses'])) {
    const cluster = obj(raw);
    const name = str(cluster['name']);
    if (name === null) continue;
    const hosts: EnvoyHost[] = [];
    for (const rawHost of arr(cluster['host_statuses'])) {
      const host = obj(rawHost);
      const address = socketAddress(host['address']);
      if (address === null) continue;
      const health = obj(host['health_status']);
      const edsHealth = str(health['eds_health_status']) ?? 'UNKNOWN';
      hosts.push({ address, edsHealth, healthFlags: healthFlags(health, edsHealth) });
    }
    out.set(name, { name, addedViaApi: cluster['added_via_api'] === true, hosts });
  }
  return out;
}

interface DumpedCluster {
  readonly versionInfo: string | null;
  readonly errorState: string | null;
}

/** From config_dump's ClustersConfigDump: active and warming dynamic clusters, with versions and errors. */
function dumpedClusters(configDump: unknown): {
  active: Map<string, DumpedCluster>;
  warming: Map<string, DumpedCluster>;
} {
  const active = new Map<string, DumpedCluster>();
  const warming = new Map<string, DumpedCluster>();
  for (const rawConfig of arr(obj(configDump)['configs'])) {
    const config = obj(rawConfig);
    if (!String(config['@type']).endsWith('.ClustersConfigDump')) continue;
    for (const [key, into] of [
      ['dynamic_active_clusters', active],
      ['dynamic_warming_clusters', warming],
    ] as const) {
      for (const rawEntry of arr(config[key])) {
        const entry = obj(rawEntry);
        const name = str(obj(entry['cluster'])['name']);
        if (name === null) continue;
        const error = obj(entry['error_state']);
        const details = str(error['details']);
        into.set(name, {
          versionInfo: str(entry['version_info']),
          errorState: details ?? (Object.keys(error).length > 0 ? JSON.stringify(error) : null),
        });
      }
    }
  }
  return { active, warming };
}

function readygateHosts(endpoints: unknown): Map<string, ReadygateHost[]> {
  const out = new Map<string, ReadygateHost[]>();
  for (const raw of arr(endpoints)) {
    const entry = obj(raw);
    const cluster = str(entry['cluster']);
    if (cluster === null) continue;
    out.set(
      cluster,
      arr(entry['hosts']).flatMap((rawHost) => {
        const host = obj(rawHost);
        const address = str(host['address']);
        if (address === null) return [];
        return [
          {
            address,
            health: str(host['health']) ?? 'HEALTHY',
            state: str(host['state']) ?? '',
            pod: str(host['pod']),
          },
        ];
      }),
    );
  }
  return out;
}

function resourceVersions(resources: unknown, typeUrl: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, version] of Object.entries(obj(obj(resources)[typeUrl]))) {
    if (typeof version === 'string') out.set(name, version);
  }
  return out;
}

function typeView(entry: SynczTypeEntry | undefined): TypeSyncView | null {
  if (!entry) return null;
  return {
    status: entry.status,
    sentVersion: entry.sent?.version ?? null,
    ackedVersion: entry.acked?.version ?? null,
    lastNack: entry.lastNack
      ? {
          version: entry.lastNack.version,
          time: entry.lastNack.time,
          error: entry.lastNack.error.trim(),
          resources: Array.isArray(entry.lastNack.resources) ? entry.lastNack.resources : null,
          current: entry.status === 'NACKED',
        }
      : null,
  };
}

/** Picks this Envoy's stream: same node id; the newest when several share it (a restart, or a misconfig). */
function matchStream(syncz: unknown, nodeId: string): { entry: SynczEntry | undefined; sharing: number } {
  const entries = arr(syncz)
    .map((e) => e as SynczEntry)
    .filter((e) => typeof e.nodeId === 'string' && e.nodeId === nodeId && typeof e.streamId === 'number');
  entries.sort((a, b) => b.streamId - a.streamId);
  return { entry: entries[0], sharing: entries.length };
}

const shortVersion = (v: string | null): string => (v === null ? 'none' : v);

/** The whole comparison. `readygate` undefined = Envoy-only mode (no --control-plane). */
export function compareStatus(envoy: EnvoyDocuments, readygate?: ReadygateDocuments): StatusReport {
  const serverInfo = obj(envoy.serverInfo);
  const nodeJson = obj(serverInfo['node']);
  const stats = parseStats(envoy.stats);
  const version = obj(obj(nodeJson['user_agent_build_version'])['version']);
  const node: NodeReport = {
    id: str(nodeJson['id']) ?? '',
    cluster: str(nodeJson['cluster']) ?? '',
    envoyVersion:
      version['major_number'] === undefined
        ? (str(serverInfo['version']) ?? 'unknown')
        : `${num(version['major_number']) ?? '?'}.${num(version['minor_number']) ?? '?'}.${num(version['patch']) ?? '?'}`,
    state: str(serverInfo['state']) ?? 'unknown',
    connectedToControlPlane: ((v) => (v === null ? null : v === 1))(
      statNumber(stats, 'control_plane.connected_state'),
    ),
    cdsUpdateRejected: statNumber(stats, 'cluster_manager.cds.update_rejected'),
    cdsVersionText: statText(stats, 'cluster_manager.cds.version_text'),
    warmingClusters: statNumber(stats, 'cluster_manager.warming_clusters'),
  };

  const notes: string[] = [];
  if (node.connectedToControlPlane === false)
    notes.push('Envoy is not connected to any control plane (control_plane.connected_state = 0).');
  if (node.state !== 'LIVE') notes.push(`Envoy's server state is ${node.state}, not LIVE.`);

  const active = envoyActiveClusters(envoy.clusters);
  const dumped = dumpedClusters(envoy.configDump);
  const envoyView = (name: string): EnvoyClusterView | null => {
    const isActive = active.has(name);
    const warming = dumped.warming.get(name);
    const dump = dumped.active.get(name) ?? warming;
    if (!isActive && !dump) return null;
    const prefix = clusterStatPrefix(name);
    return {
      active: isActive,
      warming: warming !== undefined,
      cdsVersionInfo: dump?.versionInfo ?? null,
      edsVersionText: statText(stats, `${prefix}version_text`),
      edsUpdateRejected: statNumber(stats, `${prefix}update_rejected`),
      lbHealthyPanic: statNumber(stats, `${prefix}lb_healthy_panic`),
      membershipHealthy: statNumber(stats, `${prefix}membership_healthy`),
      membershipExcluded: statNumber(stats, `${prefix}membership_excluded`),
      membershipTotal: statNumber(stats, `${prefix}membership_total`),
      errorState: dump?.errorState ?? null,
    };
  };
  // Dynamic clusters with readygate-shaped names only: the xDS cluster and other static ones are not ours.
  const envoyNames = new Set([...active.values()].filter((c) => c.addedViaApi).map((c) => c.name));
  for (const name of [...dumped.active.keys(), ...dumped.warming.keys()]) envoyNames.add(name);
  for (const name of envoyNames) if (!isReadygateClusterName(name)) envoyNames.delete(name);

  /** Panic mode and per-cluster NACK counters are worth a line whatever the verdict. */
  const envoyNotes = (view: EnvoyClusterView | null): string[] => {
    const out: string[] = [];
    if (view?.warming)
      out.push('Envoy is warming this cluster: it waits for a ClusterLoadAssignment before using it.');
    if (view?.errorState) out.push(`Envoy recorded a failed update: ${view.errorState}`);
    if (view?.lbHealthyPanic) out.push(`Envoy balanced ${view.lbHealthyPanic} request(s) in panic mode.`);
    return out;
  };

  if (!readygate) {
    const clusters = [...envoyNames].sort().map((name): ClusterReport => {
      const view = envoyView(name);
      const reasons = envoyNotes(view);
      const rejected = view?.edsUpdateRejected ?? 0;
      if (rejected > 0)
        reasons.unshift(
          `Envoy rejected ${rejected} EDS update(s) for this cluster since it started (${clusterStatPrefix(name)}update_rejected; pass --control-plane to see whether a later update fixed it).`,
        );
      const nacked = rejected > 0 || (view?.errorState ?? null) !== null;
      return {
        name,
        verdict: nacked ? Verdict.NACKED : Verdict.NOT_COMPARED,
        reasons,
        envoy: view,
        hosts: (active.get(name)?.hosts ?? [])
          .map((h) => ({ address: h.address, envoy: h, readygate: null, differs: false }))
          .sort(byAddress),
        versions: null,
        servedByReadygate: null,
      };
    });
    const cdsRejected = node.cdsUpdateRejected ?? 0;
    if (cdsRejected > 0)
      notes.push(
        `Envoy rejected ${cdsRejected} CDS update(s) since it started (cluster_manager.cds.update_rejected).`,
      );
    notes.push('No --control-plane given: hosts and versions were not compared; only NACKs count as drift.');
    return {
      node,
      controlPlane: null,
      clusters,
      notes,
      drift: cdsRejected > 0 || clusters.some((c) => isDrift(c.verdict)),
      // Envoy-only mode claims nothing about sync ("not compared"), so it is not "unknown" either.
      unknown: false,
    };
  }

  const hostsByCluster = readygateHosts(readygate.endpoints);
  const currentCds = resourceVersions(readygate.resources, TypeUrl.CLUSTER);
  const currentEds = resourceVersions(readygate.resources, TypeUrl.ENDPOINT);
  const { entry, sharing } = matchStream(readygate.syncz, node.id);
  if (sharing > 1)
    notes.push(
      `${sharing} streams on readygate use node id "${node.id}"; comparing with the newest (stream ${entry?.streamId ?? '?'}). Give each Envoy its own node id.`,
    );
  if (!entry)
    notes.push(
      `Envoy node "${node.id}" has no stream on the readygate replica(s) asked: versions cannot be checked, hosts are compared as they stand. With several replicas, ask them all (--control-plane repeated, or --peers-dns).`,
    );
  const cds = typeView(entry?.types[TypeUrl.CLUSTER]);
  const eds = typeView(entry?.types[TypeUrl.ENDPOINT]);
  const ackedCds = new Map(Object.entries(entry?.types[TypeUrl.CLUSTER]?.ackedResources ?? {}));
  const ackedEds = new Map(Object.entries(entry?.types[TypeUrl.ENDPOINT]?.ackedResources ?? {}));
  for (const [label, view] of [
    ['CDS', cds],
    ['EDS', eds],
  ] as const) {
    if (view?.lastNack?.current)
      notes.push(`Envoy rejected readygate's latest ${label} response: ${view.lastNack.error}`);
    else if (view?.lastNack)
      notes.push(
        `Envoy rejected a ${label} response at ${view.lastNack.time} (since superseded by an accepted one): ${view.lastNack.error}`,
      );
  }

  // A scoped sidecar is sent only its Services' clusters (docs/sidecar.md): the others are not missing.
  const proxy = entry?.proxy;
  // An Envoy that declared a zone is sent zone-aware CLAs in that zone's variant (docs/policy.md).
  const zoneEds =
    proxy?.zone === undefined
      ? new Map<string, string>()
      : resourceVersions(obj(readygate.resources)['zones'], proxy.zone);
  const scope = proxy?.mode === 'sidecar' ? parseEgressText(proxy.egress ?? '*') : undefined;
  if (proxy?.mode === 'sidecar')
    notes.push(
      `Sidecar: outbound listener on 127.0.0.1:${proxy.outboundPort ?? '?'}, routes ${entry?.types[TypeUrl.ROUTE]?.status ?? 'NOT_SENT'}, Services ${proxy.egress ?? '*'}.`,
    );
  else if (proxy?.problems)
    notes.push(
      `readygate ignored this Envoy's sidecar metadata (${proxy.problems.join('; ')}): served as a gateway.`,
    );
  const readygateNames = new Set(
    [...hostsByCluster.keys(), ...currentCds.keys()].filter((name) =>
      inScope(scope, serviceKeyOfCluster(name)),
    ),
  );
  const names = [...new Set([...readygateNames, ...envoyNames])].sort();
  const clusters = names.map((name): ClusterReport => {
    const view = envoyView(name);
    const served = readygateNames.has(name);
    const versions = {
      cds: { acked: ackedCds.get(name) ?? null, current: currentCds.get(name) ?? null },
      eds: { acked: ackedEds.get(name) ?? null, current: zoneEds.get(name) ?? currentEds.get(name) ?? null },
    };
    const hosts = hostRows(active.get(name)?.hosts ?? [], served ? (hostsByCluster.get(name) ?? []) : []);
    const reasons: string[] = [];
    const verdict = judge();
    reasons.push(...envoyNotes(view));
    return { name, verdict, reasons, envoy: view, hosts, versions, servedByReadygate: served };

    function judge(): Verdict {
      const cdsStale = entry !== undefined && versions.cds.acked !== versions.cds.current;
      const edsStale = entry !== undefined && versions.eds.acked !== versions.eds.current;
      // A NACK explains staleness, so it wins when the type it hit is stale for this cluster (or names it).
      // A cluster Envoy lacks is "stale" for CDS too: the rejected response may be the one that adds it.
      // When syncz lists what the rejected response carried, a stale cluster outside it is not the NACK's.
      const nackedBy = (type: TypeSyncView | null, stale: boolean): boolean =>
        type?.lastNack?.current === true &&
        (type.lastNack.error.includes(name) ||
          (stale && (type.lastNack.resources === null || type.lastNack.resources.includes(name))));
      const cdsNacked = nackedBy(cds, cdsStale || !view?.active);
      const nacked = cdsNacked || nackedBy(eds, edsStale);
      if (nacked) {
        reasons.push(
          `Envoy rejected readygate's latest ${cdsNacked ? 'CDS' : 'EDS'} response; it keeps the last version it accepted.`,
        );
      }
      if (!served) {
        reasons.push(
          'Envoy has this cluster but readygate does not serve it (deleted, or from another control plane).',
        );
        return Verdict.UNKNOWN_TO_READYGATE;
      }
      if (!view?.active) {
        reasons.push(
          view?.warming
            ? 'readygate serves this cluster; Envoy has it only as warming (not yet usable).'
            : 'readygate serves this cluster; Envoy does not have it.',
        );
        return nacked ? Verdict.NACKED : Verdict.MISSING_IN_ENVOY;
      }
      if (nacked) return Verdict.NACKED;
      if (cdsStale || edsStale) {
        const inflight = (t: TypeSyncView | null): boolean => t?.status === 'STALE';
        if (cdsStale)
          reasons.push(
            `Cluster version: Envoy ACKed ${shortVersion(versions.cds.acked)}, readygate serves ${shortVersion(versions.cds.current)}${inflight(cds) ? ' (a CDS response is in flight)' : ''}.`,
          );
        if (edsStale)
          reasons.push(
            `EDS version: Envoy ACKed ${shortVersion(versions.eds.acked)}, readygate serves ${shortVersion(versions.eds.current)}${inflight(eds) ? ' (an EDS response is in flight)' : ''}.`,
          );
        return Verdict.STALE_VERSION;
      }
      const differing = hosts.filter((h) => h.differs);
      if (differing.length > 0) {
        reasons.push(
          `Hosts differ: ${differing.map((h) => `${h.address} (Envoy ${h.envoy?.edsHealth ?? 'absent'}, readygate ${h.readygate?.health ?? 'absent'})`).join(', ')}.`,
        );
        return Verdict.HOSTS_DIFFER;
      }
      return entry === undefined ? Verdict.UNVERIFIED : Verdict.IN_SYNC;
    }
  });

  const nodeNack = cds?.lastNack?.current === true || eds?.lastNack?.current === true;
  const drift = nodeNack || clusters.some((c) => isDrift(c.verdict));
  return {
    node,
    controlPlane: {
      stream: entry
        ? {
            streamId: entry.streamId,
            kind: entry.stream,
            peer: entry.peer,
            identity: entry.identity ?? null,
            connectedAt: entry.connectedAt,
          }
        : null,
      cds,
      eds,
    },
    clusters,
    notes,
    drift,
    unknown: !drift && entry === undefined,
  };
}

/** The node id Envoy reports in /server_info ('' when it has none). */
export function envoyNodeId(envoy: EnvoyDocuments): string {
  return str(obj(obj(envoy.serverInfo)['node'])['id']) ?? '';
}

/**
 * Of several replicas' documents, the one this Envoy streams from: the replica holding a stream with its
 * node id, the most recently connected when several do (an Envoy that moved keeps no stream on the old
 * one for long). -1 when none does.
 */
export function replicaOfNode(replicas: readonly ReadygateDocuments[], nodeId: string): number {
  let best = -1;
  let bestConnected = '';
  replicas.forEach((replica, index) => {
    const { entry } = matchStream(replica.syncz, nodeId);
    if (!entry) return;
    const connected = typeof entry.connectedAt === 'string' ? entry.connectedAt : '';
    if (best === -1 || connected > bestConnected) {
      best = index;
      bestConnected = connected;
    }
  });
  return best;
}

function byAddress(a: { address: string }, b: { address: string }): number {
  return a.address < b.address ? -1 : a.address > b.address ? 1 : 0;
}

function hostRows(envoy: readonly EnvoyHost[], readygate: readonly ReadygateHost[]): HostRow[] {
  const rows = new Map<string, { envoy: EnvoyHost | null; readygate: ReadygateHost | null }>();
  for (const host of envoy) rows.set(host.address, { envoy: host, readygate: null });
  for (const host of readygate) {
    const row = rows.get(host.address);
    if (row) row.readygate = host;
    else rows.set(host.address, { envoy: null, readygate: host });
  }
  return [...rows]
    .map(([address, row]) => ({
      address,
      envoy: row.envoy,
      readygate: row.readygate,
      differs:
        row.envoy === null ||
        row.readygate === null ||
        !sameHealth(row.envoy.edsHealth, row.readygate.health),
    }))
    .sort(byAddress);
}
