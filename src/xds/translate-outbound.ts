/**
 * Model → a sidecar's outbound listener and routes (docs/sidecar.md), as plain objects in the protos'
 * snake_case shape. Pure: the same Services and profile always give the same bytes, so versions are stable.
 *
 * The route configuration is assembled per proxy profile from per-Service parts encoded once
 * (outbound-views.ts), so this module builds the parts: one Service's virtual hosts, the fallback for an
 * unknown Host, the listener.
 */
import { PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE } from '../extproc/problem.js';
import { clusterName, type ServiceModel } from '../model/types.js';
import { packAny } from '../protos/envoy-protos.js';
import { SAFE_RETRY } from './translate.js';

/** Name of the listener and of the route configuration every sidecar gets. */
export const OUTBOUND_LISTENER_NAME = 'readygate.outbound';
export const OUTBOUND_ROUTE_NAME = 'readygate.outbound';

/** What of a Service its virtual hosts depend on: not its endpoints, so endpoint churn costs nothing here. */
export interface OutboundService {
  readonly namespace: string;
  readonly name: string;
  readonly ports: readonly { readonly port: number; readonly cluster: string }[];
}

export function outboundServiceOf(service: ServiceModel): OutboundService {
  return {
    namespace: service.namespace,
    name: service.name,
    ports: service.ports.map((p) => ({ port: p.port, cluster: clusterName(service, p.key) })),
  };
}

/** Equal shapes give equal virtual hosts: a Service whose endpoints change is not re-encoded. */
export function outboundShapeKey(service: OutboundService): string {
  return service.ports.map((p) => `${p.port}=${p.cluster}`).join(',');
}

/**
 * The Host forms an app may use for one Service port. `svc`/`svc:port` only for the proxy's own namespace,
 * as Kubernetes DNS resolves them: in another namespace they would clash with that namespace's `svc`, and
 * Envoy rejects a route configuration whose domains repeat. Port-less forms mean port 80 (HTTP leaves it
 * out of Host), or the Service's only port; on a Service with several ports and none 80 they are left out
 * rather than guessed.
 */
export function outboundDomains(service: OutboundService, port: number, inProxyNamespace: boolean): string[] {
  const names = [
    ...(inProxyNamespace ? [service.name] : []),
    `${service.name}.${service.namespace}`,
    `${service.name}.${service.namespace}.svc`,
    `${service.name}.${service.namespace}.svc.cluster.local`,
  ];
  const hasPort80 = service.ports.some((p) => p.port === 80);
  const takesPortless = port === 80 || (!hasPort80 && service.ports.length === 1);
  const domains: string[] = [];
  for (const name of names) {
    if (takesPortless) domains.push(name);
    domains.push(`${name}:${port}`);
  }
  return domains;
}

/** SAFE_RETRY as a RouteConfiguration carries it (wrapped integers, a packed predicate config). */
export const OUTBOUND_RETRY_POLICY = {
  retry_on: SAFE_RETRY.retryOn,
  num_retries: { value: SAFE_RETRY.numRetries },
  retry_host_predicate: [
    { name: SAFE_RETRY.hostPredicate, typed_config: packAny(SAFE_RETRY.hostPredicateType, {}) },
  ],
  host_selection_retry_max_attempts: SAFE_RETRY.hostSelectionMaxAttempts,
};

/** One virtual host per Service port, named by its cluster. */
export function serviceVirtualHosts(
  service: OutboundService,
  inProxyNamespace: boolean,
): Record<string, unknown>[] {
  const seen = new Set<number>();
  const hosts: Record<string, unknown>[] = [];
  for (const port of service.ports) {
    // Two Service ports with one number cannot both have it as their Host: the first keeps it.
    if (seen.has(port.port)) continue;
    seen.add(port.port);
    hosts.push({
      name: port.cluster,
      domains: outboundDomains(service, port.port, inProxyNamespace),
      retry_policy: OUTBOUND_RETRY_POLICY,
      routes: [{ match: { prefix: '/' }, route: { cluster: port.cluster } }],
    });
  }
  return hosts;
}

/** The problem document for a Host no allowed Service answers to; it names nothing of the cluster. */
export const UNKNOWN_HOST_PROBLEM = JSON.stringify({
  type: `${PROBLEM_TYPE_BASE}unknown-service`,
  title: 'Unknown service',
  status: 404,
  detail: 'No service this proxy may call answers to the request’s Host.',
});

export function fallbackVirtualHost(): Record<string, unknown> {
  return {
    name: 'readygate.unknown-host',
    domains: ['*'],
    routes: [
      {
        match: { prefix: '/' },
        direct_response: { status: 404, body: { inline_string: UNKNOWN_HOST_PROBLEM } },
        response_headers_to_add: [
          {
            header: { key: 'content-type', value: PROBLEM_CONTENT_TYPE },
            append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
          },
        ],
      },
    ],
  };
}

const HCM = 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';

/**
 * The outbound listener on 127.0.0.1:port. With an ext_proc cluster it maps upstream 5xx as the gateway
 * bootstrap does (envoy/gateway-ads-extproc.yaml; why each knob: docs/envoy.md): the same filter, the
 * same local-reply codes.
 */
export function outboundListenerFor(
  port: number,
  extprocCluster: string | undefined,
): Record<string, unknown> {
  const hcm: Record<string, unknown> = {
    stat_prefix: 'outbound',
    rds: {
      config_source: { ads: {}, resource_api_version: 'V3' },
      route_config_name: OUTBOUND_ROUTE_NAME,
    },
    http_filters: [
      ...(extprocCluster === undefined ? [] : [extprocFilter(extprocCluster)]),
      {
        name: 'envoy.filters.http.router',
        typed_config: packAny('envoy.extensions.filters.http.router.v3.Router', {}),
      },
    ],
  };
  if (extprocCluster !== undefined) hcm['local_reply_config'] = { mappers: LOCAL_REPLY_MAPPERS };
  return {
    name: OUTBOUND_LISTENER_NAME,
    address: { socket_address: { address: '127.0.0.1', port_value: port } },
    filter_chains: [
      {
        filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: packAny(HCM, hcm) }],
      },
    ],
  };
}

const LOCAL_REPLY_MAPPERS = [
  { filter: { response_flag_filter: { flags: ['UC', 'UR', 'LR', 'UPE'] } }, status_code: { value: 502 } },
  { filter: { response_flag_filter: { flags: ['UT', 'UMSDR'] } }, status_code: { value: 504 } },
  {
    filter: { response_flag_filter: { flags: ['UH', 'UF', 'NC', 'UO'] } },
    status_code: { value: 503 },
    headers_to_add: [
      { header: { key: 'retry-after', value: '1' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
    ],
  },
];

function extprocFilter(cluster: string): Record<string, unknown> {
  const processor = {
    grpc_service: { envoy_grpc: { cluster_name: cluster } },
    processing_mode: {
      request_header_mode: 'SKIP',
      response_header_mode: 'SEND',
      response_body_mode: 'NONE',
      response_trailer_mode: 'SKIP',
    },
    failure_mode_allow: true,
    message_timeout: { seconds: 0, nanos: 200_000_000 },
    response_attributes: [
      'response.code_details',
      'response.flags',
      'xds.cluster_name',
      'upstream.address',
      'request.id',
      'request.method',
      "xds.upstream_host_metadata.filter_metadata['readygate']['state']",
      "xds.upstream_host_metadata.filter_metadata['readygate']['pod']",
    ],
  };
  // ext_proc only for 5xx: any other status skips the filter, so no stream opens.
  const skipUnless5xx = {
    matcher_list: {
      matchers: [
        {
          predicate: {
            not_matcher: {
              single_predicate: {
                input: {
                  name: 'status',
                  typed_config: packAny('envoy.type.matcher.v3.HttpResponseHeaderMatchInput', {
                    header_name: ':status',
                  }),
                },
                value_match: { prefix: '5' },
              },
            },
          },
          on_match: {
            action: {
              name: 'skip',
              typed_config: packAny('envoy.extensions.filters.common.matcher.action.v3.SkipFilter', {}),
            },
          },
        },
      ],
    },
  };
  return {
    name: 'readygate.ext_proc_5xx',
    typed_config: packAny('envoy.extensions.common.matching.v3.ExtensionWithMatcher', {
      extension_config: {
        name: 'envoy.filters.http.ext_proc',
        typed_config: packAny('envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor', processor),
      },
      xds_matcher: skipUnless5xx,
    }),
  };
}
