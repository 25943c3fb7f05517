/**
 * `readygate version` / `--version`, the `-o` flag every result-printing command takes, and the build
 * step that embeds the git commit (scripts/build-info.mjs, run for real, in this checkout and outside
 * any git checkout).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { pino } from 'pino';
import { parse as parseYaml } from 'yaml';
import { main } from '../../src/cli/main.js';
import { outputFormat } from '../../src/cli/output.js';
import {
  formatVersion,
  pinnedEnvoyVersion,
  SERVED_EXT_PROC_SERVICE,
  SERVED_XDS_METHODS,
  versionDocument,
  type BuildFacts,
} from '../../src/cli/version.js';
import { EXTERNAL_PROCESSOR_SERVICE } from '../../src/extproc/server.js';
import { SERVED_TYPE_URLS } from '../../src/xds/resource-types.js';
import { DELTA_METHOD_PATH, SOTW_METHOD_PATH } from '../../src/xds/server.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

async function run(args: string[], env: Record<string, string> = {}) {
  let stdout = '';
  let stderr = '';
  const code = await main(args, {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    env,
    logger: pino({ level: 'silent' }),
  });
  return { code, stdout, stderr };
}

const FACTS: BuildFacts = {
  packageVersion: '1.2.3',
  commit: '0123456789abcdef0123456789abcdef01234567',
  gitTreeState: 'clean',
  envoyTested: '1.36.4',
  node: 'v24.22.3',
  platform: 'linux/x64',
};

test('the served APIs named by version are the ones the servers register', (t) => {
  t.deepEqual(
    [...SERVED_XDS_METHODS],
    [SOTW_METHOD_PATH, DELTA_METHOD_PATH].map((p) => p.slice(1)),
  );
  t.is(SERVED_EXT_PROC_SERVICE, EXTERNAL_PROCESSOR_SERVICE);
});

test('the pinned Envoy version is read from scripts/envoy-binary.sh', (t) => {
  const script = readFileSync(path.join(root, 'scripts/envoy-binary.sh'), 'utf8');
  const pinned = pinnedEnvoyVersion(script);
  t.regex(pinned ?? '', /^\d+\.\d+\.\d+$/);
  t.true(script.includes(`READYGATE_ENVOY_VERSION:-${pinned}}`));
  t.is(pinnedEnvoyVersion('ENVOY_VERSION=latest\n'), undefined);
});

test('table and wide: exact lines', (t) => {
  const doc = versionDocument(FACTS);
  const table = [
    'readygate  1.2.3',
    'commit     0123456789abcdef0123456789abcdef01234567 (clean)',
    'node       v24.22.3 linux/x64',
    'envoy      1.36.4 (tested against)',
    'xds        v3 ADS, SotW and delta: CDS, EDS, LDS, RDS',
    'ext_proc   v3 envoy.service.ext_proc.v3.ExternalProcessor',
  ];
  t.is(formatVersion(doc, false), table.join('\n') + '\n');
  const wide = formatVersion(doc, true).split('\n');
  t.deepEqual(
    wide.slice(6, -1).map((line) => line.split(/ {2,}/)),
    [
      ['xds method', 'envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources'],
      ['xds method', 'envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources'],
      ...SERVED_TYPE_URLS.map((url) => ['xds type', url]),
    ],
  );
  t.is(
    formatVersion(versionDocument({ ...FACTS, commit: 'unknown', gitTreeState: 'unknown' }), false).split(
      '\n',
    )[1],
    'commit     unknown',
  );
});

test('readygate version -o json|yaml|table|wide (and --output, -oFORMAT, READYGATE_OUTPUT)', async (t) => {
  const manifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
  const json = await run(['version', '-o', 'json']);
  t.is(json.code, 0);
  t.is(json.stderr, '');
  const doc = JSON.parse(json.stdout) as Record<string, unknown>;
  t.deepEqual(Object.keys(doc), [
    'readygate',
    'commit',
    'gitTreeState',
    'node',
    'platform',
    'envoyTested',
    'xds',
    'extProc',
  ]);
  t.like(doc, {
    readygate: manifest.version,
    node: process.version,
    platform: `${process.platform}/${process.arch}`,
    envoyTested: pinnedEnvoyVersion(readFileSync(path.join(root, 'scripts/envoy-binary.sh'), 'utf8')),
    xds: { methods: [...SERVED_XDS_METHODS], typeUrls: [...SERVED_TYPE_URLS] },
    extProc: { service: EXTERNAL_PROCESSOR_SERVICE },
  });
  t.regex(doc.commit as string, /^([0-9a-f]{40}|unknown)$/);
  t.deepEqual(parseYaml((await run(['version', '-o', 'yaml'])).stdout), doc);
  t.deepEqual(await run(['version', '--output=json']), json);
  t.deepEqual(await run(['version', '-ojson']), json);
  t.deepEqual(await run(['version'], { READYGATE_OUTPUT: 'json' }), json);
  const table = await run(['version']);
  t.is(table.stdout.split('\n')[0], `readygate  ${manifest.version}`);
  t.deepEqual(await run(['version', '-o', 'table']), table);
  const wide = await run(['version', '-o', 'wide']);
  t.true(wide.stdout.startsWith(table.stdout.replaceAll(/^(\S+) {2}/gm, '$1   ')));
  t.regex(wide.stdout, /^xds type {4}type\.googleapis\.com\/envoy\.config\.cluster\.v3\.Cluster$/m);
});

test('a bad -o is one line and exit 2, naming the formats', async (t) => {
  t.deepEqual(await run(['version', '-o', 'xml']), {
    code: 2,
    stdout: '',
    stderr: 'readygate: -o: "xml" is not an output format (use one of table, wide, json, yaml)\n',
  });
  t.deepEqual(await run(['drain-wait', '--pod', 'ns/p'], { READYGATE_OUTPUT: 'jsn' }), {
    code: 2,
    stdout: '',
    stderr:
      'readygate: READYGATE_OUTPUT: "jsn" is not an output format (use one of table, wide, json, yaml)\n',
  });
  const missing = await run(['status', '-o']);
  t.is(missing.code, 2);
  t.is(missing.stderr, 'readygate: -o needs a value (see readygate status --help)\n');
});

test('outputFormat: -o wins, status --json means json, else the table', (t) => {
  t.is(outputFormat({}), 'table');
  t.is(outputFormat({ json: false }), 'table');
  t.is(outputFormat({ json: true }), 'json');
  t.is(outputFormat({ json: true, output: 'wide' }), 'wide');
  t.is(outputFormat({ output: 'yaml' }), 'yaml');
});

test('status: every replica down is one stderr line and exit 3 in every format; no form chosen is exit 2', async (t) => {
  const closed = ['--control-plane', 'http://127.0.0.1:1', '--timeout', '1s'];
  // Every replica down: one stderr line whatever the format, exit 3.
  for (const format of [['--json'], ['-o', 'yaml'], ['--json', '-o', 'wide']]) {
    const result = await run(['status', ...closed, ...format]);
    t.is(result.code, 3);
    t.is(result.stdout, '');
    t.is(result.stderr, "readygate: cannot reach readygate's admin at http://127.0.0.1:1: ECONNREFUSED\n");
  }
  t.deepEqual(await run(['status']), {
    code: 2,
    stdout: '',
    stderr:
      'readygate: status needs --control-plane URL or --peers-dns HOST:PORT (every proxy on those replicas), or --envoy-admin URL (one Envoy) (see readygate status --help)\n',
  });
});

test('scripts/build-info.mjs: the checkout\'s commit; "unknown" without git, and still exit 0', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'readygate-build-info-'));
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  const out = path.join(dir, 'in-checkout.json');
  execFileSync(process.execPath, [path.join(root, 'scripts/build-info.mjs'), out]);
  const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
  const info = JSON.parse(readFileSync(out, 'utf8')) as { commit: string; gitTreeState: string };
  t.is(info.commit, head);
  t.true(['clean', 'dirty'].includes(info.gitTreeState));

  // A copy of the script outside any checkout (an unpacked tarball).
  const scripts = path.join(dir, 'pkg', 'scripts');
  execFileSync('mkdir', ['-p', scripts]);
  copyFileSync(path.join(root, 'scripts/build-info.mjs'), path.join(scripts, 'build-info.mjs'));
  const outside = spawnSync(process.execPath, [path.join(scripts, 'build-info.mjs')], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '', GIT_CEILING_DIRECTORIES: dir },
  });
  t.is(outside.status, 0, outside.stderr);
  t.deepEqual(JSON.parse(readFileSync(path.join(dir, 'pkg', 'dist', 'build-info.json'), 'utf8')), {
    commit: 'unknown',
    gitTreeState: 'unknown',
  });
});
