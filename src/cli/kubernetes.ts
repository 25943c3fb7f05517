/**
 * Starts the Kubernetes source from serve's flags. Imported lazily so file-source users never load
 * @kubernetes/client-node (a noticeable part of startup time).
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type { Registry } from 'prom-client';
import type { Readiness } from '../admin/server.js';
import type { Logger } from '../log.js';
import type { EndpointStore } from '../model/store.js';
import type { PodGateIndex } from '../sources/kubernetes-pods.js';
import type { WatchTimeouts } from '../sources/kubernetes-watch.js';

export interface KubernetesSourceFlags {
  readonly store: EndpointStore;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly kubeconfig: string | undefined;
  readonly namespaces: readonly string[];
  readonly serviceSelector: string | undefined;
  /** Watch pods that declare readygate's readiness gate, so their endpoints can go out gate-pending. */
  readonly readinessGates: boolean;
  /** --kubernetes-request-timeout, --kubernetes-list-timeout, --kubernetes-watch-silence. */
  readonly timeouts: WatchTimeouts;
}

export interface StartedKubernetesSource {
  readonly kubeConfig: KubeConfig;
  /** The gated-pod index (with --readiness-gates), for the readiness-gate controller. */
  readonly pods: PodGateIndex | undefined;
  /** Not ready while any watch (services, endpointslices, pods) cannot deliver changes. */
  readiness(): Readiness;
  /** The uid of a watched Service, for Events about it. */
  serviceUid(key: string): string | undefined;
  close(): Promise<void>;
}

export async function startKubernetesSourceFromConfig(
  flags: KubernetesSourceFlags,
): Promise<StartedKubernetesSource> {
  const { loadKubeConfig, startKubernetesSource, kubernetesWatchMetrics, watchReadiness } =
    await import('../sources/kubernetes.js');
  const kubeConfig = loadKubeConfig({ kubeconfigPath: flags.kubeconfig });
  const pods = flags.readinessGates
    ? new (await import('../sources/kubernetes-pods.js')).PodGateIndex({
        kubeConfig,
        namespaces: flags.namespaces,
        logger: flags.logger,
        timeouts: flags.timeouts,
        metrics: kubernetesWatchMetrics(flags.registry),
      }).start()
    : undefined;
  const source = await startKubernetesSource({
    store: flags.store,
    kubeConfig,
    namespaces: flags.namespaces,
    ...(flags.serviceSelector !== undefined ? { labelSelector: flags.serviceSelector } : {}),
    ...(pods ? { modelDecorator: pods } : {}),
    logger: flags.logger,
    registry: flags.registry,
    timeouts: flags.timeouts,
  });
  return {
    kubeConfig,
    pods,
    readiness: () => watchReadiness([...source.health(), ...(pods?.health() ?? [])]),
    serviceUid: (key) => source.serviceUid(key),
    close: async () => {
      await source.close();
      await pods?.close();
    },
  };
}
