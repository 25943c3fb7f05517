/**
 * The demo's EndpointSlice and what each setup's control plane makes of it. Pure: the simulated Kubernetes
 * keeps a list of slice entries; readygate's store gets them with their conditions (and gate-pending from
 * the pod), the ready-only control plane's only the ready ones, the naive one's all of them with every
 * condition thrown away. That one function is the whole difference between the three setups' inputs.
 */
import type { EndpointConditions, ServiceModel } from '../model/types.js';

export const DEMO_NAMESPACE = 'default';
export const DEMO_SERVICE = 'web';
export const DEMO_PORT_NAME = 'http';
/** The Service port; pods listen on their own port (sent per endpoint), like a named targetPort. */
export const DEMO_SERVICE_PORT = 80;

/** One address in the slice, as the endpoints controller would publish it. */
export interface SliceEntry {
  readonly pod: string;
  readonly ip: string;
  readonly port: number;
  readonly ready: boolean;
  readonly serving: boolean;
  readonly terminating: boolean;
  /**
   * Not in a real slice: what readygate's pod watch derives from the Pod (containers ready, only its own
   * readiness gate unmet, not terminating). Only pods that declare the gate can be gate-pending.
   */
  readonly gatePending: boolean;
}

/**
 * (a) `naive`: every address HEALTHY. (b) `ready-only`: a control plane that sends only ready endpoints
 * (drops not-ready and terminating ones), with `preStop: sleep`. (c) `readygate`.
 */
export type GatewayKind = 'naive' | 'ready-only' | 'readygate';

export const GATEWAY_KINDS: readonly GatewayKind[] = ['naive', 'ready-only', 'readygate'];

/**
 * The Service as each control plane sees it. Naive: every address in the slice is an endpoint, whatever
 * its conditions say — what a gateway that reads addresses but not conditions (or resolves pod IPs, or
 * lists `notReadyAddresses` with the rest) does. Ready-only: the ready addresses, as ready; a not-ready or
 * terminating address is gone at once (what most Kubernetes gateways and kube-proxy without the
 * terminating fallback do). readygate: the slice as it is, plus gate-pending from the pod. The Service's
 * `readygate.io/*` annotations, if any, go to every store alike.
 */
export function serviceFor(
  entries: readonly SliceEntry[],
  kind: GatewayKind,
  annotations?: Readonly<Record<string, string>>,
): ServiceModel {
  const kept = kind === 'ready-only' ? entries.filter((entry) => entry.ready && !entry.terminating) : entries;
  return {
    namespace: DEMO_NAMESPACE,
    name: DEMO_SERVICE,
    ports: [{ key: DEMO_PORT_NAME, port: DEMO_SERVICE_PORT, targetPort: DEMO_SERVICE_PORT }],
    // Every setup's store gets them; only readygate's CDS turns them into cluster policy ((a) and (b)
    // define their cluster in the bootstrap, as a control plane without per-Service policy would).
    ...(annotations === undefined ? {} : { annotations }),
    endpoints: kept.map((entry) => ({
      addresses: [entry.ip],
      conditions: conditionsFor(entry, kind),
      targetRef: { kind: 'Pod', namespace: DEMO_NAMESPACE, name: entry.pod },
      ports: { [DEMO_PORT_NAME]: entry.port },
      ...(kind === 'readygate' && entry.gatePending ? { gatePending: true } : {}),
    })),
  };
}

function conditionsFor(entry: SliceEntry, kind: GatewayKind): EndpointConditions {
  if (kind !== 'readygate') return { ready: true, serving: true, terminating: false };
  return { ready: entry.ready, serving: entry.serving, terminating: entry.terminating };
}
