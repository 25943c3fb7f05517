/**
 * The shipped envoy/gateway-ads.yaml (or another shipped gateway bootstrap), adjusted for a test: free
 * ports, the test's control plane (and ext_proc server), SotW or Delta, and a route that picks the cluster
 * from the `x-cluster` request header so one Envoy can reach every cluster a test creates. Only the routes
 * are replaced: the virtual host, and so its shipped retry policy, stays as shipped.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface GatewayBootstrapOptions {
  readonly xdsPort: number;
  readonly listenerPort: number;
  readonly nodeId: string;
  readonly apiType: 'GRPC' | 'DELTA_GRPC';
  /** More readygate replicas on 127.0.0.1 for Envoy's xDS cluster (it connects to one at a time). */
  readonly moreXdsPorts?: readonly number[];
  /** The shipped bootstrap to start from (default gateway-ads.yaml). */
  readonly file?: string;
  /** The ext_proc server's port on 127.0.0.1, for a bootstrap with a `readygate_extproc` cluster. */
  readonly extprocPort?: number;
  /**
   * Drop the shipped virtual host's retry policy: for a test that counts the requests a control plane
   * sent to an endpoint that was not listening, which a retry elsewhere would hide.
   */
  readonly withoutRetryPolicy?: boolean;
  /** node.locality.zone: the zone this Envoy declares (zone-aware Services prefer its endpoints). */
  readonly zone?: string;
}

export type Json = Record<string, unknown>;

/** Walks a path of keys and indexes through a parsed bootstrap. */
export function valueAt(node: unknown, ...keys: (string | number)[]): unknown {
  let current = node;
  for (const key of keys) current = (current as Record<string | number, unknown>)[key];
  return current;
}

/** valueAt, for a path that ends at an object the caller reads or edits. */
export function objectAt(node: unknown, ...keys: (string | number)[]): Json {
  return valueAt(node, ...keys) as Json;
}

/** A static cluster's first endpoint address, where its port is set. */
export function firstEndpointAddress(cluster: unknown): Json {
  return objectAt(
    cluster,
    'load_assignment',
    'endpoints',
    0,
    'lb_endpoints',
    0,
    'endpoint',
    'address',
    'socket_address',
  );
}

/** A bootstrap shipped in envoy/, parsed. */
export function shippedBootstrap(file: string): Json {
  return parseYaml(readFileSync(path.join(repoRoot, 'envoy', file), 'utf8')) as Json;
}

export function gatewayBootstrap(options: GatewayBootstrapOptions): Json {
  const bootstrap = shippedBootstrap(options.file ?? 'gateway-ads.yaml');
  objectAt(bootstrap, 'node')['id'] = options.nodeId;
  if (options.zone !== undefined) objectAt(bootstrap, 'node')['locality'] = { zone: options.zone };
  objectAt(bootstrap, 'admin', 'address', 'socket_address')['port_value'] = 0;
  objectAt(bootstrap, 'dynamic_resources', 'ads_config')['api_type'] = options.apiType;
  const statics = objectAt(bootstrap, 'static_resources');
  firstEndpointAddress(objectAt(statics, 'clusters', 0))['port_value'] = options.xdsPort;
  const xdsEndpoints = objectAt(statics, 'clusters', 0, 'load_assignment', 'endpoints', 0)[
    'lb_endpoints'
  ] as unknown[];
  for (const port of options.moreXdsPorts ?? []) {
    xdsEndpoints.push({
      endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } },
    });
  }
  if (options.extprocPort !== undefined) {
    const clusters = valueAt(statics, 'clusters') as Json[];
    const extproc = clusters.find((cluster) => cluster['name'] === 'readygate_extproc');
    if (extproc === undefined)
      throw new Error(`${options.file ?? 'gateway-ads.yaml'} has no readygate_extproc`);
    firstEndpointAddress(extproc)['port_value'] = options.extprocPort;
  }
  const listener = objectAt(statics, 'listeners', 0);
  objectAt(listener, 'address', 'socket_address')['port_value'] = options.listenerPort;
  const hcm = objectAt(listener, 'filter_chains', 0, 'filters', 0, 'typed_config');
  const virtualHost = objectAt(hcm, 'route_config', 'virtual_hosts', 0);
  if (options.withoutRetryPolicy === true) delete virtualHost['retry_policy'];
  virtualHost['routes'] = [{ match: { prefix: '/' }, route: { cluster_header: 'x-cluster', timeout: '5s' } }];
  return bootstrap;
}
