/** xDS type URLs readygate serves, and how each behaves under a wildcard subscription. */
export const MessageName = {
  CLUSTER: 'envoy.config.cluster.v3.Cluster',
  CLUSTER_LOAD_ASSIGNMENT: 'envoy.config.endpoint.v3.ClusterLoadAssignment',
  LISTENER: 'envoy.config.listener.v3.Listener',
  ROUTE_CONFIGURATION: 'envoy.config.route.v3.RouteConfiguration',
} as const;
export type MessageName = (typeof MessageName)[keyof typeof MessageName];

export const TypeUrl = {
  CLUSTER: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  ENDPOINT: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  LISTENER: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  ROUTE: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
} as const;
export type TypeUrl = (typeof TypeUrl)[keyof typeof TypeUrl];

export const SERVED_TYPE_URLS: readonly TypeUrl[] = [
  TypeUrl.CLUSTER,
  TypeUrl.ENDPOINT,
  TypeUrl.LISTENER,
  TypeUrl.ROUTE,
];

export function isServedTypeUrl(typeUrl: string): typeUrl is TypeUrl {
  return (SERVED_TYPE_URLS as readonly string[]).includes(typeUrl);
}

export function messageNameOf(typeUrl: TypeUrl): MessageName {
  switch (typeUrl) {
    case TypeUrl.CLUSTER:
      return MessageName.CLUSTER;
    case TypeUrl.ENDPOINT:
      return MessageName.CLUSTER_LOAD_ASSIGNMENT;
    case TypeUrl.LISTENER:
      return MessageName.LISTENER;
    case TypeUrl.ROUTE:
      return MessageName.ROUTE_CONFIGURATION;
  }
}

/**
 * Whether a wildcard subscription to this type receives every resource. Clusters: yes (Envoy always
 * subscribes CDS by wildcard). Listeners and routes exist only for proxyless gRPC clients, which ask by
 * name; an Envoy subscribing to LDS by wildcard must not be handed them.
 */
export function wildcardReceivesAll(typeUrl: TypeUrl): boolean {
  return typeUrl === TypeUrl.CLUSTER;
}

/** Short names for logs and metrics labels. */
export function shortTypeName(typeUrl: string): string {
  switch (typeUrl) {
    case TypeUrl.CLUSTER:
      return 'cds';
    case TypeUrl.ENDPOINT:
      return 'eds';
    case TypeUrl.LISTENER:
      return 'lds';
    case TypeUrl.ROUTE:
      return 'rds';
    default:
      return 'unknown';
  }
}
