/**
 * The demo's EndpointSlice and what each gateway makes of it. Pure: the simulated Kubernetes keeps a list
 * of slice entries; readygate's store gets them with their conditions, the naive gateway's with every
 * condition thrown away. That one function is the whole difference between the two setups' inputs.
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
}

export type GatewayKind = 'readygate' | 'naive';

/**
 * The Service as each gateway sees it. Naive: every address in the slice is an endpoint, whatever its
 * conditions say — what a gateway that reads addresses but not conditions (or resolves pod IPs, or lists
 * `notReadyAddresses` with the rest) does.
 */
export function serviceFor(entries: readonly SliceEntry[], kind: GatewayKind): ServiceModel {
  return {
    namespace: DEMO_NAMESPACE,
    name: DEMO_SERVICE,
    ports: [{ key: DEMO_PORT_NAME, port: DEMO_SERVICE_PORT, targetPort: DEMO_SERVICE_PORT }],
    endpoints: entries.map((entry) => ({
      addresses: [entry.ip],
      conditions: conditionsFor(entry, kind),
      targetRef: { kind: 'Pod', namespace: DEMO_NAMESPACE, name: entry.pod },
      ports: { [DEMO_PORT_NAME]: entry.port },
    })),
  };
}

function conditionsFor(entry: SliceEntry, kind: GatewayKind): EndpointConditions {
  if (kind === 'naive') return { ready: true, serving: true, terminating: false };
  return { ready: entry.ready, serving: entry.serving, terminating: entry.terminating };
}
