/**
 * The timeline chart: for each setup, responses per second by status code over time, as stacked bars
 * (one bar per time bucket), with the phases shaded behind. Pure: data in, SVG text out — no chart
 * library, so what is drawn is exactly what is counted.
 */
import type { Bucket, LatencyPoint } from './tally.js';
import { ERROR_KEY } from './tally.js';

export interface ChartPhase {
  readonly title: string;
  readonly startMs: number;
  readonly endMs: number;
}

export interface ChartPanel {
  readonly name: string;
  readonly buckets: readonly Bucket[];
  /** p99 latency per bucket, drawn as a line on its own scale (right axis); absent: no line. */
  readonly latency?: readonly LatencyPoint[];
  readonly phases: readonly ChartPhase[];
}

export interface ChartInput {
  readonly title: string;
  readonly bucketMs: number;
  readonly panels: readonly ChartPanel[];
}

const WIDTH = 1000;
const PANEL_HEIGHT = 210;
const MARGIN = { left: 56, right: 16, top: 46, gap: 52, bottom: 40 };

/** Stacking order (bottom to top) and colours; anything else is drawn as "other". */
const SERIES: readonly { readonly key: string; readonly label: string; readonly color: string }[] = [
  { key: '2xx', label: '2xx', color: '#3a9d5d' },
  { key: '502', label: '502', color: '#f28e2b' },
  { key: '503', label: '503', color: '#d62728' },
  { key: '504', label: '504', color: '#9467bd' },
  { key: 'other', label: 'other status', color: '#7f7f7f' },
  { key: ERROR_KEY, label: 'no response', color: '#222222' },
];

const LATENCY_COLOR = '#1f4e9c';

/** Which series a status key belongs to. */
export function seriesOf(statusKey: string): string {
  if (statusKey === ERROR_KEY) return ERROR_KEY;
  const status = Number(statusKey);
  if (status >= 200 && status < 300) return '2xx';
  if (statusKey === '502' || statusKey === '503' || statusKey === '504') return statusKey;
  return 'other';
}

export function escapeXml(text: string): string {
  return text
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;');
}

const fmt = (n: number): string => String(Math.round(n * 10) / 10);

export function renderChart(input: ChartInput): string {
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const height =
    MARGIN.top + input.panels.length * PANEL_HEIGHT + (input.panels.length - 1) * MARGIN.gap + MARGIN.bottom;
  const endMs = Math.max(
    input.bucketMs,
    ...input.panels.flatMap((panel) => [
      ...panel.buckets.map((b) => b.t + input.bucketMs),
      ...panel.phases.map((p) => p.endMs),
    ]),
  );
  const perSecond = 1000 / input.bucketMs;
  const peak = Math.max(
    1,
    ...input.panels.flatMap((panel) =>
      panel.buckets.map((b) => Object.values(b.counts).reduce((n, c) => n + c, 0) * perSecond),
    ),
  );
  const yMax = niceCeiling(peak);
  const x = (ms: number): number => MARGIN.left + (ms / endMs) * plotWidth;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="11">`,
  );
  parts.push(`<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`);
  parts.push(
    `<text x="${MARGIN.left}" y="20" font-size="15" font-weight="bold">${escapeXml(input.title)}</text>`,
  );
  // Legend, top right.
  let legendX = WIDTH - MARGIN.right - SERIES.length * 92;
  for (const series of SERIES) {
    parts.push(`<rect x="${legendX}" y="28" width="10" height="10" fill="${series.color}"/>`);
    parts.push(`<text x="${legendX + 14}" y="37">${escapeXml(series.label)}</text>`);
    legendX += 92;
  }

  input.panels.forEach((panel, index) => {
    const top = MARGIN.top + index * (PANEL_HEIGHT + MARGIN.gap) + 18;
    const plotHeight = PANEL_HEIGHT - 18;
    const y = (value: number): number => top + plotHeight - (value / yMax) * plotHeight;
    parts.push(
      `<text x="${MARGIN.left}" y="${top - 6}" font-size="13" font-weight="bold">${escapeXml(panel.name)}</text>`,
    );
    // Phase bands behind the bars, alternating shades, titles along the top edge.
    panel.phases.forEach((phase, phaseIndex) => {
      const left = x(phase.startMs);
      const width = Math.max(0, x(phase.endMs) - left);
      const shade = phaseIndex % 2 === 0 ? '#f3f3f3' : '#e6e6e6';
      parts.push(
        `<rect x="${fmt(left)}" y="${top}" width="${fmt(width)}" height="${plotHeight}" fill="${shade}"/>`,
      );
      parts.push(
        `<text x="${fmt(left + 3)}" y="${top + 12}" fill="#555555">${escapeXml(phase.title)}</text>`,
      );
    });
    // Y grid and labels (requests per second).
    // Four or five grid steps, whichever gives round labels (250 → 50s, 200 → 50s).
    const steps = yMax % 4 === 0 ? 4 : 5;
    for (let step = 0; step <= steps; step++) {
      const value = (yMax / steps) * step;
      const yy = fmt(y(value));
      parts.push(
        `<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${yy}" y2="${yy}" stroke="#cccccc" stroke-width="0.5"/>`,
      );
      parts.push(`<text x="${MARGIN.left - 6}" y="${yy}" text-anchor="end" dy="3">${fmt(value)}</text>`);
    }
    parts.push(
      `<text transform="translate(14 ${top + plotHeight / 2}) rotate(-90)" text-anchor="middle">responses/s</text>`,
    );
    // Stacked bars.
    const barWidth = Math.max(0.5, (input.bucketMs / endMs) * plotWidth - 0.5);
    for (const bucket of panel.buckets) {
      const totals = new Map<string, number>();
      for (const [key, count] of Object.entries(bucket.counts)) {
        const series = seriesOf(key);
        totals.set(series, (totals.get(series) ?? 0) + count);
      }
      let stacked = 0;
      for (const series of SERIES) {
        const count = totals.get(series.key) ?? 0;
        if (count === 0) continue;
        const value = count * perSecond;
        const y1 = y(stacked + value);
        const y0 = y(stacked);
        parts.push(
          `<rect x="${fmt(x(bucket.t))}" y="${fmt(y1)}" width="${fmt(barWidth)}" height="${fmt(y0 - y1)}" fill="${series.color}"><title>${escapeXml(`${panel.name} ${fmt(bucket.t / 1000)}s: ${series.label} ${count}`)}</title></rect>`,
        );
        stacked += value;
      }
    }
    // p99 latency as a line on its own scale, so a slow answer shows where the bars stay green.
    const latency = panel.latency ?? [];
    if (latency.length > 0) {
      const latencyMax = niceCeiling(Math.max(...latency.map((point) => point.p99Ms)));
      const ly = (ms: number): number =>
        top + plotHeight - (Math.min(ms, latencyMax) / latencyMax) * plotHeight;
      const points = latency
        .map((point) => `${fmt(x(point.t + input.bucketMs / 2))},${fmt(ly(point.p99Ms))}`)
        .join(' ');
      parts.push(
        `<polyline points="${points}" fill="none" stroke="${LATENCY_COLOR}" stroke-width="1"><title>${escapeXml(`${panel.name}: p99 latency per ${input.bucketMs} ms, 0–${latencyMax} ms`)}</title></polyline>`,
      );
      parts.push(
        `<text x="${WIDTH - MARGIN.right}" y="${top - 6}" text-anchor="end" fill="${LATENCY_COLOR}">p99 latency, top = ${fmt(latencyMax)} ms</text>`,
      );
    }
    // X axis: seconds.
    const axisY = top + plotHeight;
    parts.push(
      `<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${axisY}" y2="${axisY}" stroke="#333333"/>`,
    );
    const stepS = Math.max(1, Math.ceil(endMs / 1000 / 20));
    for (let s = 0; s * 1000 <= endMs; s += stepS) {
      parts.push(`<text x="${fmt(x(s * 1000))}" y="${axisY + 14}" text-anchor="middle">${s}s</text>`);
    }
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/** 1, 2, 2.5, 3, 4 or 5 times a power of ten, at least `value` (a catch-up burst does not halve the plot). */
export function niceCeiling(value: number): number {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const factor of [1, 2, 2.5, 3, 4, 5, 10]) {
    if (factor * power >= value) return factor * power;
  }
  return 10 * power;
}
