/**
 * Starts the Kubernetes source from serve's flags. Imported lazily so file-source users never load
 * @kubernetes/client-node (a noticeable part of startup time).
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type { Registry } from 'prom-client';
import type { Logger } from '../log.js';
import type { EndpointStore } from '../model/store.js';
import type { PodGateIndex } from '../sources/kubernetes-pods.js';

export interface KubernetesSourceFlags {
  readonly store: EndpointStore;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly kubeconfig: string | undefined;
  readonly namespaces: readonly string[];
  readonly serviceSelector: string | undefined;
  /** Watch pods that declare readygate's readiness gate, so their endpoints can go out gate-pending. */
  readonly readinessGates: boolean;
}

export interface StartedKubernetesSource {
  readonly kubeConfig: KubeConfig;
  /** The gated-pod index (with --readiness-gates), for the readiness-gate controller. */
  readonly pods: PodGateIndex | undefined;
  close(): Promise<void>;
}

export async function startKubernetesSourceFromConfig(
  flags: KubernetesSourceFlags,
): Promise<StartedKubernetesSource> {
  const { loadKubeConfig, startKubernetesSource } = await import('../sources/kubernetes.js');
  const kubeConfig = loadKubeConfig({ kubeconfigPath: flags.kubeconfig });
  const pods = flags.readinessGates
    ? (await import('../readiness/index.js')).startPodGateIndex({
        kubeConfig,
        namespaces: flags.namespaces,
        logger: flags.logger,
      })
    : undefined;
  const source = await startKubernetesSource({
    store: flags.store,
    kubeConfig,
    namespaces: flags.namespaces,
    ...(flags.serviceSelector !== undefined ? { labelSelector: flags.serviceSelector } : {}),
    ...(pods ? { modelDecorator: pods } : {}),
    logger: flags.logger,
    registry: flags.registry,
  });
  return {
    kubeConfig,
    pods,
    close: async () => {
      await source.close();
      await pods?.close();
    },
  };
}
