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
   * terminationGracePeriodSeconds as the app uses it: after SIGTERM it keeps serving (in-flight and new
   * requests, as with a preStop sleep) for this long, then closes its listener and exits.
   */
  readonly graceMs: number;
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

/** `npm run demo`: slow enough to watch, well under two minutes with both setups run side by side. */
export const FULL_TIMING: DemoTiming = Object.freeze({
  rate: 200,
  concurrency: 128,
  requestTimeoutMs: 10_000,
  replicas: 3,
  bootMs: 400,
  warmupMs: 1500,
  slowWarmupMs: 5000,
  probePeriodMs: 1000,
  probeTimeoutMs: 1000,
  probeFailureThreshold: 3,
  exitNoticeMs: 1000,
  graceMs: 5000,
  podGoneMs: 1000,
  crashHoldMs: 300,
  restartDelayMs: 1000,
  outageMs: 3000,
  settleMs: 2000,
  waitTimeoutMs: 30_000,
});

/**
 * `--short` (the integration test): the same script with every delay scaled down. The probe period is
 * below Kubernetes' 1 s minimum; the ordering of events — which is all the comparison depends on — is
 * unchanged, since the grace period still outlasts the failing probes plus an xDS push by a wide margin.
 */
export const SHORT_TIMING: DemoTiming = Object.freeze({
  rate: 200,
  concurrency: 128,
  requestTimeoutMs: 5000,
  replicas: 3,
  bootMs: 200,
  warmupMs: 700,
  slowWarmupMs: 2000,
  probePeriodMs: 400,
  probeTimeoutMs: 1000,
  probeFailureThreshold: 3,
  exitNoticeMs: 400,
  graceMs: 2000,
  podGoneMs: 500,
  crashHoldMs: 300,
  restartDelayMs: 400,
  outageMs: 1500,
  settleMs: 800,
  waitTimeoutMs: 20_000,
});

export const PHASES = ['baseline', 'rollout', 'slow-start', 'crash', 'outage'] as const;
export type PhaseName = (typeof PHASES)[number];

export const PHASE_TITLES: Readonly<Record<PhaseName, string>> = {
  baseline: 'steady state',
  rollout: 'rolling update',
  'slow-start': 'slow-start replica',
  crash: 'crash mid-request',
  outage: 'total outage + recovery',
};
