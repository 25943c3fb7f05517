/**
 * Sets the `readygate.io/envoy-synced` condition True on a gated pod once every Envoy that should know the
 * pod has ACKed an EDS version routing to it (src/readiness/verdicts.ts `gateVerdict`), and at least
 * `minProxies` of them did, counted across replicas (`requireProxies`). Never sets it
 * back to False: once Envoys know a pod, later readiness is the kubelet's business through ContainersReady.
 *
 * Timeout policy (a deliberate choice, see docs/rollouts.md): when a pod has waited `timeoutMs` since its
 * containers turned ready, the controller logs the Envoys it is waiting on, counts
 * `readygate_readiness_gate_timeouts_total` and writes the condition False with reason `EnvoySyncTimeout`
 * (so `kubectl describe pod` shows why) — and keeps evaluating, flipping True as soon as the Envoys catch
 * up. An Envoy that NACKs or is stuck therefore stalls the rollout visibly (the Deployment's progress
 * deadline reports it) instead of letting traffic reach pods that Envoy does not know. Only with
 * `flipOnTimeout` does the gate turn True at the timeout, for platforms that prefer progress over proof.
 *
 * Evaluation is level-based: any ACK/NACK, stream change, cache change or pod change schedules one pass over
 * all gated pods in the next tick, plus a periodic pass for timeouts and retries. Only the leader writes.
 */
import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import { Counter, Gauge, Histogram, type Metric, type Registry } from 'prom-client';
import { ErrorCode, errorMessage, ReadygateError } from '../errors.js';
import { withDeadline } from '../net.js';
import { silentLogger, type Logger } from '../log.js';
import { READINESS_GATE_CONDITION, type GatedPod, type PodGateIndex } from '../sources/kubernetes-pods.js';
import { statusOf } from '../sources/kubernetes-watch.js';
import type { SyncStatus } from '../xds/sync-status.js';
import { askPeers, type PeerList, type PeerResult } from './peers.js';
import type { RoutingHistory } from './routing-history.js';
import { gateVerdict, requireProxies, type Verdict } from './verdicts.js';

export const GateReason = {
  SYNCED: 'EnvoysSynced',
  TIMEOUT: 'EnvoySyncTimeout',
} as const;

export interface GateCondition {
  readonly status: 'True' | 'False';
  readonly reason: string;
  readonly message: string;
}

/** Writes readygate's condition on a pod's status; injectable so unit tests need no apiserver. */
export type PodStatusPatcher = (pod: GatedPod, condition: GateCondition) => Promise<void>;

export interface ReadinessGateControllerOptions {
  readonly pods: PodGateIndex;
  readonly history: RoutingHistory;
  readonly sync: SyncStatus;
  /** Who may write; e.g. a LeaderElector. Absent = always (a single replica). */
  readonly leadership?: { readonly leader: boolean };
  readonly patcher: PodStatusPatcher;
  readonly logger?: Logger;
  readonly registry?: Registry;
  /** How long a pod may wait for Envoys after its containers are ready before the timeout policy applies. */
  readonly timeoutMs?: number;
  /** Turn the gate True at the timeout instead of reporting False and waiting on (default false). */
  readonly flipOnTimeout?: boolean;
  /**
   * Right after start, Envoys may not have reconnected yet, and "every connected Envoy" would be too few:
   * no gate turns True during this window.
   */
  readonly startupGraceMs?: number;
  /** Periodic pass for timeouts and patch retries. */
  readonly resyncMs?: number;
  /**
   * Other readygate replicas (src/readiness/peers.ts): their Envoys must agree too before a gate turns
   * True, since each Envoy streams from one replica only. Absent = this replica sees every Envoy.
   */
  readonly peers?: PeerList;
  /**
   * Envoys that must have ACKed a version routing to the pod, counted across all replicas (default 1):
   * with no Envoy connected, "every Envoy agrees" is vacuous and must not turn a gate True.
   */
  readonly minProxies?: number;
}

export const DEFAULT_GATE_TIMEOUT_MS = 120_000;
export const DEFAULT_GATE_MIN_PROXIES = 1;

interface PodState {
  /** Local time the pod was first seen with ready containers (the timeout clock; skew-free). */
  readonly since: number;
  /** ContainersReady lastTransitionTime when the pod said, else `since` (the time-to-gate metric). */
  readonly readySince: number;
  uid: string | undefined;
  verdict: Verdict | undefined;
  timedOut: boolean;
  /** What was last written, so nothing is written twice. */
  written: 'True' | 'False' | undefined;
  inflight: boolean;
  retryAt: number;
  failures: number;
  /** The peers' answer for this pod and when it arrived (asked only once the local verdict is ok). */
  peer: { result: PeerResult; at: number } | undefined;
  peerInflight: boolean;
}

export interface GateView {
  readonly pod: string;
  readonly gate: 'True' | 'pending' | 'waiting-for-containers' | 'terminating';
  readonly waitingSeconds?: number;
  readonly timedOut?: boolean;
  readonly verdict?: Verdict;
}

export class ReadinessGateController {
  readonly #options: ReadinessGateControllerOptions;
  readonly #logger: Logger;
  readonly #timeoutMs: number;
  readonly #startedAt = Date.now();
  readonly #state = new Map<string, PodState>();
  readonly #metrics: GateMetrics | undefined;
  readonly #unsubscribe: (() => void)[] = [];
  #scheduled: NodeJS.Immediate | undefined;
  #interval: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: ReadinessGateControllerOptions) {
    this.#options = options;
    this.#logger = (options.logger ?? silentLogger).child({ component: 'readiness-gates' });
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_GATE_TIMEOUT_MS;
    this.#metrics = options.registry
      ? new GateMetrics(options.registry, () => this.#pendingCount())
      : undefined;
  }

  start(): this {
    const schedule = (): void => {
      this.schedule();
    };
    const { sync, history, pods } = this.#options;
    for (const event of ['ack', 'nack', 'connect', 'disconnect'] as const) {
      sync.on(event, schedule);
      this.#unsubscribe.push(() => sync.off(event, schedule));
    }
    this.#unsubscribe.push(history.onChange(schedule), pods.onChange(schedule));
    this.#interval = setInterval(schedule, this.#options.resyncMs ?? 1000);
    this.#interval.unref();
    this.schedule();
    return this;
  }

  close(): void {
    this.#closed = true;
    for (const off of this.#unsubscribe.splice(0)) off();
    clearInterval(this.#interval);
    if (this.#scheduled) clearImmediate(this.#scheduled);
  }

  /** Re-evaluates all gated pods in the next tick (coalesced). */
  schedule(): void {
    if (this.#closed) return;
    this.#scheduled ??= setImmediate(() => {
      this.#scheduled = undefined;
      try {
        this.evaluate();
      } catch (error) {
        this.#logger.error({ err: errorMessage(error) }, 'readiness-gate evaluation failed');
      }
    });
  }

  /** The /debug/gates view. */
  views(): GateView[] {
    const now = Date.now();
    return this.#options.pods
      .list()
      .map((pod): GateView => {
        if (pod.gateTrue) return { pod: pod.key, gate: 'True' };
        if (pod.terminating || pod.finished) return { pod: pod.key, gate: 'terminating' };
        const state = this.#state.get(pod.key);
        if (!pod.gatePending || !state) return { pod: pod.key, gate: 'waiting-for-containers' };
        return {
          pod: pod.key,
          gate: 'pending',
          waitingSeconds: Math.round((now - state.since) / 100) / 10,
          timedOut: state.timedOut,
          ...(state.verdict ? { verdict: state.verdict } : {}),
        };
      })
      .sort((a, b) => (a.pod < b.pod ? -1 : a.pod > b.pod ? 1 : 0));
  }

  evaluate(): void {
    if (this.#closed) return;
    const now = Date.now();
    const { pods, history, sync } = this.#options;
    const leader = this.#options.leadership?.leader ?? true;
    const inGrace = now - this.#startedAt < (this.#options.startupGraceMs ?? 0);
    const seen = new Set<string>();
    const streams = sync.streams;
    for (const pod of pods.list()) {
      if (pod.gateTrue || !pod.gatePending) continue;
      seen.add(pod.key);
      let state = this.#state.get(pod.key);
      if (!state || state.uid !== pod.uid) {
        state = {
          since: now,
          readySince: Math.min(now, pod.containersReadySince ?? now),
          uid: pod.uid,
          verdict: undefined,
          timedOut: false,
          written: undefined,
          inflight: false,
          retryAt: 0,
          failures: 0,
          peer: undefined,
          peerInflight: false,
        };
        this.#state.set(pod.key, state);
      }
      const verdict = requireProxies(
        this.#withPeers(pod, state, gateVerdict(pod.key, history, streams), now),
        this.#options.minProxies ?? DEFAULT_GATE_MIN_PROXIES,
      );
      state.verdict = verdict;
      if (inGrace) continue;
      if (verdict.ok) {
        if (leader)
          this.#write(pod, state, now, {
            status: 'True',
            reason: GateReason.SYNCED,
            message: syncedMessage(verdict),
          });
        continue;
      }
      if (now - state.since < this.#timeoutMs) continue;
      if (!state.timedOut) {
        state.timedOut = true;
        this.#metrics?.timeouts.inc();
        this.#logger.warn(
          {
            pod: pod.key,
            waitingOn: verdict.waitingOn,
            nackedBy: verdict.nackedBy,
            reason: verdict.reason,
            flipOnTimeout: this.#options.flipOnTimeout ?? false,
          },
          `readiness gate of ${pod.key} timed out after ${Math.round(this.#timeoutMs / 1000)}s waiting for ` +
            (verdict.reason === 'not-routed'
              ? 'the pod to appear in a cluster'
              : verdict.reason === 'too-few-proxies'
                ? `Envoys: ${this.#tooFew(verdict)}`
                : `Envoys: ${verdict.waitingOn.join(', ')}`),
        );
      }
      if (!leader) continue;
      if (this.#options.flipOnTimeout) {
        this.#write(pod, state, now, {
          status: 'True',
          reason: GateReason.TIMEOUT,
          message: waitingMessage(verdict, true, this.#options.minProxies ?? DEFAULT_GATE_MIN_PROXIES),
        });
      } else {
        this.#write(pod, state, now, {
          status: 'False',
          reason: GateReason.TIMEOUT,
          message: waitingMessage(verdict, false, this.#options.minProxies ?? DEFAULT_GATE_MIN_PROXIES),
        });
      }
    }
    for (const key of this.#state.keys()) if (!seen.has(key)) this.#state.delete(key);
  }

  /** The local verdict, joined with the peers' once it is ok locally (asking them as needed). */
  #withPeers(pod: GatedPod, state: PodState, local: Verdict, now: number): Verdict {
    const peers = this.#options.peers;
    if (!peers || !local.ok) return local;
    const freshFor = this.#options.resyncMs ?? 1000;
    if ((!state.peer || now - state.peer.at > freshFor) && !state.peerInflight) {
      state.peerInflight = true;
      void askPeers(peers, 'gate', pod.key).then((result) => {
        state.peer = { result, at: Date.now() };
        state.peerInflight = false;
        this.schedule();
      });
    }
    const peer = state.peer;
    if (!peer || now - peer.at > freshFor * 2) {
      return { ...local, ok: false, waitingOn: ['(asking peer replicas)'] };
    }
    return {
      ...local,
      ok: peer.result.ok,
      waitingOn: [...new Set([...local.waitingOn, ...peer.result.waitingOn])].sort(),
      nackedBy: [...new Set([...local.nackedBy, ...peer.result.nackedBy])].sort(),
      ackedBy: [...new Set([...local.ackedBy, ...peer.result.ackedBy])].sort(),
    };
  }

  #tooFew(verdict: Verdict): string {
    return tooFewText(verdict, this.#options.minProxies ?? DEFAULT_GATE_MIN_PROXIES);
  }

  #write(pod: GatedPod, state: PodState, now: number, condition: GateCondition): void {
    if (state.inflight || state.written === condition.status || now < state.retryAt) return;
    state.inflight = true;
    this.#options
      .patcher(pod, condition)
      .then(
        () => {
          state.written = condition.status;
          state.failures = 0;
          if (condition.status === 'True') {
            const seconds = Math.max(0, (Date.now() - state.readySince) / 1000);
            this.#metrics?.flips.inc({ reason: condition.reason });
            this.#metrics?.timeToGate.observe(seconds);
            this.#logger.info(
              { pod: pod.key, reason: condition.reason, seconds: Math.round(seconds * 1000) / 1000 },
              `readiness gate of ${pod.key} set True: ${condition.message}`,
            );
          }
        },
        (error: unknown) => {
          const status = statusOf(error);
          this.#metrics?.patchErrors.inc();
          if (status === 404 || status === 409 || status === 422) {
            // Gone, or replaced by a pod of the same name (UID precondition): the watch will tell what is next.
            this.#logger.info(
              { pod: pod.key, status, err: errorMessage(error) },
              'pod changed before its gate was written',
            );
            state.retryAt = Date.now() + 1000;
            return;
          }
          state.failures += 1;
          state.retryAt = Date.now() + Math.min(30_000, 500 * 2 ** Math.min(state.failures, 6));
          const fields = { pod: pod.key, status, err: errorMessage(error) };
          if (status === 401 || status === 403)
            this.#logger.error(
              fields,
              'cannot patch pods/status: readygate needs `patch` on pods/status (RBAC)',
            );
          else this.#logger.warn(fields, 'cannot write the readiness-gate condition; retrying');
        },
      )
      .finally(() => {
        state.inflight = false;
        this.schedule();
      });
  }

  #pendingCount(): number {
    let count = 0;
    for (const pod of this.#options.pods.list())
      if (!pod.gateTrue && !pod.terminating && !pod.finished) count += 1;
    return count;
  }
}

function syncedMessage(verdict: Verdict): string {
  return `every subscribed Envoy (${verdict.ackedBy.length}) ACKed an EDS version routing to the pod (clusters: ${verdict.clusters.join(', ')})`;
}

function tooFewText(verdict: Verdict, minProxies: number): string {
  return `${verdict.ackedBy.length} connected Envoy(s) ACKed the pod, --gate-min-proxies wants ${minProxies}`;
}

function waitingMessage(verdict: Verdict, flipped: boolean, minProxies: number): string {
  const what =
    verdict.reason === 'not-routed'
      ? 'the pod is in no cluster readygate serves'
      : verdict.reason === 'too-few-proxies'
        ? tooFewText(verdict, minProxies)
        : `waiting on Envoys: ${verdict.waitingOn.join(', ')}` +
          (verdict.nackedBy.length > 0 ? ` (rejecting config: ${verdict.nackedBy.join(', ')})` : '');
  return `${flipped ? 'timed out, set True by policy (flipOnTimeout)' : 'timed out, still waiting'}: ${what}`.slice(
    0,
    1000,
  );
}

/**
 * How long a pods/status patch may take. client-node's calls have no deadline of their own: a hung API
 * server would leave the patch, and the gate it sets, pending forever. A timed-out patch fails like any
 * other and is retried by the periodic pass.
 */
export const POD_STATUS_PATCH_DEADLINE_MS = 10_000;

/** The patcher readygate uses: strategic-merge PATCH on pods/status, UID as a precondition. */
export function kubernetesPodStatusPatcher(
  kubeConfig: KubeConfig,
  deadlineMs = POD_STATUS_PATCH_DEADLINE_MS,
): PodStatusPatcher {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  return async (pod, condition) => {
    const body = {
      // A uid in the patch is checked against the stored object: a recreated pod of the same name is not touched.
      metadata: pod.uid ? { uid: pod.uid } : {},
      status: {
        // Strategic merge keys status.conditions by `type`: only readygate's condition is written.
        conditions: [
          {
            type: READINESS_GATE_CONDITION,
            status: condition.status,
            reason: condition.reason,
            message: condition.message,
            lastTransitionTime: new Date().toISOString(),
            lastProbeTime: null,
          },
        ],
      },
    };
    const what = `patching pods/status of ${pod.namespace}/${pod.name}`;
    await withDeadline(
      core.patchNamespacedPodStatus(
        { name: pod.name, namespace: pod.namespace, body },
        setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
      ),
      deadlineMs,
      what,
      () =>
        new ReadygateError(ErrorCode.KUBERNETES_UNAVAILABLE, `${what}: no answer within ${deadlineMs} ms`),
    );
  };
}

function metric<M extends Metric>(registry: Registry, name: string, create: () => M): M {
  return (registry.getSingleMetric(name) as M | undefined) ?? create();
}

class GateMetrics {
  readonly flips: Counter<'reason'>;
  readonly timeouts: Counter;
  readonly patchErrors: Counter;
  readonly timeToGate: Histogram;

  constructor(registry: Registry, pending: () => number) {
    this.flips = metric(
      registry,
      'readygate_readiness_gate_flips_total',
      () =>
        new Counter({
          name: 'readygate_readiness_gate_flips_total',
          help: 'Readiness-gate conditions set True, by reason (EnvoysSynced, or EnvoySyncTimeout with flipOnTimeout).',
          labelNames: ['reason'],
          registers: [registry],
        }),
    );
    this.timeouts = metric(
      registry,
      'readygate_readiness_gate_timeouts_total',
      () =>
        new Counter({
          name: 'readygate_readiness_gate_timeouts_total',
          help: 'Gated pods whose Envoys did not all ACK them within the gate timeout.',
          registers: [registry],
        }),
    );
    this.patchErrors = metric(
      registry,
      'readygate_readiness_gate_patch_errors_total',
      () =>
        new Counter({
          name: 'readygate_readiness_gate_patch_errors_total',
          help: 'Failed pods/status patches.',
          registers: [registry],
        }),
    );
    this.timeToGate = metric(
      registry,
      'readygate_readiness_gate_seconds',
      () =>
        new Histogram({
          name: 'readygate_readiness_gate_seconds',
          help: 'From ContainersReady to the readiness gate set True.',
          buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120],
          registers: [registry],
        }),
    );
    const current = registry.getSingleMetric('readygate_readiness_gate_pending_pods');
    if (current) registry.removeSingleMetric('readygate_readiness_gate_pending_pods');
    new Gauge({
      name: 'readygate_readiness_gate_pending_pods',
      help: 'Gated pods whose readygate condition is not True yet (terminating pods excluded).',
      registers: [registry],
      collect() {
        this.set(pending());
      },
    });
  }
}
