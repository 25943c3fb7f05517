import test from 'ava';
import {
  checkExpectations,
  latencySeries,
  percentile,
  relativeColdShare,
  renderColdPeriods,
  tallyColdPeriod,
  compactReason,
  renderPreStops,
  renderReasons,
  renderTable,
  statusColumns,
  tallyPhases,
  timeSeries,
  type ColdPeriodTally,
  type ExpectationInput,
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

test('renderTable puts the setups side by side with the Retry-After line', (t) => {
  const left = tallyPhases(
    [...many(4, 'rollout', 200), sample('outage', 503, { retryAfter: true })],
    ['rollout', 'outage'],
  );
  const right = tallyPhases(
    [...many(3, 'rollout', 200), sample('rollout', 503), sample('outage', 503)],
    ['rollout', 'outage'],
  );
  const third = tallyPhases([...many(2, 'rollout', 200)], ['rollout', 'outage']);
  const text = renderTable({
    sides: [
      { name: 'readygate', phases: left },
      { name: 'naive', phases: right },
      { name: 'ready-only', phases: third },
    ],
    titles: { rollout: 'rolling update', outage: 'outage' },
  });
  const lines = text.split('\n');
  t.regex(lines[0] ?? '', /readygate\s+│ naive\s+│ ready-only$/);
  t.regex(lines[1] ?? '', /^phase\s+total\s+200\s+503\s+│\s+total\s+200\s+503\s+│\s+total\s+200\s+503$/);
  t.regex(lines[3] ?? '', /^rolling update\s+4\s+4\s+0\s+│\s+4\s+3\s+1\s+│\s+2\s+2\s+0$/);
  t.regex(lines[4] ?? '', /^outage\s+1\s+0\s+1\s+│\s+1\s+0\s+1\s+│\s+0\s+0\s+0$/);
  t.is(lines[5], '503s carrying Retry-After: readygate 1/1, naive 0/2, ready-only 0/0');
  // The separator columns line up on every row.
  const bars = (line: string): number[] =>
    Array.from({ length: line.length }, (_, index) => index).filter((index) =>
      ['│', '┼'].includes(line.charAt(index)),
    );
  for (const line of lines.slice(0, 5)) t.deepEqual(bars(line), bars(lines[1] ?? ''));
});

function tallies(spec: Partial<Record<(typeof PHASES)[number], Sample[]>>): PhaseTally[] {
  return tallyPhases(Object.values(spec).flat(), PHASES);
}

const goodReadygate = {
  baseline: many(20, 'baseline', 200),
  rollout: many(50, 'rollout', 200),
  'slow-start': many(30, 'slow-start', 200),
  'slow-start-ramped': many(30, 'slow-start-ramped', 200),
  'slow-propagation': many(80, 'slow-propagation', 200),
  crash: [...many(10, 'crash', 200), ...many(3, 'crash', 502)],
  outage: [...many(5, 'outage', 200), ...many(20, 'outage', 503, { retryAfter: true })],
};
const goodNaive = {
  rollout: [...many(40, 'rollout', 200), ...many(10, 'rollout', 503)],
  'slow-propagation': [...many(40, 'slow-propagation', 200), ...many(5, 'slow-propagation', 503)],
};
const goodReadyOnly = {
  rollout: many(50, 'rollout', 200),
  'slow-propagation': [...many(40, 'slow-propagation', 200), ...many(7, 'slow-propagation', 503)],
};

const input = (
  overrides: {
    readygate?: Partial<typeof goodReadygate>;
    naive?: Partial<Record<(typeof PHASES)[number], Sample[]>>;
    readyOnly?: Partial<Record<(typeof PHASES)[number], Sample[]>>;
    held?: number;
    drains?: number[];
    coldWithout?: ColdPeriodTally;
    coldWith?: ColdPeriodTally;
  } = {},
): ExpectationInput => ({
  readygate: tallies({ ...goodReadygate, ...overrides.readygate }),
  naive: tallies(overrides.naive ?? goodNaive),
  readyOnly: tallies(overrides.readyOnly ?? goodReadyOnly),
  readygateCrashHeld: overrides.held ?? 3,
  readygateSlowDrainMs: overrides.drains ?? [3504, 3510],
  slowPropagationMs: 3500,
  drainWaitTimeoutMs: 7000,
  readygateColdWithout: overrides.coldWithout ?? cold(40, 160, 4),
  readygateColdWith: overrides.coldWith ?? cold(18, 160, 5),
});

/** A cold period's tally in which the cold pod answered `toColdPod` of `answered` across `pods` pods. */
function cold(toColdPod: number, answered: number, pods: number): ColdPeriodTally {
  return {
    pod: 'web-rg-9',
    total: answered,
    answered,
    toColdPod,
    pods,
    p50LatencyMs: 2,
    p99LatencyMs: 250,
    slow: toColdPod,
    status504: 0,
    non2xx: 0,
  };
}

const failed = (checks: readonly { name: string; ok: boolean }[]): string[] =>
  checks.filter((c) => !c.ok).map((c) => c.name);

test('checkExpectations: all hold for the expected shape', (t) => {
  const checks = checkExpectations(input());
  t.is(checks.length, 13);
  t.deepEqual(failed(checks), []);
});

test('checkExpectations: one non-2xx in any of readygate’s no-failure phases fails that phase’s check', (t) => {
  for (const phase of [
    'baseline',
    'rollout',
    'slow-start',
    'slow-start-ramped',
    'slow-propagation',
  ] as const) {
    const checks = checkExpectations(
      input({ readygate: { [phase]: [...many(50, phase, 200), sample(phase, 503, { retryAfter: true })] } }),
    );
    t.deepEqual(failed(checks), [`readygate: no non-2xx in the ${phase} phase`]);
    t.is(checks.find((c) => !c.ok)?.detail, '200×50 503×1');
  }
});

test('checkExpectations: naive without errors in a rollout, or ready-only without errors when a gateway is slow, fails', (t) => {
  t.deepEqual(
    failed(checkExpectations(input({ naive: { 'slow-propagation': goodNaive['slow-propagation'] } }))),
    ['naive: non-2xx in the rollout phase'],
  );
  t.deepEqual(failed(checkExpectations(input({ readyOnly: { rollout: goodReadyOnly.rollout } }))), [
    'ready-only + preStop sleep: non-2xx when a gateway is slower than the sleep',
  ]);
});

test('checkExpectations: in the crash, a lost new request (503) or 502s not matching what the app held fail', (t) => {
  const crashCheck =
    'readygate: in the crash, 502 for exactly the requests the app received, no new request lost';
  const lost = [...goodReadygate.crash, sample('crash', 503, { retryAfter: true })];
  t.deepEqual(failed(checkExpectations(input({ readygate: { crash: lost } }))), [crashCheck]);
  t.deepEqual(failed(checkExpectations(input({ held: 4 }))), [crashCheck]);
  t.deepEqual(failed(checkExpectations(input({ readygate: { crash: many(10, 'crash', 200) }, held: 0 }))), [
    crashCheck,
  ]);
});

test('checkExpectations: a 502, a reset or a 503 without Retry-After in the outage fails', (t) => {
  for (const bad of [sample('outage', 502), sample('outage', 0), sample('outage', 503)]) {
    const names = failed(checkExpectations(input({ readygate: { outage: [...goodReadygate.outage, bad] } })));
    t.true(
      names.includes('readygate: the outage answers only 503, each with Retry-After'),
      `status ${bad.status}`,
    );
  }
});

test('checkExpectations: drain-wait shorter than the slow gateway’s delay, at its timeout, or absent fails', (t) => {
  const name =
    'readygate: drain-wait held each pod as long as the slow gateway needed (≥ 3500 ms), within its timeout';
  for (const drains of [[3400, 3600], [7000], []]) {
    t.deepEqual(failed(checkExpectations(input({ drains }))), [name], JSON.stringify(drains));
  }
});

test('checkExpectations: the cold replica’s share with slow-start must be below its share without, relative to the fair share', (t) => {
  const name =
    'readygate: with readygate.io/slow-start the cold replica gets a smaller share of the requests than without';
  // 40/160 of 4 pods is exactly fair (1.00); 32/160 of 5 pods too: the same share, no ramp seen.
  t.deepEqual(failed(checkExpectations(input({ coldWith: cold(32, 160, 5) }))), [name]);
  // A smaller absolute share that is only the fifth pod's smaller fair share is no ramp either.
  t.deepEqual(failed(checkExpectations(input({ coldWith: cold(33, 160, 5) }))), [name]);
  // The ramp must have routed something to the pod (weight floor), or the pod was not there at all.
  t.deepEqual(failed(checkExpectations(input({ coldWith: cold(0, 160, 4) }))), [name]);
  t.deepEqual(
    checkExpectations(input()).find((c) => c.name === name)?.detail,
    'without 40/160 across 4 pods (1.00 × fair), with 18/160 across 5 pods (0.56 × fair)',
  );
});

test('tallyColdPeriod: only requests sent inside the period, by who answered, with latency percentiles', (t) => {
  const samples = [
    sample('x', 200, { t: 99, pod: 'cold', latencyMs: 900 }),
    sample('x', 200, { t: 100, pod: 'cold', latencyMs: 250 }),
    sample('x', 200, { t: 110, pod: 'a', latencyMs: 2 }),
    sample('x', 200, { t: 120, pod: 'b', latencyMs: 3 }),
    sample('x', 200, { t: 130, pod: 'cold', latencyMs: 120 }),
    sample('x', 504, { t: 140, latencyMs: 5000 }),
    sample('x', 200, { t: 200, pod: 'cold', latencyMs: 900 }),
  ];
  const tally = tallyColdPeriod(samples, { pod: 'cold', startMs: 100, endMs: 200 });
  t.deepEqual(tally, {
    pod: 'cold',
    total: 5,
    answered: 4,
    toColdPod: 2,
    pods: 3,
    p50LatencyMs: 120,
    p99LatencyMs: 5000,
    slow: 3,
    status504: 1,
    non2xx: 1,
  });
  t.is(relativeColdShare(tally), 1.5);
  t.is(relativeColdShare(cold(0, 0, 0)), 0);
});

test('renderColdPeriods: without and with, per setup', (t) => {
  t.is(
    renderColdPeriods([
      { name: '(c) readygate', without: cold(40, 160, 4), with: cold(18, 160, 5) },
      { name: '(a)', without: undefined, with: undefined },
    ]),
    [
      '  (c) readygate  without: 40 of 160 answers (25 %, fair 25 %), p50 2 ms, p99 250 ms, 40 ≥ 100 ms, 0 × 504, 0 non-2xx',
      '                 with   : 18 of 160 answers (11 %, fair 20 %), p50 2 ms, p99 250 ms, 18 ≥ 100 ms, 0 × 504, 0 non-2xx',
      '  (a)            without: no cold period recorded',
      '                 with   : no cold period recorded',
    ].join('\n'),
  );
});

test('renderPreStops: the range per setup and phase', (t) => {
  t.is(
    renderPreStops(
      [
        {
          name: 'sleep',
          preStops: [
            { phase: 'rollout', ms: 2000 },
            { phase: 'rollout', ms: 2001 },
          ],
        },
        { name: 'drain', preStops: [{ phase: 'slow-propagation', ms: 3506 }] },
        { name: 'none', preStops: [] },
      ],
      { rollout: 'rolling update' },
    ),
    [
      '  sleep: rolling update 2000–2001 ms (2)',
      '  drain: slow-propagation 3506 ms (1)',
      '  none: none',
    ].join('\n'),
  );
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
      sides: [
        { name: 'readygate', phases: left },
        { name: 'naive', phases: right },
      ],
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

test('latencySeries: the p99 of each bucket’s requests by send time, empty buckets left out', (t) => {
  const samples = [
    ...Array.from({ length: 99 }, (_, i) => sample('x', 200, { t: i, latencyMs: 1 })),
    sample('x', 200, { t: 100, latencyMs: 300 }),
    sample('x', 502, { t: 120, latencyMs: 40 }),
    sample('x', 200, { t: 1300, latencyMs: 7 }),
  ];
  t.deepEqual(latencySeries(samples, 250), [
    { t: 0, p99Ms: 40 },
    { t: 1250, p99Ms: 7 },
  ]);
  t.deepEqual(latencySeries([], 250), []);
});
