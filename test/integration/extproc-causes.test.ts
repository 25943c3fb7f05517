/**
 * One test per failure cause against the real Envoy (pinned 1.36.4) and readygate's ext_proc server:
 * exact status, problem+json body, cause header, Retry-After, and the flags/details Envoy sent (which is
 * how the `response.flags` bit positions in src/extproc/classify.ts were verified).
 */
import test from 'ava';
import { APP_ERROR_BODY, startTopology, type Topology } from '../../bench/extproc-fixture.js';
import { FailureCause, ResponseFlagBit as F } from '../../src/extproc/classify.js';
import { EXTPROC_METRIC_NAMES } from '../../src/extproc/metrics.js';
import { CAUSE_HEADER, PROBLEM_CONTENT_TYPE } from '../../src/extproc/problem.js';
import type { ResettableUpstream } from '../helpers/upstreams.js';

let topology: Topology | undefined;

test.before(async () => {
  topology = await startTopology({ debug: true, messageTimeout: '2s' });
});

test.after.always(async () => {
  await topology?.close();
});

const env = (): Topology => {
  if (topology === undefined) throw new Error('topology did not start');
  return topology;
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface Expected {
  path: string;
  status: 502 | 503 | 504;
  cause: FailureCause;
  title: string;
  /** What Envoy 1.36.4 put in `response.flags` / `response.code_details` for this cause. */
  flags: number;
  codeDetails: string | RegExp;
  /** Debug fields the body must carry (cluster etc.); absent keys must be absent. */
  debug: { cluster?: string; pod?: string; upstream?: string };
}

async function assertMapped(t: import('ava').ExecutionContext, expected: Expected): Promise<void> {
  const { baseUrl, logs } = env();
  const response = await fetch(`${baseUrl}${expected.path}`, { signal: AbortSignal.timeout(10_000) });
  const text = await response.text();
  t.is(response.status, expected.status, text);
  t.is(response.headers.get('content-type'), PROBLEM_CONTENT_TYPE);
  t.is(response.headers.get(CAUSE_HEADER), expected.cause);
  t.is(response.headers.get('retry-after'), expected.status === 503 ? '1' : null);
  const body = JSON.parse(text) as Record<string, unknown>;
  const requestId = body['request_id'];
  t.regex(String(requestId), UUID);
  const expectedBody: Record<string, unknown> = {
    type: `https://readygate.dev/problems/${expected.cause}`,
    title: expected.title,
    status: expected.status,
    detail: body['detail'],
    request_id: requestId,
    ...expected.debug,
  };
  t.deepEqual(body, expectedBody);
  t.is(typeof body['detail'], 'string');
  // The server's one log line for this mapping, carrying what Envoy sent.
  const line = logs.find((entry) => entry['event'] === 'extproc.mapped' && entry['request_id'] === requestId);
  t.truthy(line, 'mapping was logged');
  t.is(line?.['cause'], expected.cause);
  t.is(line?.['status'], expected.status);
  t.is(line?.['response_flags'], expected.flags);
  if (typeof expected.codeDetails === 'string') t.is(line?.['code_details'], expected.codeDetails);
  else t.regex(String(line?.['code_details']), expected.codeDetails);
}

const upstreamOf = (name: string): string => env().upstreams[name]!.address;

test.serial('connection refused → 503 upstream-connect-failure (UF)', async (t) => {
  await assertMapped(t, {
    path: '/refused',
    status: 503,
    cause: FailureCause.UPSTREAM_CONNECT_FAILURE,
    title: 'Endpoint unreachable',
    flags: F.UPSTREAM_CONNECTION_FAILURE,
    codeDetails:
      'upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}',
    debug: { cluster: 'refused', upstream: upstreamOf('refused'), pod: 'refused-0' },
  });
});

test.serial('accept then close before answering → 502 upstream-connection-termination (UC)', async (t) => {
  await assertMapped(t, {
    path: '/close',
    status: 502,
    cause: FailureCause.UPSTREAM_CONNECTION_TERMINATION,
    title: 'Upstream closed the connection',
    flags: F.UPSTREAM_CONNECTION_TERMINATION,
    codeDetails: 'upstream_reset_before_response_started{connection_termination}',
    debug: { cluster: 'close', upstream: upstreamOf('close'), pod: 'close-0' },
  });
});

test.serial('garbage bytes → 502 upstream-protocol-error (UPE)', async (t) => {
  await assertMapped(t, {
    path: '/garbage',
    status: 502,
    cause: FailureCause.UPSTREAM_PROTOCOL_ERROR,
    title: 'Invalid upstream response',
    flags: F.UPSTREAM_PROTOCOL_ERROR,
    codeDetails: 'upstream_reset_before_response_started{protocol_error}',
    debug: { cluster: 'garbage', upstream: upstreamOf('garbage'), pod: 'garbage-0' },
  });
});

test.serial('sleep past the route timeout → 504 upstream-timeout (UT)', async (t) => {
  await assertMapped(t, {
    path: '/slow',
    status: 504,
    cause: FailureCause.UPSTREAM_TIMEOUT,
    title: 'Upstream timed out',
    flags: F.UPSTREAM_REQUEST_TIMEOUT,
    codeDetails: 'response_timeout',
    debug: { cluster: 'silent', upstream: upstreamOf('silent'), pod: 'silent-0' },
  });
});

test.serial('per-try timeout, retries exhausted → 504 upstream-per-try-timeout (UT+URX)', async (t) => {
  await assertMapped(t, {
    path: '/per-try',
    status: 504,
    cause: FailureCause.UPSTREAM_PER_TRY_TIMEOUT,
    title: 'Upstream timed out',
    flags: F.UPSTREAM_REQUEST_TIMEOUT | F.UPSTREAM_RETRY_LIMIT_EXCEEDED,
    codeDetails: 'upstream_per_try_timeout',
    debug: { cluster: 'silent', upstream: upstreamOf('silent'), pod: 'silent-0' },
  });
});

test.serial('HTTP/2 upstream resets the stream before headers → 502 upstream-reset (UR)', async (t) => {
  await assertMapped(t, {
    path: '/h2-reset',
    status: 502,
    cause: FailureCause.UPSTREAM_RESET,
    title: 'Upstream reset the request',
    flags: F.UPSTREAM_REMOTE_RESET,
    codeDetails: 'upstream_reset_before_response_started{remote_reset}',
    debug: { cluster: 'h2_reset', upstream: upstreamOf('h2Reset'), pod: 'h2-reset-0' },
  });
});

test.serial(
  'upstream max_stream_duration with a complete request → 504 upstream-max-stream-duration (UMSDR)',
  async (t) => {
    await assertMapped(t, {
      path: '/max-duration',
      status: 504,
      cause: FailureCause.UPSTREAM_MAX_STREAM_DURATION,
      title: 'Upstream timed out',
      flags: F.UPSTREAM_MAX_STREAM_DURATION_REACHED,
      codeDetails: 'upstream_max_stream_duration_reached',
      debug: { cluster: 'max_duration', upstream: upstreamOf('silent'), pod: 'silent-0' },
    });
  },
);

test.serial('cluster with no endpoints → 503 no-healthy-upstream (UH)', async (t) => {
  await assertMapped(t, {
    path: '/empty',
    status: 503,
    cause: FailureCause.NO_HEALTHY_UPSTREAM,
    title: 'No ready endpoint',
    flags: F.NO_HEALTHY_UPSTREAM,
    codeDetails: 'no_healthy_upstream',
    debug: { cluster: 'empty' },
  });
});

test.serial('cluster whose only host is DRAINING → 503 no-healthy-upstream (UH)', async (t) => {
  await assertMapped(t, {
    path: '/draining',
    status: 503,
    cause: FailureCause.NO_HEALTHY_UPSTREAM,
    title: 'No ready endpoint',
    flags: F.NO_HEALTHY_UPSTREAM,
    codeDetails: 'no_healthy_upstream',
    debug: { cluster: 'draining' },
  });
});

test.serial('route to a nonexistent cluster → 503 cluster-not-found (NC)', async (t) => {
  await assertMapped(t, {
    path: '/missing',
    status: 503,
    cause: FailureCause.CLUSTER_NOT_FOUND,
    title: 'Service not configured',
    flags: F.NO_CLUSTER_FOUND,
    codeDetails: 'cluster_not_found',
    debug: {},
  });
});

test.serial('overflowed circuit breaker → 503 upstream-overflow (UO)', async (t) => {
  await assertMapped(t, {
    path: '/overflow',
    status: 503,
    cause: FailureCause.UPSTREAM_OVERFLOW,
    title: 'Service overloaded',
    flags: F.UPSTREAM_OVERFLOW,
    codeDetails: 'upstream_reset_before_response_started{overflow}',
    debug: { cluster: 'overflow' },
  });
});

test.serial('500 from an endpoint marked terminating → 503 endpoint-terminating', async (t) => {
  await assertMapped(t, {
    path: '/terminating-500',
    status: 503,
    cause: FailureCause.ENDPOINT_TERMINATING,
    title: 'Endpoint shutting down',
    flags: 0,
    codeDetails: 'via_upstream',
    debug: { cluster: 'terminating', upstream: upstreamOf('terminating'), pod: 'web-terminating-0' },
  });
});

test.serial('500 from an endpoint marked terminating-fallback → 503 endpoint-terminating', async (t) => {
  await assertMapped(t, {
    path: '/fallback-500',
    status: 503,
    cause: FailureCause.ENDPOINT_TERMINATING,
    title: 'Endpoint shutting down',
    flags: 0,
    codeDetails: 'via_upstream',
    debug: { cluster: 'terminating_fallback', upstream: upstreamOf('terminating'), pod: 'web-fallback-0' },
  });
});

test.serial('500 from a healthy endpoint is untouched, body intact', async (t) => {
  const { baseUrl, logs } = env();
  const before = logs.length;
  const response = await fetch(`${baseUrl}/healthy-500`, { signal: AbortSignal.timeout(10_000) });
  t.is(response.status, 500);
  t.is(await response.text(), APP_ERROR_BODY);
  t.is(response.headers.get('content-type'), 'text/plain');
  t.is(response.headers.get(CAUSE_HEADER), null);
  t.is(response.headers.get('retry-after'), null);
  // ext_proc did see it (it is a 5xx) and chose to pass it.
  const passes = logs.slice(before).filter((entry) => entry['event'] === 'extproc.pass');
  t.is(passes.length, 1);
  t.is(passes[0]?.['reason'], 'upstream-answer');
  t.is(passes[0]?.['host_state'], 'ready');
});

test.serial('reset after the response started: the 500 is not remapped and the body is cut', async (t) => {
  const { baseUrl, logs } = env();
  const before = logs.length;
  const response = await fetch(`${baseUrl}/reset-after-start`, { signal: AbortSignal.timeout(10_000) });
  // The client has the headers (ext_proc saw and passed them); only now does the upstream reset.
  t.is(response.status, 500);
  t.is(response.headers.get(CAUSE_HEADER), null);
  t.is((env().upstreams['resetAfter'] as ResettableUpstream).resetConnections(), 1);
  // The status already went out; neither ext_proc nor local_reply_config can change it. The body is cut.
  await t.throwsAsync(response.text());
  const passes = logs.slice(before).filter((entry) => entry['event'] === 'extproc.pass');
  t.is(passes.length, 1);
  t.is(passes[0]?.['reason'], 'upstream-answer');
});

test.serial('200 is untouched and opens no ext_proc stream', async (t) => {
  const { baseUrl, extprocStat } = env();
  const startedBefore = await extprocStat('streams_started');
  for (let i = 0; i < 5; i++) {
    const response = await fetch(`${baseUrl}/ok`, { signal: AbortSignal.timeout(10_000) });
    t.is(response.status, 200);
    t.is(response.headers.get('x-upstream'), 'ok');
    const echo = JSON.parse(await response.text()) as { path: string };
    t.is(echo.path, '/ok');
  }
  t.is(await extprocStat('streams_started'), startedBefore);
});

test.serial('every 5xx opened exactly one stream; none failed; metrics count causes', async (t) => {
  const { extprocStat, registry } = env();
  // 13 mapped + 2 passed 5xx above; the 200s opened none.
  t.is(await extprocStat('streams_started'), 15);
  t.is(await extprocStat('streams_failed'), 0);
  t.is(await extprocStat('rejected_header_mutations'), 0);
  t.is(await extprocStat('message_timeouts'), 0);
  const mapped = await registry.getSingleMetric(EXTPROC_METRIC_NAMES.mapped)!.get();
  const count = (cause: string): number =>
    mapped.values.filter((v) => v.labels['cause'] === cause).reduce((sum, v) => sum + v.value, 0);
  t.is(count(FailureCause.NO_HEALTHY_UPSTREAM), 2);
  t.is(count(FailureCause.ENDPOINT_TERMINATING), 2);
  t.is(count(FailureCause.UPSTREAM_CONNECT_FAILURE), 1);
  const passed = await registry.getSingleMetric(EXTPROC_METRIC_NAMES.passed)!.get();
  t.deepEqual(
    passed.values.map((v) => [v.labels['reason'], v.value]),
    [['upstream-answer', 2]],
  );
});
