/**
 * Model → Envoy resources, as plain objects in the protos' snake_case shape. Pure: no encoding state,
 * no I/O, so the same model always yields the same resources (and so the same content-hash versions).
 */
import {
  DEFAULT_ELIGIBILITY,
  eligibleHosts,
  type EligibilityOptions,
  type EligibleHost,
} from '../model/eligibility.js';
import { HOST_METADATA_NAMESPACE, HostMetadataKey } from '../model/metadata.js';
import { clusterName, grpcListenerName, type ServiceModel, type ServicePortModel } from '../model/types.js';
import { packAny } from '../protos/envoy-protos.js';
import { TypeUrl } from './resource-types.js';

export interface TranslateOptions {
  readonly eligibility: EligibilityOptions;
  /** Upstream connect timeout; in-cluster connects are fast, and a dead pod should fail over quickly. */
  readonly connectTimeoutMs: number;
}

export const DEFAULT_TRANSLATE_OPTIONS: TranslateOptions = Object.freeze({
  eligibility: DEFAULT_ELIGIBILITY,
  connectTimeoutMs: 1000,
});

export interface ResourceDraft {
  readonly typeUrl: TypeUrl;
  readonly name: string;
  readonly message: Record<string, unknown>;
}

/** appProtocol values that mean the upstream speaks HTTP/2 (gRPC included). */
const HTTP2_APP_PROTOCOLS = new Set(['kubernetes.io/h2c', 'h2c', 'grpc', 'http2']);

/** Every resource one Service contributes: per port a Cluster, its CLA, and a gRPC Listener + route. */
export function translateService(
  service: ServiceModel,
  options: TranslateOptions = DEFAULT_TRANSLATE_OPTIONS,
): ResourceDraft[] {
  const drafts: ResourceDraft[] = [];
  for (const port of service.ports) {
    const name = clusterName(service, port.key);
    drafts.push({ typeUrl: TypeUrl.CLUSTER, name, message: clusterFor(name, port, options) });
    drafts.push({
      typeUrl: TypeUrl.ENDPOINT,
      name,
      message: loadAssignmentFor(name, service, eligibleHosts(service, port, options.eligibility)),
    });
    const listenerName = grpcListenerName(service, port.port);
    drafts.push({ typeUrl: TypeUrl.LISTENER, name: listenerName, message: grpcListenerFor(listenerName) });
    drafts.push({ typeUrl: TypeUrl.ROUTE, name: listenerName, message: grpcRouteFor(listenerName, name) });
  }
  return drafts;
}

export function clusterFor(
  name: string,
  port: ServicePortModel,
  options: TranslateOptions,
): Record<string, unknown> {
  const cluster: Record<string, unknown> = {
    name,
    type: 'EDS',
    eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } },
    connect_timeout: durationOf(options.connectTimeoutMs),
    // 0 disables panic mode: with the default 50 %, Envoy would balance over excluded hosts once most
    // hosts of a cluster are unhealthy, which is exactly the rollout moment readygate exists for.
    common_lb_config: {
      healthy_panic_threshold: { value: 0 },
      // Envoy merges health-only EDS changes (HEALTHY → DRAINING) for 1 s by default, after it has
      // ACKed them: drain-wait would release a pod Envoy still sends new requests to. Apply at once.
      update_merge_window: durationOf(0),
    },
  };
  if (port.appProtocol !== undefined && HTTP2_APP_PROTOCOLS.has(port.appProtocol)) {
    cluster['typed_extension_protocol_options'] = {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': packAny(
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        { explicit_http_config: { http2_protocol_options: {} } },
      ),
    };
  }
  return cluster;
}

export function loadAssignmentFor(
  name: string,
  service: ServiceModel,
  hosts: readonly EligibleHost[],
): Record<string, unknown> {
  const byZone = new Map<string, EligibleHost[]>();
  for (const host of hosts) {
    const zone = host.endpoint.zone ?? '';
    let list = byZone.get(zone);
    if (!list) byZone.set(zone, (list = []));
    list.push(host);
  }
  const zones = [...byZone.keys()].sort();
  // An emptied cluster still gets a CLA naming it with no endpoints: an absent CLA is a no-op to Envoy.
  return {
    cluster_name: name,
    endpoints: zones.map((zone) => {
      const zoneHosts = byZone.get(zone) ?? [];
      const healthy = zoneHosts.filter((h) => h.health === 'HEALTHY').length;
      return {
        // gRPC clients reject a LocalityLbEndpoints without a locality, even an empty one.
        locality: zone === '' ? {} : { zone },
        // gRPC clients drop localities without a weight; Envoy ignores weights unless the cluster asks
        // for locality-weighted balancing. Weighting by healthy hosts keeps per-host balance even.
        load_balancing_weight: { value: Math.max(1, healthy) },
        lb_endpoints: zoneHosts.map((host) => lbEndpointFor(service, host)),
      };
    }),
  };
}

function lbEndpointFor(service: ServiceModel, host: EligibleHost): Record<string, unknown> {
  const metadata: Record<string, string> = {
    [HostMetadataKey.STATE]: host.state,
    [HostMetadataKey.NAMESPACE]: host.endpoint.targetRef?.namespace ?? service.namespace,
  };
  if (host.endpoint.targetRef?.name !== undefined)
    metadata[HostMetadataKey.POD] = host.endpoint.targetRef.name;
  if (host.endpoint.zone !== undefined) metadata[HostMetadataKey.ZONE] = host.endpoint.zone;
  if (host.endpoint.nodeName !== undefined) metadata[HostMetadataKey.NODE] = host.endpoint.nodeName;
  return {
    endpoint: { address: { socket_address: { address: host.address, port_value: host.port } } },
    health_status: host.health,
    metadata: { filter_metadata: { [HOST_METADATA_NAMESPACE]: structOf(metadata) } },
  };
}

/** An API listener: what a proxyless gRPC client resolves `xds:///<name>` to. */
export function grpcListenerFor(name: string): Record<string, unknown> {
  const hcm = {
    stat_prefix: name,
    rds: { config_source: { ads: {}, resource_api_version: 'V3' }, route_config_name: name },
    http_filters: [
      {
        name: 'envoy.filters.http.router',
        typed_config: packAny('envoy.extensions.filters.http.router.v3.Router', {}),
      },
    ],
  };
  return {
    name,
    api_listener: {
      api_listener: packAny(
        'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
        hcm,
      ),
    },
  };
}

export function grpcRouteFor(name: string, cluster: string): Record<string, unknown> {
  return {
    name,
    virtual_hosts: [{ name, domains: ['*'], routes: [{ match: { prefix: '' }, route: { cluster } }] }],
  };
}

function durationOf(ms: number): { seconds: number; nanos: number } {
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

/** google.protobuf.Struct of strings with sorted keys, so equal metadata encodes to equal bytes. */
function structOf(values: Record<string, string>): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  for (const key of Object.keys(values).sort()) fields[key] = { string_value: values[key] };
  return { fields };
}
