/**
 * Just enough Kubernetes for the demo, with the real ordering of events: the Deployment's pods, the
 * kubelet (container start and restart, readiness probes over real HTTP, SIGTERM and the grace period)
 * and the endpoints controller (one EndpointSlice, republished on every condition change). Both setups
 * run the same instance of this model; they differ only in what their gateway does with the slice.
 *
 * Event order this model reproduces (and docs/demo.md explains):
 * - A new pod's address enters the slice as soon as the pod has an IP, not ready, before its container
 *   listens. It turns ready when a probe passes after the app's warm-up.
 * - Deleting a pod marks it terminating in the slice and runs its preStop hook at the same moment; SIGTERM
 *   follows when the hook returns. Probes keep running (so `serving` follows the app), and the address
 *   leaves the slice only once the container has exited and the kubelet reported it (`podGoneMs`).
 * - A pod that declares readygate's readiness gate is Ready (in the slice: `ready`) only once its
 *   containers are ready and the gate condition is True; until then the pod reads as gate-pending, the way
 *   readygate's pod watch sees it. The condition, once True, stays True (a restart does not reset it).
 * - A crashed container is restarted in the same pod (same address); the address never leaves the slice.
 */
import http from 'node:http';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode, ReadygateError } from '../errors.js';
import { DemoBackend } from './backend.js';
import type { SliceEntry } from './slice.js';
import type { DemoTiming } from './timing.js';
import { OwnedTimers } from './timers.js';

export interface ClusterEvent {
  /** ms since the run's origin. */
  readonly t: number;
  readonly pod: string;
  readonly what: string;
}

export interface ClusterOptions {
  /** Pod name prefix and log label, e.g. `readygate`. */
  readonly label: string;
  readonly timing: DemoTiming;
  /** Pod addresses are `<prefix>.<first>`, `<prefix>.<first + 1>`, … (loopback only). */
  readonly addressPrefix: string;
  readonly firstHost: number;
  /** ms since the run's origin (event timestamps). */
  readonly now: () => number;
  /** Called with the whole slice and the Service's annotations on every change, synchronously. */
  readonly onSlice: (
    entries: readonly SliceEntry[],
    annotations: Readonly<Record<string, string>> | undefined,
  ) => void;
  /** Every pod declares readygate's readiness gate (`readygate.io/envoy-synced`). */
  readonly gated?: boolean;
  /**
   * The preStop hook: runs when the pod is deleted; SIGTERM follows when it settles. Absent = none. The
   * demo bounds it itself (a sleep, or drain-wait with its timeout), as the grace period would.
   */
  readonly preStop?: (pod: Pod) => Promise<void>;
}

/** One preStop hook run: when it started and how long it held the pod. */
export interface PreStopRun {
  readonly pod: string;
  /** ms since the run's origin. */
  readonly startMs: number;
  readonly ms: number;
}

/** When a cold pod (the slow-start replica) was cold: from its warm-up's end, for `coldMs`. */
export interface ColdWindow {
  readonly pod: string;
  /** ms since the run's origin. */
  readonly startMs: number;
  readonly endMs: number;
}

export interface Pod {
  readonly name: string;
  readonly ip: string;
  readonly port: number;
}

interface PodRecord extends Pod {
  readonly warmupMs: number;
  readonly cold: boolean;
  container: DemoBackend | undefined;
  terminating: boolean;
  /** ContainersReady, and not terminating (the slice's `ready` before any readiness gate). */
  ready: boolean;
  serving: boolean;
  /** readygate's gate condition is True (never set back to False). */
  gatePassed: boolean;
  inSlice: boolean;
  probeTimer: NodeJS.Timeout | undefined;
  /** Consecutive failed probes. */
  failures: number;
  readonly gone: Promise<void>;
  markGone: () => void;
}

/** Why a wait gave up, as one line. */
function timeout(what: string, ms: number): ReadygateError {
  return new ReadygateError(ErrorCode.WAIT_TIMEOUT, `demo: ${what} did not happen within ${ms} ms`);
}

export class SimulatedCluster {
  readonly #options: ClusterOptions;
  readonly #pods = new Map<string, PodRecord>();
  readonly #timers = new OwnedTimers();
  readonly #changed = new Set<() => void>();
  #nextHost: number;
  #nextPod = 1;
  #closed = false;
  readonly events: ClusterEvent[] = [];
  readonly preStops: PreStopRun[] = [];
  readonly coldWindows: ColdWindow[] = [];
  #annotations: Readonly<Record<string, string>> | undefined;
  /** App requests crashed containers held and never answered (each one reached the app). */
  crashHeldRequests = 0;

  constructor(options: ClusterOptions) {
    this.#options = options;
    this.#nextHost = options.firstHost;
  }

  /** Pods that exist (including terminating ones), oldest first. */
  get pods(): Pod[] {
    return [...this.#pods.values()];
  }

  /** Pods not being deleted, oldest first. */
  get livePods(): Pod[] {
    return [...this.#pods.values()].filter((pod) => !pod.terminating);
  }

  /** The slice as the endpoints controller publishes it. */
  get slice(): SliceEntry[] {
    return [...this.#pods.values()]
      .filter((pod) => pod.inSlice)
      .map((pod) => ({
        pod: pod.name,
        ip: pod.ip,
        port: pod.port,
        ready: this.#podReady(pod),
        serving: pod.serving,
        terminating: pod.terminating,
        gatePending: this.#gatePending(pod),
      }));
  }

  /** Pods whose containers are ready and which wait only for readygate's gate. */
  get gatePendingPods(): Pod[] {
    return [...this.#pods.values()].filter((pod) => this.#gatePending(pod));
  }

  /** readygate writes its condition True: the pod turns Ready (if its containers still are). */
  passGate(pod: Pod): void {
    const record = this.#pods.get(pod.name);
    if (!record || record.gatePassed) return;
    record.gatePassed = true;
    this.#event(pod.name, 'readiness gate True (every Envoy ACKed it)');
    this.#publish();
  }

  /** The Pod's Ready condition as the slice reflects it: containers ready, gate passed, not terminating. */
  #podReady(pod: PodRecord): boolean {
    return pod.ready && !pod.terminating && (this.#options.gated !== true || pod.gatePassed);
  }

  #gatePending(pod: PodRecord): boolean {
    return this.#options.gated === true && pod.ready && !pod.terminating && !pod.gatePassed;
  }

  /**
   * `kubectl annotate service`: the Service's annotations from now on (undefined: none). The slice is
   * republished with them, as a Service watch delivers the change.
   */
  annotateService(annotations: Readonly<Record<string, string>> | undefined): void {
    this.#annotations = annotations;
    this.#event('service', `annotations ${JSON.stringify(annotations ?? {})}`);
    this.#publish();
  }

  /**
   * Creates a pod: its address enters the slice (not ready) now; its container boots in the background.
   * `cold`: after its warm-up the app answers slower for a while (timing's `coldMs`, `coldLatencyMs`).
   */
  async createPod(options: { warmupMs?: number; cold?: boolean } = {}): Promise<Pod> {
    const ip = `${this.#options.addressPrefix}.${this.#nextHost++}`;
    const port = await reservePort(ip);
    const name = `web-${this.#options.label}-${this.#nextPod++}`;
    let markGone: () => void = () => undefined;
    const gone = new Promise<void>((resolve) => {
      markGone = resolve;
    });
    const pod: PodRecord = {
      name,
      ip,
      port,
      warmupMs: options.warmupMs ?? this.#options.timing.warmupMs,
      cold: options.cold === true,
      container: undefined,
      terminating: false,
      ready: false,
      serving: false,
      gatePassed: false,
      inSlice: true,
      probeTimer: undefined,
      failures: 0,
      gone,
      markGone,
    };
    this.#pods.set(name, pod);
    this.#event(name, `created at ${ip}:${port}`);
    this.#publish();
    this.#startContainer(pod);
    this.#scheduleProbe(pod);
    return pod;
  }

  /** `kubectl delete pod`: terminating in the slice and the preStop hook at once, SIGTERM after the hook. */
  deletePod(pod: Pod): void {
    const record = this.#pods.get(pod.name);
    if (!record || record.terminating) return;
    record.terminating = true;
    record.ready = false;
    this.#event(pod.name, 'deleted');
    this.#publish();
    const preStop = this.#options.preStop;
    if (!preStop) {
      this.#sigterm(record);
      return;
    }
    const startMs = Math.round(this.#options.now());
    const started = performance.now();
    preStop(record)
      .catch((error: unknown) => {
        // A failed hook does not stop the kubelet: it logs the failure and sends SIGTERM.
        this.#event(pod.name, `preStop failed: ${error instanceof Error ? error.message : String(error)}`);
      })
      .finally(() => {
        if (this.#closed) return;
        const ms = Math.round(performance.now() - started);
        this.preStops.push({ pod: pod.name, startMs, ms });
        this.#event(pod.name, `preStop returned after ${ms} ms`);
        this.#sigterm(record);
      });
  }

  #sigterm(record: PodRecord): void {
    const pod = record;
    this.#event(pod.name, 'SIGTERM');
    const container = record.container;
    if (!container) {
      this.#removeAfterExit(record);
      return;
    }
    container.terminate();
    void container.exited.then(() => {
      this.#event(
        pod.name,
        `container exited (${container.requestsAfterSigterm} request(s) after SIGTERM, ${container.requestsAtExit} of them read after the linger, ${container.connectionsCut} connection(s) cut)`,
      );
      this.#noticeExit(record, container);
      this.#removeAfterExit(record);
    });
  }

  /** The container dies mid-request; the kubelet restarts it in the same pod. */
  crashPod(pod: Pod): void {
    const record = this.#pods.get(pod.name);
    const container = record?.container;
    if (!record || !container) return;
    this.#event(pod.name, 'container crashing');
    container.crash(this.#options.timing.crashHoldMs);
    void container.exited.then(() => {
      this.crashHeldRequests += container.heldRequests;
      this.#event(pod.name, `container crashed, ${container.heldRequests} request(s) cut`);
      if (record.container !== container) return;
      this.#noticeExit(record, container);
      this.#timers.later(this.#options.timing.restartDelayMs, () => {
        if (record.terminating || this.#closed) return;
        this.#event(pod.name, 'container restarted');
        this.#startContainer(record);
      });
    });
  }

  /** Resolves when the pod is Ready (with its readiness gate, if it has one), as a Deployment waits. */
  async waitReady(pod: Pod, signal: AbortSignal): Promise<void> {
    await this.#waitFor(
      () => {
        const record = this.#pods.get(pod.name);
        return record !== undefined && this.#podReady(record);
      },
      `${pod.name} ready`,
      signal,
    );
  }

  /** Resolves when the pod is no longer ready in the slice (the kubelet noticed a crash). */
  async waitUnready(pod: Pod, signal: AbortSignal): Promise<void> {
    await this.#waitFor(() => this.#pods.get(pod.name)?.ready !== true, `${pod.name} not ready`, signal);
  }

  /** Resolves when the pods have left the slice. */
  async waitGone(pods: readonly Pod[], signal: AbortSignal): Promise<void> {
    await this.#waitFor(
      () => pods.every((pod) => !this.#pods.has(pod.name)),
      `${pods.map((p) => p.name).join(', ')} gone`,
      signal,
    );
  }

  /** Kills every container and stops every timer; idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#timers.cancelAll();
    const containers: DemoBackend[] = [];
    for (const pod of this.#pods.values()) {
      if (pod.probeTimer) clearTimeout(pod.probeTimer);
      if (pod.container) containers.push(pod.container);
      pod.markGone();
    }
    await Promise.all(containers.map((container) => container.kill()));
    for (const notify of this.#changed) notify();
  }

  #startContainer(pod: PodRecord): void {
    const { coldMs, coldLatencyMs } = this.#options.timing;
    const container = new DemoBackend({
      pod: pod.name,
      host: pod.ip,
      port: pod.port,
      bootMs: this.#options.timing.bootMs,
      warmupMs: pod.warmupMs,
      ...(pod.cold
        ? {
            coldMs,
            coldLatencyMs,
            onWarm: () => {
              const startMs = Math.round(this.#options.now());
              this.coldWindows.push({ pod: pod.name, startMs, endMs: startMs + coldMs });
              this.#event(pod.name, `warm, cold for ${coldMs} ms`);
            },
          }
        : {}),
    });
    pod.container = container;
    container.start().catch((error: unknown) => {
      // A port taken behind our back: the container "fails to start", as a real one would.
      this.#event(pod.name, `container failed: ${error instanceof Error ? error.message : String(error)}`);
      void container.kill();
    });
  }

  /** The kubelet sees the container gone (PLEG) and marks the pod not ready without waiting for probes. */
  #noticeExit(pod: PodRecord, container: DemoBackend): void {
    this.#timers.later(this.#options.timing.exitNoticeMs, () => {
      if (pod.container === container) pod.container = undefined;
      if (!this.#pods.has(pod.name) || (!pod.ready && !pod.serving)) return;
      pod.ready = false;
      pod.serving = false;
      pod.failures = 0;
      this.#event(pod.name, 'kubelet: container gone, not ready');
      this.#publish();
    });
  }

  #removeAfterExit(pod: PodRecord): void {
    this.#timers.later(this.#options.timing.podGoneMs, () => {
      pod.inSlice = false;
      if (pod.probeTimer) clearTimeout(pod.probeTimer);
      pod.probeTimer = undefined;
      pod.container = undefined;
      this.#pods.delete(pod.name);
      this.#event(pod.name, 'removed from the slice');
      this.#publish();
      pod.markGone();
    });
  }

  #scheduleProbe(pod: PodRecord): void {
    if (this.#closed) return;
    pod.probeTimer = setTimeout(() => {
      void this.#probe(pod);
    }, this.#options.timing.probePeriodMs);
  }

  async #probe(pod: PodRecord): Promise<void> {
    if (this.#closed || !this.#pods.has(pod.name)) return;
    const container = pod.container;
    const ok = container ? await probeReady(pod, this.#options.timing.probeTimeoutMs) : false;
    if (this.#isClosed() || !this.#pods.has(pod.name)) return;
    pod.failures = ok ? 0 : pod.failures + 1;
    // Like the kubelet: one success makes the container ready; only failureThreshold failures in a row
    // take that back (a container that exited is handled by #noticeExit, not here).
    const serving = ok ? true : pod.serving && pod.failures < this.#options.timing.probeFailureThreshold;
    const ready = serving && !pod.terminating;
    if (ready !== pod.ready || serving !== pod.serving) {
      pod.ready = ready;
      pod.serving = serving;
      this.#event(pod.name, `probe: ready=${ready} serving=${serving}`);
      this.#publish();
    }
    this.#scheduleProbe(pod);
  }

  /** A method, not the field, so checks after an await are not narrowed away by the compiler. */
  #isClosed(): boolean {
    return this.#closed;
  }

  #publish(): void {
    this.#options.onSlice(this.slice, this.#annotations);
    for (const notify of this.#changed) notify();
  }

  #event(pod: string, what: string): void {
    this.events.push({ t: Math.round(this.#options.now()), pod, what });
  }

  /** Waits for a condition re-checked on every slice change; bounded by the timing's wait timeout. */
  async #waitFor(condition: () => boolean, what: string, signal: AbortSignal): Promise<void> {
    const limit = this.#options.timing.waitTimeoutMs;
    const deadline = performance.now() + limit;
    while (!condition()) {
      signal.throwIfAborted();
      if (this.#closed) throw new ReadygateError(ErrorCode.WAIT_TIMEOUT, `demo: stopped before ${what}`);
      const remaining = deadline - performance.now();
      if (remaining <= 0) throw timeout(what, limit);
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.#changed.delete(done);
          signal.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(remaining, 1000));
        this.#changed.add(done);
        signal.addEventListener('abort', done, { once: true });
      });
    }
  }
}

/** A port free on `ip` now; the container binds it a boot delay later, like a pod's declared port. */
async function reservePort(ip: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', (error) => {
      reject(
        new ReadygateError(ErrorCode.LISTEN_FAILED, `demo: no free port on ${ip}: ${error.message}`, {
          cause: error,
        }),
      );
    });
    server.listen({ host: ip, port: 0, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => {
        resolve(port);
      });
    });
  });
}

/** One readiness probe: a fresh connection per probe, like the kubelet's. */
function probeReady(pod: Pod, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const request = http.get(
      { host: pod.ip, port: pod.port, path: '/ready', agent: false, timeout: timeoutMs },
      (response) => {
        response.resume();
        resolve(response.statusCode === 200);
      },
    );
    request.once('timeout', () => {
      request.destroy();
    });
    request.on('error', () => {
      resolve(false);
    });
  });
}

/** Sleeps unless aborted (then throws the abort reason). */
export async function pause(ms: number, signal: AbortSignal): Promise<void> {
  await sleep(ms, undefined, { signal });
}
