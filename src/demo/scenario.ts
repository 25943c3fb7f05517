/**
 * The script, run against one setup under constant load: steady state, a rolling update the way a
 * Deployment with maxSurge 1 / maxUnavailable 0 does it, a slow-starting extra replica, every replica
 * replaced while one gateway applies updates late, a crash mid-request, and a total outage with recovery.
 * Every step is a Kubernetes event in the simulated cluster (or, once, the slow gateway's delay); nothing
 * here knows which setup it drives.
 */
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode, ReadygateError } from '../errors.js';
import { PolicyKey } from '../model/policy.js';
import type { ClusterEvent, ColdWindow, Pod, PreStopRun } from './cluster.js';
import type { Gateway } from './gateway.js';
import { startLoad } from './load.js';
import type { Sample } from './tally.js';
import type { DemoTiming, PhaseName } from './timing.js';

const SLOW_START_KEY = PolicyKey.SLOW_START;

export interface PhaseMark {
  readonly phase: PhaseName;
  /** ms since this side's origin (its load start). */
  readonly startMs: number;
  readonly endMs: number;
}

export interface ScenarioRun {
  readonly samples: readonly Sample[];
  readonly marks: readonly PhaseMark[];
  readonly events: readonly ClusterEvent[];
  /** Every preStop hook run, with the phase it started in. */
  readonly preStops: readonly (PreStopRun & { readonly phase: PhaseName })[];
  /** App requests the crashing container received and never answered (each reached the app). */
  readonly crashHeldRequests: number;
  /** Requests due but not sent because the concurrency cap was reached. */
  readonly skipped: number;
  /** The slow-start replicas' cold periods, in order: without, then with the slow-start annotation. */
  readonly coldWindows: readonly ColdWindow[];
}

export interface ScenarioOptions {
  readonly gateway: Gateway;
  readonly timing: DemoTiming;
  readonly signal: AbortSignal;
  /** Upper bound on the whole load run. */
  readonly maxLoadMs: number;
  readonly onPhase?: (phase: PhaseName) => void;
}

export async function runScenario(options: ScenarioOptions): Promise<ScenarioRun> {
  const { gateway, timing, signal } = options;
  const { cluster } = gateway;

  // The Deployment before the demo starts: all replicas up, ready, and routed to.
  const initial: Pod[] = [];
  for (let i = 0; i < timing.replicas; i++) initial.push(await cluster.createPod());
  for (const pod of initial) await cluster.waitReady(pod, signal);
  await waitRoutable(gateway, timing, signal);

  gateway.resetClock();
  const origin = performance.now();
  const now = (): number => performance.now() - origin;
  let phase: PhaseName = 'baseline';
  const marks: { phase: PhaseName; startMs: number; endMs: number }[] = [];
  const enter = (next: PhaseName): void => {
    const at = Math.round(now());
    const open = marks.at(-1);
    if (open) open.endMs = at;
    marks.push({ phase: next, startMs: at, endMs: at });
    phase = next;
    options.onPhase?.(next);
  };
  enter('baseline');
  const load = startLoad({
    host: '127.0.0.1',
    ports: gateway.envoys.map((envoy) => envoy.listenerPort),
    rate: timing.rate,
    concurrency: timing.concurrency,
    requestTimeoutMs: timing.requestTimeoutMs,
    maxDurationMs: options.maxLoadMs,
    origin,
    phase: () => phase,
  });
  /**
   * A phase's first event waits until every request sent in the phase before has been answered: requests
   * are counted in the phase they were sent in, so an event (a crash holds and then cuts whatever reaches
   * the pod from that moment) must not reach back into requests of the phase before. On a starved machine
   * those take hundreds of ms; this wait is bounded by the client's request timeout.
   */
  const begin = async (next: PhaseName): Promise<void> => {
    enter(next);
    await load.answered();
    signal.throwIfAborted();
  };
  try {
    const settle = (): Promise<void> => sleep(timing.settleMs, undefined, { signal });
    await settle();

    await begin('rollout');
    const old = cluster.livePods;
    for (const pod of old) {
      const fresh = await cluster.createPod();
      await cluster.waitReady(fresh, signal);
      cluster.deletePod(pod);
    }
    await cluster.waitGone(old, signal);
    await settle();

    // The slow-start replica twice, the same pod under the same load: first as the Service is, then with
    // `readygate.io/slow-start` set to its cold period, so the two phases differ only in the annotation.
    const addColdReplica = async (): Promise<void> => {
      const slow = await cluster.createPod({ warmupMs: timing.slowWarmupMs, cold: true });
      await cluster.waitReady(slow, signal);
      // Ready comes after the warm-up, so this outlasts the cold period.
      await sleep(timing.coldMs, undefined, { signal });
    };
    await begin('slow-start');
    await addColdReplica();
    await settle();

    await begin('slow-start-ramped');
    cluster.annotateService({ [SLOW_START_KEY]: `${timing.coldMs}ms` });
    // The policy change replaces the Envoy cluster, and a new cluster starts every host's slow-start clock
    // at its first request (docs/policy.md): the replica must arrive after those ramps are over, or it
    // ramps alongside the others instead of against them.
    await sleep(timing.coldMs, undefined, { signal });
    await addColdReplica();
    // The later phases run on the Service as it was.
    cluster.annotateService(undefined);
    await settle();

    await begin('slow-propagation');
    // From here on the slow gateway applies every update slowPropagationMs late. Every replica is replaced
    // at once (maxSurge 100 %), so nothing in that gateway's stale view outlives its preStop: retries on
    // another host cannot hide what a too-short preStop does.
    gateway.setSlowPropagation(timing.slowPropagationMs);
    const stale = cluster.livePods;
    const fresh: Pod[] = [];
    for (let i = 0; i < stale.length; i++) fresh.push(await cluster.createPod());
    for (const pod of fresh) await cluster.waitReady(pod, signal);
    for (const pod of stale) cluster.deletePod(pod);
    await cluster.waitGone(stale, signal);
    gateway.setSlowPropagation(0);
    // The phase lasts until the slow gateway has been sent everything queued for it (its last update, the
    // removal, can still be slowPropagationMs away): what it does until then belongs to this phase.
    await gateway.slowPropagationDone(signal);
    await settle();

    await begin('crash');
    const victim = cluster.livePods[0];
    if (!victim) throw new ReadygateError(ErrorCode.WAIT_TIMEOUT, 'demo: no pod left to crash');
    cluster.crashPod(victim);
    await cluster.waitUnready(victim, signal);
    await cluster.waitReady(victim, signal);
    await settle();

    await begin('outage');
    const everyone = cluster.livePods;
    for (const pod of everyone) cluster.deletePod(pod);
    await cluster.waitGone(everyone, signal);
    await sleep(timing.outageMs, undefined, { signal });
    const replacements: Pod[] = [];
    for (let i = 0; i < timing.replicas; i++) replacements.push(await cluster.createPod());
    for (const pod of replacements) await cluster.waitReady(pod, signal);
    await settle();
  } finally {
    const open = marks.at(-1);
    if (open) open.endMs = Math.round(now());
    await load.stop();
  }
  const phaseAt = (ms: number): PhaseName =>
    [...marks].reverse().find((mark) => mark.startMs <= ms)?.phase ?? 'baseline';
  return {
    samples: load.samples,
    marks,
    events: cluster.events,
    preStops: cluster.preStops.map((run) => ({ ...run, phase: phaseAt(run.startMs) })),
    crashHeldRequests: cluster.crashHeldRequests,
    skipped: load.skipped(),
    coldWindows: cluster.coldWindows,
  };
}

/**
 * Before the clock starts: the gateway answers 200 several times in a row, so the steady-state phase
 * measures the steady state and not Envoy still receiving its first endpoints.
 */
async function waitRoutable(gateway: Gateway, timing: DemoTiming, signal: AbortSignal): Promise<void> {
  const deadline = performance.now() + timing.waitTimeoutMs;
  let streak = 0;
  const ports = gateway.envoys.map((envoy) => envoy.listenerPort);
  while (streak < 10 * ports.length) {
    signal.throwIfAborted();
    if (performance.now() > deadline) {
      throw new ReadygateError(
        ErrorCode.WAIT_TIMEOUT,
        `demo: the ${gateway.kind} gateway did not route to its pods within ${timing.waitTimeoutMs} ms`,
      );
    }
    const status = await getStatus(ports[streak % ports.length] ?? 0);
    streak = status === 200 ? streak + 1 : 0;
    if (status !== 200) await sleep(50, undefined, { signal });
  }
}

function getStatus(port: number): Promise<number> {
  return new Promise((resolve) => {
    const request = http.get(
      { host: '127.0.0.1', port, path: '/', agent: false, timeout: 2000 },
      (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      },
    );
    request.once('timeout', () => request.destroy());
    request.on('error', () => {
      resolve(0);
    });
  });
}
