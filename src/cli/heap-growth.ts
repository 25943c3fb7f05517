/**
 * V8 lets the old generation grow to several times the live heap before a full collection. A control
 * plane's live heap is mostly per-stream state that lives as long as its Envoys, and nearly all its
 * garbage dies young, so that slack buys little and is all RSS: at 1000 Envoys it was 600 MB of RSS
 * around a 112 MB live heap. A growth factor of 1.5 held RSS near 340 MB for a few ms more CPU per change
 * (docs/benchmarks.md). `serve` owns its process, so it sets this; node's own flag wins when given.
 */
import v8 from 'node:v8';

export const HEAP_GROWING_PERCENT = 50;

/** Returns false (and changes nothing) when the process was started with its own growth setting. */
export function limitHeapGrowth(execArgv: readonly string[] = process.execArgv): boolean {
  if (execArgv.some((arg) => /^--heap[-_]growing[-_]percent\b/.test(arg))) return false;
  // V8 reads this flag whenever it sizes the next collection, so setting it at run time takes effect.
  v8.setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  return true;
}
