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
    ports: [upstream.port],
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
    ports: [upstream.port],
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
    ports: [port],
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

test('answered() waits for every request sent before it, and not for those sent after', async (t) => {
  // The first request is held until released; every later one is answered after 1.5 s.
  let release: () => void = () => undefined;
  let arrived = 0;
  const upstream = await server((_request, response) => {
    arrived++;
    if (arrived === 1) {
      release = () => response.end('held');
      return;
    }
    setTimeout(() => response.end('late'), 1500);
  });
  t.teardown(upstream.close);
  let phase = 'before';
  const sends = { before: 0, after: 0 };
  const load = startLoad({
    host: '127.0.0.1',
    ports: [upstream.port],
    rate: 4,
    concurrency: 8,
    requestTimeoutMs: 5000,
    maxDurationMs: 1000,
    origin: performance.now(),
    // Read once per request sent: counts the sends of each phase.
    phase: () => {
      sends[phase as 'before' | 'after']++;
      return phase;
    },
  });
  while (arrived === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  phase = 'after';
  let answered = false;
  const waiting = load.answered().then(() => {
    answered = true;
  });
  // Later requests go out meanwhile (4/s); the held one keeps answered() waiting.
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.false(answered, 'the held request is still open');
  t.true(sends.after >= 1, `${sends.after} requests sent after the call`);
  release();
  await waiting;
  const count = (name: string): number => load.samples.filter((s) => s.phase === name).length;
  t.is(count('before'), sends.before, 'every request sent before the call has its sample');
  t.true(count('after') < sends.after, 'requests sent after the call were not waited for');
  await load.stop();
});

test('requests alternate between the gateways, each sample naming the one that carried it', async (t) => {
  const first = await server((_request, response) => response.end('first'));
  const second = await server((_request, response) => response.end('second'));
  t.teardown(first.close);
  t.teardown(second.close);
  const load = startLoad({
    host: '127.0.0.1',
    ports: [first.port, second.port],
    rate: 100,
    concurrency: 8,
    requestTimeoutMs: 2000,
    maxDurationMs: 100,
    origin: performance.now(),
    phase: () => 'p',
  });
  await new Promise((resolve) => setTimeout(resolve, 250));
  const samples = await load.stop();
  // How many were sent depends on the timer under load (at most 10); the split does not.
  const viaFirst = samples.filter((s) => s.via === 0).length;
  const viaSecond = samples.filter((s) => s.via === 1).length;
  t.true(samples.length >= 2 && samples.length <= 10, `${samples.length} samples`);
  t.is(viaFirst + viaSecond, samples.length);
  t.true(viaFirst - viaSecond === 0 || viaFirst - viaSecond === 1, `${viaFirst} vs ${viaSecond}`);
});
