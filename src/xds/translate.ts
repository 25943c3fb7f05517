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
import { parsePolicy, type PolicyOverrides } from '../model/policy.js';
import { clusterName, grpcListenerName, type ServiceModel, type ServicePortModel } from '../model/types.js';
import { zonesOf, zoneTiers } from '../model/zones.js';
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

/**
 * Outlier detection on every cluster (issue 17): a pod that crashed or stopped accepting connections is
 * out of the balancer after a couple of requests, in milliseconds, instead of after the kubelet's probe
 * period and the EDS update that follows it. docs/policy.md gives the reasons per number.
 */
export const OUTLIER_DEFAULTS = Object.freeze({
  /**
   * Connect failures, connect timeouts and resets before a response: the pod is gone or not listening.
   * Two in a row, not one, so a single SYN dropped under load does not take a healthy pod out.
   */
  consecutiveLocalOriginFailures: 2,
  /** 502/503/504 answered by the pod itself (an app proxy whose own upstream is gone, an overloaded pod). */
  consecutiveGatewayErrors: 3,
  /**
   * At most half of a cluster can be ejected, so passive detection can never empty a Service: with the
   * panic threshold at 0 an all-ejected cluster would answer 503 to everything. Envoy only ejects while the
   * ejected share stays below this, so a one-pod Service is never left with nothing (tested with the real
   * Envoy in test/integration/outlier-detection-envoy.test.ts).
   */
  maxEjectionPercent: 50,
  /** Sweep period: how late an ejected host can come back after its ejection time. */
  intervalMs: 1_000,
  /** Short: EDS removes a really dead pod soon after; this only has to bridge the probe period. */
  baseEjectionMs: 5_000,
  /** Repeated ejections back off (base × count) up to this, not Envoy's 300 s. */
  maxEjectionMs: 30_000,
});

export interface ResourceDraft {
  readonly typeUrl: TypeUrl;
  readonly name: string;
  readonly message: Record<string, unknown>;
  /** Only on the CLA of a zone-aware Service: what an Envoy that declared its zone gets instead. */
  readonly zoned?: ZonedAssignment | undefined;
}

/**
 * The per-zone CLAs of a zone-aware cluster, built (and encoded, src/xds/cache.ts) only when an Envoy
 * of that zone asks. `message` above stays what a zone-less Envoy gets.
 */
export interface ZonedAssignment {
  /**
   * What the variants depend on beyond the zone-less CLA's bytes (the hints): equal bytes and equal key
   * mean equal variants, so the cache can tell a hints-only change from no change.
   */
  readonly key: string;
  /** Zones with a variant of their own; any other zone gets `message` itself. */
  readonly zones: ReadonlySet<string>;
  build(zone: string): Record<string, unknown>;
}

/** appProtocol values that mean the upstream speaks HTTP/2 (gRPC included). */
const HTTP2_APP_PROTOCOLS = new Set(['kubernetes.io/h2c', 'h2c', 'grpc', 'http2']);

/** Every resource one Service contributes: per port a Cluster, its CLA, and a gRPC Listener + route. */
export function translateService(
  service: ServiceModel,
  options: TranslateOptions = DEFAULT_TRANSLATE_OPTIONS,
): ResourceDraft[] {
  const drafts: ResourceDraft[] = [];
  // Invalid keys are simply absent from the overrides; the source reports them (src/sources/policy-report.ts).
  const { overrides } = parsePolicy(service.annotations);
  for (const port of service.ports) {
    const name = clusterName(service, port.key);
    drafts.push({ typeUrl: TypeUrl.CLUSTER, name, message: clusterFor(name, port, options, overrides) });
    const hosts = eligibleHosts(service, port, options.eligibility);
    drafts.push({
      typeUrl: TypeUrl.ENDPOINT,
      name,
      message: loadAssignmentFor(name, service, hosts),
      ...(overrides.zoneAware === true ? { zoned: zonedAssignmentFor(name, service, hosts) } : {}),
    });
    const listenerName = grpcListenerName(service, port.port);
    drafts.push({ typeUrl: TypeUrl.LISTENER, name: listenerName, message: grpcListenerFor(listenerName) });
    drafts.push({
      typeUrl: TypeUrl.ROUTE,
      name: listenerName,
      message: grpcRouteFor(listenerName, name, overrides.hashHeader),
    });
  }
  return drafts;
}

export function clusterFor(
  name: string,
  port: ServicePortModel,
  options: TranslateOptions,
  policy: PolicyOverrides = {},
): Record<string, unknown> {
  const cluster: Record<string, unknown> = {
    name,
    type: 'EDS',
    eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } },
    connect_timeout: durationOf(policy.connectTimeoutMs ?? options.connectTimeoutMs),
    // 0 disables panic mode: with the default 50 %, Envoy would balance over excluded hosts once most
    // hosts of a cluster are unhealthy, which is exactly the rollout moment readygate exists for.
    common_lb_config: {
      healthy_panic_threshold: { value: 0 },
      // Envoy merges health-only EDS changes (HEALTHY → DRAINING) for 1 s by default, after it has
      // ACKed them: drain-wait would release a pod Envoy still sends new requests to. Apply at once.
      update_merge_window: durationOf(0),
    },
  };
  const http2 = port.appProtocol !== undefined && HTTP2_APP_PROTOCOLS.has(port.appProtocol);
  if (http2 || policy.idleTimeoutMs !== undefined) {
    cluster['typed_extension_protocol_options'] = {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': packAny(
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        {
          // Envoy requires one protocol choice whenever these options are present.
          explicit_http_config: http2 ? { http2_protocol_options: {} } : { http_protocol_options: {} },
          ...(policy.idleTimeoutMs === undefined
            ? {}
            : { common_http_protocol_options: { idle_timeout: durationOf(policy.idleTimeoutMs) } }),
        },
      ),
    };
  }
  Object.assign(cluster, balancerFor(policy));
  cluster['circuit_breakers'] = breakersFor(policy);
  cluster['outlier_detection'] = outlierDetectionFor(policy);
  return cluster;
}

const LB_POLICY_ENUM = {
  'round-robin': 'ROUND_ROBIN',
  'least-request': 'LEAST_REQUEST',
  random: 'RANDOM',
  'ring-hash': 'RING_HASH',
} as const;

/** Slow start lives in the round-robin / least-request configs; policy.ts refuses it for the others. */
const SLOW_START_AGGRESSION_RUNTIME_KEY = 'readygate.slow_start.aggression';

function balancerFor(policy: PolicyOverrides): Record<string, unknown> {
  const lb = policy.lbPolicy ?? 'round-robin';
  const fields: Record<string, unknown> = {};
  // ROUND_ROBIN is the proto default (0): leaving it out keeps default clusters byte-identical to before.
  if (lb !== 'round-robin') fields['lb_policy'] = LB_POLICY_ENUM[lb];
  if (policy.slowStartWindowMs !== undefined) {
    const slowStart = {
      slow_start_config: {
        slow_start_window: durationOf(policy.slowStartWindowMs),
        ...(policy.slowStartAggression === undefined
          ? {}
          : {
              aggression: {
                default_value: policy.slowStartAggression,
                runtime_key: SLOW_START_AGGRESSION_RUNTIME_KEY,
              },
            }),
      },
    };
    if (lb === 'least-request') fields['least_request_lb_config'] = slowStart;
    else fields['round_robin_lb_config'] = slowStart;
  }
  return fields;
}

/**
 * Retries that may run at once per cluster on one Envoy. The shipped gateways retry only what never
 * reached an app (connect failure, refused stream, reset before the request went out), on another host.
 * Envoy's default allows 3 concurrent retries: with one of two pods dead, a gateway with more than a
 * handful of clients in flight then answered 42 % or more of new requests 503 upstream-overflow
 * (bench/retry-budget.ts). The floor is what mattered there (20 % with a floor of 50: none lost); a
 * retry cannot reach an app twice, so a larger floor adds no load on a struggling pod.
 */
export const RETRY_BUDGET = { budgetPercent: 20, minRetryConcurrency: 50 } as const;

/**
 * What the gateways retry (envoy/gateway-ads*.yaml, docs/envoy.md "Retries"), and so what readygate's own
 * routes and the demo's bootstraps retry: only requests that never reached an app — the connect failed,
 * the stream was refused, the connection reset before the request went out — at most twice, each time on
 * a host not tried yet. A request cut mid-way (a crash) is not retried: it is a 502.
 */
export const SAFE_RETRY = {
  retryOn: 'connect-failure,refused-stream,reset-before-request',
  numRetries: 2,
  hostPredicate: 'envoy.retry_host_predicates.previous_hosts',
  hostPredicateType: 'envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate',
  hostSelectionMaxAttempts: 3,
} as const;

function breakersFor(policy: PolicyOverrides): Record<string, unknown> {
  const threshold: Record<string, unknown> = {
    retry_budget: {
      budget_percent: { value: RETRY_BUDGET.budgetPercent },
      min_retry_concurrency: { value: RETRY_BUDGET.minRetryConcurrency },
    },
  };
  if (policy.maxConnections !== undefined) threshold['max_connections'] = { value: policy.maxConnections };
  if (policy.maxPendingRequests !== undefined) {
    threshold['max_pending_requests'] = { value: policy.maxPendingRequests };
  }
  if (policy.maxRequests !== undefined) threshold['max_requests'] = { value: policy.maxRequests };
  // Unset thresholds keep Envoy's defaults (1024 each), so only the keys the author set are sent.
  return { thresholds: [threshold] };
}

function outlierDetectionFor(policy: PolicyOverrides): Record<string, unknown> {
  return {
    // Connect failures and resets count apart from HTTP statuses, so each has its own threshold.
    split_external_local_origin_errors: true,
    consecutive_local_origin_failure: { value: OUTLIER_DEFAULTS.consecutiveLocalOriginFailures },
    enforcing_consecutive_local_origin_failure: { value: 100 },
    consecutive_gateway_failure: {
      value: policy.outlierConsecutiveGatewayErrors ?? OUTLIER_DEFAULTS.consecutiveGatewayErrors,
    },
    // Envoy counts gateway failures by default but enforces 0 % of them.
    enforcing_consecutive_gateway_failure: { value: 100 },
    // Plain 5xx (a 500 for one bad request path) and success-rate outliers are the app's business, not a
    // sign the pod is gone; Envoy enforces both by default, which would eject pods for a buggy endpoint.
    enforcing_consecutive_5xx: { value: 0 },
    enforcing_success_rate: { value: 0 },
    enforcing_local_origin_success_rate: { value: 0 },
    interval: durationOf(OUTLIER_DEFAULTS.intervalMs),
    base_ejection_time: durationOf(OUTLIER_DEFAULTS.baseEjectionMs),
    max_ejection_time: durationOf(OUTLIER_DEFAULTS.maxEjectionMs),
    max_ejection_percent: {
      value: policy.outlierMaxEjectionPercent ?? OUTLIER_DEFAULTS.maxEjectionPercent,
    },
  };
}

export function loadAssignmentFor(
  name: string,
  service: ServiceModel,
  hosts: readonly EligibleHost[],
): Record<string, unknown> {
  // An emptied cluster still gets a CLA naming it with no endpoints: an absent CLA is a no-op to Envoy.
  return { cluster_name: name, endpoints: localitiesFor(service, hosts, 0) };
}

/**
 * Priorities per zone: for an Envoy in `zone`, its local tier (src/model/zones.ts) at priority 0 and the
 * rest at priority 1. With the panic threshold at 0, Envoy sends priority 1 the share priority 0 cannot
 * carry: none while its hosts are healthy, min(100, 1.4 × healthy %) stays local as they fail
 * (overprovisioning factor 1.4), all of it once none is healthy. Envoy's own zone-aware balancing
 * would need the gateways' own membership as a local cluster and enough hosts per zone; priorities need
 * neither, and spill-over runs in Envoy with no readygate work at failure time.
 */
export function zonedAssignmentFor(
  name: string,
  service: ServiceModel,
  hosts: readonly EligibleHost[],
): ZonedAssignment {
  return {
    key: hosts.map((h) => h.endpoint.forZones?.join(',') ?? '-').join(';'),
    zones: zonesOf(hosts),
    build: (zone) => {
      const tiers = zoneTiers(hosts, zone);
      // Priorities start at 0 without gaps (Envoy's rule): with nothing local, the one tier is priority 0.
      if (tiers.local.length === 0) return loadAssignmentFor(name, service, hosts);
      return {
        cluster_name: name,
        endpoints: [...localitiesFor(service, tiers.local, 0), ...localitiesFor(service, tiers.remote, 1)],
      };
    },
  };
}

function localitiesFor(
  service: ServiceModel,
  hosts: readonly EligibleHost[],
  priority: number,
): Record<string, unknown>[] {
  const byZone = new Map<string, EligibleHost[]>();
  for (const host of hosts) {
    const zone = host.endpoint.zone ?? '';
    let list = byZone.get(zone);
    if (!list) byZone.set(zone, (list = []));
    list.push(host);
  }
  const zones = [...byZone.keys()].sort();
  return zones.map((zone) => {
    const zoneHosts = byZone.get(zone) ?? [];
    const healthy = zoneHosts.filter((h) => h.health === 'HEALTHY').length;
    return {
      // gRPC clients reject a LocalityLbEndpoints without a locality, even an empty one.
      locality: zone === '' ? {} : { zone },
      // gRPC clients drop localities without a weight; Envoy ignores weights unless the cluster asks
      // for locality-weighted balancing. Weighting by healthy hosts keeps per-host balance even.
      load_balancing_weight: { value: Math.max(1, healthy) },
      lb_endpoints: zoneHosts.map((host) => lbEndpointFor(service, host)),
      // 0 is the proto default and so absent from the bytes: zone-less CLAs stay as they were.
      ...(priority === 0 ? {} : { priority }),
    };
  });
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

/** `hashHeader` (ring-hash policy): the route is readygate's here, so it can carry the hash policy itself. */
export function grpcRouteFor(name: string, cluster: string, hashHeader?: string): Record<string, unknown> {
  const route =
    hashHeader === undefined
      ? { cluster }
      : { cluster, hash_policy: [{ header: { header_name: hashHeader } }] };
  return {
    name,
    virtual_hosts: [{ name, domains: ['*'], routes: [{ match: { prefix: '' }, route }] }],
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
