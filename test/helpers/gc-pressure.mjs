// Preloaded (`node --expose-gc --import ./test/helpers/gc-pressure.mjs bin/readygate.js …`) into a CLI
// child by test/helpers/silent-server.ts: forces a full garbage collection every 50 ms for as long as
// the command runs, and on exit writes how many major collections really ran, so a test can prove the
// GC happened during the wait (the failure it guards against: deadlines lost to GC).
import { PerformanceObserver, constants } from 'node:perf_hooks';

let majors = 0;
const observer = new PerformanceObserver((list) => {
  for (const entry of list.getEntries())
    if (entry.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors += 1;
});
observer.observe({ entryTypes: ['gc'] });
if (typeof globalThis.gc !== 'function') throw new Error('gc-pressure needs node --expose-gc');
// unref: the pressure must never be what keeps the process alive.
setInterval(() => globalThis.gc(), 50).unref();
process.on('exit', () => {
  process.stderr.write(`gc-pressure: ${majors} major collections\n`);
});
