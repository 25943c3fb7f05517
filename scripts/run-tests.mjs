// `npm test`: everything CI checks, in one command, on both supported Node.js lines. Installs the pinned
// Node 24 and Node 26 builds, the real Envoy, and builds the real Kubernetes binaries (the kubelet and
// kube-scheduler of the real-node e2e too), h2spec and the e2e container images (all cached outside the
// repo); then, on Node 24 (the default runtime), the build, lint, format, cycle and
// type checks and every AVA test, and on Node 26 every AVA test again. Each runtime runs with its bin
// directory first on PATH, so what the tests spawn (`node bin/readygate.js`, npm, tsx) runs on it too;
// the Node that started this script (whatever the machine ships) only orchestrates.
// Closes with one `nodeNN: N passed, N failed` line per runtime and then the line CI reads, their sum:
// `N passed, N failed[, N skipped]`.
// READYGATE_TEST_NODE_LINES=24 (or 26) limits a local run to one line; CI always runs both.
// The real-kubelet e2e (test/integration/real-node*.test.ts, docs/e2e.md) runs on the first line only:
// it is the heaviest file, and what it adds (a kubelet, containerd, CNI) does not depend on the runtime
// readygate runs on, which every other test still covers on both lines.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name) => path.join(root, 'node_modules', '.bin', name);
/** The default runtime first: the static checks run on it. */
const SUPPORTED_LINES = ['24', '26'];
const lines = (process.env.READYGATE_TEST_NODE_LINES ?? SUPPORTED_LINES.join(' '))
  .split(/[\s,]+/)
  .filter((line) => line !== '');
const avaArgs = process.argv.slice(2);
// AVA's CLI script, run directly by each runtime's node (the .bin shim would run the first node on PATH).
const avaPackage = path.join(root, 'node_modules', 'ava');
const avaCli = path.join(
  avaPackage,
  JSON.parse(readFileSync(path.join(avaPackage, 'package.json'), 'utf8')).bin.ava,
);

const newCounts = () => ({ passed: 0, failed: 0, skipped: 0 });
const total = newCounts();
const perLine = new Map(lines.map((line) => [line, newCounts()]));

function tally(counts, key, n = 1) {
  counts[key] += n;
  total[key] += n;
}

const format = (counts) =>
  `${counts.passed} passed, ${counts.failed} failed${counts.skipped > 0 ? `, ${counts.skipped} skipped` : ''}`;

function finish() {
  for (const [line, counts] of perLine) console.log(`node${line}: ${format(counts)}`);
  console.log(format(total));
  process.exit(total.failed > 0 ? 1 : 0);
}

function step(counts, name, command, args, options = {}) {
  const started = Date.now();
  const result = spawnSync(command, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], ...options });
  const ok = result.status === 0;
  console.log(`${ok ? 'ok' : 'not ok'} - ${name} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
  tally(counts, ok ? 'passed' : 'failed');
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

const unsupported = lines.filter((line) => !SUPPORTED_LINES.includes(line));
if (unsupported.length > 0 || lines.length === 0) {
  console.error(
    `READYGATE_TEST_NODE_LINES: expected some of ${SUPPORTED_LINES.join(', ')}, got '${lines.join(' ')}'`,
  );
  process.exit(2);
}

// Installs first, all or nothing: a missing binary fails the run, it never skips tests.
const nodeBins = new Map();
let envoyBin;
let k8sBinDir;
let h2specBin;
/**
 * One setup step, timed. Cached steps take well under a second; a first run installs Node and Envoy and
 * builds Kubernetes and h2spec (minutes): the scripts print what they install and, every 30 s, that they
 * are still at it, and this line says how long each step took.
 */
function setupStep(name, script, args = []) {
  const started = Date.now();
  const result = capture('bash', [script, ...args]);
  console.log(`# setup: ${name} ready in ${((Date.now() - started) / 1000).toFixed(1)}s: ${result}`);
  return result;
}

let nodeBinDir;
let nodeImagesDir;
try {
  for (const line of lines) nodeBins.set(line, setupStep(`Node ${line}`, 'scripts/node-runtime.sh', [line]));
  envoyBin = setupStep('Envoy', 'scripts/envoy-binary.sh');
  k8sBinDir = setupStep('kube-apiserver, kube-controller-manager, etcd', 'scripts/k8s-binaries.sh');
  h2specBin = setupStep('h2spec', 'scripts/h2spec-binary.sh');
  nodeBinDir = setupStep('kubelet, kube-scheduler', 'scripts/node-binaries.sh');
  nodeImagesDir = setupStep('real-node images', 'scripts/real-node-images.sh');
  for (const counts of perLine.values()) tally(counts, 'passed');
  console.log(`ok - Node ${lines.join(' and ')}, real Envoy, Kubernetes and h2spec binaries available`);
} catch (error) {
  console.log(
    `not ok - Node ${lines.join(' and ')}, real Envoy, Kubernetes and h2spec binaries available: ${error.message}`,
  );
  for (const counts of perLine.values()) tally(counts, 'failed');
  finish();
}

/** This runtime's environment: its `node` first on PATH, and the real binaries the tests need. */
function runtimeEnv(nodeBin) {
  return {
    ...process.env,
    PATH: `${path.dirname(nodeBin)}${path.delimiter}${process.env.PATH ?? ''}`,
    READYGATE_ENVOY_BIN: envoyBin,
    READYGATE_K8S_BIN_DIR: k8sBinDir,
    READYGATE_H2SPEC_BIN: h2specBin,
    READYGATE_NODE_BIN_DIR: nodeBinDir,
    READYGATE_NODE_IMAGES_DIR: nodeImagesDir,
  };
}

function staticChecks(counts, nodeBin) {
  const options = { env: runtimeEnv(nodeBin) };
  step(counts, 'build', 'npm', ['run', '--silent', 'build'], options);
  step(counts, 'eslint', nodeBin, [bin('eslint'), '.'], options);
  step(counts, 'prettier', nodeBin, [bin('prettier'), '--check', '--log-level', 'warn', '.'], options);
  step(counts, 'import cycles', nodeBin, ['scripts/check-cycles.mjs', 'src'], options);
  step(counts, 'typecheck', nodeBin, [bin('tsc'), '-p', 'tsconfig.json', '--noEmit'], options);
}

/**
 * Longer than any test's legitimate silence: the longest single test (the real-node rollout) takes a few
 * minutes, and the other file running beside it prints in the meantime.
 */
const SILENCE_LIMIT_MS = 15 * 60_000;

/** Every AVA test (or those named on the command line) on this runtime, counted from AVA's TAP output. */
function avaTests(line, counts, nodeBin, firstLine) {
  const started = Date.now();
  console.log(`# node${line}: AVA tests on ${capture(nodeBin, ['--version'])}`);
  const files =
    avaArgs.length > 0 || firstLine ? avaArgs : ['test/**/*.test.ts', '!test/integration/real-node*.test.ts'];
  const ava = spawn(nodeBin, [avaCli, '--tap', ...files], {
    cwd: root,
    env: runtimeEnv(nodeBin),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let buffer = '';
  let lastOutput = Date.now();
  let silenced = false;
  ava.stdout.setEncoding('utf8');
  ava.stdout.on('data', (chunk) => {
    process.stdout.write(chunk);
    buffer += chunk;
    lastOutput = Date.now();
  });
  // The last resort against a hang AVA does not catch (its inactivity timeout stays off for as long as a
  // test's t.timeout() asked, and real-node's asks for an hour): no TAP line for SILENCE_LIMIT_MS means
  // something is stuck. Say what is running, interrupt AVA (it stops its workers, then reports) and
  // count the pass as failed, instead of spending the rest of CI's time waiting.
  const watchdog = setInterval(() => {
    if (silenced || Date.now() - lastOutput < SILENCE_LIMIT_MS) return;
    silenced = true;
    console.log(
      `not ok - node${line}: AVA printed nothing for ${SILENCE_LIMIT_MS / 60_000} min; interrupting it`,
    );
    const tree = spawnSync('ps', ['-eo', 'pid,ppid,etime,args', '--forest'], { encoding: 'utf8' });
    console.log((tree.stdout ?? '').replace(/^/gm, '# '));
    ava.kill('SIGINT');
    setTimeout(() => ava.kill('SIGKILL'), 60_000).unref();
  }, 10_000);
  return new Promise((resolve) => {
    ava.on('close', (code) => {
      clearInterval(watchdog);
      if (silenced) code = code === 0 ? 1 : code;
      let passed = 0;
      let failed = 0;
      let skipped = 0;
      for (const tapLine of buffer.split('\n')) {
        if (/^ok \d+/.test(tapLine)) {
          if (/# (SKIP|TODO)/i.test(tapLine)) skipped += 1;
          else passed += 1;
        } else if (/^not ok \d+/.test(tapLine)) {
          if (/# TODO/i.test(tapLine)) skipped += 1;
          else failed += 1;
        }
      }
      // AVA exits non-zero on uncaught errors or timeouts that may not show as a `not ok` line.
      if (code !== 0 && failed === 0) failed = 1;
      tally(counts, 'passed', passed);
      tally(counts, 'failed', failed);
      tally(counts, 'skipped', skipped);
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      console.log(`# node${line}: AVA ${passed} passed, ${failed} failed in ${seconds}s`);
      resolve();
    });
  });
}

// One runtime after the other: the tests start real clusters and Envoys and time themselves, and the
// machine CI runs on has two cores.
for (const [index, line] of lines.entries()) {
  const counts = perLine.get(line);
  const nodeBin = nodeBins.get(line);
  if (index === 0) staticChecks(counts, nodeBin);
  await avaTests(line, counts, nodeBin, index === 0);
}
finish();
