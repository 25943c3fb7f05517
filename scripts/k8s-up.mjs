// `npm run k8s:up`: starts etcd + kube-apiserver + kube-controller-manager (EndpointSlice controllers) on
// 127.0.0.1 in the background, from the pinned binaries scripts/k8s-binaries.sh builds, and prints the admin
// kubeconfig path. Running it again while the cluster is up just prints the path. `npm run k8s:down` stops it.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { register } from 'tsx/esm/api';

const cacheRoot =
  process.env.READYGATE_CACHE_DIR ??
  path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'readygate');
const dir = path.join(cacheRoot, 'k8s-up');
const stateFile = path.join(dir, 'cluster.json');

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

if (existsSync(stateFile)) {
  const state = JSON.parse(readFileSync(stateFile, 'utf8'));
  if (state.pids['kube-apiserver'] && alive(state.pids['kube-apiserver']) && alive(state.pids.etcd)) {
    console.error(`k8s-up: already running at ${state.server}`);
    console.log(state.adminKubeconfig);
    process.exit(0);
  }
  console.error('k8s-up: found a stopped cluster; starting a fresh one');
}
rmSync(dir, { recursive: true, force: true });

register();
const { startKubeCluster } = await import('../test/helpers/kube-cluster.ts');
const started = Date.now();
let cluster;
try {
  cluster = await startKubeCluster({
    dir,
    detached: true,
    controllers: ['endpointslice-controller', 'endpointslice-mirroring-controller'],
  });
} catch (error) {
  console.error(`k8s-up: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
console.error(
  `k8s-up: kube-apiserver ready at ${cluster.server} in ${((Date.now() - started) / 1000).toFixed(1)}s`,
);
console.error(`k8s-up: logs and data in ${dir}; stop with npm run k8s:down`);
console.error(`k8s-up: export KUBECONFIG=${cluster.adminKubeconfigPath}`);
console.log(cluster.adminKubeconfigPath);
process.exit(0);
