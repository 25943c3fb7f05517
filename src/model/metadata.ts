/**
 * Keys of the endpoint metadata readygate's EDS attaches to every host. ext_proc reads them back through
 * Envoy's `xds.upstream_host_metadata` attribute, so both sides import them from here.
 */

/** filter_metadata namespace holding readygate's per-host facts. */
export const HOST_METADATA_NAMESPACE = 'readygate';

/** Why a host is in the load assignment. */
export const EndpointState = {
  /** Ready and not terminating. */
  READY: 'ready',
  /** Terminating but still serving; sent as DRAINING (no new requests). */
  TERMINATING: 'terminating',
  /** Terminating but serving, sent HEALTHY because nothing in its cluster is ready (KEP-1669). */
  TERMINATING_FALLBACK: 'terminating-fallback',
  /** Containers ready, waiting only for readygate's readiness gate (which needs Envoys to know it). */
  GATE_PENDING: 'gate-pending',
} as const;
export type EndpointState = (typeof EndpointState)[keyof typeof EndpointState];

export const HostMetadataKey = {
  STATE: 'state',
  POD: 'pod',
  NAMESPACE: 'namespace',
  ZONE: 'zone',
  NODE: 'node',
} as const;
