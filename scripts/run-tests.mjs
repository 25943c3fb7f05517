// `npm test`: everything CI checks, in one command. Installs the real Envoy and builds the real
// Kubernetes binaries and h2spec (cached outside the repo), then runs lint, format, cycle and type checks
// and every AVA test through TAP, and closes with the line CI reads: `N passed, N failed[, N skipped]`.
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name) => path.join(root, 'node_modules', '.bin', name);
const counts = { passed: 0, failed: 0, skipped: 0 };

function step(name, command, args, options = {}) {
  const started = Date.now();
  const result = spawnSync(command, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], ...options });
  const ok = result.status === 0;
  console.log(`${ok ? 'ok' : 'not ok'} - ${name} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
  counts[ok ? 'passed' : 'failed'] += 1;
  return ok;
}

function capture(command, args) {
  const result = spawnSync(command, args, {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.status}`);
  return result.stdout.trim().split('\n').pop();
}

function finish() {
  const skipped = counts.skipped > 0 ? `, ${counts.skipped} skipped` : '';
  console.log(`${counts.passed} passed, ${counts.failed} failed${skipped}`);
  process.exit(counts.failed > 0 ? 1 : 0);
}

let envoyBin;
let k8sBinDir;
let h2specBin;
try {
  envoyBin = capture('bash', ['scripts/envoy-binary.sh']);
  k8sBinDir = capture('bash', ['scripts/k8s-binaries.sh']);
  h2specBin = capture('bash', ['scripts/h2spec-binary.sh']);
  counts.passed += 1;
  console.log('ok - real Envoy, Kubernetes and h2spec binaries available');
} catch (error) {
  console.log(`not ok - real Envoy, Kubernetes and h2spec binaries available: ${error.message}`);
  counts.failed += 1;
  finish();
}

step('build', 'npm', ['run', '--silent', 'build']);
step('eslint', bin('eslint'), ['.']);
step('prettier', bin('prettier'), ['--check', '--log-level', 'warn', '.']);
step('import cycles', 'node', ['scripts/check-cycles.mjs', 'src']);
step('typecheck', bin('tsc'), ['-p', 'tsconfig.json', '--noEmit']);

const env = {
  ...process.env,
  READYGATE_ENVOY_BIN: envoyBin,
  READYGATE_K8S_BIN_DIR: k8sBinDir,
  READYGATE_H2SPEC_BIN: h2specBin,
};
const ava = spawn(bin('ava'), ['--tap', ...process.argv.slice(2)], {
  cwd: root,
  env,
  stdio: ['ignore', 'pipe', 'inherit'],
});
let buffer = '';
ava.stdout.setEncoding('utf8');
ava.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  buffer += chunk;
});
ava.on('close', (code) => {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const line of buffer.split('\n')) {
    if (/^ok \d+/.test(line)) {
      if (/# (SKIP|TODO)/i.test(line)) skipped += 1;
      else passed += 1;
    } else if (/^not ok \d+/.test(line)) {
      if (/# TODO/i.test(line)) skipped += 1;
      else failed += 1;
    }
  }
  // AVA exits non-zero on uncaught errors or timeouts that may not show as a `not ok` line.
  if (code !== 0 && failed === 0) failed = 1;
  counts.passed += passed;
  counts.failed += failed;
  counts.skipped += skipped;
  finish();
});
