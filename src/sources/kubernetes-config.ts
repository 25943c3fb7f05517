/**
 * Finding the cluster: an explicit --kubeconfig first (what the user asked for wins), then the in-cluster
 * service account, then KUBECONFIG, then ~/.kube/config. Unlike client-node's loadFromDefault, this never
 * falls back to http://localhost:8080 silently: no configuration is a clear error.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { ErrorCode, ReadygateError, errorMessage } from '../errors.js';

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface LoadKubeConfigOptions {
  /** `--kubeconfig`. */
  readonly kubeconfigPath?: string | undefined;
  /** For tests; defaults to process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /** For tests: a directory prefixed to the in-cluster mount path (client-node's loadFromCluster prefix). */
  readonly inClusterRoot?: string;
  /** For tests; defaults to os.homedir(). */
  readonly homeDir?: string;
}

export function loadKubeConfig(options: LoadKubeConfigOptions = {}): KubeConfig {
  const env = options.env ?? process.env;
  const kc = new KubeConfig();

  if (options.kubeconfigPath) {
    loadFiles(kc, [options.kubeconfigPath], '--kubeconfig');
    return kc;
  }

  const inClusterRoot = options.inClusterRoot ?? '';
  const saDir = `${inClusterRoot}${SERVICE_ACCOUNT_DIR}`;
  if (env['KUBERNETES_SERVICE_HOST'] && fs.existsSync(path.join(saDir, 'token'))) {
    loadInCluster(kc, inClusterRoot, env);
    return kc;
  }

  const fromEnv = (env['KUBECONFIG'] ?? '').split(path.delimiter).filter((file) => file !== '');
  if (fromEnv.length > 0) {
    loadFiles(kc, fromEnv, 'KUBECONFIG');
    return kc;
  }

  const home = options.homeDir ?? os.homedir();
  const defaultFile = path.join(home, '.kube', 'config');
  if (fs.existsSync(defaultFile)) {
    loadFiles(kc, [defaultFile], '~/.kube/config');
    return kc;
  }

  throw new ReadygateError(
    ErrorCode.KUBECONFIG_MISSING,
    'no Kubernetes cluster to watch: not running in a pod (no service account token at ' +
      `${path.join(saDir, 'token')}), no --kubeconfig, KUBECONFIG is unset and ${defaultFile} does not exist. ` +
      'Point readygate at a cluster with --kubeconfig PATH (or KUBECONFIG), or serve a file with ' +
      '--source file:PATH.',
  );
}

/** client-node's loadFromCluster reads process.env; pass the chosen env through for host and port. */
function loadInCluster(kc: KubeConfig, root: string, env: NodeJS.ProcessEnv): void {
  kc.loadFromCluster(root);
  const host = env['KUBERNETES_SERVICE_HOST'] ?? '';
  const port = env['KUBERNETES_SERVICE_PORT'] ?? '443';
  const cluster = kc.getCurrentCluster();
  if (!cluster) return;
  const server = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  kc.clusters = kc.clusters.map((c) => (c.name === cluster.name ? { ...c, server } : c));
}

function loadFiles(kc: KubeConfig, files: readonly string[], origin: string): void {
  for (const [index, file] of files.entries()) {
    try {
      if (index === 0) {
        kc.loadFromFile(file);
      } else {
        const more = new KubeConfig();
        more.loadFromFile(file);
        kc.mergeConfig(more, true);
      }
    } catch (error) {
      throw new ReadygateError(
        ErrorCode.KUBECONFIG_MISSING,
        `cannot load the kubeconfig ${file} (from ${origin}): ${errorMessage(error)}`,
        { cause: error },
      );
    }
  }
  if (!kc.getCurrentCluster()) {
    throw new ReadygateError(
      ErrorCode.KUBECONFIG_MISSING,
      `the kubeconfig from ${origin} has no current context with a cluster (current-context: ` +
        `${kc.getCurrentContext() || 'unset'}); set one with \`kubectl config use-context\``,
    );
  }
}
