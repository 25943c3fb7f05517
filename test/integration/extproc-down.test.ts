/**
 * ext_proc is an optional enhancer: with readygate's server gone, Envoy (failure_mode_allow: true) keeps
 * serving 2xx, and router failures still get this project's codes from HCM local_reply_config — only the
 * problem+json body, the cause header and the terminating-endpoint remap are lost.
 */
import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { TERMINATING_BODY, startTopology, type Topology } from '../../bench/extproc-fixture.js';
import { CAUSE_HEADER, PROBLEM_CONTENT_TYPE } from '../../src/extproc/problem.js';
import { externalProcessorServiceDefinition } from '../../src/extproc/server.js';

let topology: Topology | undefined;

test.before(async () => {
  topology = await startTopology({ messageTimeout: '2s' });
});

test.after.always(async () => {
  await topology?.close();
});

const env = (): Topology => {
  if (topology === undefined) throw new Error('topology did not start');
  return topology;
};

const get = (path: string): Promise<Response> =>
  fetch(`${env().baseUrl}${path}`, { signal: AbortSignal.timeout(10_000) });

test.serial('mapped while the ext_proc server runs', async (t) => {
  const response = await get('/close');
  t.is(response.status, 502);
  t.is(response.headers.get('content-type'), PROBLEM_CONTENT_TYPE);
  await response.arrayBuffer();
});

test.serial('after the ext_proc server is killed: 2xx keep succeeding', async (t) => {
  await env().stopExtproc();
  for (let i = 0; i < 5; i++) {
    const response = await get('/ok');
    t.is(response.status, 200);
    await response.arrayBuffer();
  }
});

// Path → [status from local_reply_config, Envoy's own local-reply body].
const routerFailures: [string, number, string | RegExp][] = [
  ['/refused', 503, /^upstream connect error or disconnect\/reset before headers\. .*Connection refused$/],
  [
    '/close',
    502,
    'upstream connect error or disconnect/reset before headers. reset reason: connection termination',
  ],
  [
    '/garbage',
    502,
    'upstream connect error or disconnect/reset before headers. reset reason: protocol error',
  ],
  ['/h2-reset', 502, 'upstream connect error or disconnect/reset before headers. reset reason: remote reset'],
  ['/slow', 504, 'upstream request timeout'],
  ['/max-duration', 504, 'upstream max stream duration reached'],
  ['/per-try', 504, 'upstream request timeout'],
  ['/empty', 503, 'no healthy upstream'],
  ['/missing', 503, ''],
  ['/overflow', 503, 'upstream connect error or disconnect/reset before headers. reset reason: overflow'],
];

for (const [path, status, body] of routerFailures) {
  test.serial(
    `after the ext_proc server is killed: ${path} still answers ${status} via local_reply_config`,
    async (t) => {
      const response = await get(path);
      t.is(response.status, status);
      t.is(response.headers.get(CAUSE_HEADER), null);
      // local_reply_config keeps "503 = retry soon" true without ext_proc.
      t.is(response.headers.get('retry-after'), status === 503 ? '1' : null);
      const text = await response.text();
      if (typeof body === 'string') t.is(text, body);
      else t.regex(text, body);
    },
  );
}

test.serial(
  'after the ext_proc server is killed: a terminating endpoint’s 500 passes unmapped',
  async (t) => {
    // The one remap local_reply_config cannot do: upstream responses never go through it.
    const response = await get('/terminating-500');
    t.is(response.status, 500);
    t.is(await response.text(), TERMINATING_BODY);
  },
);

test.serial('Envoy counted the outage as allowed failures, never as failed requests', async (t) => {
  const { extprocStat } = env();
  // 1 stream before the kill; 11 5xx responses after it, each failing to open and allowed through.
  t.is(await extprocStat('failure_mode_allowed'), 11);
  t.is(await extprocStat('streams_started'), 12);
});

test.serial(
  'an ext_proc server that never answers costs one message_timeout (0.2 s), then the plain reply',
  async (t) => {
    // A server that accepts Process streams and stays silent: what a wedged sidecar looks like to Envoy.
    const silent = new grpc.Server({ 'grpc.enable_channelz': 0 });
    const calls = new Set<grpc.ServerDuplexStream<Buffer, Buffer>>();
    silent.addService(externalProcessorServiceDefinition, {
      Process: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        calls.add(call);
        call.on('error', () => undefined);
        call.on('close', () => calls.delete(call));
      },
    });
    const port = await new Promise<number>((resolve, reject) => {
      silent.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => {
        if (error) reject(error);
        else resolve(bound);
      });
    });
    t.teardown(() => {
      silent.forceShutdown();
    });
    const wedged = await startTopology({ extproc: false, extprocPort: port });
    t.teardown(() => wedged.close());

    const ok = await fetch(`${wedged.baseUrl}/ok`, { signal: AbortSignal.timeout(10_000) });
    t.is(ok.status, 200);
    await ok.arrayBuffer();

    const started = Date.now();
    const empty = await fetch(`${wedged.baseUrl}/empty`, { signal: AbortSignal.timeout(10_000) });
    const elapsed = Date.now() - started;
    t.is(empty.status, 503);
    t.is(await empty.text(), 'no healthy upstream');
    t.is(empty.headers.get(CAUSE_HEADER), null);
    // At least the timeout; the upper bound only guards against "waits for something else entirely".
    t.true(elapsed >= 190, `answered after ${elapsed} ms`);
    t.true(elapsed < 5000, `answered after ${elapsed} ms`);
    t.is(await wedged.extprocStat('message_timeouts'), 1);
    t.is(await wedged.extprocStat('failure_mode_allowed'), 1);
  },
);
