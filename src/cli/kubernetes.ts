/**
 * Starts the Kubernetes source from serve's flags. The source module is loaded lazily: file-source users
 * never load @kubernetes/client-node, and a build without the module says so in one line.
 */
import type { Registry } from 'prom-client';
import { ErrorCode, ReadygateError } from '../errors.js';
import type { Logger } from '../log.js';
import type { EndpointStore } from '../model/store.js';
import { importOptional } from './optional-module.js';

export interface KubernetesSourceFlags {
  readonly store: EndpointStore;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly kubeconfig: string | undefined;
  readonly namespaces: readonly string[];
  readonly serviceSelector: string | undefined;
}

/** The part of src/sources/kubernetes.ts serve relies on. */
interface KubernetesSourceModule {
  loadKubeConfig(options: { kubeconfigPath?: string | undefined }): unknown;
  startKubernetesSource(options: {
    store: EndpointStore;
    kubeConfig: unknown;
    namespaces?: readonly string[];
    labelSelector?: string;
    logger?: Logger;
    registry?: Registry;
  }): Promise<{ close(): Promise<void> }>;
}

export async function startKubernetesSourceFromConfig(
  flags: KubernetesSourceFlags,
): Promise<{ close(): Promise<void> }> {
  const module = await importOptional('../sources/kubernetes.js', import.meta.url);
  if (
    !module ||
    typeof module['startKubernetesSource'] !== 'function' ||
    typeof module['loadKubeConfig'] !== 'function'
  ) {
    throw new ReadygateError(
      ErrorCode.KUBERNETES_UNAVAILABLE,
      '--source kubernetes is not available in this build (use --source file:PATH)',
    );
  }
  const source = module as unknown as KubernetesSourceModule;
  const kubeConfig = source.loadKubeConfig({ kubeconfigPath: flags.kubeconfig });
  return source.startKubernetesSource({
    store: flags.store,
    kubeConfig,
    namespaces: flags.namespaces,
    ...(flags.serviceSelector !== undefined ? { labelSelector: flags.serviceSelector } : {}),
    logger: flags.logger,
    registry: flags.registry,
  });
}
