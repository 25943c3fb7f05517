// `npm run k8s:down`: stops the cluster `npm run k8s:up` started and removes its data and logs.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const cacheRoot =
  process.env.READYGATE_CACHE_DIR ??
  path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'readygate');
const dir = path.join(cacheRoot, 'k8s-up');
const stateFile = path.join(dir, 'cluster.json');

/** Only signal a pid that still runs the binary we started (pids get reused). */
function isOurs(pid, name) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0].endsWith(`/${name}`);
  } catch {
    return false;
  }
}

async function stop(name, pid) {
  if (!isOurs(pid, name)) return;
  process.kill(pid, 'SIGTERM');
  // Bounded wait: 10 s, then SIGKILL.
  for (let i = 0; i < 100 && isOurs(pid, name); i++) await new Promise((resolve) => setTimeout(resolve, 100));
  if (isOurs(pid, name)) process.kill(pid, 'SIGKILL');
  console.error(`k8s-down: stopped ${name} (pid ${pid})`);
}

if (!existsSync(stateFile)) {
  console.error(`k8s-down: nothing to stop (no ${stateFile})`);
} else {
  const { pids } = JSON.parse(readFileSync(stateFile, 'utf8'));
  // Clients first, storage last.
  for (const name of ['kube-controller-manager', 'kube-apiserver', 'etcd']) {
    if (pids[name]) await stop(name, pids[name]);
  }
}
rmSync(dir, { recursive: true, force: true });
console.error(`k8s-down: removed ${dir}`);
