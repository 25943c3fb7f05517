import test from 'ava';
import { escapeXml, niceCeiling, renderChart, seriesOf } from '../../src/demo/chart.js';

test('status keys map to the chart series', (t) => {
  t.is(seriesOf('200'), '2xx');
  t.is(seriesOf('204'), '2xx');
  t.is(seriesOf('502'), '502');
  t.is(seriesOf('503'), '503');
  t.is(seriesOf('504'), '504');
  t.is(seriesOf('500'), 'other');
  t.is(seriesOf('404'), 'other');
  t.is(seriesOf('error'), 'error');
});

test('niceCeiling rounds up to 1, 2, 2.5, 3, 4 or 5 times a power of ten', (t) => {
  t.is(niceCeiling(0), 1);
  t.is(niceCeiling(1), 1);
  t.is(niceCeiling(180), 200);
  t.is(niceCeiling(201), 250);
  t.is(niceCeiling(260), 300);
  t.is(niceCeiling(310), 400);
  t.is(niceCeiling(410), 500);
  t.is(niceCeiling(900), 1000);
});

test('escapeXml escapes markup characters', (t) => {
  t.is(escapeXml('a<b>&"c"'), 'a&lt;b&gt;&amp;&quot;c&quot;');
});

const input = {
  title: 'demo <test>',
  bucketMs: 500,
  panels: [
    {
      name: 'readygate',
      buckets: [
        { t: 0, counts: { '200': 100 } },
        { t: 500, counts: { '200': 50, '503': 50 } },
      ],
      phases: [
        { title: 'steady state', startMs: 0, endMs: 500 },
        { title: 'outage', startMs: 500, endMs: 1000 },
      ],
    },
    {
      name: 'naive',
      buckets: [{ t: 0, counts: { '200': 90, error: 10 } }],
      phases: [{ title: 'steady state', startMs: 0, endMs: 1000 }],
    },
  ],
};

test('renderChart draws one stacked bar segment per status and bucket, scaled to responses per second', (t) => {
  const svg = renderChart(input);
  t.true(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
  t.true(svg.trimEnd().endsWith('</svg>'));
  t.true(svg.includes('demo &lt;test&gt;'));
  // 2xx ×3 bars, 503 ×1, "no response" ×1; each carries a tooltip naming panel, time, series and count.
  t.is(svg.match(/<title>readygate 0s: 2xx 100<\/title>/g)?.length, 1);
  t.is(svg.match(/<title>readygate 0\.5s: 503 50<\/title>/g)?.length, 1);
  t.is(svg.match(/<title>naive 0s: no response 10<\/title>/g)?.length, 1);
  t.is(svg.match(/<title>/g)?.length, 5);
  // Peak is 200 responses/s (100 per 500 ms), so the axis tops at 200.
  t.true(svg.includes('>200</text>'));
  // Phase titles are drawn per panel.
  t.is(svg.match(/>steady state<\/text>/g)?.length, 2);
  t.is(svg.match(/>outage<\/text>/g)?.length, 1);
});

test('renderChart is deterministic and tolerates empty panels', (t) => {
  t.is(renderChart(input), renderChart(input));
  const svg = renderChart({
    title: 'empty',
    bucketMs: 250,
    panels: [{ name: 'x', buckets: [], phases: [] }],
  });
  t.false(svg.includes('<title>'));
  t.false(svg.includes('NaN'));
});

test('renderChart draws each panel’s p99 latency as one line on its own scale, at bucket centres', (t) => {
  const svg = renderChart({
    title: 'latency',
    bucketMs: 500,
    panels: [
      {
        name: 'readygate',
        buckets: [
          { t: 0, counts: { '200': 10 } },
          { t: 500, counts: { '200': 10 } },
        ],
        latency: [
          { t: 0, p99Ms: 2 },
          { t: 500, p99Ms: 240 },
        ],
        phases: [],
      },
      { name: 'naive', buckets: [{ t: 0, counts: { '200': 10 } }], phases: [] },
    ],
  });
  const lines = svg.match(/<polyline points="([^"]+)"/g) ?? [];
  t.is(lines.length, 1, 'only the panel with latency gets a line');
  // 240 ms rounds up to a 250 ms top; x at the bucket centres (250 and 750 ms of a 1000 ms axis).
  t.true(svg.includes('p99 latency, top = 250 ms'));
  const points = /<polyline points="([^"]+)"/.exec(svg)?.[1]?.split(' ') ?? [];
  t.is(points.length, 2);
  const [first, second] = points.map((p) => p.split(',').map(Number));
  const plotLeft = 56;
  const plotWidth = 1000 - 56 - 16;
  t.is(first?.[0], Math.round((plotLeft + 0.25 * plotWidth) * 10) / 10);
  t.is(second?.[0], Math.round((plotLeft + 0.75 * plotWidth) * 10) / 10);
  // Higher latency is drawn higher (smaller y).
  t.true((second?.[1] ?? 0) < (first?.[1] ?? 0));
  t.false(svg.includes('NaN'));
});
