import test from 'ava';
import { NameSet } from '../../src/xds/name-set.js';

test('behaves as a set of strings through adds, deletes and clears', (t) => {
  const names = new NameSet();
  names.add('a');
  names.add('b');
  names.add('a');
  t.is(names.size, 2);
  t.deepEqual(names.toArray(), ['a', 'b']);
  t.true(names.delete('a'));
  t.false(names.delete('a'));
  t.false(names.has('a'));
  t.true(names.has('b'));
  t.deepEqual(names.toArray(), ['b']);
  names.clear();
  t.is(names.size, 0);
  t.deepEqual(names.toArray(), []);
  names.add('a');
  t.deepEqual(names.toArray(), ['a']);
  t.is(names.size, 1);
});

test('stays correct while absent entries pile up and are dropped', (t) => {
  const names = new NameSet();
  const reference = new Set<string>();
  // A fixed pseudo-random walk over 100 names: adds, deletes and clears in every mix.
  let seed = 7;
  const next = (): number => (seed = (seed * 1103515245 + 12345) % 2147483648);
  for (let i = 0; i < 5000; i++) {
    const name = `n${next() % 100}`;
    const op = next() % 10;
    if (op < 5) {
      names.add(name);
      reference.add(name);
    } else if (op < 9) {
      t.is(names.delete(name), reference.delete(name));
    } else {
      names.clear();
      reference.clear();
    }
    if (names.size !== reference.size)
      t.fail(`size ${names.size} after step ${i}, expected ${reference.size}`);
  }
  t.deepEqual(names.toArray().sort(), [...reference].sort());
  for (let i = 0; i < 100; i++) t.is(names.has(`n${i}`), reference.has(`n${i}`));
});
