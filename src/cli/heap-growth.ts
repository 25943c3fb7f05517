/**
 * V8 lets the old generation grow to several times the live heap before a full collection. A control
 * plane's live heap is mostly per-stream state that lives as long as its Envoys, and nearly all its
 * garbage dies young, so that slack buys little and is all RSS: at 1000 Envoys it was 600 MB of RSS
 * around a 112 MB live heap. A growth factor of 1.5 held RSS near 340 MB for a few ms more CPU per change
 * (docs/benchmarks.md). `serve` owns its process, so it sets this; node's own flag wins when given.
 *
 * The room must not get too small either. V8 counts buffers outside the heap toward the same limit, and
 * a SotW control plane receives 20 MB of ACKs per change at 1000 Envoys × 1000 clusters. Once streams
 * shared what they were sent (src/xds/sync-status.ts) the live heap there was 38 MB, and 1.5× of it
 * started a full GC at every change. So the heap may grow by half, or by MIN_HEAP_GROWTH_BYTES if that
 * is more, and the percentage is set again after every full GC, as the live heap changes.
 */
import { PerformanceObserver, constants } from 'node:perf_hooks';
import v8 from 'node:v8';

export const HEAP_GROWING_PERCENT = 50;
export const MIN_HEAP_GROWTH_BYTES = 64 * 1024 * 1024;
/** Caps the percentage for a tiny heap (a process just started, a handful of Envoys). */
const MAX_GROWING_PERCENT = 800;

/** The growth, in percent of `liveBytes`, that gives the heap half again or 64 MB of room; steps of 10. */
export function growingPercentFor(liveBytes: number): number {
  if (!(liveBytes > 0)) return MAX_GROWING_PERCENT;
  const forMinimum = Math.ceil(MIN_HEAP_GROWTH_BYTES / liveBytes / 0.1) * 10;
  return Math.min(MAX_GROWING_PERCENT, Math.max(HEAP_GROWING_PERCENT, forMinimum));
}

/**
 * Sets the growth now and after every full GC. Returns a function that stops following the heap, or
 * undefined (and changes nothing) when the process was started with its own growth setting.
 */
export function limitHeapGrowth(execArgv: readonly string[] = process.execArgv): (() => void) | undefined {
  if (execArgv.some((arg) => /^--heap[-_]growing[-_]percent\b/.test(arg))) return undefined;
  let current = 0;
  const follow = (): void => {
    const percent = growingPercentFor(v8.getHeapStatistics().used_heap_size);
    if (percent === current) return;
    current = percent;
    // V8 reads this flag whenever it sizes the next collection, so setting it at run time takes effect.
    v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
  };
  follow();
  const observer = new PerformanceObserver((list) => {
    const major = list.getEntries().some((entry) => {
      const detail = (entry as { detail?: { kind?: number } }).detail;
      return detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR;
    });
    if (major) follow();
  });
  observer.observe({ entryTypes: ['gc'] });
  return () => {
    observer.disconnect();
  };
}
