import test from 'ava';
import { limitHeapGrowth } from '../../src/cli/heap-growth.js';

test('serve limits heap growth unless node was started with its own setting', (t) => {
  t.false(limitHeapGrowth(['--heap-growing-percent=80']));
  t.false(limitHeapGrowth(['--inspect', '--heap_growing_percent=20']));
  // Sets the flag in this test process too; harmless for a test worker.
  t.true(limitHeapGrowth(['--max-old-space-size=4096']));
});
