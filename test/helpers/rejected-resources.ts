/**
 * Test-only draft overrides (ResourceCache.setDraftOverride) that make Envoy reject one resource, to
 * produce a NACK on purpose. Both stay valid protobuf; only Envoy's own validation fails them.
 */
import type { DraftOverride } from '../../src/xds/cache.js';
import { TypeUrl } from '../../src/xds/resource-types.js';

/**
 * The Cluster `name` with a negative connect timeout. (A CLA with a wrong cluster_name would not do: in
 * SotW Envoy files it under that name and ignores it.)
 */
export function rejectCluster(name: string): DraftOverride {
  return (draft) =>
    draft.typeUrl === TypeUrl.CLUSTER && draft.name === name
      ? { ...draft, message: { ...draft.message, connect_timeout: { seconds: -1, nanos: 0 } } }
      : draft;
}

/** The ClusterLoadAssignment `name` with every host on port 70000, out of range. */
export function rejectAssignment(name: string): DraftOverride {
  return (draft) => {
    if (draft.typeUrl !== TypeUrl.ENDPOINT || draft.name !== name) return draft;
    const message = structuredClone(draft.message) as {
      endpoints?: {
        lb_endpoints?: { endpoint?: { address?: { socket_address?: { port_value?: number } } } }[];
      }[];
    };
    for (const locality of message.endpoints ?? [])
      for (const host of locality.lb_endpoints ?? []) {
        const socket = host.endpoint?.address?.socket_address;
        if (socket) socket.port_value = 70000;
      }
    return { ...draft, message };
  };
}
