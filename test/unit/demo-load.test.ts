/**
 * The load generator against a local server: open-loop rate, hard bounds on time and count, the
 * concurrency cap, and what it records per response.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { startLoad } from '../../src/demo/load.js';

async function server(handler: http.RequestListener): Promise<{ port: number; close: () => Promise<void> }> {
  const srv = http.createServer(handler);
  await new Promise<void>((resolve) => srv.listen({ host: '127.0.0.1', port: 0 }, resolve));
  return {
    port: (srv.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        srv.closeAllConnections();
        srv.close(() => {
          resolve();
        });
      }),
  };
}

test('sends at the offered rate until its time bound, recording status, Retry-After, cause and failure body', async (t) => {
  let n = 0;
  const upstream = await server((_request, response) => {
    n++;
    if (n % 4 === 0) {
      response.writeHead(503, { 'retry-after': '1', 'x-readygate-cause': 'no-healthy-upstream' });
      response.end('no healthy upstream\nsecond line');
    } else {
      response.end('ok');
    }
  });
  t.teardown(upstream.close);
  const origin = performance.now();
  const load = startLoad({
    host: '127.0.0.1',
    port: upstream.port,
    rate: 200,
    // Above the 100 requests the bounds allow: a catch-up burst after a stall never hits the cap here.
    concurrency: 128,
    requestTimeoutMs: 2000,
    maxDurationMs: 500,
    origin,
    phase: () => 'p',
  });
  await new Promise((resolve) => setTimeout(resolve, 900));
  const samples = await load.stop();
  // 200/s for 0.5 s = 100 due; the bound on count makes more impossible (fewer only on a stalled machine).
  t.true(samples.length >= 10 && samples.length <= 100, `${samples.length} samples`);
  t.is(load.skipped(), 0);
  t.true(samples.every((s) => s.phase === 'p' && s.t >= 0 && s.t <= 520));
  const failures = samples.filter((s) => s.status === 503);
  t.true(failures.length > 0);
  t.true(
    failures.every(
      (s) => s.retryAfter === true && s.cause === 'no-healthy-upstream' && s.body === 'no healthy upstream',
    ),
  );
  t.true(samples.filter((s) => s.status === 200).every((s) => s.body === undefined));
});

test('beyond the concurrency cap due requests are skipped, not queued; stop() waits for those in flight', async (t) => {
  const upstream = await server((_request, response) => {
    setTimeout(() => response.end('slow'), 300);
  });
  t.teardown(upstream.close);
  const load = startLoad({
    host: '127.0.0.1',
    port: upstream.port,
    rate: 200,
    concurrency: 4,
    requestTimeoutMs: 2000,
    maxDurationMs: 200,
    origin: performance.now(),
    phase: () => 'p',
  });
  await new Promise((resolve) => setTimeout(resolve, 250));
  const samples = await load.stop();
  t.is(samples.length, 4);
  t.true(samples.every((s) => s.status === 200 && s.latencyMs >= 250));
  t.true(load.skipped() >= 10, `skipped ${load.skipped()}`);
});

test('a refused connection is recorded as status 0 with its error code', async (t) => {
  const upstream = await server((_request, response) => response.end());
  const { port } = upstream;
  await upstream.close();
  const load = startLoad({
    host: '127.0.0.1',
    port,
    rate: 50,
    concurrency: 4,
    requestTimeoutMs: 1000,
    maxDurationMs: 100,
    origin: performance.now(),
    phase: () => 'p',
  });
  await new Promise((resolve) => setTimeout(resolve, 200));
  const samples = await load.stop();
  t.true(samples.length > 0);
  t.true(samples.every((s) => s.status === 0 && s.error === 'ECONNREFUSED'));
});
