/**
 * `npm run bench:k8s`: time from an EndpointSlice write acknowledged by the apiserver to every Envoy's
 * ACK of the resulting EDS version as seen in readygate's /debug/syncz, over BENCH_CHANGES (200) changes,
 * with 1 and with 10 real Envoys (BENCH_ENVOYS=1,10).
 *
 * Processes: etcd + kube-apiserver (the test harness), `readygate serve --source kubernetes` as its own
 * process (running as the least-privilege RBAC identity), N Envoys; this process only writes slices and
 * polls /debug/syncz every BENCH_POLL_MS (2). The poll interval bounds the resolution of each sample.
 * Every wait is bounded; a stuck run fails instead of hanging.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TypeUrl } from '../src/xds/resource-types.js';
import { startEnvoy, type EnvoyProcess } from '../test/helpers/envoy-process.js';
import { gatewayBootstrap } from '../test/helpers/gateway-bootstrap.js';
import {
  KubeObjects,
  endpointSlice,
  service,
  startKubeCluster,
  type KubeCluster,
} from '../test/helpers/kube-cluster.js';
import { freePort } from '../test/helpers/ports.js';
import { percentile, round1 } from './stats.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..');
const changes = Number(process.env['BENCH_CHANGES'] ?? 200);
const envoyCounts = (process.env['BENCH_ENVOYS'] ?? '1,10').split(',').map(Number);
const pollMs = Number(process.env['BENCH_POLL_MS'] ?? 2);
const NAMESPACE = 'bench';
const CLUSTER = `${NAMESPACE}/web:http`;
const ENDPOINTS = 10;

const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => {
    setTimeout(resolve, ms);
  });

interface SynczEntry {
  nodeId: string;
  types: Record<string, { ackedResources?: Record<string, string> } | undefined>;
}

async function syncz(adminUrl: string): Promise<SynczEntry[]> {
  const response = await fetch(`${adminUrl}/debug/syncz?resources=true`, {
    signal: AbortSignal.timeout(2_000),
  });
  return (await response.json()) as SynczEntry[];
}

/** The EDS version of CLUSTER each Envoy has ACKed, by node id. */
async function ackedVersions(adminUrl: string): Promise<Map<string, string | undefined>> {
  const acked = new Map<string, string | undefined>();
  for (const entry of await syncz(adminUrl)) {
    acked.set(entry.nodeId, entry.types[TypeUrl.ENDPOINT]?.ackedResources?.[CLUSTER]);
  }
  return acked;
}

/** Polls until every one of `nodeIds` ACKed one same version of CLUSTER other than `previous`. */
async function waitForAllAcks(
  adminUrl: string,
  nodeIds: readonly string[],
  previous: string | undefined,
  timeoutMs: number,
): Promise<string> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const acked = await ackedVersions(adminUrl);
    const versions = new Set(nodeIds.map((id) => acked.get(id)));
    const [only] = versions;
    if (versions.size === 1 && only !== undefined && only !== previous) return only;
    await sleep(pollMs);
  }
  throw new Error(`not every Envoy ACKed a new version of ${CLUSTER} within ${timeoutMs} ms`);
}

function startReadygate(kubeconfig: string, xdsPort: number, adminPort: number): ChildProcess {
  const args = [
    'serve',
    '--source',
    'kubernetes',
    '--kubeconfig',
    kubeconfig,
    '--namespace',
    NAMESPACE,
    '--xds-address',
    `127.0.0.1:${xdsPort}`,
    '--admin-address',
    `127.0.0.1:${adminPort}`,
  ];
  const script = `import { main } from ${JSON.stringify(path.join(repoRoot, 'src', 'cli', 'main.ts'))};
process.exitCode = await main(${JSON.stringify(args)});`;
  return spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: repoRoot,
    env: { ...process.env, READYGATE_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
}

async function waitForReady(adminUrl: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`${adminUrl}/readyz`, { signal: AbortSignal.timeout(1_000) });
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`readygate not ready within ${timeoutMs} ms`);
}

interface RunResult {
  envoys: number;
  changes: number;
  writeToAllAcksMs: { p50: number; p99: number; max: number; mean: number };
}

async function runWith(
  kubeconfig: string,
  envoyCount: number,
  writeSlice: (round: number) => Promise<void>,
): Promise<RunResult> {
  const xdsPort = await freePort();
  const adminPort = await freePort();
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const readygate = startReadygate(kubeconfig, xdsPort, adminPort);
  const envoys: EnvoyProcess[] = [];
  try {
    await waitForReady(adminUrl, 30_000);
    const nodeIds: string[] = [];
    for (let i = 0; i < envoyCount; i++) {
      const nodeId = `bench-envoy-${i}`;
      nodeIds.push(nodeId);
      envoys.push(
        await startEnvoy({
          bootstrap: gatewayBootstrap({ xdsPort, listenerPort: await freePort(), nodeId, apiType: 'GRPC' }),
        }),
      );
    }
    let previous = await waitForAllAcks(adminUrl, nodeIds, undefined, 30_000);
    // Warm-up rounds are not counted (JIT, first connections).
    for (let round = 0; round < 5; round++) {
      await writeSlice(round);
      previous = await waitForAllAcks(adminUrl, nodeIds, previous, 10_000);
    }
    const samples: number[] = [];
    for (let round = 0; round < changes; round++) {
      await writeSlice(round + 5);
      const acknowledged = performance.now(); // the apiserver answered the write
      previous = await waitForAllAcks(adminUrl, nodeIds, previous, 10_000);
      samples.push(performance.now() - acknowledged);
    }
    const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
    return {
      envoys: envoyCount,
      changes,
      writeToAllAcksMs: {
        p50: round1(percentile(samples, 50)),
        p99: round1(percentile(samples, 99)),
        max: round1(Math.max(...samples)),
        mean: round1(mean),
      },
    };
  } finally {
    await Promise.all(envoys.map((envoy) => envoy.stop()));
    readygate.kill('SIGTERM');
    await Promise.race([new Promise((resolve) => readygate.once('exit', resolve)), sleep(10_000)]);
    if (readygate.exitCode === null) readygate.kill('SIGKILL');
  }
}

async function main(): Promise<void> {
  let cluster: KubeCluster | undefined;
  try {
    cluster = await startKubeCluster();
    const admin = new KubeObjects(cluster.adminConfig());
    await admin.applyManifest(path.join(repoRoot, 'kind', 'base', 'rbac.yaml'));
    await admin.apply({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'readygate-bench-user' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'readygate' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'readygate' }],
    });
    const kubeconfig = (await cluster.userKubeconfig('readygate')).path;
    await admin.namespace(NAMESPACE);
    await admin.apply(
      service({ namespace: NAMESPACE, name: 'web', ports: [{ name: 'http', port: 80, targetPort: 8080 }] }),
    );
    // Each round flips one endpoint's readiness, so every write changes the eligible set.
    const state = Array.from({ length: ENDPOINTS }, () => true);
    const writeSlice = async (round: number): Promise<void> => {
      const index = round % ENDPOINTS;
      state[index] = !state[index];
      await admin.apply(
        endpointSlice({
          namespace: NAMESPACE,
          name: 'web-a',
          service: 'web',
          ports: [{ name: 'http', port: 8080 }],
          endpoints: state.map((ready, i) => ({ addresses: [`10.40.0.${i + 1}`], conditions: { ready } })),
        }),
      );
    };
    await writeSlice(-1);

    const results: RunResult[] = [];
    for (const count of envoyCounts) {
      const result = await runWith(kubeconfig, count, writeSlice);
      results.push(result);
      const r = result.writeToAllAcksMs;
      console.log(
        `${count} Envoy(s): p50 ${r.p50} ms, p99 ${r.p99} ms, max ${r.max} ms over ${result.changes} changes`,
      );
    }

    console.log('\n| Envoys | changes | p50 ms | p99 ms | max ms | mean ms |');
    console.log('|---:|---:|---:|---:|---:|---:|');
    for (const r of results) {
      const m = r.writeToAllAcksMs;
      console.log(`| ${r.envoys} | ${r.changes} | ${m.p50} | ${m.p99} | ${m.max} | ${m.mean} |`);
    }
    const outDir = path.join(here, 'results');
    mkdirSync(outDir, { recursive: true });
    writeFileSync(
      path.join(outDir, 'k8s.json'),
      `${JSON.stringify(
        {
          what: 'EndpointSlice write acknowledged by kube-apiserver → every Envoy ACKed the new EDS version (readygate /debug/syncz)',
          pollMs,
          machine: {
            cpus: os.cpus().length,
            node: process.version,
            platform: `${os.platform()} ${os.release()}`,
          },
          date: new Date().toISOString(),
          results,
        },
        null,
        2,
      )}\n`,
    );
  } finally {
    await cluster?.stop();
  }
}

await main();
