// Fails when src/ has an import cycle. Reads relative imports (static and `export … from`) of every .ts
// file and walks the graph; type-only imports count too, since a cycle of types is still a tangle.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const srcRoot = path.resolve(process.argv[2] ?? 'src');
const files = [];
(function walk(dir) {
  for (const name of readdirSync(dir)) {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) walk(full);
    else if (full.endsWith('.ts')) files.push(full);
  }
})(srcRoot);

const importPattern = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+['"](\.{1,2}\/[^'"]+)['"]/g;
const graph = new Map();
for (const file of files) {
  const source = readFileSync(file, 'utf8');
  const deps = [];
  for (const match of source.matchAll(importPattern)) {
    deps.push(path.resolve(path.dirname(file), match[1].replace(/\.js$/, '.ts')));
  }
  graph.set(file, deps);
}

const state = new Map(); // undefined = unvisited, 1 = on stack, 2 = done
const cycles = [];
function visit(file, stack) {
  state.set(file, 1);
  stack.push(file);
  for (const dep of graph.get(file) ?? []) {
    if (!graph.has(dep)) continue;
    if (state.get(dep) === 1) cycles.push([...stack.slice(stack.indexOf(dep)), dep]);
    else if (!state.has(dep)) visit(dep, stack);
  }
  stack.pop();
  state.set(file, 2);
}
for (const file of files) if (!state.has(file)) visit(file, []);

if (cycles.length > 0) {
  for (const cycle of cycles)
    console.error('import cycle: ' + cycle.map((f) => path.relative(srcRoot, f)).join(' -> '));
  process.exit(1);
}
console.log(`check-cycles: ${files.length} modules, no import cycles`);
