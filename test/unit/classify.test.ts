import test from 'ava';
import {
  FailureCause,
  PassReason,
  RETRY_AFTER_SECONDS,
  ResponseFlagBit as F,
  classify,
  shortFlagNames,
  type Decision,
  type ResponseFacts,
} from '../../src/extproc/classify.js';

const RESET = 'upstream_reset_before_response_started';
const unavailable = (cause: FailureCause): Decision => ({
  action: 'replace',
  status: 503,
  cause,
  retryAfterSeconds: RETRY_AFTER_SECONDS,
});
const replace = (status: 502 | 504, cause: FailureCause): Decision => ({ action: 'replace', status, cause });
const pass = (reason: PassReason): Decision => ({ action: 'pass', reason });

// [name, facts, expected]. Flags and details are what Envoy 1.36.4 sent in
// test/integration/extproc-causes.test.ts; the status is after local_reply_config remapped it.
const table: [string, ResponseFacts, Decision][] = [
  // 503 + Retry-After: nothing could take the request.
  [
    'UH empty cluster',
    { status: 503, responseFlags: F.NO_HEALTHY_UPSTREAM, codeDetails: 'no_healthy_upstream' },
    unavailable(FailureCause.NO_HEALTHY_UPSTREAM),
  ],
  [
    'NC cluster not found',
    { status: 503, responseFlags: F.NO_CLUSTER_FOUND, codeDetails: 'cluster_not_found' },
    unavailable(FailureCause.CLUSTER_NOT_FOUND),
  ],
  [
    'UO overflow',
    { status: 503, responseFlags: F.UPSTREAM_OVERFLOW, codeDetails: `${RESET}{overflow}` },
    unavailable(FailureCause.UPSTREAM_OVERFLOW),
  ],
  [
    'maintenance mode',
    { status: 503, codeDetails: 'maintenance_mode' },
    unavailable(FailureCause.UPSTREAM_OVERFLOW),
  ],
  [
    'UF refused',
    {
      status: 503,
      responseFlags: F.UPSTREAM_CONNECTION_FAILURE,
      codeDetails: `${RESET}{remote_connection_failure|delayed_connect_error:_Connection_refused}`,
    },
    unavailable(FailureCause.UPSTREAM_CONNECT_FAILURE),
  ],
  [
    'UF connect timeout + URX',
    {
      status: 503,
      responseFlags: F.UPSTREAM_CONNECTION_FAILURE | F.UPSTREAM_RETRY_LIMIT_EXCEEDED,
      codeDetails: `${RESET}{connection_timeout}`,
    },
    unavailable(FailureCause.UPSTREAM_CONNECT_FAILURE),
  ],
  [
    'terminating host 500',
    { status: 500, responseFlags: 0, codeDetails: 'via_upstream', hostState: 'terminating' },
    unavailable(FailureCause.ENDPOINT_TERMINATING),
  ],
  [
    'terminating-fallback host 503',
    { status: 503, responseFlags: 0, codeDetails: 'via_upstream', hostState: 'terminating-fallback' },
    unavailable(FailureCause.ENDPOINT_TERMINATING),
  ],
  [
    'terminating host 504 after retries',
    {
      status: 504,
      responseFlags: F.UPSTREAM_RETRY_LIMIT_EXCEEDED,
      codeDetails: 'via_upstream',
      hostState: 'terminating',
    },
    unavailable(FailureCause.ENDPOINT_TERMINATING),
  ],
  // 502: reached the upstream, which broke before answering.
  [
    'UPE garbage',
    { status: 502, responseFlags: F.UPSTREAM_PROTOCOL_ERROR, codeDetails: `${RESET}{protocol_error}` },
    replace(502, FailureCause.UPSTREAM_PROTOCOL_ERROR),
  ],
  [
    'UC close (default 503 status)',
    {
      status: 503,
      responseFlags: F.UPSTREAM_CONNECTION_TERMINATION,
      codeDetails: `${RESET}{connection_termination}`,
    },
    replace(502, FailureCause.UPSTREAM_CONNECTION_TERMINATION),
  ],
  [
    'UR reset',
    { status: 502, responseFlags: F.UPSTREAM_REMOTE_RESET, codeDetails: `${RESET}{remote_reset}` },
    replace(502, FailureCause.UPSTREAM_RESET),
  ],
  [
    'UR refused stream',
    { status: 503, codeDetails: `${RESET}{remote_refused_stream_reset}` },
    replace(502, FailureCause.UPSTREAM_RESET),
  ],
  [
    'LR after forwarding',
    { status: 503, responseFlags: F.LOCAL_RESET, codeDetails: `${RESET}{local_reset}` },
    replace(502, FailureCause.UPSTREAM_LOCAL_RESET),
  ],
  [
    'LR premature half close',
    {
      status: 503,
      responseFlags: F.LOCAL_RESET,
      codeDetails: `${RESET}{http1_premature_upstream_half_close}`,
    },
    replace(502, FailureCause.UPSTREAM_LOCAL_RESET),
  ],
  // 504: timeouts.
  [
    'UT route timeout (1.36 details)',
    { status: 504, responseFlags: F.UPSTREAM_REQUEST_TIMEOUT, codeDetails: 'response_timeout' },
    replace(504, FailureCause.UPSTREAM_TIMEOUT),
  ],
  [
    'UT route timeout (older details)',
    { status: 504, codeDetails: 'upstream_response_timeout' },
    replace(504, FailureCause.UPSTREAM_TIMEOUT),
  ],
  [
    'UT per-try + URX',
    {
      status: 504,
      responseFlags: F.UPSTREAM_REQUEST_TIMEOUT | F.UPSTREAM_RETRY_LIMIT_EXCEEDED,
      codeDetails: 'upstream_per_try_timeout',
    },
    replace(504, FailureCause.UPSTREAM_PER_TRY_TIMEOUT),
  ],
  [
    'UT per-try idle',
    { status: 504, responseFlags: F.UPSTREAM_REQUEST_TIMEOUT, codeDetails: 'upstream_per_try_idle_timeout' },
    replace(504, FailureCause.UPSTREAM_PER_TRY_TIMEOUT),
  ],
  [
    'UMSDR request complete',
    {
      status: 504,
      responseFlags: F.UPSTREAM_MAX_STREAM_DURATION_REACHED,
      codeDetails: 'upstream_max_stream_duration_reached',
    },
    replace(504, FailureCause.UPSTREAM_MAX_STREAM_DURATION),
  ],
  [
    'UMSDR request incomplete (408)',
    {
      status: 408,
      responseFlags: F.UPSTREAM_MAX_STREAM_DURATION_REACHED,
      codeDetails: 'upstream_max_stream_duration_reached',
    },
    pass(PassReason.CLIENT_TIMEOUT),
  ],
  // Details alone (flags attribute failed to evaluate) still classify.
  [
    'details only: UH',
    { status: 503, codeDetails: 'no_healthy_upstream' },
    unavailable(FailureCause.NO_HEALTHY_UPSTREAM),
  ],
  [
    'details only: UF',
    { status: 503, codeDetails: `${RESET}{remote_connection_failure}` },
    unavailable(FailureCause.UPSTREAM_CONNECT_FAILURE),
  ],
  [
    'details only: UC',
    { status: 503, codeDetails: `${RESET}{connection_termination}` },
    replace(502, FailureCause.UPSTREAM_CONNECTION_TERMINATION),
  ],
  [
    'details only: older comma form',
    { status: 503, codeDetails: `${RESET}{connection_failure,delayed_connect_error:_111}` },
    unavailable(FailureCause.UPSTREAM_CONNECT_FAILURE),
  ],
  // Flags alone (details missing) still classify.
  [
    'flags only: UC',
    { status: 503, responseFlags: F.UPSTREAM_CONNECTION_TERMINATION },
    replace(502, FailureCause.UPSTREAM_CONNECTION_TERMINATION),
  ],
  [
    'flags only: UT',
    { status: 504, responseFlags: F.UPSTREAM_REQUEST_TIMEOUT },
    replace(504, FailureCause.UPSTREAM_TIMEOUT),
  ],
  // Precedence when retries accumulate flags: the final outcome wins over an earlier attempt's.
  [
    'UH after a UF attempt',
    {
      status: 503,
      responseFlags: F.NO_HEALTHY_UPSTREAM | F.UPSTREAM_CONNECTION_FAILURE,
      codeDetails: 'no_healthy_upstream',
    },
    unavailable(FailureCause.NO_HEALTHY_UPSTREAM),
  ],
  [
    'UF then UC: connect failure outranks',
    { status: 503, responseFlags: F.UPSTREAM_CONNECTION_FAILURE | F.UPSTREAM_CONNECTION_TERMINATION },
    unavailable(FailureCause.UPSTREAM_CONNECT_FAILURE),
  ],
  // Untouched: a healthy upstream's own answers, whatever the status.
  [
    'healthy 500',
    { status: 500, responseFlags: 0, codeDetails: 'via_upstream', hostState: 'ready' },
    pass(PassReason.UPSTREAM_ANSWER),
  ],
  [
    'healthy 502',
    { status: 502, responseFlags: 0, codeDetails: 'via_upstream', hostState: 'ready' },
    pass(PassReason.UPSTREAM_ANSWER),
  ],
  [
    'healthy 503',
    { status: 503, codeDetails: 'via_upstream', hostState: 'ready' },
    pass(PassReason.UPSTREAM_ANSWER),
  ],
  ['healthy 504', { status: 504, codeDetails: 'via_upstream' }, pass(PassReason.UPSTREAM_ANSWER)],
  [
    'upstream 503 after a timed-out try',
    {
      status: 503,
      responseFlags: F.UPSTREAM_REQUEST_TIMEOUT | F.UPSTREAM_RETRY_LIMIT_EXCEEDED,
      codeDetails: 'via_upstream',
    },
    pass(PassReason.UPSTREAM_ANSWER),
  ],
  ['upstream 500 with no metadata', { status: 500 }, pass(PassReason.UPSTREAM_ANSWER)],
  [
    'unknown host state',
    { status: 500, codeDetails: 'via_upstream', hostState: 'weird' },
    pass(PassReason.UPSTREAM_ANSWER),
  ],
  ['200', { status: 200, responseFlags: 0, codeDetails: 'via_upstream' }, pass(PassReason.NOT_5XX)],
  [
    '200 from terminating host',
    { status: 200, codeDetails: 'via_upstream', hostState: 'terminating' },
    pass(PassReason.NOT_5XX),
  ],
  [
    '404 from terminating host',
    { status: 404, codeDetails: 'via_upstream', hostState: 'terminating' },
    pass(PassReason.NOT_5XX),
  ],
  [
    'local reply remapped to 4xx',
    { status: 429, responseFlags: F.UPSTREAM_OVERFLOW },
    pass(PassReason.NOT_5XX),
  ],
  [
    'ext_proc error reply',
    { status: 500, codeDetails: 'ext_proc_error_gRPC_error_13' },
    pass(PassReason.UNRECOGNISED_LOCAL_REPLY),
  ],
  [
    'direct response 503',
    { status: 503, responseFlags: 0, codeDetails: 'direct_response' },
    pass(PassReason.UNRECOGNISED_LOCAL_REPLY),
  ],
  [
    'reset after response started',
    { status: 503, codeDetails: 'upstream_reset_after_response_started{remote_reset}' },
    pass(PassReason.UNRECOGNISED_LOCAL_REPLY),
  ],
  ['no status', { responseFlags: F.NO_HEALTHY_UPSTREAM }, pass(PassReason.NO_STATUS)],
  ['non-integer status', { status: 503.5, responseFlags: F.NO_HEALTHY_UPSTREAM }, pass(PassReason.NO_STATUS)],
  [
    'LR without a forwarded request',
    { status: 503, responseFlags: F.LOCAL_RESET, codeDetails: 'something_else' },
    pass(PassReason.UNRECOGNISED_LOCAL_REPLY),
  ],
];

for (const [name, facts, expected] of table) {
  test(`classify: ${name}`, (t) => {
    t.deepEqual(classify(facts), expected);
  });
}

test('every cause appears in the table', (t) => {
  const covered = new Set(table.flatMap(([, , d]) => (d.action === 'replace' ? [d.cause] : [])));
  t.deepEqual([...covered].sort(), Object.values(FailureCause).sort());
});

test('every 503 carries Retry-After and no other status does', (t) => {
  for (const [name, facts] of table) {
    const decision = classify(facts);
    if (decision.action !== 'replace') continue;
    t.is(decision.retryAfterSeconds !== undefined, decision.status === 503, name);
  }
});

test('flag bit positions match Envoy 1.36.4 (observed values)', (t) => {
  // Values recorded from Envoy 1.36.4's `response.flags` attribute in the integration tests.
  t.is(F.NO_HEALTHY_UPSTREAM, 2);
  t.is(F.UPSTREAM_REQUEST_TIMEOUT, 4);
  t.is(F.UPSTREAM_REMOTE_RESET, 16);
  t.is(F.UPSTREAM_CONNECTION_FAILURE, 32);
  t.is(F.UPSTREAM_CONNECTION_TERMINATION, 64);
  t.is(F.UPSTREAM_OVERFLOW, 128);
  t.is(F.UPSTREAM_RETRY_LIMIT_EXCEEDED, 32768);
  t.is(F.UPSTREAM_MAX_STREAM_DURATION_REACHED, 524288);
  t.is(F.UPSTREAM_PROTOCOL_ERROR, 8388608);
  t.is(F.NO_CLUSTER_FOUND, 16777216);
});

test('shortFlagNames names known bits in order and unknown ones by position', (t) => {
  t.deepEqual(shortFlagNames(0), []);
  t.deepEqual(shortFlagNames(32772), ['UT', 'URX']);
  t.deepEqual(shortFlagNames(F.NO_CLUSTER_FOUND | (1 << 9)), ['NC', 'bit9']);
});

test('classify never throws on odd inputs', (t) => {
  const odd: ResponseFacts[] = [
    {},
    { status: -1 },
    { status: 599, responseFlags: 0xffffffff },
    { status: 500, codeDetails: '' },
    { status: 500, codeDetails: RESET },
    { status: 500, codeDetails: `${RESET}{` },
    { status: 500, hostState: '' },
  ];
  for (const facts of odd) t.notThrows(() => classify(facts));
  t.deepEqual(classify({ status: 500, codeDetails: RESET }), replace(502, FailureCause.UPSTREAM_LOCAL_RESET));
});
