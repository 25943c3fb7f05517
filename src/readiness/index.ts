/**
 * Rollouts that wait for Envoy, assembled: the routing history (from the cache), the readiness-gate
 * controller with its Lease-based leader election, and the admin routes (/drain-wait, /debug/gates).
 *
 * Wiring in serve (see docs/rollouts.md):
 *   const pods = startPodGateIndex({ kubeConfig, namespaces, logger });          // before the source
 *   startKubernetesSource({ ..., modelDecorator: pods });                        // marks gate-pending
 *   const plane = await startControlPlane(...);
 *   const readiness = await startReadiness({ cache: plane.cache, sync: plane.sync, kubeConfig, pods, ... });
 *   startAdminServer({ routes: { ...debugRoutes(...), ...readiness.routes } });
 *   // on shutdown: await readiness.close(); await pods.close();
 * With a file source, call startReadiness without kubeConfig/pods: only /drain-wait and /debug/gates.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { Gauge, type Registry } from 'prom-client';
import type { AdminRouteHandler } from '../admin/server.js';
import { errorMessage } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { PodGateIndex } from '../sources/kubernetes-pods.js';
import type { EndpointStore } from '../model/store.js';
import type { ResourceCache } from '../xds/cache.js';
import type { SyncStatus } from '../xds/sync-status.js';
import { readinessAdminRoutes, type SourcePods } from './admin-routes.js';
// Type-only: the controller and the elector load @kubernetes/client-node, which a file source never needs
// (it is a large part of startup); startReadiness imports them only when given a kubeConfig.
import type { LeaderElector } from './leader-election.js';
import type { ReadinessGateController, PodStatusPatcher } from './readiness-gate-controller.js';
import type { PeerList } from './peers.js';
import { RoutingHistory } from './routing-history.js';

export { READINESS_GATE_CONDITION, PodGateIndex } from '../sources/kubernetes-pods.js';
export { readinessAdminRoutes, type SourcePods } from './admin-routes.js';
export { dnsPeers, staticPeers, type PeerList } from './peers.js';

export interface StartReadinessOptions {
  readonly cache: ResourceCache;
  readonly sync: SyncStatus;
  /** Absent: no readiness-gate controller (file source); /drain-wait still works. */
  readonly kubeConfig?: KubeConfig | undefined;
  /** The pod index the Kubernetes source decorates with; created here (and owned) when absent. */
  readonly pods?: PodGateIndex | undefined;
  /** Namespaces to watch pods in when the index is created here; empty = all. */
  readonly namespaces?: readonly string[] | undefined;
  readonly logger?: Logger | undefined;
  readonly registry?: Registry | undefined;
  /** Where the Lease lives; default $POD_NAMESPACE, else `readygate`. */
  readonly leaseNamespace?: string | undefined;
  readonly leaseName?: string | undefined;
  /** This replica's name in the Lease; default $POD_NAME-<random>, else <hostname>-<random>. */
  readonly identity?: string | undefined;
  /** false: act as the only writer without a Lease (one replica only). Default true. */
  readonly leaderElection?: boolean | undefined;
  readonly leaseDurationMs?: number | undefined;
  readonly renewDeadlineMs?: number | undefined;
  readonly retryPeriodMs?: number | undefined;
  /** See ReadinessGateControllerOptions. */
  readonly gateTimeoutMs?: number | undefined;
  readonly flipOnTimeout?: boolean | undefined;
  readonly startupGraceMs?: number | undefined;
  readonly resyncMs?: number | undefined;
  readonly versionsPerCluster?: number | undefined;
  /**
   * The other readygate replicas (see src/readiness/peers.ts: `dnsPeers` for a headless Service). Needed
   * whenever more than one replica serves xDS: each Envoy streams from one replica only.
   */
  readonly peers?: PeerList | undefined;
  /** See ReadinessGateControllerOptions.minProxies (default 1). */
  readonly gateMinProxies?: number | undefined;
  /** Pods the source names now (see ReadinessRouteSources.sourcePods): /drain-wait tells unknown pods by it. */
  readonly sourcePods?: SourcePods | undefined;
  /** Replaces the pods/status writer (tests). */
  readonly patcher?: PodStatusPatcher | undefined;
}

export interface Readiness {
  readonly routes: Record<string, AdminRouteHandler>;
  readonly history: RoutingHistory;
  readonly controller: ReadinessGateController | undefined;
  readonly elector: LeaderElector | undefined;
  /** Stops writing (releasing the Lease so another replica takes over at once) and following the cache. */
  close(options?: { releaseLease?: boolean }): Promise<void>;
}

/** Starts a pod watch for gated pods; pass it to the Kubernetes source and to startReadiness. */
export function startPodGateIndex(options: {
  kubeConfig: KubeConfig;
  namespaces?: readonly string[] | undefined;
  logger?: Logger | undefined;
}): PodGateIndex {
  return new PodGateIndex(options).start();
}

/**
 * The pods an endpoint store names now, whatever their conditions (targetRef kind Pod; the namespace
 * defaults to the Service's, as in an EndpointSlice). A linear scan: asked once per /drain-wait request.
 */
export function storePods(store: EndpointStore): SourcePods {
  return {
    get synced() {
      return store.synced;
    },
    has(pod) {
      for (const service of store.services)
        for (const endpoint of service.endpoints) {
          const ref = endpoint.targetRef;
          if (ref?.name === undefined || (ref.kind !== undefined && ref.kind !== 'Pod')) continue;
          if (`${ref.namespace ?? service.namespace}/${ref.name}` === pod) return true;
        }
      return false;
    },
  };
}

export async function startReadiness(options: StartReadinessOptions): Promise<Readiness> {
  const logger = options.logger ?? silentLogger;
  const history = new RoutingHistory({ versionsPerCluster: options.versionsPerCluster });
  const unfollow = history.follow(options.cache, (cluster, error) => {
    logger.error(
      { cluster, err: errorMessage(error) },
      'cannot read a served ClusterLoadAssignment; gates and drain-wait treat its version as unknown',
    );
  });

  let controller: ReadinessGateController | undefined;
  let elector: LeaderElector | undefined;
  let ownedPods: PodGateIndex | undefined;
  const kubeConfig = options.kubeConfig;
  if (kubeConfig) {
    const [{ LeaderElector, DEFAULT_LEASE_NAME }, { ReadinessGateController, kubernetesPodStatusPatcher }] =
      await Promise.all([import('./leader-election.js'), import('./readiness-gate-controller.js')]);
    const pods =
      options.pods ?? (ownedPods = startPodGateIndex({ kubeConfig, namespaces: options.namespaces, logger }));
    if (options.leaderElection !== false) {
      const identity =
        options.identity ??
        (process.env['POD_NAME']
          ? `${process.env['POD_NAME']}-${Math.random().toString(16).slice(2, 8)}`
          : undefined);
      elector = new LeaderElector({
        kubeConfig,
        namespace: options.leaseNamespace ?? process.env['POD_NAMESPACE'] ?? 'readygate',
        name: options.leaseName ?? DEFAULT_LEASE_NAME,
        ...(identity ? { identity } : {}),
        ...(options.leaseDurationMs !== undefined ? { leaseDurationMs: options.leaseDurationMs } : {}),
        ...(options.renewDeadlineMs !== undefined ? { renewDeadlineMs: options.renewDeadlineMs } : {}),
        ...(options.retryPeriodMs !== undefined ? { retryPeriodMs: options.retryPeriodMs } : {}),
        logger,
        onChange: () => controller?.schedule(),
      });
    }
    controller = new ReadinessGateController({
      pods,
      history,
      sync: options.sync,
      ...(elector ? { leadership: elector } : {}),
      patcher: options.patcher ?? kubernetesPodStatusPatcher(kubeConfig),
      logger,
      ...(options.registry ? { registry: options.registry } : {}),
      ...(options.gateTimeoutMs !== undefined ? { timeoutMs: options.gateTimeoutMs } : {}),
      ...(options.flipOnTimeout !== undefined ? { flipOnTimeout: options.flipOnTimeout } : {}),
      startupGraceMs: options.startupGraceMs ?? 5000,
      ...(options.resyncMs !== undefined ? { resyncMs: options.resyncMs } : {}),
      ...(options.peers ? { peers: options.peers } : {}),
      ...(options.gateMinProxies !== undefined ? { minProxies: options.gateMinProxies } : {}),
    }).start();
    elector?.start();
    if (options.registry && elector) {
      const leading = elector;
      if (options.registry.getSingleMetric('readygate_readiness_leader'))
        options.registry.removeSingleMetric('readygate_readiness_leader');
      new Gauge({
        name: 'readygate_readiness_leader',
        help: '1 while this replica holds the readiness-gate Lease (only the leader writes pod status).',
        registers: [options.registry],
        collect() {
          this.set(leading.leader ? 1 : 0);
        },
      });
    }
  }

  const routes = readinessAdminRoutes({
    sync: options.sync,
    history,
    controller,
    peers: options.peers,
    sourcePods: options.sourcePods,
    leadership: elector
      ? {
          get leader() {
            return elector.leader;
          },
          identity: elector.identity,
        }
      : undefined,
  });
  return {
    routes,
    history,
    controller,
    elector,
    close: async (closeOptions = {}) => {
      controller?.close();
      await elector?.stop({ release: closeOptions.releaseLease ?? true });
      unfollow();
      await ownedPods?.close();
    },
  };
}
