/** The /debug/* views of the control plane, for the admin server. */
import { eligibleHosts, type EligibilityOptions } from '../model/eligibility.js';
import type { EndpointStore } from '../model/store.js';
import { clusterName } from '../model/types.js';
import { PUSH_ORDER, type ResourceCache } from '../xds/cache.js';
import { TypeUrl } from '../xds/resource-types.js';
import type { SyncStatus } from '../xds/sync-status.js';
import type { AdminRouteHandler } from './server.js';

export function debugRoutes(sources: {
  sync: SyncStatus;
  cache: ResourceCache;
  store: EndpointStore;
  eligibility: EligibilityOptions;
}): Record<string, AdminRouteHandler> {
  const { sync, cache, store, eligibility } = sources;
  return {
    /** Per connected Envoy: what was sent, ACKed and NACKed, per type URL. */
    '/debug/syncz': (_request, url) => ({
      status: 200,
      body: sync.toJSON({ resources: url.searchParams.get('resources') === 'true' }),
    }),
    /**
     * Every resource readygate serves now: type URL → name → version; plus, once Envoys in a zone have
     * been sent zone-aware CLAs, `zones`: zone → name → the version those Envoys get (docs/policy.md).
     */
    '/debug/resources': () => {
      const body: Record<string, Record<string, unknown>> = Object.fromEntries(
        PUSH_ORDER.map((typeUrl) => [
          typeUrl,
          Object.fromEntries([...cache.resources(typeUrl).values()].map((r) => [r.name, r.version]).sort()),
        ]),
      );
      const zones: Record<string, Record<string, string>> = {};
      for (const resource of cache.resources(TypeUrl.ENDPOINT).values()) {
        for (const [zone, variant] of resource.encodedVariants())
          (zones[zone] ??= {})[resource.name] = variant.version;
      }
      if (Object.keys(zones).length > 0) body['zones'] = zones;
      return { status: 200, body };
    },
    /** The endpoint model and, per cluster, the hosts eligibility lets through. */
    '/debug/endpoints': () => ({
      status: 200,
      body: store.services.flatMap((service) =>
        service.ports.map((port) => ({
          cluster: clusterName(service, port.key),
          hosts: eligibleHosts(service, port, eligibility).map((h) => ({
            address: `${h.address}:${h.port}`,
            health: h.health,
            state: h.state,
            pod: h.endpoint.targetRef?.name ?? null,
          })),
        })),
      ),
    }),
  };
}
