import test from 'ava';
import {
  checkExpectations,
  percentile,
  compactReason,
  renderReasons,
  renderTable,
  statusColumns,
  tallyPhases,
  timeSeries,
  type PhaseTally,
  type Sample,
} from '../../src/demo/tally.js';
import { firstLine } from '../../src/demo/load.js';
import { PHASES } from '../../src/demo/timing.js';

const sample = (phase: string, status: number, extra: Partial<Sample> = {}): Sample => ({
  t: 0,
  phase,
  status,
  latencyMs: 1,
  ...extra,
});

/** `count` samples of one kind, spread 10 ms apart from `t0`. */
const many = (count: number, phase: string, status: number, extra: Partial<Sample> = {}, t0 = 0): Sample[] =>
  Array.from({ length: count }, (_, i) => sample(phase, status, { t: t0 + i * 10, ...extra }));

test('tallyPhases counts by status, non-2xx, 503s with Retry-After and causes, in the phase order given', (t) => {
  const samples = [
    ...many(3, 'rollout', 200),
    ...many(2, 'outage', 503, { retryAfter: true, cause: 'no-healthy-upstream' }),
    sample('outage', 503),
    sample('outage', 0, { error: 'ECONNRESET' }),
    sample('elsewhere', 500),
  ];
  const [rollout, outage] = tallyPhases(samples, ['rollout', 'outage']);
  t.like(rollout, { phase: 'rollout', total: 3, non2xx: 0, byStatus: { '200': 3 } });
  t.deepEqual(outage?.byStatus, { '503': 3, error: 1 });
  t.like(outage, { total: 4, non2xx: 4, status503: 3, status503WithRetryAfter: 2 });
  t.deepEqual(outage?.causes, { 'no-healthy-upstream': 2 });
});

test('reasons name each non-2xx by status and cause header, else body line, else transport error', (t) => {
  const [tally] = tallyPhases(
    [
      sample('a', 200, { body: 'ignored for 2xx' }),
      sample('a', 503, { cause: 'no-healthy-upstream', body: '{"type":…}' }),
      sample('a', 503, { body: 'no healthy upstream' }),
      sample('a', 503, { body: 'no healthy upstream' }),
      sample('a', 0, { error: 'ECONNRESET' }),
      sample('a', 502),
    ],
    ['a'],
  );
  t.deepEqual(tally?.reasons, {
    '503 no-healthy-upstream': 1,
    '503 no healthy upstream': 2,
    'error ECONNRESET': 1,
    '502': 1,
  });
});

test('an empty phase tallies to zeros', (t) => {
  const [empty] = tallyPhases([], ['crash']);
  t.deepEqual(empty, {
    phase: 'crash',
    total: 0,
    byStatus: {},
    non2xx: 0,
    status503: 0,
    status503WithRetryAfter: 0,
    causes: {},
    reasons: {},
    startMs: 0,
    endMs: 0,
    p99LatencyMs: 0,
  });
});

test('percentile is nearest-rank', (t) => {
  t.is(percentile([], 0.99), 0);
  t.is(percentile([5], 0.99), 5);
  t.is(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9), 9);
  t.is(percentile([10, 1, 5], 0.5), 5);
});

test('status columns are numeric ascending with transport errors last', (t) => {
  const tallies = tallyPhases(
    [sample('a', 503), sample('a', 0), sample('a', 200), sample('a', 502), sample('a', 504)],
    ['a'],
  );
  t.deepEqual(statusColumns(tallies), ['200', '502', '503', '504', 'error']);
});

test('renderTable puts both setups side by side with the Retry-After line', (t) => {
  const left = tallyPhases(
    [...many(4, 'rollout', 200), sample('outage', 503, { retryAfter: true })],
    ['rollout', 'outage'],
  );
  const right = tallyPhases(
    [...many(3, 'rollout', 200), sample('rollout', 503), sample('outage', 503)],
    ['rollout', 'outage'],
  );
  const text = renderTable({
    left: { name: 'readygate', phases: left },
    right: { name: 'naive', phases: right },
    titles: { rollout: 'rolling update', outage: 'outage' },
  });
  const lines = text.split('\n');
  t.regex(lines[0] ?? '', /readygate\s+│ naive/);
  t.regex(lines[1] ?? '', /^phase\s+total\s+200\s+503\s+│\s+total\s+200\s+503$/);
  t.regex(lines[3] ?? '', /^rolling update\s+4\s+4\s+0\s+│\s+4\s+3\s+1$/);
  t.regex(lines[4] ?? '', /^outage\s+1\s+0\s+1\s+│\s+1\s+0\s+1$/);
  t.is(lines[5], '503s carrying Retry-After: readygate 1/1, naive 0/2');
  // The separator column lines up on every row.
  const bar = lines[1]?.indexOf('│') ?? -1;
  for (const line of lines.slice(0, 5)) t.is(line.indexOf(line.includes('┼') ? '┼' : '│'), bar);
});

function tallies(spec: Partial<Record<(typeof PHASES)[number], Sample[]>>): PhaseTally[] {
  return tallyPhases(Object.values(spec).flat(), PHASES);
}

const goodReadygate = {
  rollout: many(50, 'rollout', 200),
  crash: [...many(10, 'crash', 200), ...many(3, 'crash', 502), sample('crash', 503, { retryAfter: true })],
  outage: [...many(5, 'outage', 200), ...many(20, 'outage', 503, { retryAfter: true })],
};
const goodNaive = { rollout: [...many(40, 'rollout', 200), ...many(10, 'rollout', 503)] };

test('checkExpectations: all hold for the expected shape', (t) => {
  const checks = checkExpectations(tallies(goodReadygate), tallies(goodNaive));
  t.deepEqual(
    checks.map((c) => c.ok),
    [true, true, true, true, true],
  );
});

test('checkExpectations: one non-2xx in readygate’s rollout fails the first check', (t) => {
  const checks = checkExpectations(
    tallies({ ...goodReadygate, rollout: [...many(50, 'rollout', 200), sample('rollout', 503)] }),
    tallies(goodNaive),
  );
  t.false(checks[0]?.ok);
  t.is(checks[0]?.detail, '200×50 503×1');
});

test('checkExpectations: a naive rollout without errors fails (the test can fail)', (t) => {
  const checks = checkExpectations(tallies(goodReadygate), tallies({ rollout: many(50, 'rollout', 200) }));
  t.false(checks[1]?.ok);
});

test('checkExpectations: no 502 in the crash fails', (t) => {
  const checks = checkExpectations(
    tallies({ ...goodReadygate, crash: many(10, 'crash', 200) }),
    tallies(goodNaive),
  );
  t.false(checks[2]?.ok);
});

test('checkExpectations: a 502, a reset or a 503 without Retry-After in the outage fails', (t) => {
  for (const bad of [sample('outage', 502), sample('outage', 0), sample('outage', 503)]) {
    const checks = checkExpectations(
      tallies({ ...goodReadygate, outage: [...goodReadygate.outage, bad] }),
      tallies(goodNaive),
    );
    t.false(checks[3]?.ok, `status ${bad.status}`);
  }
});

test('checkExpectations: a 503 without Retry-After in any phase fails the last check', (t) => {
  const checks = checkExpectations(
    tallies({ ...goodReadygate, crash: [...goodReadygate.crash, sample('crash', 503)] }),
    tallies(goodNaive),
  );
  t.false(checks[4]?.ok);
  t.is(checks[4]?.detail, '21/22');
});

test('timeSeries buckets by send time and keeps empty buckets', (t) => {
  const series = timeSeries(
    [sample('a', 200, { t: 10 }), sample('a', 503, { t: 20 }), sample('a', 200, { t: 610 })],
    250,
  );
  t.deepEqual(series, [
    { t: 0, counts: { '200': 1, '503': 1 } },
    { t: 250, counts: {} },
    { t: 500, counts: { '200': 1 } },
  ]);
  t.deepEqual(timeSeries([], 250), []);
});

test('firstLine keeps one bounded line of a body', (t) => {
  t.is(firstLine('no healthy upstream'), 'no healthy upstream');
  t.is(firstLine('  warming up\nmore'), 'warming up');
  t.is(firstLine(''), '');
  t.is(firstLine('x'.repeat(300)).length, 240);
});

test('renderReasons lists each setup and phase with non-2xx, most frequent reason first', (t) => {
  const left = tallyPhases([sample('crash', 502, { cause: 'upstream-connection-termination' })], ['crash']);
  const right = tallyPhases(
    [
      sample('crash', 503, { body: 'warming up' }),
      ...many(2, 'crash', 503, { body: 'no healthy upstream' }),
      sample('other', 503),
    ],
    ['crash'],
  );
  t.is(
    renderReasons({
      left: { name: 'readygate', phases: left },
      right: { name: 'naive', phases: right },
      titles: { crash: 'crash mid-request' },
    }),
    [
      'readygate, crash mid-request:',
      '      1 × 502 upstream-connection-termination',
      'naive, crash mid-request:',
      '      2 × 503 no healthy upstream',
      '      1 × 503 warming up',
    ].join('\n'),
  );
});

test('compactReason shortens Envoy’s reset local reply and leaves other reasons alone', (t) => {
  t.is(
    compactReason(
      '503 upstream connect error or disconnect/reset before headers. reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused',
    ),
    '503 reset before headers: remote connection failure (delayed connect error: Connection refused)',
  );
  t.is(
    compactReason(
      '503 upstream connect error or disconnect/reset before headers. retried and the latest reset reason: connection termination',
    ),
    '503 reset before headers: connection termination',
  );
  t.is(compactReason('503 no healthy upstream'), '503 no healthy upstream');
});
