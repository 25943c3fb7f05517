import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { ErrorCode, isReadygateError } from '../../src/errors.js';
import { loadKubeConfig, SERVICE_ACCOUNT_DIR } from '../../src/sources/kubernetes-config.js';

const kubeconfig = (server: string, context = 'ctx'): string =>
  `apiVersion: v1
kind: Config
clusters:
- name: c-${context}
  cluster: {server: '${server}'}
users:
- name: u-${context}
  user: {token: abc}
contexts:
- name: ${context}
  context: {cluster: c-${context}, user: u-${context}}
current-context: ${context}
`;

function scratch(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'readygate-kc-'));
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

test('--kubeconfig wins over everything else', (t) => {
  const dir = scratch(t);
  const file = path.join(dir, 'explicit');
  writeFileSync(file, kubeconfig('https://explicit:6443'));
  writeFileSync(path.join(dir, 'env'), kubeconfig('https://env:6443'));
  const kc = loadKubeConfig({
    kubeconfigPath: file,
    env: { KUBECONFIG: path.join(dir, 'env'), KUBERNETES_SERVICE_HOST: '10.0.0.1' },
    homeDir: dir,
  });
  t.is(kc.getCurrentCluster()?.server, 'https://explicit:6443');
});

test('in-cluster service account before KUBECONFIG', (t) => {
  const dir = scratch(t);
  const sa = path.join(dir, SERVICE_ACCOUNT_DIR);
  mkdirSync(sa, { recursive: true });
  writeFileSync(path.join(sa, 'token'), 'token');
  writeFileSync(path.join(sa, 'ca.crt'), 'ca');
  writeFileSync(path.join(dir, 'env'), kubeconfig('https://env:6443'));
  const kc = loadKubeConfig({
    env: {
      KUBERNETES_SERVICE_HOST: 'fd00::1',
      KUBERNETES_SERVICE_PORT: '443',
      KUBECONFIG: path.join(dir, 'env'),
    },
    inClusterRoot: dir,
    homeDir: dir,
  });
  t.is(kc.getCurrentCluster()?.server, 'https://[fd00::1]:443');
  t.is(kc.getCurrentCluster()?.caFile, path.join(sa, 'ca.crt'));
});

test('KUBECONFIG (several files merged, first current-context) before ~/.kube/config', (t) => {
  const dir = scratch(t);
  writeFileSync(path.join(dir, 'one'), kubeconfig('https://one:6443', 'one'));
  writeFileSync(path.join(dir, 'two'), kubeconfig('https://two:6443', 'two'));
  mkdirSync(path.join(dir, '.kube'));
  writeFileSync(path.join(dir, '.kube', 'config'), kubeconfig('https://home:6443'));
  const kc = loadKubeConfig({
    env: { KUBECONFIG: [path.join(dir, 'one'), path.join(dir, 'two')].join(path.delimiter) },
    inClusterRoot: dir,
    homeDir: dir,
  });
  t.is(kc.getCurrentCluster()?.server, 'https://one:6443');
  t.deepEqual(
    kc.getContexts().map((c) => c.name),
    ['one', 'two'],
  );
});

test('~/.kube/config last', (t) => {
  const dir = scratch(t);
  mkdirSync(path.join(dir, '.kube'));
  writeFileSync(path.join(dir, '.kube', 'config'), kubeconfig('https://home:6443'));
  const kc = loadKubeConfig({ env: {}, inClusterRoot: dir, homeDir: dir });
  t.is(kc.getCurrentCluster()?.server, 'https://home:6443');
});

test('nothing configured: a clear error that says how to fix it', (t) => {
  const dir = scratch(t);
  const error = t.throws(() => loadKubeConfig({ env: {}, inClusterRoot: dir, homeDir: dir }));
  t.true(isReadygateError(error, ErrorCode.KUBECONFIG_MISSING));
  t.regex(error.message, /--kubeconfig PATH/);
  t.regex(error.message, /--source file:PATH/);
});

test('an unreadable kubeconfig or one without a current cluster is a clear error', (t) => {
  const dir = scratch(t);
  const missing = t.throws(() => loadKubeConfig({ kubeconfigPath: path.join(dir, 'nope'), env: {} }));
  t.true(isReadygateError(missing, ErrorCode.KUBECONFIG_MISSING));
  t.regex(missing.message, /cannot load the kubeconfig .*nope \(from --kubeconfig\)/);
  const noContext = path.join(dir, 'no-context');
  writeFileSync(noContext, 'apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts: []\n');
  const empty = t.throws(() => loadKubeConfig({ kubeconfigPath: noContext, env: {} }));
  t.true(isReadygateError(empty, ErrorCode.KUBECONFIG_MISSING));
  t.regex(empty.message, /no current context/);
});
