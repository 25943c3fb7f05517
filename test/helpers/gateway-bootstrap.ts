/**
 * The shipped envoy/gateway-ads.yaml, adjusted for a test: free ports, the test's control plane, SotW or
 * Delta, and a route that picks the cluster from the `x-cluster` request header so one Envoy can reach
 * every cluster a test creates.
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
}

type Json = Record<string, unknown>;

export function gatewayBootstrap(options: GatewayBootstrapOptions): Json {
  const bootstrap = parseYaml(readFileSync(path.join(repoRoot, 'envoy', 'gateway-ads.yaml'), 'utf8')) as Json;
  const at = (value: unknown, ...keys: (string | number)[]): Json => {
    let node = value;
    for (const key of keys) node = (node as Record<string | number, unknown>)[key];
    return node as Json;
  };
  at(bootstrap, 'node')['id'] = options.nodeId;
  at(bootstrap, 'admin', 'address', 'socket_address')['port_value'] = 0;
  at(bootstrap, 'dynamic_resources', 'ads_config')['api_type'] = options.apiType;
  const statics = at(bootstrap, 'static_resources');
  at(
    statics,
    'clusters',
    0,
    'load_assignment',
    'endpoints',
    0,
    'lb_endpoints',
    0,
    'endpoint',
    'address',
    'socket_address',
  )['port_value'] = options.xdsPort;
  const xdsEndpoints = at(statics, 'clusters', 0, 'load_assignment', 'endpoints', 0)[
    'lb_endpoints'
  ] as unknown[];
  for (const port of options.moreXdsPorts ?? []) {
    xdsEndpoints.push({
      endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } },
    });
  }
  const listener = at(statics, 'listeners', 0);
  at(listener, 'address', 'socket_address')['port_value'] = options.listenerPort;
  const hcm = at(listener, 'filter_chains', 0, 'filters', 0, 'typed_config');
  at(hcm, 'route_config', 'virtual_hosts', 0)['routes'] = [
    { match: { prefix: '/' }, route: { cluster_header: 'x-cluster', timeout: '5s' } },
  ];
  return bootstrap;
}
