/**
 * Which endpoints of a Service port may receive traffic, and how Envoy should treat them. Pure: the
 * table tests in test/unit/eligibility.test.ts pin every condition combination.
 */
import { EndpointState } from './metadata.js';
import type { EndpointConditions, EndpointModel, ServiceModel, ServicePortModel } from './types.js';

export interface EligibilityOptions {
  /**
   * What to do with endpoints that are terminating but still serving while ready ones exist:
   * `draining` sends them as DRAINING (Envoy excludes them from new requests but keeps them visible);
   * `omit` leaves them out.
   */
  readonly terminatingServing: 'draining' | 'omit';
  /** KEP-1669: when a port has no ready endpoint, send its serving-terminating endpoints as HEALTHY. */
  readonly terminatingFallback: boolean;
}

export const DEFAULT_ELIGIBILITY: EligibilityOptions = Object.freeze({
  terminatingServing: 'draining',
  terminatingFallback: true,
});

export type HostHealth = 'HEALTHY' | 'DRAINING';

export interface EligibleHost {
  readonly address: string;
  readonly port: number;
  readonly health: HostHealth;
  readonly state: EndpointState;
  readonly endpoint: EndpointModel;
}

export interface ResolvedConditions {
  readonly ready: boolean;
  readonly serving: boolean;
  readonly terminating: boolean;
}

/**
 * Kubernetes' nil semantics (discovery/v1 EndpointConditions): ready nil = true, serving nil = the ready
 * value, terminating nil = false.
 */
export function resolveConditions(conditions: EndpointConditions): ResolvedConditions {
  const ready = conditions.ready ?? true;
  return { ready, serving: conditions.serving ?? ready, terminating: conditions.terminating ?? false };
}

type Verdict = 'ready' | 'serving-terminating' | 'excluded';

/** The per-endpoint half of the rule; the per-port fallback needs the whole set (see below). */
export function classifyConditions(conditions: EndpointConditions): Verdict {
  const c = resolveConditions(conditions);
  // `ready` is the authority for non-terminating endpoints (publishNotReadyAddresses flows through it);
  // a terminating endpoint is never ready-for-new-traffic, whatever `ready` says.
  if (!c.terminating) return c.ready ? 'ready' : 'excluded';
  return c.serving ? 'serving-terminating' : 'excluded';
}

const STATE_RANK: Record<EndpointState, number> = {
  [EndpointState.READY]: 4,
  [EndpointState.GATE_PENDING]: 3,
  [EndpointState.TERMINATING_FALLBACK]: 2,
  [EndpointState.TERMINATING]: 1,
};

/**
 * The hosts Envoy gets for one Service port, in a stable order (address, then port). The fallback is
 * decided per port because each port is its own Envoy cluster, i.e. its own load-balancing scope.
 */
export function eligibleHosts(
  service: ServiceModel,
  port: ServicePortModel,
  options: EligibilityOptions = DEFAULT_ELIGIBILITY,
): EligibleHost[] {
  const ready: Candidate[] = [];
  const gatePending: Candidate[] = [];
  const servingTerminating: Candidate[] = [];
  for (const endpoint of service.endpoints) {
    const address = endpoint.addresses[0];
    if (address === undefined || address === '') continue;
    const targetPort = endpoint.ports ? endpoint.ports[port.key] : port.targetPort;
    // An endpoint whose slice does not carry this port does not serve it.
    if (targetPort === undefined) continue;
    const verdict = classifyConditions(endpoint.conditions);
    if (verdict === 'ready') ready.push({ address, port: targetPort, endpoint });
    else if (endpoint.gatePending === true && !resolveConditions(endpoint.conditions).terminating)
      gatePending.push({ address, port: targetPort, endpoint });
    else if (verdict === 'serving-terminating')
      servingTerminating.push({ address, port: targetPort, endpoint });
  }

  const hosts: EligibleHost[] = ready.map((c) => ({ ...c, health: 'HEALTHY', state: EndpointState.READY }));
  for (const c of gatePending) hosts.push({ ...c, health: 'HEALTHY', state: EndpointState.GATE_PENDING });
  if (ready.length === 0 && gatePending.length === 0 && options.terminatingFallback) {
    for (const c of servingTerminating)
      hosts.push({ ...c, health: 'HEALTHY', state: EndpointState.TERMINATING_FALLBACK });
  } else if (options.terminatingServing === 'draining') {
    for (const c of servingTerminating)
      hosts.push({ ...c, health: 'DRAINING', state: EndpointState.TERMINATING });
  }
  return dedupe(hosts);
}

interface Candidate {
  readonly address: string;
  readonly port: number;
  readonly endpoint: EndpointModel;
}

/**
 * The same address:port can appear twice (an endpoint moving between slices, or listed in two). Envoy
 * rejects duplicate hosts in one assignment, so keep one: the most eligible, since a stale copy in the
 * slice it is leaving must not hide that the endpoint is ready.
 */
function dedupe(hosts: EligibleHost[]): EligibleHost[] {
  const byAddress = new Map<string, EligibleHost>();
  for (const host of hosts) {
    const key = `${host.address}|${host.port}`;
    const existing = byAddress.get(key);
    if (!existing || STATE_RANK[host.state] > STATE_RANK[existing.state]) byAddress.set(key, host);
  }
  return [...byAddress.values()].sort(compareHosts);
}

function compareHosts(a: EligibleHost, b: EligibleHost): number {
  if (a.address !== b.address) return a.address < b.address ? -1 : 1;
  return a.port - b.port;
}
