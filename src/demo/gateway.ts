/**
 * One setup of the comparison, assembled: an endpoint store fed from the simulated cluster's slice, a
 * control plane serving it over ADS, two real Envoys in front (gateway replicas; the second reaches the
 * control plane through a delay line, so it can be made slow), and what the setup's pods do when deleted.
 * Every setup uses readygate's xDS server as the transport; what differs is what goes into the store
 * (slice.ts), the Envoy bootstrap (bootstrap.ts) and, for readygate, the readiness gate, drain-wait as
 * the preStop hook and the ext_proc server.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { waitForDrain } from '../drain/wait.js';
import { ErrorCode, ReadygateError } from '../errors.js';
import { startExtprocServer, type ExtprocServer } from '../extproc/server.js';
import type { Logger } from '../log.js';
import { EndpointStore } from '../model/store.js';
import { clusterName } from '../model/types.js';
import { DEFAULT_GATE_MIN_PROXIES } from '../readiness/readiness-gate-controller.js';
import { RoutingHistory } from '../readiness/routing-history.js';
import { gateVerdict, requireProxies } from '../readiness/verdicts.js';
import { startControlPlane, type ControlPlane } from '../xds/control-plane.js';
import { demoBootstrap } from './bootstrap.js';
import { SimulatedCluster, type Pod } from './cluster.js';
import { startDelayLine, type DelayLine } from './delay-line.js';
import { runEnvoy, type RunningEnvoy } from './envoy-runner.js';
import { DEMO_NAMESPACE, DEMO_PORT_NAME, DEMO_SERVICE, serviceFor, type GatewayKind } from './slice.js';
import type { DemoTiming } from './timing.js';

export const DEMO_CLUSTER = clusterName({ namespace: DEMO_NAMESPACE, name: DEMO_SERVICE }, DEMO_PORT_NAME);

/** Pod addresses per setup, 100 apart on 127.0.0.x (a run creates far fewer than 60 pods). */
const FIRST_HOST: Readonly<Record<GatewayKind, number>> = { naive: 20, 'ready-only': 80, readygate: 140 };

/** The two gateway replicas of every setup: index 0 is always prompt, index 1 is the one made slow. */
export const GATEWAY_NAMES = ['fast', 'slow'] as const;

export interface Gateway {
  readonly kind: GatewayKind;
  readonly cluster: SimulatedCluster;
  /** In GATEWAY_NAMES order. */
  readonly envoys: readonly RunningEnvoy[];
  /** ext_proc metrics (readygate only). */
  readonly registry: Registry;
  /** Delays every xDS update to the slow gateway by `ms` from now on (0: prompt again). */
  setSlowPropagation(ms: number): void;
  /** Resolves once the slow gateway has been sent every update held for it (bounded by the wait timeout). */
  slowPropagationDone(signal: AbortSignal): Promise<void>;
  /** Sets time zero for this side (when its load starts). */
  resetClock(): void;
  close(): Promise<void>;
}

export interface GatewayOptions {
  readonly kind: GatewayKind;
  readonly timing: DemoTiming;
  readonly envoyBinary: string;
  readonly logger: Logger;
  readonly signal: AbortSignal;
}

const podKey = (pod: Pod): string => `${DEMO_NAMESPACE}/${pod.name}`;

export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const { kind, timing } = options;
  const store = new EndpointStore();
  store.upsert(serviceFor([], kind));
  store.markSynced();
  const registry = new Registry();
  const closing = new AbortController();
  let plane: ControlPlane | undefined;
  let history: RoutingHistory | undefined;
  let gates: GateKeeper | undefined;
  let extproc: ExtprocServer | undefined;
  let delayLine: DelayLine | undefined;
  const envoys: RunningEnvoy[] = [];
  let origin = performance.now();

  const drainWait = async (pod: Pod): Promise<void> => {
    if (!plane || !history) throw new ReadygateError(ErrorCode.WAIT_TIMEOUT, 'demo: no control plane');
    const result = await waitForDrain(
      { sync: plane.sync, history },
      podKey(pod),
      timing.drainWaitTimeoutMs,
      closing.signal,
    );
    if (!result.ok) {
      // As `readygate drain-wait` exits 1: the kubelet records the failed hook and sends SIGTERM anyway.
      throw new ReadygateError(
        ErrorCode.WAIT_TIMEOUT,
        `drain-wait timed out after ${timing.drainWaitTimeoutMs} ms, Envoys still routing: ${result.waitingOn.join(', ') || 'none connected'}`,
      );
    }
  };
  const preStopSleep = async (): Promise<void> => {
    await sleep(timing.preStopSleepMs, undefined, { signal: closing.signal });
  };

  const cluster = new SimulatedCluster({
    label: { naive: 'nv', 'ready-only': 'ro', readygate: 'rg' }[kind],
    timing,
    addressPrefix: '127.0.0',
    firstHost: FIRST_HOST[kind],
    now: () => performance.now() - origin,
    onSlice: (entries, annotations) => {
      store.upsert(serviceFor(entries, kind, annotations));
      gates?.schedule();
    },
    gated: kind === 'readygate',
    preStop: kind === 'readygate' ? drainWait : preStopSleep,
  });
  const close = async (): Promise<void> => {
    closing.abort();
    gates?.close();
    // Envoys first, so nothing is routed to backends being torn down and no stream outlives its server.
    await Promise.allSettled(envoys.map((envoy) => envoy.stop()));
    await Promise.allSettled([cluster.close(), extproc?.close(), delayLine?.close(), plane?.close()]);
  };
  try {
    plane = await startControlPlane({ store, xdsAddress: '127.0.0.1:0', logger: options.logger });
    if (kind === 'readygate') {
      history = new RoutingHistory();
      history.follow(plane.cache);
      gates = new GateKeeper(cluster, plane, history);
      extproc = await startExtprocServer({ address: '127.0.0.1:0', logger: options.logger, registry });
    }
    delayLine = await startDelayLine({ host: '127.0.0.1', port: plane.port });
    const xdsPorts = [plane.port, delayLine.port];
    const started = await Promise.allSettled(
      GATEWAY_NAMES.map((name, index) =>
        runEnvoy({
          binary: options.envoyBinary,
          bootstrap: demoBootstrap(kind, {
            nodeId: `demo-${kind}-${name}`,
            cluster: DEMO_CLUSTER,
            xdsHost: '127.0.0.1',
            xdsPort: xdsPorts[index] ?? plane?.port ?? 0,
            ...(extproc ? { extprocHost: '127.0.0.1', extprocPort: extproc.port } : {}),
          }),
          signal: options.signal,
        }),
      ),
    );
    for (const result of started) if (result.status === 'fulfilled') envoys.push(result.value);
    const failed = started.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
  } catch (error) {
    await close();
    throw error;
  }
  const line = delayLine;
  return {
    kind,
    cluster,
    envoys,
    registry,
    setSlowPropagation: (ms) => {
      line.setDelay(ms);
    },
    slowPropagationDone: async (signal) => {
      const deadline = performance.now() + timing.waitTimeoutMs;
      while (line.pending() > 0) {
        if (performance.now() > deadline) {
          throw new ReadygateError(
            ErrorCode.WAIT_TIMEOUT,
            `demo: the slow ${kind} gateway still had xDS updates queued after ${timing.waitTimeoutMs} ms`,
          );
        }
        await sleep(50, undefined, { signal });
      }
    },
    resetClock: () => {
      origin = performance.now();
    },
    close,
  };
}

/**
 * readygate's readiness gate for the demo's pods: the verdict the controller uses (gateVerdict with
 * --gate-min-proxies at its default) on the control plane's real sync state and routing history,
 * re-checked on every ACK, NACK, connect, disconnect, served EDS change and slice change. What it leaves
 * out is the pods/status PATCH, the Lease and the peers: one replica, and the simulated cluster takes the
 * condition directly.
 */
class GateKeeper {
  readonly #cluster: SimulatedCluster;
  readonly #plane: ControlPlane;
  readonly #history: RoutingHistory;
  readonly #unsubscribe: (() => void)[] = [];
  #scheduled: NodeJS.Immediate | undefined;

  constructor(cluster: SimulatedCluster, plane: ControlPlane, history: RoutingHistory) {
    this.#cluster = cluster;
    this.#plane = plane;
    this.#history = history;
    const schedule = (): void => {
      this.schedule();
    };
    for (const event of ['ack', 'nack', 'connect', 'disconnect'] as const) {
      plane.sync.on(event, schedule);
      this.#unsubscribe.push(() => plane.sync.off(event, schedule));
    }
    this.#unsubscribe.push(history.onChange(schedule));
  }

  /** One evaluation per tick, however many events came in it. */
  schedule(): void {
    this.#scheduled ??= setImmediate(() => {
      this.#scheduled = undefined;
      this.#evaluate();
    });
  }

  close(): void {
    if (this.#scheduled) clearImmediate(this.#scheduled);
    this.#scheduled = undefined;
    for (const stop of this.#unsubscribe.splice(0)) stop();
  }

  #evaluate(): void {
    for (const pod of this.#cluster.gatePendingPods) {
      const verdict = requireProxies(
        gateVerdict(podKey(pod), this.#history, this.#plane.sync.streams),
        DEFAULT_GATE_MIN_PROXIES,
      );
      if (verdict.ok) this.#cluster.passGate(pod);
    }
  }
}
