/**
 * Admin routes for rollouts: `/drain-wait` (what `readygate drain-wait` asks) and `/debug/gates`.
 * Plugged into the admin server's `routes` by serve.
 */
import type { AdminRouteHandler } from '../admin/server.js';
import { parseDuration, parsePodRef } from '../config.js';
import { MAX_DRAIN_WAIT_MS, waitForDrain } from '../drain/wait.js';
import type { SyncStatus } from '../xds/sync-status.js';
import { askPeers, DEFAULT_PEER_TIMEOUT_MS, type PeerList } from './peers.js';
import type { ReadinessGateController } from './readiness-gate-controller.js';
import type { PodKey, RoutingHistory } from './routing-history.js';
import { drainVerdict, gateVerdict } from './verdicts.js';

export interface ReadinessRouteSources {
  readonly sync: SyncStatus;
  readonly history: RoutingHistory;
  /** Absent when readiness gates are off (file source): /debug/gates then shows verdicts only. */
  readonly controller?: ReadinessGateController | undefined;
  readonly leadership?: { readonly leader: boolean; readonly identity?: string } | undefined;
  /** Other replicas: /drain-wait answers drained only when their Envoys agree too. */
  readonly peers?: PeerList | undefined;
  /**
   * Pods the source names now, routed or not (a pod that never turned ready is known, though no EDS
   * version mentions it). `synced` false: the source has not delivered its first view, so "unknown"
   * cannot be told yet and /drain-wait answers 503. Absent: only the routing history counts.
   */
  readonly sourcePods?: SourcePods | undefined;
}

export interface SourcePods {
  readonly synced: boolean;
  has(pod: PodKey): boolean;
}

/** How often peers are re-asked while their Envoys still route to a draining pod. */
const PEER_POLL_MS = 200;

export const DEFAULT_DRAIN_WAIT_MS = 30_000;

/**
 * A peer question never outlives the caller's wait (the CLI stops listening at its --timeout): at
 * most the time left, at most DEFAULT_PEER_TIMEOUT_MS, at least 100 ms so a last look is possible.
 */
function peerTimeout(remainingMs: number): number {
  return Math.max(100, Math.min(DEFAULT_PEER_TIMEOUT_MS, remainingMs));
}

export function readinessAdminRoutes(sources: ReadinessRouteSources): Record<string, AdminRouteHandler> {
  const { sync, history } = sources;
  const knows = (pod: PodKey): boolean =>
    history.clustersMentioning(pod).length > 0 || (sources.sourcePods?.has(pod) ?? false);
  return {
    /**
     * Long-polls until every Envoy ACKed a version where the pod is DRAINING or absent: 200 with
     * `drained: true`, or 504 at `timeout` naming the Envoys (node ids) that have not. 404 with
     * `unknown: true` when neither this replica nor any peer knows the pod (a peer that does not answer
     * might, so then it waits as usual); 503 before the source's first view.
     */
    '/drain-wait': async (request, url) => {
      const podText = url.searchParams.get('pod');
      if (podText === null) return { status: 400, body: { error: 'pod=NAMESPACE/NAME is required' } };
      const pod = parsePodRef(podText);
      if (typeof pod === 'string') return { status: 400, body: { error: pod } };
      const timeoutText = url.searchParams.get('timeout');
      const timeoutMs = timeoutText === null ? DEFAULT_DRAIN_WAIT_MS : parseDuration(timeoutText);
      if (typeof timeoutMs === 'string') return { status: 400, body: { error: `timeout: ${timeoutMs}` } };
      // The caller hanging up (preStop killed, CLI timed out) ends the wait instead of holding listeners.
      const abort = new AbortController();
      request.once('close', () => {
        abort.abort();
      });
      const key = `${pod.namespace}/${pod.name}`;
      if (sources.sourcePods?.synced === false)
        return {
          status: 503,
          body: { pod: key, error: 'readygate has not synced its source yet: cannot tell about any pod' },
        };
      const started = performance.now();
      const budget = Math.min(timeoutMs, MAX_DRAIN_WAIT_MS);
      if (!knows(key)) {
        // A pod nobody knows would be "drained" at once: a typo in the preStop hook must fail instead.
        const peers = sources.peers
          ? await askPeers(sources.peers, 'drain', key, peerTimeout(budget))
          : undefined;
        if (peers === undefined || (peers.unreachable.length === 0 && peers.knownBy.length === 0)) {
          return {
            status: 404,
            body: {
              pod: key,
              unknown: true,
              error: `no readygate replica knows pod ${key}: no endpoint of it in any Service or EDS version it serves`,
            },
          };
        }
      }
      const local = await waitForDrain({ sync, history }, key, budget, abort.signal);
      let waitingOn = local.waitingOn;
      let nackedBy = local.nackedBy;
      let drained = local.ok;
      if (sources.peers) {
        // Local Envoys first (event-driven), then the other replicas' Envoys (polled: they are remote).
        for (;;) {
          const remaining = budget - (performance.now() - started);
          const peers = await askPeers(sources.peers, 'drain', key, peerTimeout(remaining));
          waitingOn = [...new Set([...waitingOn, ...peers.waitingOn])].sort();
          nackedBy = [...new Set([...nackedBy, ...peers.nackedBy])].sort();
          if (!local.ok) break;
          drained = peers.ok;
          if (drained || abort.signal.aborted || performance.now() - started + PEER_POLL_MS >= budget) break;
          waitingOn = [];
          nackedBy = [];
          await new Promise((resolve) => setTimeout(resolve, PEER_POLL_MS));
        }
      }
      return {
        status: drained ? 200 : 504,
        body: {
          pod: key,
          drained,
          waitedMs: Math.round(performance.now() - started),
          clusters: local.clusters,
          waitingOn,
          nackedBy,
        },
      };
    },
    /** Gated pods and their verdicts; `?pod=NS/NAME` shows one pod's gate and drain verdicts. */
    '/debug/gates': (_request, url) => {
      const podText = url.searchParams.get('pod');
      if (podText !== null) {
        const pod = parsePodRef(podText);
        if (typeof pod === 'string') return { status: 400, body: { error: pod } };
        const key = `${pod.namespace}/${pod.name}`;
        return {
          status: 200,
          body: {
            pod: key,
            known: knows(key),
            gate: gateVerdict(key, history, sync.streams),
            drain: drainVerdict(key, history, sync.streams),
          },
        };
      }
      return {
        status: 200,
        body: {
          leader: sources.leadership?.leader ?? null,
          identity: sources.leadership?.identity ?? null,
          pods: sources.controller?.views() ?? [],
        },
      };
    },
  };
}
