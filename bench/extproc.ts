/**
 * ext_proc overhead benchmark (not a test): Envoy → loopback upstream under wrk, comparing
 *   (a) no ext_proc filter, 2xx path
 *   (b) readygate's ext_proc behind the 5xx matcher, 2xx path (no stream opens)
 *   (a5) no ext_proc filter, a terminating endpoint's 500 (passes through unmapped)
 *   (c) with ext_proc, the same 500 mapped to 503 problem+json
 * Targets (issue 4): (b) RPS within 3% of (a); (c) p99 ≤ (a5) p99 + 1 ms.
 * Each scenario runs with 16 connections (throughput: the 2-core machine is saturated, so RPS is what to
 * compare) and with 1 connection (latency: no queueing, so p50/p99 show the per-request cost). The
 * machine is shared, so scenarios run in interleaved short rounds (order rotated each round) against two
 * Envoys started side by side, and the table reports per-scenario medians over the rounds.
 * Upstreams run in a child process, so the bench process's CPU is the ext_proc server's.
 * Writes bench/results/extproc.json and prints a table. Bounded: every wrk run has a fixed duration and
 * a kill timeout. Installs wrk from Debian's packages if missing.
 *
 * Usage: node --import=tsx bench/extproc.ts [--rounds 5] [--duration 3] [--connections 16]
 * (--duration is seconds per round and scenario.)
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startTopology, type Topology } from './extproc-fixture.js';
import { envoyBinary } from '../test/helpers/envoy-process.js';

const execFileAsync = promisify(execFile);
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function argument(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  const value = index >= 0 ? Number(process.argv[index + 1]) : fallback;
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number`);
  return value;
}

const DURATION_S = argument('duration', 3);
const ROUNDS = argument('rounds', 5);
const WARMUP_S = 1;
const CONNECTIONS = argument('connections', 16);

function ensureWrk(): string {
  try {
    return execFileSync('wrk', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    // wrk --version exits 1 after printing; ENOENT means it is missing.
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      return (error as { stdout?: string }).stdout ?? '';
    }
  }
  console.error('bench: installing wrk from Debian packages');
  execFileSync('apt-get', ['install', '-y', 'wrk'], { stdio: 'inherit', timeout: 300_000 });
  return 'wrk (installed)';
}

interface WrkResult {
  requests: number;
  rps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  non2xx: number;
  socketErrors: string | null;
}

function toMs(value: string, unit: string): number {
  const number = Number(value);
  if (unit === 'us') return number / 1000;
  if (unit === 'ms') return number;
  if (unit === 's') return number * 1000;
  throw new Error(`unknown wrk unit ${unit}`);
}

function parseWrk(output: string): WrkResult {
  const percentile = (p: number): number => {
    const match = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm').exec(output);
    if (match?.[1] === undefined || match[2] === undefined)
      throw new Error(`no p${p} in wrk output:\n${output}`);
    return toMs(match[1], match[2]);
  };
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(output)?.[1];
  const requests = /^\s+(\d+) requests in/m.exec(output)?.[1];
  if (rps === undefined || requests === undefined) throw new Error(`unexpected wrk output:\n${output}`);
  return {
    requests: Number(requests),
    rps: Number(rps),
    p50Ms: percentile(50),
    p90Ms: percentile(90),
    p99Ms: percentile(99),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0),
    socketErrors: /Socket errors: (.*)/.exec(output)?.[1] ?? null,
  };
}

async function wrk(url: string, seconds: number, connections: number): Promise<WrkResult> {
  const { stdout } = await execFileAsync(
    'wrk',
    ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '--timeout', '5s', url],
    { timeout: (seconds + 30) * 1000, killSignal: 'SIGKILL' },
  );
  return parseWrk(stdout);
}

interface Scenario {
  name: string;
  description: string;
  topology: Topology;
  path: string;
  status: number;
}

interface RoundResult extends WrkResult {
  /** CPU seconds the bench process (which hosts the ext_proc server) used during the round. */
  extprocCpuS: number;
  extprocStreams: number;
}

interface ScenarioSummary {
  name: string;
  description: string;
  path: string;
  status: number;
  connections: number;
  rounds: number;
  /** Medians over the rounds. */
  rps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  rpsMin: number;
  rpsMax: number;
  /** ext_proc server CPU per request, µs (total CPU / total requests). */
  extprocCpuUsPerRequest: number;
  extprocStreams: number;
  requests: number;
}

async function probe(scenario: Scenario): Promise<void> {
  const response = await fetch(`${scenario.topology.baseUrl}${scenario.path}`, {
    signal: AbortSignal.timeout(5000),
  });
  await response.arrayBuffer();
  if (response.status !== scenario.status) {
    throw new Error(
      `${scenario.name}: ${scenario.path} answered ${response.status}, expected ${scenario.status}`,
    );
  }
}

async function round(scenario: Scenario, connections: number): Promise<RoundResult> {
  const url = `${scenario.topology.baseUrl}${scenario.path}`;
  const streamsBefore = await scenario.topology.extprocStat('streams_started');
  const cpuBefore = process.cpuUsage();
  const result = await wrk(url, DURATION_S, connections);
  const cpu = process.cpuUsage(cpuBefore);
  const streams = (await scenario.topology.extprocStat('streams_started')) - streamsBefore;
  const expectedNon2xx = scenario.status >= 400 ? result.requests : 0;
  // wrk counts requests it finished; a few in flight at the end may be cut, hence the tolerance.
  if (Math.abs(result.non2xx - expectedNon2xx) > connections) {
    throw new Error(
      `${scenario.name}: ${result.non2xx} non-2xx of ${result.requests}, expected ${expectedNon2xx}`,
    );
  }
  return { ...result, extprocCpuS: (cpu.user + cpu.system) / 1e6, extprocStreams: streams };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function summarize(scenario: Scenario, connections: number, rounds: readonly RoundResult[]): ScenarioSummary {
  const requests = rounds.reduce((sum, r) => sum + r.requests, 0);
  const cpu = rounds.reduce((sum, r) => sum + r.extprocCpuS, 0);
  return {
    name: scenario.name,
    description: scenario.description,
    path: scenario.path,
    status: scenario.status,
    connections,
    rounds: rounds.length,
    rps: median(rounds.map((r) => r.rps)),
    p50Ms: median(rounds.map((r) => r.p50Ms)),
    p90Ms: median(rounds.map((r) => r.p90Ms)),
    p99Ms: median(rounds.map((r) => r.p99Ms)),
    rpsMin: Math.min(...rounds.map((r) => r.rps)),
    rpsMax: Math.max(...rounds.map((r) => r.rps)),
    extprocCpuUsPerRequest: requests > 0 ? (cpu / requests) * 1e6 : 0,
    extprocStreams: rounds.reduce((sum, r) => sum + r.extprocStreams, 0),
    requests,
  };
}

/** Runs every scenario ROUNDS times at `connections`, rotating the order each round. */
async function measure(scenarios: readonly Scenario[], connections: number): Promise<ScenarioSummary[]> {
  for (const scenario of scenarios) {
    await wrk(`${scenario.topology.baseUrl}${scenario.path}`, WARMUP_S, connections);
  }
  const perScenario = new Map<string, RoundResult[]>(scenarios.map((s) => [s.name, []]));
  for (let index = 0; index < ROUNDS; index++) {
    for (let offset = 0; offset < scenarios.length; offset++) {
      const scenario = scenarios[(index + offset) % scenarios.length]!;
      perScenario.get(scenario.name)!.push(await round(scenario, connections));
    }
  }
  return scenarios.map((scenario) => summarize(scenario, connections, perScenario.get(scenario.name)!));
}

interface UpstreamProcess {
  addresses: Record<string, { host: string; port: number }>;
  stop(): void;
}

/** Starts bench/extproc-upstreams.ts and waits (bounded) for its address line. */
async function startUpstreamProcess(): Promise<UpstreamProcess> {
  const child = spawn(
    process.execPath,
    ['--import=tsx', path.join(repoRoot, 'bench', 'extproc-upstreams.ts')],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  const stop = (): void => {
    if (child.exitCode === null) child.kill('SIGKILL');
  };
  process.once('exit', stop);
  const addresses = await new Promise<Record<string, { host: string; port: number }>>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error('upstream process did not report its addresses within 30 s'));
    }, 30_000);
    let buffered = '';
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      const newline = buffered.indexOf('\n');
      if (newline < 0) return;
      clearTimeout(timer);
      resolve(JSON.parse(buffered.slice(0, newline)) as Record<string, { host: string; port: number }>);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`upstream process exited with ${code}`));
    });
  });
  return { addresses, stop };
}

async function main(): Promise<void> {
  const wrkVersion = ensureWrk().split('\n')[0] ?? 'wrk';
  const envoyVersionLine = execFileSync(await envoyBinary(), ['--version'], { encoding: 'utf8' }).trim();
  const envoyVersion = /version: \S+?\/(\d+\.\d+\.\d+)\//.exec(envoyVersionLine)?.[1] ?? envoyVersionLine;
  const results: ScenarioSummary[] = [];
  const upstreams = await startUpstreamProcess();
  const topologies: Topology[] = [];
  try {
    const common = { captureLogs: false, logLevel: 'info', upstreams: upstreams.addresses };
    const plain = await startTopology({ ...common, extproc: false, extprocFilter: false });
    topologies.push(plain);
    const mapped = await startTopology(common);
    topologies.push(mapped);
    const scenarios: Scenario[] = [
      { name: 'a', description: 'no ext_proc, 200', topology: plain, path: '/ok', status: 200 },
      {
        name: 'b',
        description: 'ext_proc behind 5xx matcher, 200',
        topology: mapped,
        path: '/ok',
        status: 200,
      },
      {
        name: 'a5',
        description: 'no ext_proc, terminating 500 passes',
        topology: plain,
        path: '/terminating-500',
        status: 500,
      },
      {
        name: 'c',
        description: 'ext_proc maps terminating 500 → 503',
        topology: mapped,
        path: '/terminating-500',
        status: 503,
      },
    ];
    for (const scenario of scenarios) await probe(scenario);
    for (const connections of [CONNECTIONS, 1]) results.push(...(await measure(scenarios, connections)));
  } finally {
    for (const topology of topologies) await topology.close();
    upstreams.stop();
  }

  const byName = (name: string, connections: number): ScenarioSummary => {
    const found = results.find((r) => r.name === name && r.connections === connections);
    if (found === undefined) throw new Error(`missing scenario ${name}`);
    return found;
  };
  const a = byName('a', CONNECTIONS);
  const b = byName('b', CONNECTIONS);
  const a5 = byName('a5', 1);
  const c = byName('c', 1);
  const comparisons = {
    // Throughput at 16 connections; latency at 1 connection (no queueing on the shared 2 cores).
    b_vs_a_rps_percent: Number((((b.rps - a.rps) / a.rps) * 100).toFixed(2)),
    b_within_3_percent_of_a: b.rps >= a.rps * 0.97,
    c_minus_a5_p99_ms: Number((c.p99Ms - a5.p99Ms).toFixed(3)),
    c_adds_at_most_1ms_p99: c.p99Ms - a5.p99Ms <= 1,
  };
  const report = {
    date: new Date().toISOString(),
    envoy: envoyVersion,
    node: process.version,
    cpus: os.cpus().length,
    // The machine is shared: a load average well above the CPU count means the figures are noisy.
    loadAverageAtEnd: os.loadavg().map((value) => Number(value.toFixed(2))),
    tool: wrkVersion,
    connections: CONNECTIONS,
    rounds: ROUNDS,
    secondsPerRound: DURATION_S,
    warmupS: WARMUP_S,
    scenarios: results,
    comparisons,
  };
  const outDir = path.join(repoRoot, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, 'extproc.json'), `${JSON.stringify(report, null, 2)}\n`);

  console.log(
    `\next_proc benchmark — Envoy ${envoyVersion}, wrk -t1, medians of ${ROUNDS} interleaved ${DURATION_S}s rounds, ${os.cpus().length} CPUs, load average ${os.loadavg()[0]?.toFixed(1) ?? '?'}\n`,
  );
  console.log(
    '| scenario | conns | status | RPS (min–max) | p50 ms | p90 ms | p99 ms | ext_proc streams | ext_proc CPU µs/req |',
  );
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of results) {
    console.log(
      `| ${r.name}: ${r.description} | ${r.connections} | ${r.status} | ${r.rps.toFixed(0)} (${r.rpsMin.toFixed(0)}–${r.rpsMax.toFixed(0)}) | ${r.p50Ms.toFixed(3)} | ${r.p90Ms.toFixed(3)} | ${r.p99Ms.toFixed(3)} | ${r.extprocStreams} | ${r.extprocCpuUsPerRequest.toFixed(0)} |`,
    );
  }
  console.log(
    `\n(b) vs (a) RPS at ${CONNECTIONS} connections: ${comparisons.b_vs_a_rps_percent}% (target ≥ -3%: ${comparisons.b_within_3_percent_of_a ? 'met' : 'MISSED'})`,
  );
  console.log(
    `(c) − (a5) p99 at 1 connection: ${comparisons.c_minus_a5_p99_ms} ms (target ≤ 1 ms: ${comparisons.c_adds_at_most_1ms_p99 ? 'met' : 'MISSED'})`,
  );
  console.log(`written: ${path.relative(repoRoot, path.join(outDir, 'extproc.json'))}`);
}

await main();
