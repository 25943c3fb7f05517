#!/usr/bin/env node
// Thin launcher so `npx readygate` runs the compiled CLI built by `npm run build` (the prepare step).
import { main } from '../dist/cli/main.js';

process.exitCode = await main(process.argv.slice(2));
