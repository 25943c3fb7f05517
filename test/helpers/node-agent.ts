/**
 * A test node agent: plays the kubelet for the pods bound to one fake Node, so Deployments, ReplicaSets and
 * the EndpointSlice controller of a real kube-controller-manager see pods come and go as in a cluster.
 *
 * What it does, per pod on its node (kubelet behaviour it mirrors in brackets):
 * - starts the pod's container as a local process (test/helpers/pod-backend.ts by default) on an address
 *   of its own, with the container's env (literal values and the downward-API fields tests use);
 * - runs the readinessProbe (httpGet or tcpSocket; initialDelaySeconds, periodSeconds, timeoutSeconds,
 *   successThreshold, failureThreshold) and patches `pods/status`: phase Running, podIP/podIPs,
 *   PodScheduled/Initialized/ContainersReady/Ready with real lastTransitionTimes;
 * - honours readinessGates: Ready = ContainersReady and every gate condition True [KEP-580: the kubelet
 *   folds gates into Ready, a missing condition counts as False];
 * - on deletion (deletionTimestamp set): runs preStop (exec command or sleep), then SIGTERM, then SIGKILL
 *   once the grace period (deletionGracePeriodSeconds, else terminationGracePeriodSeconds) is over, with at
 *   least 2 s after a preStop hook that used it all up [kubelet's minimum]; then deletes the pod with grace 0
 *   (the kubelet's final delete).
 * - optionally binds unscheduled pods in its namespaces to its node (a one-node scheduler), since no
 *   kube-scheduler runs.
 *
 * Pod network. The apiserver rejects loopback addresses in EndpointSlices (ValidateEndpointIP), so pods
 * cannot report 127.0.0.x as their IP: the EndpointSlice controller would fail to write their slices. Each
 * pod therefore gets two addresses with the same last octet: a pod IP from TEST-NET-2 (198.51.100.0/24, a
 * documentation range that is never a real host) that goes into `status.podIP` and so into the slices, and a
 * loopback address (127.A.B.N) its process listens on. `loopbackFor(podIP)` is the routing table, and
 * `mirrorPodNetwork` applies it to an EndpointStore: the test equivalent of the pod network that makes a
 * pod IP reachable in a real cluster. Nothing ever connects to a 198.51.100.x address.
 *
 * Everything is bounded (probe and API call timeouts, grace periods) and `stop()` SIGKILLs every process it
 * started; processes still running when the test process exits are killed too.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CoreV1Api,
  PatchStrategy,
  makeInformer,
  setHeaderOptions,
  V1Binding,
  V1DeleteOptions,
  V1Node,
  V1ObjectMeta,
  V1ObjectReference,
  V1Preconditions,
  type Informer,
  type KubeConfig,
  type ObjectCache,
  type V1Container,
  type V1Pod,
  type V1Probe,
} from '@kubernetes/client-node';
import type { EndpointStore } from '../../src/model/store.js';
import type { ServiceModel } from '../../src/model/types.js';
import { killOnExit } from '../../src/supervised-process.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const POD_BACKEND = path.join(repoRoot, 'test', 'helpers', 'pod-backend.ts');

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

export interface ContainerLaunch {
  readonly command: string;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
}

export interface ContainerContext {
  readonly pod: V1Pod;
  readonly container: V1Container;
  /** Where the process must listen (the pod's loopback address). */
  readonly host: string;
  /** The container's first port, or 8080 when it declares none. */
  readonly port: number;
  /** The container env, resolved (literal values and downward-API fields). */
  readonly env: Readonly<Record<string, string>>;
}

export interface NodeAgentOptions {
  readonly kubeConfig: KubeConfig;
  readonly nodeName: string;
  /** Namespaces whose pods this agent runs (and binds, with `bindUnscheduled`). */
  readonly namespaces: readonly string[];
  /** Bind pods without spec.nodeName to this node (no kube-scheduler runs in tests). Default true. */
  readonly bindUnscheduled?: boolean;
  /** First three octets of the pod IPs (default 198.51.100, TEST-NET-2). */
  readonly podSubnet?: string;
  /** First three octets of the loopback addresses processes listen on (default 127.A.B, random A and B). */
  readonly loopbackSubnet?: string;
  /** How to start a container; default: pod-backend.ts with POD_NAME, LISTEN_HOST, LISTEN_PORT. */
  readonly launch?: (context: ContainerContext) => ContainerLaunch;
  /** Maps a preStop exec command before it runs (e.g. `readygate …` → `node bin/readygate.js …`). */
  readonly resolveExec?: (argv: readonly string[]) => readonly string[];
  /** Extra env for every started container (e.g. STARTUP_DELAY_MS). */
  readonly extraEnv?: Readonly<Record<string, string>>;
  /** Log lines (what happened to which pod, when). */
  readonly log?: (line: string) => void;
}

/** What the agent did to a pod, with a timestamp (performance.now()), for tests to measure. */
export interface PodEvent {
  readonly pod: string;
  readonly uid: string;
  readonly what:
    | 'started'
    | 'containers-ready'
    | 'containers-unready'
    | 'ready'
    | 'unready'
    | 'terminating'
    | 'prestop-done'
    | 'sigterm'
    | 'sigkill'
    | 'exited'
    | 'finalised';
  readonly at: number;
  readonly detail?: string;
}

interface NodeAgentEvents {
  pod: [PodEvent];
}

/** The kubelet-owned conditions, in the order the kubelet reports them. */
type OwnedCondition = 'PodScheduled' | 'Initialized' | 'ContainersReady' | 'Ready';

interface PodRuntime {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  readonly podIP: string;
  readonly loopback: string;
  readonly port: number;
  readonly startTime: string;
  readonly gates: readonly string[];
  latest: V1Pod;
  child: ChildProcess | undefined;
  exited: Promise<void>;
  hasExited: boolean;
  containersReady: boolean;
  ready: boolean;
  conditions: Map<OwnedCondition, { status: 'True' | 'False'; lastTransitionTime: string }>;
  terminating: boolean;
  stopped: boolean;
  probeTimer: NodeJS.Timeout | undefined;
  /** Status writes for one pod run one after another, so the last one written is the newest. */
  writes: Promise<void>;
  lastWritten: string;
  output: string[];
}

/** Status code of a client-node ApiException, or undefined. */
function apiStatus(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

function describeError(error: unknown): string {
  if (error instanceof Error) return error.message.split('\n')[0] ?? error.message;
  return String(error);
}

/** A client-node model instance with these fields (its API types are classes, not plain shapes). */
function make<T extends object>(ctor: new () => T, fields: Partial<T>): T {
  return Object.assign(new ctor(), fields);
}

/** Reads the flags through a call so TypeScript does not keep a narrowing across an await. */
function isDone(runtime: { readonly stopped: boolean; readonly hasExited: boolean }): boolean {
  return runtime.stopped || runtime.hasExited;
}

const randomOctet = (low: number, high: number): number => low + Math.floor(Math.random() * (high - low + 1));

export class NodeAgent extends EventEmitter<NodeAgentEvents> {
  readonly nodeName: string;
  readonly podSubnet: string;
  readonly loopbackSubnet: string;
  readonly events: PodEvent[] = [];
  readonly #core: CoreV1Api;
  readonly #options: NodeAgentOptions;
  readonly #pods = new Map<string, PodRuntime>();
  readonly #informers: (Informer<V1Pod> & ObjectCache<V1Pod>)[] = [];
  readonly #loopbackOf = new Map<string, string>();
  readonly #log: (line: string) => void;
  #nextHost = 1;
  #stopped = false;

  private constructor(options: NodeAgentOptions) {
    super();
    this.#options = options;
    this.nodeName = options.nodeName;
    this.podSubnet = options.podSubnet ?? '198.51.100';
    // A random /24 inside 127.0.0.0/8 keeps concurrent test runs (and other tests' 127.0.0.x) apart.
    this.loopbackSubnet = options.loopbackSubnet ?? `127.${randomOctet(100, 199)}.${randomOctet(1, 254)}`;
    this.#core = options.kubeConfig.makeApiClient(CoreV1Api);
    this.#log = options.log ?? (() => undefined);
  }

  /** Registers the Node (Ready), then starts watching pods. */
  static async start(options: NodeAgentOptions): Promise<NodeAgent> {
    const agent = new NodeAgent(options);
    try {
      await agent.#registerNode();
      for (const namespace of options.namespaces) await agent.#watch(namespace);
    } catch (error) {
      await agent.stop();
      throw error;
    }
    return agent;
  }

  /** The loopback address behind a pod IP, or undefined for an address this agent never gave out. */
  loopbackFor(podIP: string): string | undefined {
    return this.#loopbackOf.get(podIP);
  }

  /** The last lines a pod's process wrote (stdout and stderr), for failure messages. */
  output(podName: string): string {
    const runtime = [...this.#pods.values()].find((p) => p.name === podName);
    return runtime?.output.join('\n') ?? '';
  }

  /** Pods this agent is running (started and not yet finalised). */
  get running(): string[] {
    return [...this.#pods.values()].filter((p) => !p.stopped).map((p) => p.name);
  }

  /** Stops watching and SIGKILLs every process it started. Idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const informer of this.#informers) {
      try {
        await informer.stop();
      } catch {
        // already stopped
      }
    }
    this.#informers.length = 0;
    const exits: Promise<void>[] = [];
    for (const runtime of this.#pods.values()) {
      runtime.stopped = true;
      clearTimeout(runtime.probeTimer);
      if (runtime.child && !runtime.hasExited) {
        runtime.child.kill('SIGKILL');
        exits.push(runtime.exited);
      }
    }
    // SIGKILL cannot be ignored; the bound only guards against a zombie the OS never reaps.
    await Promise.race([Promise.all(exits), sleep(5_000)]);
  }

  // ---- Node ----

  async #registerNode(): Promise<void> {
    try {
      await this.#core.createNode({
        body: make(V1Node, {
          apiVersion: 'v1',
          kind: 'Node',
          metadata: make(V1ObjectMeta, {
            name: this.nodeName,
            labels: { 'kubernetes.io/hostname': this.nodeName, 'kubernetes.io/os': 'linux' },
          }),
        }),
      });
    } catch (error) {
      if (apiStatus(error) !== 409) throw error;
    }
    const now = new Date().toISOString();
    await this.#core.patchNodeStatus(
      {
        name: this.nodeName,
        body: {
          status: {
            conditions: [
              {
                type: 'Ready',
                status: 'True',
                reason: 'KubeletReady',
                message: 'test node agent is running',
                lastHeartbeatTime: now,
                lastTransitionTime: now,
              },
            ],
            addresses: [{ type: 'InternalIP', address: '127.0.0.1' }],
          },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    );
  }

  // ---- Watching ----

  async #watch(namespace: string): Promise<void> {
    const informer = makeInformer<V1Pod>(
      this.#options.kubeConfig,
      `/api/v1/namespaces/${namespace}/pods`,
      () => this.#core.listNamespacedPod({ namespace }),
    );
    const onPod = (pod: V1Pod): void => {
      if (!this.#stopped) this.#reconcile(pod);
    };
    informer.on('add', onPod);
    informer.on('update', onPod);
    informer.on('delete', (pod: V1Pod) => {
      if (!this.#stopped) this.#gone(pod);
    });
    // client-node 1.4 stops an informer on any error; a node agent has to keep watching.
    informer.on('error', (error: unknown) => {
      if (this.#stopped) return;
      this.#log(`pod watch in ${namespace} failed (${describeError(error)}); restarting in 500 ms`);
      setTimeout(() => {
        if (!this.#stopped) informer.start().catch(() => undefined);
      }, 500);
    });
    this.#informers.push(informer);
    await informer.start();
  }

  #reconcile(pod: V1Pod): void {
    const uid = pod.metadata?.uid;
    if (!uid) return;
    const nodeName = pod.spec?.nodeName;
    if (!nodeName) {
      if ((this.#options.bindUnscheduled ?? true) && !pod.metadata?.deletionTimestamp) this.#bind(pod);
      return;
    }
    if (nodeName !== this.nodeName) return;
    let runtime = this.#pods.get(uid);
    if (!runtime) {
      if (pod.metadata?.deletionTimestamp) {
        // Deleted before it ever ran here: nothing to stop, only the final delete.
        void this.#finalise(pod).catch(() => undefined);
        return;
      }
      runtime = this.#startPod(pod);
      if (!runtime) return;
    }
    runtime.latest = pod;
    if (pod.metadata?.deletionTimestamp && !runtime.terminating) {
      runtime.terminating = true;
      this.#emit(runtime, 'terminating');
      void this.#terminate(runtime);
    }
    // Gate conditions written by someone else arrive here: re-evaluate Ready.
    this.#updateReadiness(runtime);
  }

  /** The pod object is gone (finalised by us, or force-deleted by someone else): nothing may keep running. */
  #gone(pod: V1Pod): void {
    const runtime = pod.metadata?.uid ? this.#pods.get(pod.metadata.uid) : undefined;
    if (!runtime || runtime.stopped) return;
    runtime.stopped = true;
    clearTimeout(runtime.probeTimer);
    if (runtime.child && !runtime.hasExited) {
      this.#emit(runtime, 'sigkill', 'pod object deleted while its process ran');
      runtime.child.kill('SIGKILL');
    }
  }

  #binding = new Set<string>();
  #bind(pod: V1Pod): void {
    const name = pod.metadata?.name;
    const namespace = pod.metadata?.namespace;
    const uid = pod.metadata?.uid;
    if (!name || !namespace || !uid || this.#binding.has(uid)) return;
    this.#binding.add(uid);
    this.#core
      .createNamespacedPodBinding({
        name,
        namespace,
        body: make(V1Binding, {
          apiVersion: 'v1',
          kind: 'Binding',
          metadata: make(V1ObjectMeta, { name, namespace, uid }),
          target: make(V1ObjectReference, { apiVersion: 'v1', kind: 'Node', name: this.nodeName }),
        }),
      })
      .catch((error: unknown) => {
        // 409: already bound (an earlier event); anything else is worth a line.
        if (apiStatus(error) !== 409) this.#log(`bind ${namespace}/${name}: ${describeError(error)}`);
        this.#binding.delete(uid);
      });
  }

  // ---- Running a pod ----

  #startPod(pod: V1Pod): PodRuntime | undefined {
    const uid = pod.metadata?.uid ?? '';
    const name = pod.metadata?.name ?? '';
    const namespace = pod.metadata?.namespace ?? '';
    const container = pod.spec?.containers[0];
    if (!container) return undefined;
    if (this.#nextHost > 254) {
      this.#log(`${namespace}/${name}: no pod addresses left on ${this.nodeName}`);
      return undefined;
    }
    // Addresses are never reused within one agent, so a late packet can never reach the wrong pod.
    const host = this.#nextHost++;
    const podIP = `${this.podSubnet}.${host}`;
    const loopback = `${this.loopbackSubnet}.${host}`;
    this.#loopbackOf.set(podIP, loopback);
    const port = container.ports?.[0]?.containerPort ?? 8080;
    const runtime: PodRuntime = {
      uid,
      namespace,
      name,
      podIP,
      loopback,
      port,
      startTime: new Date().toISOString(),
      gates: (pod.spec?.readinessGates ?? []).map((g) => g.conditionType),
      latest: pod,
      child: undefined,
      exited: Promise.resolve(),
      hasExited: false,
      containersReady: false,
      ready: false,
      conditions: new Map(),
      terminating: false,
      stopped: false,
      probeTimer: undefined,
      writes: Promise.resolve(),
      lastWritten: '',
      output: [],
    };
    this.#pods.set(uid, runtime);

    const env = this.#containerEnv(pod, container, podIP);
    const launch = (this.#options.launch ?? defaultLaunch)({ pod, container, host: loopback, port, env });
    const child = spawn(launch.command, [...launch.args], {
      cwd: repoRoot,
      env: { ...process.env, ...this.#options.extraEnv, ...launch.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    killOnExit(child);
    runtime.child = child;
    const collect = (chunk: Buffer): void => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line === '') continue;
        runtime.output.push(line);
        if (runtime.output.length > 50) runtime.output.shift();
      }
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    runtime.exited = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        runtime.hasExited = true;
        this.#emit(runtime, 'exited', signal ?? `code ${code}`);
        if (!runtime.terminating) {
          // A container that dies on its own is not ready (no restarts here: tests want to see it).
          runtime.containersReady = false;
          this.#updateReadiness(runtime);
        }
        resolve();
      });
      child.once('error', (error) => {
        runtime.hasExited = true;
        runtime.output.push(`spawn error: ${error.message}`);
        resolve();
      });
    });
    this.#emit(runtime, 'started', `${podIP} → ${loopback}:${port}`);
    this.#setCondition(runtime, 'PodScheduled', true);
    this.#setCondition(runtime, 'Initialized', true);
    this.#setCondition(runtime, 'ContainersReady', false);
    this.#setCondition(runtime, 'Ready', false);
    this.#writeStatus(runtime);
    this.#startProbing(runtime, container);
    return runtime;
  }

  #containerEnv(pod: V1Pod, container: V1Container, podIP: string): Record<string, string> {
    const fields: Record<string, string | undefined> = {
      'metadata.name': pod.metadata?.name,
      'metadata.namespace': pod.metadata?.namespace,
      'metadata.uid': pod.metadata?.uid,
      'spec.nodeName': this.nodeName,
      'spec.serviceAccountName': pod.spec?.serviceAccountName,
      'status.podIP': podIP,
      'status.hostIP': '127.0.0.1',
    };
    const env: Record<string, string> = {};
    // The kubelet's dependent-variable rule: $(NAME) expands to a variable defined earlier in the list,
    // $$ is a literal $, and a reference to anything else stays as written.
    const expand = (value: string): string =>
      value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (match, name: string | undefined) =>
        name === undefined ? '$' : (env[name] ?? match),
      );
    for (const variable of container.env ?? []) {
      if (variable.value !== undefined) env[variable.name] = expand(variable.value);
      const fieldPath = variable.valueFrom?.fieldRef?.fieldPath;
      const value = fieldPath === undefined ? undefined : fields[fieldPath];
      if (value !== undefined) env[variable.name] = value;
    }
    return env;
  }

  #startProbing(runtime: PodRuntime, container: V1Container): void {
    const probe = container.readinessProbe;
    if (!probe) {
      // No probe: the kubelet counts a running container as ready.
      runtime.containersReady = true;
      this.#updateReadiness(runtime);
      return;
    }
    const periodMs = Math.max(1, probe.periodSeconds ?? 10) * 1000;
    const successThreshold = Math.max(1, probe.successThreshold ?? 1);
    const failureThreshold = Math.max(1, probe.failureThreshold ?? 3);
    let successes = 0;
    let failures = 0;
    const tick = async (): Promise<void> => {
      if (runtime.stopped || runtime.hasExited) return;
      const ok = await this.#probeOnce(runtime, container, probe);
      // Re-read after the await: the pod may have been stopped while the probe ran.
      if (isDone(runtime)) return;
      if (ok) {
        successes++;
        failures = 0;
        if (!runtime.containersReady && successes >= successThreshold) {
          runtime.containersReady = true;
          this.#emit(runtime, 'containers-ready');
          this.#updateReadiness(runtime);
        }
      } else {
        failures++;
        successes = 0;
        if (runtime.containersReady && failures >= failureThreshold) {
          runtime.containersReady = false;
          this.#emit(runtime, 'containers-unready');
          this.#updateReadiness(runtime);
        }
      }
      runtime.probeTimer = setTimeout(() => void tick(), periodMs);
    };
    runtime.probeTimer = setTimeout(() => void tick(), (probe.initialDelaySeconds ?? 0) * 1000);
  }

  async #probeOnce(runtime: PodRuntime, container: V1Container, probe: V1Probe): Promise<boolean> {
    const timeoutMs = Math.max(1, probe.timeoutSeconds ?? 1) * 1000;
    const resolvePort = (port: number | string | undefined): number => {
      if (typeof port === 'number') return port;
      const named = container.ports?.find((p) => p.name === port)?.containerPort;
      return named ?? Number(port ?? runtime.port);
    };
    if (probe.httpGet) {
      const port = resolvePort(probe.httpGet.port);
      const probePath = probe.httpGet.path ?? '/';
      return new Promise<boolean>((resolve) => {
        const request = http.get(
          { host: runtime.loopback, port, path: probePath, timeout: timeoutMs, agent: false },
          (response) => {
            response.resume();
            const status = response.statusCode ?? 0;
            // The kubelet's rule: 200 ≤ status < 400 is success.
            resolve(status >= 200 && status < 400);
          },
        );
        request.on('timeout', () => request.destroy(new Error('probe timeout')));
        request.on('error', () => {
          resolve(false);
        });
      });
    }
    if (probe.tcpSocket) {
      const port = resolvePort(probe.tcpSocket.port);
      return new Promise<boolean>((resolve) => {
        const socket = net.connect({ host: runtime.loopback, port, timeout: timeoutMs });
        socket.once('connect', () => {
          socket.destroy();
          resolve(true);
        });
        socket.once('timeout', () => {
          socket.destroy();
          resolve(false);
        });
        socket.once('error', () => {
          resolve(false);
        });
      });
    }
    // exec/grpc probes are not needed by these tests; count them as passing like a process that is up.
    return !runtime.hasExited;
  }

  /** Ready = ContainersReady and every readiness gate condition True (absent = False). */
  #updateReadiness(runtime: PodRuntime): void {
    if (runtime.stopped) return;
    const conditions = runtime.latest.status?.conditions ?? [];
    const gatesTrue = runtime.gates.every(
      (gate) => conditions.find((c) => c.type === gate)?.status === 'True',
    );
    const ready = runtime.containersReady && gatesTrue && !runtime.hasExited;
    const containersChanged = this.#setCondition(runtime, 'ContainersReady', runtime.containersReady);
    const readyChanged = this.#setCondition(runtime, 'Ready', ready);
    if (readyChanged) {
      runtime.ready = ready;
      this.#emit(runtime, ready ? 'ready' : 'unready');
    }
    if (containersChanged || readyChanged) this.#writeStatus(runtime);
  }

  #setCondition(runtime: PodRuntime, type: OwnedCondition, value: boolean): boolean {
    const status = value ? 'True' : 'False';
    if (runtime.conditions.get(type)?.status === status) return false;
    runtime.conditions.set(type, { status, lastTransitionTime: new Date().toISOString() });
    return true;
  }

  /** Queues a strategic-merge patch of pods/status with the kubelet-owned fields; gate conditions stay. */
  #writeStatus(runtime: PodRuntime): void {
    const conditions = [...runtime.conditions.entries()].map(([type, c]) => ({
      type,
      status: c.status,
      lastTransitionTime: c.lastTransitionTime,
    }));
    const body = {
      status: {
        phase: 'Running',
        hostIP: '127.0.0.1',
        hostIPs: [{ ip: '127.0.0.1' }],
        podIP: runtime.podIP,
        podIPs: [{ ip: runtime.podIP }],
        startTime: runtime.startTime,
        conditions,
      },
    };
    runtime.writes = runtime.writes.then(async () => {
      const text = JSON.stringify(body);
      if (text === runtime.lastWritten || runtime.stopped) return;
      for (let attempt = 1; attempt <= 5; attempt++) {
        try {
          await this.#core.patchNamespacedPodStatus(
            { name: runtime.name, namespace: runtime.namespace, body },
            setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
          );
          runtime.lastWritten = text;
          return;
        } catch (error) {
          // 404: the pod is gone; nothing left to report.
          if (apiStatus(error) === 404 || this.#stopped) return;
          this.#log(`${runtime.name}: status patch attempt ${attempt} failed: ${describeError(error)}`);
          await sleep(100 * attempt);
        }
      }
    });
  }

  // ---- Termination ----

  async #terminate(runtime: PodRuntime): Promise<void> {
    const pod = runtime.latest;
    const graceSeconds =
      pod.metadata?.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
    const started = performance.now();
    const deadline = started + graceSeconds * 1000;
    const container = pod.spec?.containers[0];
    const preStop = container?.lifecycle?.preStop;
    try {
      if (preStop && !runtime.hasExited) {
        const detail = await this.#runPreStop(runtime, pod, container, deadline);
        this.#emit(runtime, 'prestop-done', detail);
      }
      if (runtime.child && !runtime.hasExited && !runtime.stopped) {
        this.#emit(runtime, 'sigterm');
        runtime.child.kill('SIGTERM');
        // The kubelet gives at least 2 s after SIGTERM even when preStop used up the grace period.
        const killAt = Math.max(deadline, performance.now() + 2_000);
        const killed = await Promise.race([
          runtime.exited.then(() => false),
          sleep(killAt - performance.now()).then(() => true),
        ]);
        if (killed && !isDone(runtime)) {
          this.#emit(runtime, 'sigkill', 'grace period over');
          runtime.child.kill('SIGKILL');
          await Promise.race([runtime.exited, sleep(5_000)]);
        }
      }
    } finally {
      clearTimeout(runtime.probeTimer);
      if (!this.#stopped) await this.#finalise(pod).catch(() => undefined);
      runtime.stopped = true;
      this.#emit(
        runtime,
        'finalised',
        `${((performance.now() - started) / 1000).toFixed(2)} s after deletion`,
      );
    }
  }

  /** Runs the preStop hook, bounded by the grace deadline; returns what it did. */
  async #runPreStop(
    runtime: PodRuntime,
    pod: V1Pod,
    container: V1Container | undefined,
    deadline: number,
  ): Promise<string> {
    const preStop = container?.lifecycle?.preStop;
    const remaining = (): number => deadline - performance.now();
    if (preStop?.sleep) {
      const ms = Math.min(preStop.sleep.seconds * 1000, remaining());
      await sleep(ms);
      return `sleep ${preStop.sleep.seconds}s`;
    }
    if (preStop?.exec?.command && preStop.exec.command.length > 0 && container) {
      const argv = (this.#options.resolveExec ?? ((a) => a))(preStop.exec.command);
      const [command, ...args] = argv;
      if (command === undefined) return 'exec: empty command';
      const hook = spawn(command, args, {
        cwd: repoRoot,
        env: {
          ...process.env,
          ...this.#options.extraEnv,
          ...this.#containerEnv(pod, container, runtime.podIP),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      killOnExit(hook);
      let output = '';
      const keep = (chunk: Buffer): void => {
        output = (output + chunk.toString('utf8')).slice(-2_000);
      };
      hook.stdout.on('data', keep);
      hook.stderr.on('data', keep);
      const exited = new Promise<string>((resolve) => {
        hook.once('exit', (code, signal) => {
          resolve(signal ?? `exit ${code}`);
        });
        hook.once('error', (error) => {
          resolve(`spawn error: ${error.message}`);
        });
      });
      const result = await Promise.race([exited, sleep(remaining()).then(() => 'grace period over')]);
      if (result === 'grace period over') {
        hook.kill('SIGKILL');
        await exited;
      }
      return `exec ${preStop.exec.command.join(' ')}: ${result}${output.trim() ? ` (${output.trim().split('\n').pop() ?? ''})` : ''}`;
    }
    if (preStop?.httpGet) {
      const port = typeof preStop.httpGet.port === 'number' ? preStop.httpGet.port : runtime.port;
      await new Promise<void>((resolve) => {
        const request = http.get(
          {
            host: runtime.loopback,
            port,
            path: preStop.httpGet?.path ?? '/',
            timeout: Math.max(1, remaining()),
            agent: false,
          },
          (response) => {
            response.resume();
            response.on('end', resolve);
          },
        );
        request.on('timeout', () => request.destroy());
        request.on('error', () => {
          resolve();
        });
      });
      return `httpGet ${preStop.httpGet.path ?? '/'}`;
    }
    return 'no supported preStop action';
  }

  /** The kubelet's last step: delete the pod object with grace 0, only if it is still this pod (UID). */
  async #finalise(pod: V1Pod): Promise<void> {
    const name = pod.metadata?.name;
    const namespace = pod.metadata?.namespace;
    if (!name || !namespace) return;
    for (let attempt = 1; attempt <= 5; attempt++) {
      try {
        await this.#core.deleteNamespacedPod({
          name,
          namespace,
          gracePeriodSeconds: 0,
          body: make(V1DeleteOptions, {
            gracePeriodSeconds: 0,
            preconditions: make(V1Preconditions, pod.metadata?.uid ? { uid: pod.metadata.uid } : {}),
          }),
        });
        return;
      } catch (error) {
        const status = apiStatus(error);
        if (status === 404 || status === 409 || this.#stopped) return;
        this.#log(`${name}: final delete attempt ${attempt} failed: ${describeError(error)}`);
        await sleep(100 * attempt);
      }
    }
  }

  #emit(runtime: PodRuntime, what: PodEvent['what'], detail?: string): void {
    const event: PodEvent = {
      pod: runtime.name,
      uid: runtime.uid,
      what,
      at: performance.now(),
      ...(detail === undefined ? {} : { detail }),
    };
    this.events.push(event);
    if (this.events.length > 5_000) this.events.shift();
    this.#log(`${runtime.name}: ${what}${detail === undefined ? '' : ` (${detail})`}`);
    this.emit('pod', event);
  }
}

function defaultLaunch(context: ContainerContext): ContainerLaunch {
  const readyPath = context.container.readinessProbe?.httpGet?.path;
  return {
    command: process.execPath,
    args: ['--import', 'tsx', POD_BACKEND],
    env: {
      ...context.env,
      POD_NAME: context.pod.metadata?.name ?? 'unknown',
      LISTEN_HOST: context.host,
      LISTEN_PORT: String(context.port),
      ...(readyPath === undefined ? {} : { READY_PATH: readyPath }),
    },
  };
}

/** Shorthand for NodeAgent.start. */
export function startNodeAgent(options: NodeAgentOptions): Promise<NodeAgent> {
  return NodeAgent.start(options);
}

/**
 * Keeps `to` equal to `from` with every endpoint address passed through `agent.loopbackFor` (unknown
 * addresses stay as they are) and then through `transform`: the pod network between the Kubernetes
 * source and the xDS control plane (see the file comment). Synchronous, so it adds no delay. Returns a
 * function that stops mirroring.
 */
export function mirrorPodNetwork(
  from: EndpointStore,
  to: EndpointStore,
  agent: NodeAgent,
  transform: (service: ServiceModel) => ServiceModel = (s) => s,
): () => void {
  const rewrite = (service: ServiceModel): ServiceModel =>
    transform({
      ...service,
      endpoints: service.endpoints.map((endpoint) => ({
        ...endpoint,
        addresses: endpoint.addresses.map((address) => agent.loopbackFor(address) ?? address),
      })),
    });
  const onChange = ({
    changed,
    removed,
  }: {
    changed: readonly string[];
    removed: readonly string[];
  }): void => {
    for (const key of changed) {
      const service = from.get(key);
      if (service) to.upsert(rewrite(service));
    }
    for (const key of removed) to.delete(key);
  };
  const onSynced = (): void => {
    to.markSynced();
  };
  to.replaceAll(from.services.map(rewrite));
  if (from.synced) to.markSynced();
  from.on('change', onChange);
  from.on('synced', onSynced);
  return () => {
    from.off('change', onChange);
    from.off('synced', onSynced);
  };
}
