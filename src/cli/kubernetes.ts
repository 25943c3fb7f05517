/**
 * Starts the Kubernetes source from serve's flags. Imported lazily so file-source users never load
 * @kubernetes/client-node (a noticeable part of startup time).
 */
import type { Registry } from 'prom-client';
import type { Logger } from '../log.js';
import type { EndpointStore } from '../model/store.js';

export interface KubernetesSourceFlags {
  readonly store: EndpointStore;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly kubeconfig: string | undefined;
  readonly namespaces: readonly string[];
  readonly serviceSelector: string | undefined;
}

export async function startKubernetesSourceFromConfig(
  flags: KubernetesSourceFlags,
): Promise<{ close(): Promise<void> }> {
  const { loadKubeConfig, startKubernetesSource } = await import('../sources/kubernetes.js');
  return startKubernetesSource({
    store: flags.store,
    kubeConfig: loadKubeConfig({ kubeconfigPath: flags.kubeconfig }),
    namespaces: flags.namespaces,
    ...(flags.serviceSelector !== undefined ? { labelSelector: flags.serviceSelector } : {}),
    logger: flags.logger,
    registry: flags.registry,
  });
}
