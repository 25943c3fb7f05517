import test from 'ava';
import { growingPercentFor, limitHeapGrowth } from '../../src/cli/heap-growth.js';

const MB = 1024 * 1024;

test('serve limits heap growth unless node was started with its own setting', (t) => {
  t.is(limitHeapGrowth(['--heap-growing-percent=80']), undefined);
  t.is(limitHeapGrowth(['--inspect', '--heap_growing_percent=20']), undefined);
  // Sets the flag in this test process too; harmless for a test worker.
  const stop = limitHeapGrowth(['--max-old-space-size=4096']);
  t.is(typeof stop, 'function');
  stop?.();
});

test('the heap may grow by half, or by 64 MB when that is more, up to 800 %', (t) => {
  const table: Array<[liveMB: number, percent: number]> = [
    [256, 50],
    [128, 50],
    [112, 60], // 64/112 = 57 %, in steps of 10
    [91, 80],
    [57, 120],
    [38, 170],
    [16, 400],
    [4, 800],
    [0, 800],
  ];
  for (const [liveMB, percent] of table) t.is(growingPercentFor(liveMB * MB), percent, `${liveMB} MB live`);
});
