/**
 * Runs the real Envoy for tests: from a bootstrap object, a bootstrap file, or a template file with
 * {{PLACEHOLDERS}}. Each Envoy gets its own `--base-id` (so parallel test files never share hot-restart
 * shared memory), `--concurrency 1` (the machine is small and shared), and is waited on until admin
 * `/ready` says LIVE. `stop()` is idempotent and every Envoy still running when the test process exits is
 * killed, so a failing test cannot leak one.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { fillTemplate, type PlaceholderValue } from '../../src/demo/bootstrap.js';
import { findEnvoyBinary } from '../../src/demo/envoy-runner.js';
import { supervise } from '../../src/supervised-process.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The Envoy binary: READYGATE_ENVOY_BIN, else the pinned one installed by scripts/envoy-binary.sh. */
export function envoyBinary(): Promise<string> {
  return findEnvoyBinary(process.env);
}

/** Reads a YAML/JSON template (path relative to the repo root or absolute) and fills its placeholders. */
export function loadBootstrapTemplate(
  file: string,
  vars: Readonly<Record<string, PlaceholderValue>>,
): Record<string, unknown> {
  const absolute = path.isAbsolute(file) ? file : path.join(repoRoot, file);
  return fillTemplate(parseYaml(readFileSync(absolute, 'utf8')), vars) as Record<string, unknown>;
}

export interface StartEnvoyOptions {
  /** A bootstrap object (written as JSON) or a path to a bootstrap file Envoy reads as is. */
  bootstrap: Record<string, unknown> | string;
  logLevel?: 'trace' | 'debug' | 'info' | 'warning' | 'error' | 'critical' | 'off';
  /** How long to wait for admin /ready (default 30 s). */
  readyTimeoutMs?: number;
  /** Wait for /ready at all (an Envoy waiting on xDS is not ready until its control plane answers). */
  waitReady?: boolean;
  extraArgs?: readonly string[];
}

export interface AdminResponse {
  readonly status: number;
  readonly body: string;
}

export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
  description?: string;
}

export interface EnvoyProcess {
  readonly pid: number;
  /** `http://127.0.0.1:<port>` of the admin interface. */
  readonly adminUrl: string;
  readonly baseId: number;
  /** GET an admin path (e.g. `/ready`), bounded by a 5 s timeout. */
  admin(pathAndQuery: string): Promise<AdminResponse>;
  /** `/clusters?format=json`. */
  clusters(): Promise<unknown>;
  /** `/stats?format=json` as name → value (counters and gauges; histograms omitted). */
  stats(filter?: string): Promise<Map<string, number>>;
  /** One stat's value, or undefined if Envoy has no such stat. */
  stat(name: string): Promise<number | undefined>;
  /** `/config_dump` (add `?include_eds` etc. via `query`). */
  configDump(query?: string): Promise<unknown>;
  /** Polls `check` until it returns something other than undefined/false, or throws on timeout. */
  waitFor<T>(
    check: () => Promise<T | undefined | false> | T | undefined | false,
    options?: WaitOptions,
  ): Promise<T>;
  /** The last lines Envoy wrote (stderr + stdout), for failure messages. */
  logTail(lines?: number): string;
  /** Whether the process has exited. */
  exited(): boolean;
  stop(): Promise<void>;
}

/**
 * The exit hook cannot run when the test process is killed (an AVA timeout, Ctrl-C, SIGKILL); this
 * detached shell can: it polls both pids once a second and kills the child (Envoy, or another process a
 * test started) once its parent is gone, then exits by itself when the child does.
 */
export function startOrphanWatchdog(childPid: number): void {
  const script = `while kill -0 ${process.pid} 2>/dev/null && kill -0 ${childPid} 2>/dev/null; do sleep 1; done; kill -9 ${childPid} 2>/dev/null; exit 0`;
  const watchdog = spawn('sh', ['-c', script], { stdio: 'ignore', detached: true });
  watchdog.on('error', () => {
    // Without sh the exit hook is the only guard; tests still stop Envoy in teardown.
  });
  watchdog.unref();
}

let baseIdCounter = 0;
function uniqueBaseId(): number {
  // pid spreads parallel test processes apart; the counter separates Envoys within one process.
  baseIdCounter++;
  return (process.pid % 20_000) * 100 + (baseIdCounter % 100) + 1_000;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `check` yields a value; bounded by time and by count. */
export async function waitUntil<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  options: WaitOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const intervalMs = options.intervalMs ?? 50;
  const deadline = Date.now() + timeoutMs;
  const maxAttempts = Math.ceil(timeoutMs / intervalMs) + 1;
  let lastError: unknown;
  for (let attempt = 0; attempt < maxAttempts && Date.now() <= deadline; attempt++) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    await sleep(intervalMs);
  }
  const suffix = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${options.description ?? 'condition'}${suffix}`,
  );
}

async function httpGet(url: string, timeoutMs: number): Promise<AdminResponse> {
  const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  return { status: response.status, body: await response.text() };
}

export async function startEnvoy(options: StartEnvoyOptions): Promise<EnvoyProcess> {
  const binary = await envoyBinary();
  const workDir = mkdtempSync(path.join(tmpdir(), 'readygate-envoy-'));
  const configPath =
    typeof options.bootstrap === 'string' ? options.bootstrap : path.join(workDir, 'bootstrap.json');
  if (typeof options.bootstrap !== 'string') writeFileSync(configPath, JSON.stringify(options.bootstrap));
  const adminAddressPath = path.join(workDir, 'admin-address');
  const baseId = uniqueBaseId();
  const args = [
    '-c',
    configPath,
    '--base-id',
    String(baseId),
    '--concurrency',
    '1',
    '--admin-address-path',
    adminAddressPath,
    '--log-level',
    options.logLevel ?? 'warning',
    // Drain instantly on stop, unless the test is about draining and sets its own drain time.
    ...(options.extraArgs?.includes('--drain-time-s') === true ? [] : ['--drain-time-s', '0']),
    ...(options.extraArgs ?? []),
  ];
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid !== undefined) startOrphanWatchdog(child.pid);
  const supervised = supervise(child, {
    maxLogLines: 400,
    cleanup: () => {
      rmSync(workDir, { recursive: true, force: true });
    },
  });
  const logTail = (lines = 40): string => supervised.logTail(lines);
  const { stop } = supervised;

  try {
    const adminAddress = await waitUntil(
      () => {
        if (supervised.hasExited()) throw new Error(`envoy exited during startup:\n${logTail()}`);
        if (!existsSync(adminAddressPath)) return undefined;
        const text = readFileSync(adminAddressPath, 'utf8').trim();
        return text === '' ? undefined : text;
      },
      { timeoutMs: options.readyTimeoutMs ?? 30_000, description: 'envoy admin address' },
    );
    const adminUrl = `http://${adminAddress}`;
    const admin = (pathAndQuery: string): Promise<AdminResponse> =>
      httpGet(`${adminUrl}${pathAndQuery}`, 5000);
    const stats = async (filter?: string): Promise<Map<string, number>> => {
      const query = filter === undefined ? '' : `&filter=${encodeURIComponent(filter)}`;
      const response = await admin(`/stats?format=json${query}`);
      const parsed = JSON.parse(response.body) as { stats?: { name?: string; value?: number }[] };
      const values = new Map<string, number>();
      for (const entry of parsed.stats ?? []) {
        if (typeof entry.name === 'string' && typeof entry.value === 'number')
          values.set(entry.name, entry.value);
      }
      return values;
    };
    const processHandle: EnvoyProcess = {
      pid: child.pid ?? -1,
      adminUrl,
      baseId,
      admin,
      clusters: async () => JSON.parse((await admin('/clusters?format=json')).body) as unknown,
      stats,
      stat: async (name) => (await stats(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`)).get(name),
      configDump: async (query = '') => JSON.parse((await admin(`/config_dump${query}`)).body) as unknown,
      waitFor: (check, waitOptions) => waitUntil(check, waitOptions),
      logTail,
      exited: supervised.hasExited,
      stop,
    };
    if (options.waitReady ?? true) {
      await waitUntil(
        async () => {
          if (supervised.hasExited()) throw new Error(`envoy exited during startup:\n${logTail()}`);
          const ready = await admin('/ready');
          return ready.status === 200;
        },
        { timeoutMs: options.readyTimeoutMs ?? 30_000, description: 'envoy /ready' },
      );
    }
    return processHandle;
  } catch (error) {
    await stop();
    throw new Error(
      `envoy did not start: ${error instanceof Error ? error.message : String(error)}\n${logTail()}`,
      {
        cause: error,
      },
    );
  }
}
