/**
 * Zone preference for a zone-aware Service (`readygate.io/zone-aware: "true"`), as seen by one Envoy
 * that declared its zone. Pure: hosts and a zone in, priority tiers out; src/xds/translate.ts turns the
 * tiers into ClusterLoadAssignment priorities.
 *
 * Hints are read the way kube-proxy reads them (Topology Aware Routing): they count only when every
 * ready endpoint of the Service carries `hints.forZones` (the EndpointSlice controller hints all or
 * none; a mix means a slice in transition, and trusting half of it would pile traffic on a few pods),
 * and only when some endpoint is hinted for this zone. Otherwise the endpoint's own `zone` decides.
 */
import type { EligibleHost } from './eligibility.js';

/** How the local tier was chosen: by topology hints, or by the endpoints' zones. */
export type ZoneMatch = 'hints' | 'zone';

export interface ZoneTiers {
  readonly match: ZoneMatch;
  /** Priority 0: the hosts this zone should use. Empty = nothing is local, every host is one tier. */
  readonly local: readonly EligibleHost[];
  /** Priority 1: where traffic spills as the local tier loses healthy hosts. */
  readonly remote: readonly EligibleHost[];
}

export function zoneTiers(hosts: readonly EligibleHost[], zone: string): ZoneTiers {
  const match = hintsApply(hosts, zone) ? 'hints' : 'zone';
  const local: EligibleHost[] = [];
  const remote: EligibleHost[] = [];
  for (const host of hosts) {
    const isLocal =
      match === 'hints' ? (host.endpoint.forZones?.includes(zone) ?? false) : host.endpoint.zone === zone;
    (isLocal ? local : remote).push(host);
  }
  // No local host: one tier, exactly what a zone-less Envoy gets.
  if (local.length === 0) return { match, local: [], remote: hosts };
  return { match, local, remote };
}

function hintsApply(hosts: readonly EligibleHost[], zone: string): boolean {
  let hintedHere = false;
  let readyHosts = 0;
  for (const host of hosts) {
    // kube-proxy looks at ready endpoints only: a terminating pod's missing hint does not void the rest.
    if (host.health !== 'HEALTHY') continue;
    readyHosts += 1;
    const forZones = host.endpoint.forZones;
    if (forZones === undefined || forZones.length === 0) return false;
    if (forZones.includes(zone)) hintedHere = true;
  }
  return readyHosts > 0 && hintedHere;
}

/**
 * Every zone an Envoy could be given its own tiers for: the endpoints' zones and hinted zones. An Envoy
 * in any other zone has no local host and gets the zone-less assignment, so variants stay bounded by
 * the Service's own data, whatever zones Envoys claim.
 */
export function zonesOf(hosts: readonly EligibleHost[]): ReadonlySet<string> {
  const zones = new Set<string>();
  for (const host of hosts) {
    if (host.endpoint.zone !== undefined) zones.add(host.endpoint.zone);
    for (const zone of host.endpoint.forZones ?? []) zones.add(zone);
  }
  return zones;
}
