/**
 * httpGet's deadline against servers that accept and then go quiet, with garbage collection forced
 * while the request waits: the failure this helper exists for (on Node 20, a fetch signal built with
 * AbortSignal.any over AbortSignal.timeout stopped firing after a GC, so `drain-wait` and `status` hung).
 * The servers are real sockets on 127.0.0.1; "silent" is the behaviour under test, not a fake.
 */
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { PerformanceObserver, constants, type PerformanceEntry } from 'node:perf_hooks';
import test from 'ava';
import { ErrorCode, isReadygateError } from '../../src/errors.js';
import { httpGet, withDeadline } from '../../src/net.js';

// Exposes gc() without restarting the worker with --expose-gc: the flag applies to new contexts.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

type GcEntry = PerformanceEntry & { readonly detail?: { readonly kind?: number } };

/** Forces a full GC every `everyMs` and counts the major collections that really ran. */
function gcPressure(everyMs: number): { stop(): number } {
  let majors = 0;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries())
      if ((entry as GcEntry).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors += 1;
  });
  observer.observe({ entryTypes: ['gc'] });
  const timer = setInterval(gc, everyMs);
  return {
    stop() {
      clearInterval(timer);
      observer.disconnect();
      return majors;
    },
  };
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Accepts every connection and never writes a byte. */
async function silentServer(): Promise<{ url: string; close(): Promise<void>; accepted(): number }> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server = createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.on('error', () => {});
  });
  const url = await listen(server);
  return {
    url,
    accepted: () => accepted,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

test('a server that accepts and never answers: rejected at the deadline although GC runs during the wait', async (t) => {
  const server = await silentServer();
  const pressure = gcPressure(50);
  const started = performance.now();
  const error = await t.throwsAsync(httpGet(`${server.url}/drain-wait`, { deadlineMs: 1000 }));
  const elapsed = performance.now() - started;
  const majors = pressure.stop();
  t.true(isReadygateError(error, ErrorCode.ADMIN_UNREACHABLE));
  t.is(error.message, 'no complete answer within 1000 ms');
  t.true(elapsed >= 990 && elapsed < 2500, `rejected after ${elapsed} ms`);
  t.true(majors >= 5, `${majors} major GCs ran during the wait`);
  t.is(server.accepted(), 1);
  await server.close();
});

test('headers then a body that never ends: the same deadline covers the body', async (t) => {
  const server = createHttpServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' });
    response.write('{"drained":');
  });
  const url = await listen(server);
  const pressure = gcPressure(50);
  const started = performance.now();
  const error = await t.throwsAsync(httpGet(url, { deadlineMs: 800 }));
  const elapsed = performance.now() - started;
  pressure.stop();
  t.is(error.message, 'no complete answer within 800 ms');
  t.true(elapsed >= 790 && elapsed < 2300, `rejected after ${elapsed} ms`);
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

test('a whole answer: status and body', async (t) => {
  const server = createHttpServer((request, response) => {
    response.writeHead(504, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ path: request.url, accept: request.headers.accept }));
  });
  const url = await listen(server);
  const answer = await httpGet(`${url}/x?y=1`, { deadlineMs: 2000, headers: { accept: 'application/json' } });
  t.is(answer.status, 504);
  t.deepEqual(JSON.parse(answer.body), { path: '/x?y=1', accept: 'application/json' });
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

test('a body over maxBodyBytes is refused, not buffered', async (t) => {
  const server = createHttpServer((_request, response) => {
    response.writeHead(200);
    response.end(Buffer.alloc(64 * 1024, 'x'));
  });
  const url = await listen(server);
  const error = await t.throwsAsync(httpGet(url, { deadlineMs: 2000, maxBodyBytes: 1024 }));
  t.is(error.message, 'answer larger than 1024 bytes');
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

test('a refused connection names the socket error; an abort ends the wait at once', async (t) => {
  const closed = createServer();
  const url = await listen(closed);
  await new Promise((resolve) => closed.close(resolve));
  const refused = await t.throwsAsync(httpGet(url, { deadlineMs: 2000 }));
  t.is(refused.message, 'ECONNREFUSED');

  const server = await silentServer();
  const controller = new AbortController();
  const started = performance.now();
  setTimeout(() => {
    controller.abort();
  }, 100);
  const aborted = await t.throwsAsync(httpGet(server.url, { deadlineMs: 10_000, signal: controller.signal }));
  t.is(aborted.message, 'aborted');
  t.true(performance.now() - started < 2000);
  await server.close();
});

test('withDeadline: a promise that never settles is rejected at the deadline, GC or not', async (t) => {
  const pressure = gcPressure(50);
  const started = performance.now();
  const error = await t.throwsAsync(withDeadline(new Promise(() => {}), 500, 'resolving peers.example'));
  const elapsed = performance.now() - started;
  pressure.stop();
  t.is(error.message, 'resolving peers.example: no answer within 500 ms');
  t.true(elapsed >= 490 && elapsed < 2000, `rejected after ${elapsed} ms`);
  t.is(await withDeadline(Promise.resolve(7), 500, 'x'), 7);
});
