/**
 * A real Kubernetes node for the e2e tests (docs/e2e.md): containerd + runc + the CNI bridge plugin from
 * Debian, and a kubelet and kube-scheduler built from the Go module proxy, against a test apiserver
 * (kube-cluster.ts). Pods get their own network namespace and an address on a bridge this run creates,
 * reachable from the host, so Envoy on loopback routes to them as it would in a cluster.
 *
 * Host changes live in scripts/real-node.sh (`up` creates, `down` removes, `sweep` removes what dead runs
 * left); this file starts the processes and removes the run on stop(), on process exit and on SIGINT /
 * SIGTERM. Everything a run creates carries its run id: parallel runs never share a port, directory,
 * bridge, subnet or cgroup.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  realpathSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { killOnExit } from '../../src/supervised-process.js';
import type { KubeCluster } from './kube-cluster.js';
import { freePort } from './ports.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const script = (name: string): string => path.join(repoRoot, 'scripts', name);

/** The images scripts/real-node-images.sh builds and every run imports. */
export const APP_IMAGE = 'readygate.test/app:e2e';
export const PAUSE_IMAGE = 'readygate.test/pause:e2e';
/**
 * The kube-controller-manager controllers a real node needs besides the test's own: the kubelet registers
 * its Node with the `node.kubernetes.io/not-ready` taint, and only the node lifecycle controller lifts it
 * (the scheduler places nothing on the node before).
 */
export const NODE_CONTROLLERS: readonly string[] = ['node-lifecycle-controller'];
/** The port the app image listens on (test/real-node/app). */
export const APP_PORT = 8080;

const progress = (line: string): void => {
  process.stderr.write(`real-node: ${line}\n`);
};

/**
 * Why this host cannot run a real node (not root, no cgroups, no bridge), or undefined when it can. Sync,
 * so a test file can decide at load time; under CI=true a problem fails the tests instead (see
 * realNodeTestMode).
 */
export function realNodeHostProblem(): string | undefined {
  const result = spawnSync('bash', [script('real-node.sh'), 'check'], { encoding: 'utf8', timeout: 30_000 });
  if (result.status === 0) return undefined;
  return (result.stderr || result.error?.message || `exit ${result.status}`).trim();
}

/** 'run', or the reason to skip: only outside CI (CI=true must run them, never skip). */
export function realNodeTestMode(): { run: true } | { run: false; reason: string } {
  const problem = realNodeHostProblem();
  if (problem === undefined || process.env['CI'] === 'true') return { run: true };
  return { run: false, reason: problem };
}

/**
 * Runs a script with its stderr (progress lines of long first-time steps) passed through, and resolves
 * with the last line of its stdout.
 */
function runScript(name: string, args: readonly string[], timeoutMs: number): Promise<string> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [script(name), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      process.stderr.write(chunk);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      if (code === 0) resolve(stdout);
      else
        reject(
          new Error(`scripts/${name} ${args.join(' ')} failed (exit ${code}, ${seconds}s): ${stderr.trim()}`),
        );
    });
  });
}

/** An env-provided directory, else the one the script prints (building it the first time). */
async function cachedDir(envVar: string, name: string, mustExist: string, what: string): Promise<string> {
  const fromEnv = process.env[envVar];
  const started = performance.now();
  const dir = fromEnv ?? (await runScript(name, [], 3_600_000)).trim().split('\n').pop() ?? '';
  if (!existsSync(path.join(dir, mustExist))) throw new Error(`${what}: ${dir} holds no ${mustExist}`);
  const seconds = (performance.now() - started) / 1000;
  if (seconds > 5) progress(`${what} ready in ${seconds.toFixed(0)} s`);
  return dir;
}

interface Managed {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
}

export interface RealNodeRun {
  readonly RUN_DIR: string;
  readonly BRIDGE: string;
  readonly SUBNET: string;
  readonly GATEWAY: string;
  readonly CGROUP: string;
}

/** Runs whose removal is still owed, for the exit and signal hooks. */
const liveRuns = new Set<string>();
let hooksInstalled = false;

function removeRunSync(id: string): void {
  spawnSync('bash', [script('real-node.sh'), 'down', id], { stdio: 'inherit', timeout: 60_000 });
  liveRuns.delete(id);
}

/** A failing or interrupted test must not leave a node behind: down every live run on exit and signals. */
function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.once('exit', () => {
    for (const id of liveRuns) removeRunSync(id);
  });
  for (const [signal, number] of [
    ['SIGINT', 2],
    ['SIGTERM', 15],
  ] as const) {
    process.once(signal, () => {
      for (const id of liveRuns) removeRunSync(id);
      // Through exit, not by re-raising the signal: the other exit hooks (killOnExit: the apiserver, etcd,
      // Envoy of the same test) run only on a normal exit.
      process.exit(128 + number);
    });
  }
}

export class RealNode {
  readonly id: string;
  readonly nodeName: string;
  readonly dir: string;
  readonly bridge: string;
  readonly subnet: string;
  /** The bridge's address: the host as the pods see it (readygate's admin port listens here for them). */
  readonly gateway: string;
  /** The kubelet's cgroup root, under which every pod's cgroup is. */
  readonly cgroup: string;
  readonly #processes = new Map<string, Managed>();
  #cluster: KubeCluster | undefined;
  #stopped = false;

  private constructor(id: string, run: RealNodeRun) {
    this.id = id;
    this.nodeName = `rgn-${id}`;
    this.dir = run.RUN_DIR;
    this.bridge = run.BRIDGE;
    this.subnet = run.SUBNET;
    this.gateway = run.GATEWAY;
    this.cgroup = run.CGROUP;
  }

  /**
   * Installs what is missing (apt packages, kubelet and kube-scheduler builds, images), removes leftovers
   * of dead runs, starts containerd, the kubelet and kube-scheduler against `cluster` (which must run
   * NODE_CONTROLLERS), and resolves once the Node is Ready and schedulable.
   */
  static async start(cluster: KubeCluster): Promise<RealNode> {
    const started = performance.now();
    const problem = realNodeHostProblem();
    if (problem) throw new Error(problem);
    await runScript('real-node.sh', ['install'], 900_000);
    await runScript('real-node.sh', ['sweep'], 120_000);
    const binDir = await cachedDir('READYGATE_NODE_BIN_DIR', 'node-binaries.sh', 'kubelet', 'kubelet build');
    const images = await cachedDir('READYGATE_NODE_IMAGES_DIR', 'real-node-images.sh', 'app.tar', 'images');
    const id = randomBytes(3).toString('hex');
    installHooks();
    liveRuns.add(id);
    let node: RealNode | undefined;
    try {
      const printed = await runScript('real-node.sh', ['up', id, String(process.pid)], 60_000);
      const run = Object.fromEntries(
        printed
          .trim()
          .split('\n')
          .map((line) => line.split('=', 2) as [string, string]),
      ) as unknown as RealNodeRun;
      node = new RealNode(id, run);
      node.#cluster = cluster;
      await node.#startContainerd();
      for (const image of ['pause.tar', 'app.tar'])
        await node.ctr(['images', 'import', path.join(images, image)]);
      await node.#startKubelet(binDir, cluster);
      await node.#startScheduler(binDir, cluster);
      await node.#waitReady(cluster, 90_000);
      progress(`node ${node.nodeName} Ready in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      return node;
    } catch (error) {
      if (node) await node.stop();
      else removeRunSync(id);
      throw error;
    }
  }

  /** `ctr` against this run's containerd, in the CRI namespace. */
  async ctr(args: readonly string[]): Promise<string> {
    const socket = path.join(this.dir, 'run', 'containerd.sock');
    return new Promise((resolve, reject) => {
      const child = spawn('ctr', ['-a', socket, '-n', 'k8s.io', ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        if (code === 0) resolve(out);
        else reject(new Error(`ctr ${args.join(' ')}: exit ${code}: ${out.trim()}`));
      });
    });
  }

  /** The current log of a pod's container as the kubelet stored it (the apiserver cannot proxy logs here). */
  containerLog(namespace: string, pod: string, container: string): string {
    const podsDir = path.join(this.dir, 'pod-logs');
    const podDir = readdirSync(podsDir).find((d) => d.startsWith(`${namespace}_${pod}_`));
    if (!podDir) return '(no log)';
    const dir = path.join(podsDir, podDir, container);
    if (!existsSync(dir)) return '(no log)';
    return readdirSync(dir)
      .sort()
      .map((file) => readFileSync(path.join(dir, file), 'utf8'))
      .join('');
  }

  /**
   * What a failing test needs to say why pods did not do what it waited for: every pod's phase, conditions
   * and container states, the namespace's warning events, and the kubelet's last log lines.
   */
  async describe(cluster: KubeCluster, namespace: string): Promise<string> {
    const core = cluster.adminConfig().makeApiClient(CoreV1Api);
    const lines: string[] = [];
    const pods = await core.listNamespacedPod({ namespace });
    for (const pod of pods.items) {
      const conditions = (pod.status?.conditions ?? []).map((c) => `${c.type}=${c.status}`).join(' ');
      const containers = (pod.status?.containerStatuses ?? []).map(
        (c) => `${c.name} restarts=${c.restartCount} ${JSON.stringify(c.state)}`,
      );
      lines.push(
        `pod ${pod.metadata?.name ?? ''} ${pod.status?.phase ?? ''} ip=${pod.status?.podIP ?? '-'} ` +
          `node=${pod.spec?.nodeName ?? '-'} ${conditions} ${containers.join('; ')}`,
      );
    }
    const events = await core.listNamespacedEvent({ namespace });
    for (const event of events.items.filter((e) => e.type !== 'Normal'))
      lines.push(`event ${event.involvedObject.name ?? ''} ${event.reason ?? ''}: ${event.message ?? ''}`);
    lines.push('kubelet log:', this.logTail('kubelet', 20));
    return lines.join('\n');
  }

  /** The last lines of one of the run's process logs (kubelet, containerd, kube-scheduler). */
  logTail(name: string, lines = 30): string {
    try {
      return readFileSync(path.join(this.dir, 'logs', `${name}.log`), 'utf8')
        .trimEnd()
        .split('\n')
        .slice(-lines)
        .join('\n');
    } catch {
      return '(no log)';
    }
  }

  /**
   * Host paths a pod mounts to run `readygate drain-wait` with this machine's Node.js (the app image has
   * no Node): /usr (the dynamic loader and libraries), the Node runtime, the repository (bin/ and dist/)
   * and its node_modules wherever they really are. All read-only.
   */
  readygateMounts(nodeBinary: string = process.execPath): { volumes: unknown[]; volumeMounts: unknown[] } {
    const paths = [
      '/usr',
      path.dirname(path.dirname(realpathSync(nodeBinary))),
      repoRoot,
      realpathSync(path.join(repoRoot, 'node_modules')),
    ];
    const unique = [...new Set(paths)].filter(
      (p, index, all) => !all.some((other, j) => j !== index && p.startsWith(`${other}/`)),
    );
    return {
      volumes: unique.map((p, i) => ({ name: `host-${i}`, hostPath: { path: p, type: 'Directory' } })),
      volumeMounts: unique.map((p, i) => ({ name: `host-${i}`, mountPath: p, readOnly: true })),
    };
  }

  /** Stops every process and removes everything the run created (scripts/real-node.sh down). Idempotent. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await this.#removePods().catch((error: unknown) => {
      progress(`pods not removed through the kubelet (the script removes them): ${String(error)}`);
    });
    for (const name of ['kube-scheduler', 'kubelet']) await this.#stopProcess(name);
    // containerd, shims, containers, mounts, netns, bridge, cgroups, dirs: the script's job.
    await runScript('real-node.sh', ['down', this.id], 120_000).catch((error: unknown) => {
      progress(String(error));
    });
    await this.#stopProcess('containerd');
    liveRuns.delete(this.id);
  }

  /**
   * Cordons the node, deletes every pod on it at once and waits (bounded) until the kubelet has stopped their
   * sandboxes: the CRI then runs the CNI DEL that releases addresses and the CNI cache entries, which
   * killing the processes alone would skip.
   */
  async #removePods(): Promise<void> {
    const cluster = this.#cluster;
    const kubelet = this.#processes.get('kubelet');
    if (!cluster?.apiserverRunning || !kubelet || kubelet.child.exitCode !== null) return;
    const core = cluster.adminConfig().makeApiClient(CoreV1Api);
    // Cordoned first: controllers replace deleted pods, and the replacements must not land here again.
    await core.patchNode(
      { name: this.nodeName, body: { spec: { unschedulable: true } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const pods = await core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${this.nodeName}` });
    for (const pod of pods.items) {
      await core
        .deleteNamespacedPod({
          namespace: pod.metadata?.namespace ?? '',
          name: pod.metadata?.name ?? '',
          gracePeriodSeconds: 0,
        })
        .catch(() => undefined);
    }
    // `ctr tasks ls` lists each container's task; none RUNNING means every sandbox is stopped.
    const deadline = performance.now() + 30_000;
    while (performance.now() < deadline) {
      const tasks = await this.ctr(['tasks', 'ls']);
      if (!/\bRUNNING\b/.test(tasks)) return;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    throw new Error('tasks still running 30 s after their pods were deleted');
  }

  #spawn(name: string, binary: string, args: readonly string[]): Managed {
    const log = openSync(path.join(this.dir, 'logs', `${name}.log`), 'a');
    const child = spawn(binary, args, { stdio: ['ignore', log, log] });
    closeSync(log);
    killOnExit(child);
    if (child.pid === undefined) throw new Error(`${name} did not start (${binary})`);
    writeFileSync(path.join(this.dir, 'pids', name), `${child.pid}\n`);
    const exited = new Promise<void>((resolve) => {
      child.once('exit', () => {
        resolve();
      });
      child.once('error', () => {
        resolve();
      });
    });
    const managed = { child, exited };
    this.#processes.set(name, managed);
    return managed;
  }

  async #stopProcess(name: string): Promise<void> {
    const managed = this.#processes.get(name);
    if (!managed || managed.child.exitCode !== null || managed.child.signalCode !== null) return;
    managed.child.kill('SIGTERM');
    const timer = setTimeout(() => managed.child.kill('SIGKILL'), 5_000);
    await managed.exited;
    clearTimeout(timer);
  }

  async #waitFor(
    what: string,
    name: string,
    timeoutMs: number,
    probe: () => Promise<boolean>,
  ): Promise<void> {
    const managed = this.#processes.get(name);
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      if (managed && (managed.child.exitCode !== null || managed.child.signalCode !== null))
        throw new Error(`${name} exited while ${what}; last log lines:\n${this.logTail(name)}`);
      try {
        if (await probe()) return;
      } catch {
        // not yet
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    throw new Error(`${what}: not after ${timeoutMs} ms; last ${name} log lines:\n${this.logTail(name)}`);
  }

  async #startContainerd(): Promise<void> {
    this.#spawn('containerd', 'containerd', ['--config', path.join(this.dir, 'containerd.toml')]);
    await this.#waitFor('containerd answering', 'containerd', 30_000, async () => {
      await this.ctr(['version']);
      return true;
    });
  }

  async #startKubelet(binDir: string, cluster: KubeCluster): Promise<void> {
    const [port, healthzPort] = [await freePort(), await freePort()];
    const kubeletDir = path.join(this.dir, 'kubelet');
    // The settings a kubelet needs on this machine kind (docs/e2e.md); everything per run.
    const config = {
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      cgroupDriver: 'cgroupfs',
      cgroupRoot: `/${this.cgroup}`,
      failCgroupV1: false,
      containerRuntimeEndpoint: `unix://${path.join(this.dir, 'run', 'containerd.sock')}`,
      address: '127.0.0.1',
      port,
      healthzBindAddress: '127.0.0.1',
      healthzPort,
      readOnlyPort: 0,
      authentication: { anonymous: { enabled: true }, webhook: { enabled: false } },
      authorization: { mode: 'AlwaysAllow' },
      failSwapOn: false,
      enforceNodeAllocatable: [],
      evictionHard: {},
      imageGCHighThresholdPercent: 100,
      podLogsDir: path.join(this.dir, 'pod-logs'),
      volumePluginDir: path.join(this.dir, 'volume-plugins'),
      resolvConf: '',
      serializeImagePulls: false,
      // Faster than the defaults where the tests wait on them; nothing the probes and hooks decide.
      nodeStatusUpdateFrequency: '4s',
      syncFrequency: '10s',
    };
    const configFile = path.join(this.dir, 'kubelet-config.json');
    writeFileSync(configFile, JSON.stringify(config, null, 2));
    this.#spawn('kubelet', path.join(binDir, 'kubelet'), [
      `--config=${configFile}`,
      `--kubeconfig=${cluster.adminKubeconfigPath}`,
      `--root-dir=${kubeletDir}`,
      `--cert-dir=${path.join(kubeletDir, 'pki')}`,
      `--hostname-override=${this.nodeName}`,
      // The bridge address: a node IP must not be loopback, and this one is the run's own.
      `--node-ip=${this.gateway}`,
      '--v=1',
    ]);
    await this.#waitFor('kubelet healthz', 'kubelet', 60_000, async () => {
      const response = await fetch(`http://127.0.0.1:${healthzPort}/healthz`, {
        signal: AbortSignal.timeout(2_000),
      });
      return response.ok;
    });
  }

  async #startScheduler(binDir: string, cluster: KubeCluster): Promise<void> {
    // A copy in the run dir: `real-node.sh down` stops only processes whose command line names the run dir.
    const kubeconfig = path.join(this.dir, 'kube-scheduler.kubeconfig');
    copyFileSync(cluster.adminKubeconfigPath, kubeconfig);
    this.#spawn('kube-scheduler', path.join(binDir, 'kube-scheduler'), [
      `--kubeconfig=${kubeconfig}`,
      `--authentication-kubeconfig=${kubeconfig}`,
      `--authorization-kubeconfig=${kubeconfig}`,
      '--leader-elect=false',
      '--bind-address=127.0.0.1',
      `--secure-port=${await freePort()}`,
      '--profiling=false',
    ]);
  }

  async #waitReady(cluster: KubeCluster, timeoutMs: number): Promise<void> {
    const core = cluster.adminConfig().makeApiClient(CoreV1Api);
    await this.#waitFor(`node ${this.nodeName} Ready`, 'kubelet', timeoutMs, async () => {
      const node = await core.readNode({ name: this.nodeName });
      const ready = node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
      const notReadyTaint = (node.spec?.taints ?? []).some(
        (taint) => taint.key === 'node.kubernetes.io/not-ready',
      );
      return ready && !notReadyTaint;
    });
  }
}
