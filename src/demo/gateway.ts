/**
 * One side of the comparison, assembled: an endpoint store fed from the simulated cluster's slice, a
 * control plane serving it over ADS, (for readygate) the ext_proc server, and a real Envoy in front.
 * Both sides use readygate's xDS server as the transport; what differs is what goes into the store
 * (slice.ts) and the Envoy bootstrap (envoy/demo-*.template.yaml).
 */
import type { Logger } from '../log.js';
import { startExtprocServer, type ExtprocServer } from '../extproc/server.js';
import { EndpointStore } from '../model/store.js';
import { clusterName } from '../model/types.js';
import { startControlPlane, type ControlPlane } from '../xds/control-plane.js';
import { Registry } from 'prom-client';
import { demoBootstrap } from './bootstrap.js';
import { SimulatedCluster } from './cluster.js';
import { runEnvoy, type RunningEnvoy } from './envoy-runner.js';
import { DEMO_NAMESPACE, DEMO_PORT_NAME, DEMO_SERVICE, serviceFor, type GatewayKind } from './slice.js';
import type { DemoTiming } from './timing.js';

export const DEMO_CLUSTER = clusterName({ namespace: DEMO_NAMESPACE, name: DEMO_SERVICE }, DEMO_PORT_NAME);

/** Pod addresses: readygate's pods from 127.0.0.20 up, the naive side's from 127.0.0.120 up. */
const FIRST_HOST: Readonly<Record<GatewayKind, number>> = { readygate: 20, naive: 120 };

export interface Gateway {
  readonly kind: GatewayKind;
  readonly cluster: SimulatedCluster;
  readonly envoy: RunningEnvoy;
  /** ext_proc metrics (readygate only). */
  readonly registry: Registry;
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

export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const { kind } = options;
  const store = new EndpointStore();
  store.upsert(serviceFor([], kind));
  store.markSynced();
  const registry = new Registry();
  let plane: ControlPlane | undefined;
  let extproc: ExtprocServer | undefined;
  let envoy: RunningEnvoy | undefined;
  let origin = performance.now();
  const cluster = new SimulatedCluster({
    label: kind === 'readygate' ? 'rg' : 'nv',
    timing: options.timing,
    addressPrefix: '127.0.0',
    firstHost: FIRST_HOST[kind],
    now: () => performance.now() - origin,
    onSlice: (entries) => {
      store.upsert(serviceFor(entries, kind));
    },
  });
  const close = async (): Promise<void> => {
    // Envoy first, so nothing is routed to backends being torn down and no stream outlives its server.
    await Promise.allSettled([envoy?.stop()]);
    await Promise.allSettled([cluster.close(), extproc?.close(), plane?.close()]);
  };
  try {
    plane = await startControlPlane({ store, xdsAddress: '127.0.0.1:0', logger: options.logger });
    if (kind === 'readygate') {
      extproc = await startExtprocServer({ address: '127.0.0.1:0', logger: options.logger, registry });
    }
    const bootstrap = demoBootstrap(kind, {
      nodeId: `demo-${kind}`,
      cluster: DEMO_CLUSTER,
      xdsHost: '127.0.0.1',
      xdsPort: plane.port,
      ...(extproc ? { extprocHost: '127.0.0.1', extprocPort: extproc.port } : {}),
    });
    envoy = await runEnvoy({ binary: options.envoyBinary, bootstrap, signal: options.signal });
  } catch (error) {
    await close();
    throw error;
  }
  const running = envoy;
  return {
    kind,
    cluster,
    envoy: running,
    registry,
    resetClock: () => {
      origin = performance.now();
    },
    close,
  };
}
