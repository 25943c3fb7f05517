/**
 * The two questions rollouts ask, answered from the routing history and the per-stream sync state. Pure:
 * no I/O, no clock; test/unit/readiness-verdicts.test.ts pins them with synthetic sync states.
 *
 * - gate: has every Envoy that should know pod P accepted a version that sends P new requests?
 * - drain: has every Envoy that could send P new requests accepted a version where it no longer does?
 *
 * "Should know": a stream subscribed to the cluster's EDS resource, or holding a wildcard/named CDS
 * subscription that covers the cluster (such a client subscribes to its EDS right after accepting the
 * cluster, and one that rejected the cluster never will, which must hold the gate rather than release it).
 *
 * "Every Envoy" is vacuously true with none connected; `requireProxies` closes that hole for the gate.
 */
import { TypeUrl } from '../xds/resource-types.js';
import type { StreamSyncState } from '../xds/sync-status.js';
import type { PodKey, RoutingHistory } from './routing-history.js';

export interface Verdict {
  /** The gate may turn True / the pod may shut down. */
  readonly ok: boolean;
  /** Clusters the verdict looked at. */
  readonly clusters: readonly string[];
  /** Node ids of Envoys that have not ACKed what is needed yet (sorted, unique). */
  readonly waitingOn: readonly string[];
  /** Of those, the ones whose latest CDS or EDS response was rejected. */
  readonly nackedBy: readonly string[];
  /**
   * Gate only: Envoys (node ids) whose ACKed version routes new requests to the pod. Counted against
   * --gate-min-proxies across replicas (`requireProxies`), so no Envoy at all is never agreement.
   */
  readonly ackedBy: readonly string[];
  /** Why `ok` is false when no Envoy is to blame. */
  readonly reason?: VerdictReason;
}

/**
 * `not-routed`: the pod is in no cluster readygate serves. `too-few-proxies`: fewer Envoys than
 * --gate-min-proxies have ACKed it (none connected, or all still catching up elsewhere).
 */
export type VerdictReason = 'not-routed' | 'too-few-proxies';

/** A stream's name in verdicts: its node id, or a placeholder that still tells streams apart. */
export function streamName(stream: StreamSyncState): string {
  return stream.nodeId !== '' ? stream.nodeId : `(no node id, stream ${stream.streamId})`;
}

function expectsCluster(stream: StreamSyncState, cluster: string): boolean {
  const eds = stream.types.get(TypeUrl.ENDPOINT);
  if (eds?.isSubscribed(cluster)) return true;
  const cds = stream.types.get(TypeUrl.CLUSTER);
  return cds?.isSubscribed(cluster) ?? false;
}

function isNacking(stream: StreamSyncState): boolean {
  return (
    stream.types.get(TypeUrl.ENDPOINT)?.status === 'NACKED' ||
    stream.types.get(TypeUrl.CLUSTER)?.status === 'NACKED'
  );
}

function ackedVersion(stream: StreamSyncState, cluster: string): string | undefined {
  return stream.types.get(TypeUrl.ENDPOINT)?.versions.ackedVersion(cluster);
}

function verdict(
  clusters: readonly string[],
  waiting: readonly StreamSyncState[],
  acked: readonly StreamSyncState[],
  reason?: VerdictReason,
): Verdict {
  const waitingOn = [...new Set(waiting.map(streamName))].sort();
  const nackedBy = [...new Set(waiting.filter(isNacking).map(streamName))].sort();
  return {
    ok: waiting.length === 0 && reason === undefined,
    clusters,
    waitingOn,
    nackedBy,
    ackedBy: [...new Set(acked.map(streamName))].sort(),
    ...(reason ? { reason } : {}),
  };
}

/**
 * The gate's last condition: an otherwise-ok verdict stays not ok while fewer than `minProxies` Envoys
 * have ACKed the pod. Pass the verdict already joined across replicas: each Envoy streams from one.
 */
export function requireProxies(joined: Verdict, minProxies: number): Verdict {
  if (!joined.ok || joined.ackedBy.length >= minProxies) return joined;
  return { ...joined, ok: false, reason: 'too-few-proxies' };
}

/**
 * Gate: the pod is HEALTHY in at least one cluster readygate serves now, and every stream expecting one of
 * those clusters has ACKed *some* version of it that routes to the pod (not necessarily the newest: a
 * later change elsewhere in the cluster must not hold the gate). A pod in no cluster is not ok: turning
 * its gate True would let the rollout proceed before any Envoy could reach it.
 */
export function gateVerdict(
  pod: PodKey,
  history: RoutingHistory,
  streams: readonly StreamSyncState[],
): Verdict {
  const clusters = history.currentHealthyClusters(pod);
  if (clusters.length === 0) return verdict(clusters, [], [], 'not-routed');
  const waiting: StreamSyncState[] = [];
  const acked: StreamSyncState[] = [];
  for (const stream of streams) {
    let expected = false;
    let behind = false;
    for (const cluster of clusters) {
      if (!expectsCluster(stream, cluster)) continue;
      expected = true;
      const version = ackedVersion(stream, cluster);
      const routing = version === undefined ? undefined : history.summary(cluster, version)?.get(pod);
      if (routing !== 'HEALTHY') {
        behind = true;
        break;
      }
    }
    if (behind) waiting.push(stream);
    else if (expected) acked.push(stream);
  }
  return verdict(clusters, waiting, acked);
}

/**
 * Drain: no stream holds an ACKed version that routes new requests to the pod in a cluster it is still
 * subscribed to. A version the history no longer knows counts as still routing (it cannot be proven
 * otherwise); a stream that never ACKed the cluster, or dropped it, routes nothing there. A pod no
 * retained version mentions is drained at once (it never was behind readygate, or long gone).
 */
export function drainVerdict(
  pod: PodKey,
  history: RoutingHistory,
  streams: readonly StreamSyncState[],
): Verdict {
  const clusters = history.clustersMentioning(pod);
  const waiting: StreamSyncState[] = [];
  for (const stream of streams) {
    const eds = stream.types.get(TypeUrl.ENDPOINT);
    if (!eds) continue;
    for (const cluster of clusters) {
      if (!eds.isSubscribed(cluster)) continue;
      const version = eds.versions.ackedVersion(cluster);
      if (version === undefined) continue;
      const summary = history.summary(cluster, version);
      if (summary === undefined || summary.get(pod) === 'HEALTHY') {
        waiting.push(stream);
        break;
      }
    }
  }
  return verdict(clusters, waiting, []);
}
