/**
 * How many new requests a dead endpoint still costs under the shipped gateways' retry policy, for each
 * bound on concurrent retries a cluster can carry (not a test). One Envoy cluster with two endpoints on
 * loopback — one answering, one refusing every connect (a pod killed with SIGKILL) — behind the shipped
 * virtual host `retry_policy` (read from envoy/gateway-ads.yaml), under C clients in a loop for a fixed
 * time. A retry the cluster's bound does not allow is not made: the request fails (503, `upstream_rq_retry_overflow`).
 *
 * Variants: Envoy's default (`max_retries` 3, what readygate's clusters carry while they set no circuit
 * breakers) and `retry_budget`s. Writes bench/results/retry-budget.json and prints a table.
 *
 * Usage: node --import=tsx bench/retry-budget.ts [--seconds 2] [--clients 4,12,32]
 */
import http from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEnvoy } from '../test/helpers/envoy-process.js';
import { objectAt, shippedBootstrap, valueAt } from '../test/helpers/gateway-bootstrap.js';
import { freePort } from '../test/helpers/ports.js';
import { okUpstream, refusingUpstream } from '../test/helpers/upstreams.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function flag(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? (process.argv[index + 1] ?? fallback) : fallback;
}
const seconds = Number(flag('seconds', '2'));
const clientCounts = flag('clients', '4,12,32').split(',').map(Number);

const VARIANTS: Record<string, Record<string, unknown> | undefined> = {
  'default (max_retries 3)': undefined,
  'retry_budget 20 %, min 3': { retry_budget: { budget_percent: { value: 20 }, min_retry_concurrency: 3 } },
  'retry_budget 100 %, min 3': { retry_budget: { budget_percent: { value: 100 }, min_retry_concurrency: 3 } },
  'retry_budget 20 %, min 50': { retry_budget: { budget_percent: { value: 20 }, min_retry_concurrency: 50 } },
};

/** The shipped virtual host's retry policy, so the bench measures what the gateways run. */
function shippedRetryPolicy(): unknown {
  const bootstrap = shippedBootstrap('gateway-ads.yaml');
  const hcm = objectAt(bootstrap, 'static_resources', 'listeners', 0, 'filter_chains', 0, 'filters', 0);
  return valueAt(hcm, 'typed_config', 'route_config', 'virtual_hosts', 0, 'retry_policy');
}

function get(port: number, agent: http.Agent): Promise<number | 'error'> {
  return new Promise((resolve) => {
    const request = http.get({ host: '127.0.0.1', port, path: '/', agent, timeout: 5000 }, (response) => {
      response.resume();
      response.on('end', () => {
        resolve(response.statusCode ?? 0);
      });
    });
    request.on('timeout', () => request.destroy());
    request.on('error', () => {
      resolve('error');
    });
  });
}

interface Row {
  variant: string;
  clients: number;
  requests: number;
  failed: number;
  overflows: number;
}

async function main(): Promise<void> {
  const alive = await okUpstream({ host: '127.0.0.1' });
  const dead = await refusingUpstream({ host: '127.0.0.1' });
  const rows: Row[] = [];
  for (const [variant, thresholds] of Object.entries(VARIANTS)) {
    const listener = await freePort();
    const cluster: Record<string, unknown> = {
      name: 'app',
      type: 'STATIC',
      connect_timeout: '1s',
      load_assignment: {
        cluster_name: 'app',
        endpoints: [
          {
            lb_endpoints: [alive, dead].map((u) => ({
              endpoint: { address: { socket_address: { address: u.host, port_value: u.port } } },
            })),
          },
        ],
      },
      ...(thresholds === undefined ? {} : { circuit_breakers: { thresholds: [thresholds] } }),
    };
    const envoy = await startEnvoy({
      bootstrap: {
        admin: { address: { socket_address: { address: '127.0.0.1', port_value: 0 } } },
        static_resources: {
          clusters: [cluster],
          listeners: [
            {
              name: 'ingress',
              address: { socket_address: { address: '127.0.0.1', port_value: listener } },
              filter_chains: [
                {
                  filters: [
                    {
                      name: 'envoy.filters.network.http_connection_manager',
                      typed_config: {
                        '@type':
                          'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                        stat_prefix: 'ingress',
                        http_filters: [
                          {
                            name: 'envoy.filters.http.router',
                            typed_config: {
                              '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router',
                            },
                          },
                        ],
                        route_config: {
                          virtual_hosts: [
                            {
                              name: 'all',
                              domains: ['*'],
                              retry_policy: shippedRetryPolicy(),
                              routes: [{ match: { prefix: '/' }, route: { cluster: 'app' } }],
                            },
                          ],
                        },
                      },
                    },
                  ],
                },
              ],
            },
          ],
        },
      },
    });
    try {
      for (const clients of clientCounts) {
        const overflowBefore = (await envoy.stat('cluster.app.upstream_rq_retry_overflow')) ?? 0;
        const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
        const end = Date.now() + seconds * 1000;
        let requests = 0;
        let failed = 0;
        await Promise.all(
          Array.from({ length: clients }, async () => {
            for (let i = 0; i < 1_000_000 && Date.now() < end; i++) {
              requests++;
              if ((await get(listener, agent)) !== 200) failed++;
            }
          }),
        );
        agent.destroy();
        const overflows =
          ((await envoy.stat('cluster.app.upstream_rq_retry_overflow')) ?? 0) - overflowBefore;
        rows.push({ variant, clients, requests, failed, overflows });
        console.log(
          `${variant.padEnd(28)} ${String(clients).padStart(3)} clients: ${failed} of ${requests} failed (${overflows} overflows)`,
        );
      }
    } finally {
      await envoy.stop();
    }
  }
  await alive.close();
  const out = path.join(repoRoot, 'bench', 'results', 'retry-budget.json');
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ seconds, rows }, null, 2)}\n`);
  console.log(`wrote ${path.relative(repoRoot, out)}`);
}

await main();
