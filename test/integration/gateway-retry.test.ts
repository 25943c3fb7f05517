/**
 * The shipped gateway's retry policy (envoy/gateway-ads-extproc.yaml, virtual host `retry_policy`) with the
 * real Envoy, readygate's CDS/EDS and readygate's ext_proc: retry only what never reached an application,
 * on another endpoint, a bounded number of times.
 *
 * - A pod killed with SIGKILL under load: the requests it was serving get 502 (they reached it); every
 *   request started after it died gets 200, while Envoy still has the dead endpoint (nothing removes it
 *   from the control plane during the measured window).
 * - Every endpoint refusing: 503 + Retry-After, after exactly `num_retries` retries per request, each on
 *   the other endpoint first.
 * - An application's own 500 is never retried, even when the client asks for it with x-envoy-retry-on.
 * - A connect failure followed, on the retry, by a pod that breaks mid-request is a 502, not a 503.
 *
 * The Envoy route is the test one (cluster from the `x-cluster` header, gateway-bootstrap.ts); the retry
 * policy is the shipped virtual host's, untouched. Endpoints sit on 127.0.17.x so this file's addresses
 * stay apart from other test files'.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import anyTest, { type TestFn } from 'ava';
import { CAUSE_HEADER, PROBLEM_CONTENT_TYPE } from '../../src/extproc/problem.js';
import { startExtprocServer, type ExtprocServer } from '../../src/extproc/server.js';
import { EndpointStore } from '../../src/model/store.js';
import { killOnExit } from '../../src/supervised-process.js';
import { startControlPlane, type ControlPlane } from '../../src/xds/control-plane.js';
import { startEnvoy, waitUntil, type EnvoyProcess } from '../helpers/envoy-process.js';
import { gatewayBootstrap } from '../helpers/gateway-bootstrap.js';
import { endpoint, service } from '../helpers/model-fixtures.js';
import { freePort } from '../helpers/ports.js';
import { statusUpstream, tcpUpstream, type Upstream } from '../helpers/upstreams.js';

/** The shipped policy's `num_retries`. */
const NUM_RETRIES = 2;

const host = (last: number): string => `127.0.17.${last}`;

/**
 * A "pod" as its own process, so SIGKILL is real: the kernel closes its sockets, a connect to its address
 * is refused. `/slow` answers after `SLOW_MS` and prints `slow` when it arrives, so the test knows how
 * many requests are in flight on it; anything else answers 200 at once with the pod's name.
 */
const POD_SOURCE = `
import http from 'node:http';
const name = process.env.POD_NAME;
const slowMs = Number(process.env.SLOW_MS);
const server = http.createServer((request, response) => {
  request.resume();
  if (request.url === '/slow') {
    process.stdout.write('slow\\n');
    setTimeout(() => response.end(name), slowMs);
    return;
  }
  response.writeHead(200, { 'x-pod': name });
  response.end(name);
});
server.keepAliveTimeout = 60000;
server.listen({ host: process.env.LISTEN_HOST, port: Number(process.env.LISTEN_PORT), exclusive: true }, () => {
  process.stdout.write('listening\\n');
});
`;

interface PodProcess {
  readonly name: string;
  readonly child: ChildProcess;
  /** `/slow` requests that have arrived so far. */
  slowArrived(): number;
  readonly exited: Promise<void>;
}

async function startPod(name: string, address: string, port: number, slowMs: number): Promise<PodProcess> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', POD_SOURCE], {
    env: {
      ...process.env,
      POD_NAME: name,
      LISTEN_HOST: address,
      LISTEN_PORT: String(port),
      SLOW_MS: String(slowMs),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  killOnExit(child);
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      resolve();
    }),
  );
  let slow = 0;
  let listening = false;
  let buffered = '';
  child.stdout.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) {
      if (line === 'slow') slow++;
      if (line === 'listening') listening = true;
    }
  });
  await waitUntil(
    () => {
      if (child.exitCode !== null) throw new Error(`${name} exited before listening`);
      return listening;
    },
    { timeoutMs: 20_000, description: `${name} to listen` },
  );
  return { name, child, slowArrived: () => slow, exited };
}

interface Context {
  plane: ControlPlane;
  extproc: ExtprocServer;
  envoy: EnvoyProcess;
  listener: number;
  store: EndpointStore;
}
const test = anyTest as TestFn<Context>;

test.before(async (t) => {
  const store = new EndpointStore();
  const plane = await startControlPlane({ store, xdsAddress: '127.0.0.1:0' });
  const extproc = await startExtprocServer({ address: '127.0.0.1:0' });
  const listener = await freePort();
  const envoy = await startEnvoy({
    bootstrap: gatewayBootstrap({
      file: 'gateway-ads-extproc.yaml',
      xdsPort: plane.port,
      extprocPort: extproc.port,
      listenerPort: listener,
      nodeId: 'retry-gateway',
      apiType: 'GRPC',
    }),
    // An Envoy waiting for its first CDS answer is not ready yet; the services come per test.
    waitReady: false,
  });
  t.context = { plane, extproc, envoy, listener, store };
});

test.after.always(async (t) => {
  const { envoy, extproc, plane } = t.context as Partial<Context>;
  await envoy?.stop();
  await extproc?.close();
  await plane?.close();
});

interface Outcome {
  readonly startedAt: number;
  readonly status: number | 'error';
  readonly cause: string | null;
  readonly retryAfter: string | null;
  readonly contentType: string | null;
  readonly body: string;
}

async function request(
  listener: number,
  cluster: string,
  path = '/',
  headers: Record<string, string> = {},
): Promise<Outcome> {
  const startedAt = performance.now();
  try {
    const response = await fetch(`http://127.0.0.1:${listener}${path}`, {
      headers: { 'x-cluster': cluster, ...headers },
      signal: AbortSignal.timeout(10_000),
    });
    return {
      startedAt,
      status: response.status,
      cause: response.headers.get(CAUSE_HEADER),
      retryAfter: response.headers.get('retry-after'),
      contentType: response.headers.get('content-type'),
      body: await response.text(),
    };
  } catch (error) {
    const message = error instanceof Error ? `${error.message} ${String(error.cause)}` : String(error);
    return { startedAt, status: 'error', cause: null, retryAfter: null, contentType: null, body: message };
  }
}

async function clusterStat(envoy: EnvoyProcess, cluster: string, stat: string): Promise<number> {
  // Envoy turns the ':' of a cluster name into '_' in stat names.
  const name = `cluster.${cluster.replaceAll(':', '_')}.${stat}`;
  return (await envoy.stat(name)) ?? Number.NaN;
}

/**
 * The most retries the cluster lets be in flight at once, from Envoy's own view of it: a retry budget's
 * `min_retry_concurrency` (its floor), else `max_retries`, else Envoy's default of 3.
 */
async function retriesInFlightBound(envoy: EnvoyProcess, cluster: string): Promise<number> {
  type Threshold = {
    priority?: string;
    max_retries?: number;
    retry_budget?: { min_retry_concurrency?: number };
  };
  // With `resource=`, each entry of `configs` is one DynamicCluster.
  type Dump = {
    configs?: { cluster?: { name?: string; circuit_breakers?: { thresholds?: Threshold[] } } }[];
  };
  const dump = (await envoy.configDump('?resource=dynamic_active_clusters')) as Dump;
  const found = dump.configs?.find((c) => c.cluster?.name === cluster);
  if (found === undefined) throw new Error(`${cluster} is not an active cluster in Envoy`);
  const threshold = found.cluster?.circuit_breakers?.thresholds?.find(
    (th) => th.priority === undefined || th.priority === 'DEFAULT',
  );
  if (threshold?.retry_budget !== undefined) return threshold.retry_budget.min_retry_concurrency ?? 3;
  return threshold?.max_retries ?? 3;
}

interface HostStats {
  readonly address: string;
  readonly stats: Map<string, number>;
}

async function hostStats(envoy: EnvoyProcess, cluster: string): Promise<HostStats[]> {
  type Clusters = {
    cluster_statuses?: {
      name: string;
      host_statuses?: {
        address: { socket_address: { address: string } };
        stats?: { name: string; value?: string | number }[];
      }[];
    }[];
  };
  const parsed = (await envoy.clusters()) as Clusters;
  const status = parsed.cluster_statuses?.find((c) => c.name === cluster);
  return (status?.host_statuses ?? []).map((h) => ({
    address: h.address.socket_address.address,
    stats: new Map((h.stats ?? []).map((s) => [s.name, Number(s.value ?? 0)])),
  }));
}

test.serial(
  'a pod killed with SIGKILL under load: its in-flight requests 502, no new request lost',
  async (t) => {
    t.timeout(120_000);
    const { envoy, listener, store } = t.context;
    const cluster = 'default/crash:http';
    const port = await freePort(host(2));
    const victim = await startPod('crash-a', host(2), port, 1500);
    const survivor = await startPod('crash-b', host(3), port, 1500);
    t.teardown(() => {
      victim.child.kill('SIGKILL');
      survivor.child.kill('SIGKILL');
    });
    store.upsert(
      service('crash', [endpoint(host(2), undefined, 'crash-a'), endpoint(host(3), undefined, 'crash-b')], {
        port,
      }),
    );
    // Both pods answer through Envoy before the load starts.
    await waitUntil(
      async () => {
        const seen = new Set<string>();
        for (let i = 0; i < 6; i++) {
          const outcome = await request(listener, cluster);
          if (outcome.status === 200) seen.add(outcome.body);
        }
        return seen.size === 2;
      },
      { timeoutMs: 20_000, description: 'both pods to answer through Envoy' },
    );
    const retriesBefore = await clusterStat(envoy, cluster, 'upstream_rq_retry');

    // Clients in a loop, each bounded in count and time: as many as the cluster's bound on retries in
    // flight guarantees never to overflow (one retry at a time per request), at most 8. readygate's
    // clusters carry no retry budget yet, so that is Envoy's default max_retries, 3: with 4 clients ~40 %
    // of new requests would overflow (bench/retry-budget.ts; docs/envoy.md, Retries).
    const retryBound = await retriesInFlightBound(envoy, cluster);
    const clientCount = Math.min(8, retryBound);
    const outcomes: Outcome[] = [];
    let stopLoad = false;
    const loadDeadline = performance.now() + 60_000;
    const clients = Array.from({ length: clientCount }, async () => {
      for (let i = 0; i < 5000 && !stopLoad && performance.now() < loadDeadline; i++) {
        outcomes.push(await request(listener, cluster));
      }
    });

    // Requests in flight on the victim when it dies: send /slow until at least two sit on it.
    const slow: Promise<Outcome>[] = [];
    await waitUntil(
      () => {
        if (victim.slowArrived() >= 2) return true;
        if (slow.length < 40) slow.push(request(listener, cluster, '/slow'));
        return false;
      },
      { timeoutMs: 20_000, intervalMs: 100, description: 'two /slow requests in flight on the victim' },
    );
    // Every /slow sent so far has arrived somewhere (so the count on the victim is final).
    await waitUntil(() => victim.slowArrived() + survivor.slowArrived() === slow.length, {
      timeoutMs: 10_000,
      description: 'every /slow request to reach a pod',
    });
    const inFlightOnVictim = victim.slowArrived();

    const killedAt = performance.now();
    victim.child.kill('SIGKILL');
    await victim.exited;
    // The kernel closed the victim's sockets before its parent learnt of the exit: from here on a connect
    // to it is refused. Requests started after this instant are "new".
    const deadAt = performance.now();
    await new Promise((resolve) => setTimeout(resolve, 2000));
    stopLoad = true;
    await Promise.all(clients);
    const slowOutcomes = await Promise.all(slow);

    // Envoy still had the dead endpoint during the whole window: nothing told it otherwise.
    t.is(await clusterStat(envoy, cluster, 'membership_total'), 2);
    const victimHost = (await hostStats(envoy, cluster)).find((h) => h.address === host(2));
    t.truthy(victimHost, 'the dead endpoint is still in Envoy');
    // The dead endpoint was dealt with: new requests that picked it got a refused connect and were retried
    // on another host, or outlier detection (on every cluster readygate sends) ejected it first — the two
    // resets of its in-flight requests are consecutive local-origin failures. Which one wins is a race.
    const refused = victimHost?.stats.get('cx_connect_fail') ?? 0;
    const retries = (await clusterStat(envoy, cluster, 'upstream_rq_retry')) - retriesBefore;
    const ejections = await clusterStat(envoy, cluster, 'outlier_detection.ejections_enforced_total');
    t.log(`refused connects ${refused}, retries ${retries}, ejections ${ejections}`);
    t.true((refused >= 1 && retries >= 1) || ejections >= 1, 'neither retried nor ejected: not exercised');
    t.is(await clusterStat(envoy, cluster, 'upstream_rq_retry_overflow'), 0);

    // In flight on the victim: 502 with readygate's cause and problem body (they reached the app). The rest
    // of the /slow requests were on the survivor and finished.
    const slow502 = slowOutcomes.filter((o) => o.status === 502);
    t.is(slow502.length, inFlightOnVictim, JSON.stringify(slowOutcomes.map((o) => o.status)));
    t.is(slowOutcomes.filter((o) => o.status === 200).length, slowOutcomes.length - inFlightOnVictim);
    for (const outcome of slow502) {
      t.is(outcome.cause, 'upstream-connection-termination');
      t.is(outcome.contentType, PROBLEM_CONTENT_TYPE);
    }

    // Requests that started after the pod was dead: every one 200. Before that: 200, or 502 for one that
    // was on the victim when it died.
    const after = outcomes.filter((o) => o.startedAt >= deadAt);
    const afterFailed = after.filter((o) => o.status !== 200);
    t.true(after.length >= 20, `only ${after.length} requests after the kill`);
    t.deepEqual(afterFailed, [], `${afterFailed.length} of ${after.length} new requests failed`);
    const before = outcomes.filter((o) => o.startedAt < killedAt);
    t.deepEqual(
      before.filter((o) => o.status !== 200 && o.status !== 502),
      [],
    );
    t.log(
      `${clientCount} clients (retries in flight bounded at ${retryBound}); ` +
        `${after.length} requests after the kill, all 200; ${retries} retries; ${inFlightOnVictim} in flight ` +
        `on the victim → 502; ${outcomes.filter((o) => o.startedAt >= killedAt && o.startedAt < deadAt).length} started while it was dying`,
    );
  },
);

test.serial(
  'nothing healthy: 503 + Retry-After after exactly num_retries retries, each on the other host first',
  async (t) => {
    const { envoy, listener, store } = t.context;
    const cluster = 'default/down:http';
    // Nothing listens on this port on either address: every connect is refused.
    const port = await freePort(host(4));
    store.upsert(service('down', [endpoint(host(4)), endpoint(host(5))], { port }));
    await waitUntil(async () => (await clusterStat(envoy, cluster, 'membership_total')) === 2, {
      timeoutMs: 20_000,
      description: 'the down cluster with two endpoints in Envoy',
    });

    // Two requests: few enough attempts per host (3) that no outlier-detection default (5 consecutive
    // failures) can eject a host and change what is counted.
    const requests = 2;
    for (let i = 0; i < requests; i++) {
      const outcome = await request(listener, cluster);
      t.is(outcome.status, 503);
      t.is(outcome.retryAfter, '1');
      t.is(outcome.cause, 'upstream-connect-failure');
      t.is(outcome.contentType, PROBLEM_CONTENT_TYPE);
    }
    t.is(await clusterStat(envoy, cluster, 'upstream_rq_retry'), NUM_RETRIES * requests);
    t.is(await clusterStat(envoy, cluster, 'upstream_rq_retry_limit_exceeded'), requests);
    t.is(await clusterStat(envoy, cluster, 'upstream_cx_connect_fail'), (NUM_RETRIES + 1) * requests);
    // previous_hosts: each request's first retry went to the host it had not tried, so both hosts were
    // tried by every request.
    const hosts = await hostStats(envoy, cluster);
    t.is(hosts.length, 2);
    for (const h of hosts) t.true((h.stats.get('cx_connect_fail') ?? 0) >= requests, h.address);
  },
);

test.serial("an application's 500 is never retried, not even when the client asks for it", async (t) => {
  const { envoy, listener, store } = t.context;
  const cluster = 'default/fails:http';
  const port = await freePort(host(6));
  const appError = 'the application failed on its own';
  const upstreams: Upstream[] = await Promise.all(
    [host(6), host(7)].map((h) => statusUpstream(500, appError, { host: h, port })),
  );
  t.teardown(async () => {
    await Promise.all(upstreams.map((u) => u.close()));
  });
  store.upsert(service('fails', [endpoint(host(6)), endpoint(host(7))], { port }));
  await waitUntil(async () => (await clusterStat(envoy, cluster, 'membership_total')) === 2, {
    timeoutMs: 20_000,
    description: 'the fails cluster in Envoy',
  });

  const asks = [
    {},
    {},
    // Envoy 1.36.4 does not let a client turn retries on for an edge request; this proves it.
    { 'x-envoy-retry-on': '5xx,gateway-error,reset', 'x-envoy-max-retries': '3' },
    { 'x-envoy-retry-on': '5xx,gateway-error,reset', 'x-envoy-max-retries': '3' },
  ];
  for (const headers of asks) {
    const outcome = await request(listener, cluster, '/', headers);
    t.is(outcome.status, 500);
    t.is(outcome.body, appError);
    t.is(outcome.cause, null);
  }
  t.is(upstreams[0]!.hits() + upstreams[1]!.hits(), asks.length, 'the app saw each request exactly once');
  t.is(await clusterStat(envoy, cluster, 'upstream_rq_retry'), 0);
});

test.serial(
  'a refused connect, then a pod that breaks mid-request on the retry: 502, never retried again',
  async (t) => {
    const { envoy, listener, store } = t.context;
    const cluster = 'default/mixed:http';
    const port = await freePort(host(9));
    // The "pod" reads the request (so it reached the app), then drops the connection without answering.
    const breaking = await tcpUpstream(
      (socket: net.Socket) => {
        socket.once('data', () => socket.end());
      },
      { host: host(9), port },
    );
    t.teardown(() => breaking.close());
    // host(8) refuses on the same port.
    store.upsert(service('mixed', [endpoint(host(8)), endpoint(host(9))], { port }));
    await waitUntil(async () => (await clusterStat(envoy, cluster, 'membership_total')) === 2, {
      timeoutMs: 20_000,
      description: 'the mixed cluster in Envoy',
    });

    // Round robin alternates the first pick, so both orders happen: refused → retried onto the breaking
    // pod, and the breaking pod first (not retried: the request was sent).
    const requests = 4;
    for (let i = 0; i < requests; i++) {
      const outcome = await request(listener, cluster);
      t.is(outcome.status, 502, outcome.body);
      t.is(outcome.cause, 'upstream-connection-termination');
      t.is(outcome.contentType, PROBLEM_CONTENT_TYPE);
    }
    t.is(breaking.hits(), requests, 'each request reached the breaking pod exactly once');
    t.true((await clusterStat(envoy, cluster, 'upstream_rq_retry')) >= 1, 'a refused first try was retried');
  },
);
