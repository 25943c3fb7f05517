/**
 * Loaded into every AVA worker (package.json, ava.require). A test file whose process is still alive
 * EXIT_GRACE_MS after its tests finished is holding something it never closed: a child process, a
 * server, a socket, a timer. AVA waits for that process to exit, and its own inactivity timeout does
 * not fire again once a trigger fell inside the period some test's t.timeout() asked for, so a leak
 * of something that never closes (a listening server, an interval) would hang the run until CI's
 * deadline. (The hang that led here was a test that never finished, caught by scripts/run-tests.mjs's
 * silence limit instead; running the suite with this watchdog found a 15 s timer left behind.) This
 * names what is still open and exits 1, which AVA reports as `not ok - <file> exited with a non-zero
 * exit code: 1`.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { registerCompletionHandler } from 'ava';

/** Longer than any orderly close after the last teardown (sockets draining, processes reaped). */
const EXIT_GRACE_MS = 10_000;

/** What one active handle is, in terms a reader can trace back to a test. */
function describeHandle(handle: unknown): string {
  if (handle === null || typeof handle !== 'object') return String(handle);
  const kind = handle.constructor.name;
  const fields = handle as {
    pid?: number;
    spawnargs?: string[];
    address?: () => unknown;
    localPort?: number;
    remoteAddress?: string;
    remotePort?: number;
    fd?: number;
  };
  if (Array.isArray(fields.spawnargs)) {
    return `${kind} pid ${fields.pid}: ${fields.spawnargs.join(' ').slice(0, 300)}`;
  }
  if (fields.remoteAddress !== undefined) {
    return `${kind} :${fields.localPort} → ${fields.remoteAddress}:${fields.remotePort}`;
  }
  if (typeof fields.address === 'function') {
    try {
      const address = JSON.stringify(fields.address());
      // An unnamed pipe, such as this worker's own channel to AVA.
      return address === '{}' ? `${kind} (pipe)` : `${kind} listening on ${address}`;
    } catch {
      return kind;
    }
  }
  if (typeof fields.fd === 'number') return `${kind} fd ${fields.fd}`;
  return kind;
}

/** This worker's test file, relative to the project (AVA gives a file URL). */
function testFile(): string {
  const file = test.meta.file;
  return path.relative(process.cwd(), file.startsWith('file:') ? fileURLToPath(file) : file);
}

registerCompletionHandler(() => {
  const timer = setTimeout(() => {
    // node's own list of live handles (undocumented, used for diagnostics only: it names what each is).
    const handles = (process as unknown as { _getActiveHandles?: () => unknown[] })._getActiveHandles?.();
    const described =
      handles
        ?.filter((handle) => handle !== process.stdout && handle !== process.stderr)
        .map(describeHandle) ?? [];
    // Timers and pending requests are not handles: node's resource names count them.
    const counts = new Map<string, number>();
    for (const name of process.getActiveResourcesInfo()) counts.set(name, (counts.get(name) ?? 0) + 1);
    const resources = [...counts].map(([name, count]) => `${name} × ${count}`).join(', ');
    const held = [...described, `resources: ${resources}`].join('; ');
    console.error(
      `exit-watchdog: ${testFile()} is still running ${EXIT_GRACE_MS} ms after its tests finished; held by: ${held}`,
    );
    process.exit(1);
  }, EXIT_GRACE_MS);
  // Never the reason the process stays alive.
  timer.unref();
});
