/**
 * Every delay the demo's simulated Kubernetes and backends use, in one place so docs/demo.md can cite
 * them and both setups are driven by exactly the same numbers. Pure data.
 */

export interface DemoTiming {
  /** Requests per second each setup's load generator sends (open loop). */
  readonly rate: number;
  /** Most requests one load generator keeps in flight; beyond it a due request is counted as skipped. */
  readonly concurrency: number;
  /** Client-side timeout of one request. */
  readonly requestTimeoutMs: number;
  /** Replicas of the Deployment. */
  readonly replicas: number;
  /** Container start to listening socket (runtime boot); connections are refused before. */
  readonly bootMs: number;
  /** Listening to warm: until then app requests get 503 and the readiness check fails. */
  readonly warmupMs: number;
  /** Warm-up of the slow-start replica (a JVM-like service filling caches). */
  readonly slowWarmupMs: number;
  /**
   * After its warm-up the slow-start replica is ready but still cold (JIT, caches): for this long its
   * answers take longer, by `coldLatencyMs` at first, falling linearly to nothing. It is also the
   * `readygate.io/slow-start` window the Service carries in the second slow-start phase.
   */
  readonly coldMs: number;
  /** Extra latency of the cold replica's first answer (see `coldMs`). */
  readonly coldLatencyMs: number;
  /** The kubelet's readiness probe period (periodSeconds). */
  readonly probePeriodMs: number;
  /** Probe timeout (timeoutSeconds; Kubernetes' default is 1 s). */
  readonly probeTimeoutMs: number;
  /**
   * Consecutive failed probes before a ready container counts as not ready (failureThreshold; Kubernetes'
   * default is 3). One passing probe makes it ready (successThreshold 1).
   */
  readonly probeFailureThreshold: number;
  /** Container exit to the kubelet marking it not ready (the PLEG relist; no probe involved). */
  readonly exitNoticeMs: number;
  /**
   * The fixed `preStop: sleep` of setups (a) and (b): a deleted pod keeps serving, in-flight and new
   * requests, for this long before SIGTERM; the app then closes its listener, lets in-flight requests
   * finish and exits. readygate's pods run drain-wait instead, which ends on the last Envoy's ACK.
   */
  readonly preStopSleepMs: number;
  /** Bound on readygate's drain-wait preStop (its `--timeout`); the grace period covers it. */
  readonly drainWaitTimeoutMs: number;
  /**
   * How late the slow gateway applies xDS updates during the slow-propagation phase (a delay line in
   * front of its ADS stream, src/demo/delay-line.ts). Longer than `preStopSleepMs`, on purpose.
   */
  readonly slowPropagationMs: number;
  /** Container exit to the Pod object being deleted (kubelet status sync + API delete). */
  readonly podGoneMs: number;
  /** How long the crashing replica holds the requests it received before it dies. */
  readonly crashHoldMs: number;
  /** Crash to the restarted container starting (the first restart has no back-off). */
  readonly restartDelayMs: number;
  /** How long the service stays with no pod at all before the replacements are created. */
  readonly outageMs: number;
  /** Steady load before the first phase and after each phase's last event. */
  readonly settleMs: number;
  /** Bound on any single wait (a pod becoming ready, pods going away). */
  readonly waitTimeoutMs: number;
}

/**
 * `npm run demo`: slow enough to watch; the three setups run side by side. `preStop: sleep 5` and a
 * gateway 7 s behind are the numbers the comparison is about.
 */
export const FULL_TIMING: DemoTiming = Object.freeze({
  rate: 200,
  concurrency: 128,
  requestTimeoutMs: 10_000,
  replicas: 3,
  bootMs: 400,
  warmupMs: 1500,
  slowWarmupMs: 5000,
  coldMs: 4000,
  coldLatencyMs: 300,
  probePeriodMs: 1000,
  probeTimeoutMs: 1000,
  probeFailureThreshold: 3,
  exitNoticeMs: 1000,
  preStopSleepMs: 5000,
  drainWaitTimeoutMs: 20_000,
  slowPropagationMs: 7000,
  podGoneMs: 1000,
  crashHoldMs: 300,
  restartDelayMs: 1000,
  outageMs: 3000,
  settleMs: 2000,
  waitTimeoutMs: 30_000,
});

/**
 * `--short` (the integration test): the same script with every delay scaled down, and half the rate:
 * three setups, six Envoys and one Node.js process for every app, control plane and client share the
 * machine, and the test must hold on a heavily shared one. The probe period is
 * below Kubernetes' 1 s minimum; the ordering of events — which is all the comparison depends on — is
 * unchanged: the preStop sleep still outlasts an xDS push by a wide margin, and the slow gateway is still
 * behind by more than the sleep (3.5 s against 2 s), which is the one inequality the slow-propagation
 * phase is about.
 */
export const SHORT_TIMING: DemoTiming = Object.freeze({
  rate: 100,
  concurrency: 128,
  requestTimeoutMs: 5000,
  replicas: 3,
  bootMs: 200,
  warmupMs: 700,
  slowWarmupMs: 2000,
  coldMs: 1500,
  coldLatencyMs: 300,
  probePeriodMs: 400,
  probeTimeoutMs: 1000,
  probeFailureThreshold: 3,
  exitNoticeMs: 400,
  preStopSleepMs: 2000,
  drainWaitTimeoutMs: 7000,
  slowPropagationMs: 3500,
  podGoneMs: 500,
  crashHoldMs: 300,
  restartDelayMs: 400,
  outageMs: 1500,
  settleMs: 800,
  waitTimeoutMs: 20_000,
});

export const PHASES = [
  'baseline',
  'rollout',
  'slow-start',
  'slow-start-ramped',
  'slow-propagation',
  'crash',
  'outage',
] as const;
export type PhaseName = (typeof PHASES)[number];

export const PHASE_TITLES: Readonly<Record<PhaseName, string>> = {
  baseline: 'steady state',
  rollout: 'rolling update',
  'slow-start': 'slow-start replica',
  'slow-start-ramped': 'the same, with slow-start',
  'slow-propagation': 'slow gateway, all replaced',
  crash: 'crash mid-request',
  outage: 'total outage + recovery',
};
