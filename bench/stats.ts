/** Summary statistics the benchmarks report. */

/** Nearest-rank percentile, `p` in 0–100; NaN for no values. */
export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

/** Rounded to one decimal, as the result files and tables show figures. */
export function round1(value: number): number {
  return Math.round(value * 10) / 10;
}
