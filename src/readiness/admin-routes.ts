/**
 * Admin routes for rollouts: `/drain-wait` (what `readygate drain-wait` asks) and `/debug/gates`.
 * Plugged into the admin server's `routes` by serve.
 */
import type { AdminRouteHandler } from '../admin/server.js';
import { parseDuration, parsePodRef } from '../config.js';
import { MAX_DRAIN_WAIT_MS, waitForDrain } from '../drain/wait.js';
import type { SyncStatus } from '../xds/sync-status.js';
import type { ReadinessGateController } from './readiness-gate-controller.js';
import type { RoutingHistory } from './routing-history.js';
import { drainVerdict, gateVerdict } from './verdicts.js';

export interface ReadinessRouteSources {
  readonly sync: SyncStatus;
  readonly history: RoutingHistory;
  /** Absent when readiness gates are off (file source): /debug/gates then shows verdicts only. */
  readonly controller?: ReadinessGateController | undefined;
  readonly leadership?: { readonly leader: boolean; readonly identity?: string } | undefined;
}

export const DEFAULT_DRAIN_WAIT_MS = 30_000;

export function readinessAdminRoutes(sources: ReadinessRouteSources): Record<string, AdminRouteHandler> {
  const { sync, history } = sources;
  return {
    /**
     * Long-polls until every Envoy ACKed a version where the pod is DRAINING or absent: 200 with
     * `drained: true`, or 504 at `timeout` naming the Envoys (node ids) that have not.
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
      const result = await waitForDrain(
        { sync, history },
        key,
        Math.min(timeoutMs, MAX_DRAIN_WAIT_MS),
        abort.signal,
      );
      return {
        status: result.ok ? 200 : 504,
        body: {
          pod: key,
          drained: result.ok,
          waitedMs: Math.round(result.waitedMs),
          clusters: result.clusters,
          waitingOn: result.waitingOn,
          nackedBy: result.nackedBy,
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
