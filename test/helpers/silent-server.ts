/**
 * A TCP server on 127.0.0.1 that accepts every connection and never writes a byte: the admin that
 * "accepts and never answers" (a stuck process, a blackholing proxy). And a runner for the built CLI
 * under forced garbage collection (gc-pressure.mjs), to show its deadlines hold whatever the GC does.
 */
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';

export interface SilentServer {
  readonly url: string;
  /** Connections accepted so far. */
  accepted(): number;
  close(): Promise<void>;
}

export async function startSilentServer(): Promise<SilentServer> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server = createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    accepted: () => accepted,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

export interface CliRun {
  readonly code: number | null;
  readonly elapsedMs: number;
  readonly stdout: string;
  readonly stderr: string;
  /** Major GCs the child ran during the command (from gc-pressure.mjs). */
  readonly majorGcs: number;
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Runs `bin/readygate.js ARGS` (the build in dist/: `npm run build` first) with GC forced every 50 ms.
 * The child is killed at `killAfterMs` (a hang, reported as code null) so a broken deadline fails the
 * test instead of stalling it.
 */
export function runCliUnderGc(args: readonly string[], killAfterMs = 30_000): Promise<CliRun> {
  const started = performance.now();
  const child = spawn(
    process.execPath,
    ['--expose-gc', '--import', './test/helpers/gc-pressure.mjs', 'bin/readygate.js', ...args],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(killer);
      const majorGcs = Number(/gc-pressure: (\d+) major collections/.exec(stderr)?.[1] ?? 0);
      resolve({
        code,
        elapsedMs: performance.now() - started,
        stdout,
        stderr: stderr.replace(/gc-pressure: \d+ major collections\n/, ''),
        majorGcs,
      });
    });
  });
}
