#!/usr/bin/env node
// Thin launcher so `npx readygate` runs the compiled CLI built by `npm run build` (the prepare step).
// Node 24 and 26 are supported (package.json engines). On an older Node a dependency fails while loading
// (client-node's HTTP client needs Node ≥ 22.19) with a stack trace; say what is wrong in one line instead.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  console.error(`readygate: needs Node.js 24 or 26 (this is ${process.version})`);
  process.exit(1);
}
const { main } = await import('../dist/cli/main.js');

process.exitCode = await main(process.argv.slice(2));
