/**
 * The kind demo (kind/) as tests use it without a cluster: kind/base rendered with `kubectl kustomize`,
 * and kind/scripts/certs.sh run with a stand-in kubectl that records its calls instead of talking to a
 * cluster. The Secrets the script creates are read back from its own `kubectl create secret` calls (each
 * `--from-file=KEY=PATH` is one key of the Secret), so a test can lay them out as the kubelet mounts them.
 */
import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';

const execFileAsync = promisify(execFile);
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const kindDir = path.join(repoRoot, 'kind');
const kubectl = process.env['READYGATE_KUBECTL'] ?? 'kubectl';

/** The parts of a rendered object the tests read. */
export interface RenderedObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
}

/** `kubectl kustomize kind/<dir>` (kind/base by default), parsed. */
export async function renderKind(dir = 'base'): Promise<RenderedObject[]> {
  let stdout: string;
  try {
    ({ stdout } = await execFileAsync(kubectl, ['kustomize', path.join(kindDir, dir)], {
      cwd: repoRoot,
      timeout: 60_000,
      maxBuffer: 16 * 1024 * 1024,
    }));
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`kubectl kustomize kind/${dir} failed:\n${e.stderr ?? e.message}`, { cause: error });
  }
  return parseAllDocuments(stdout)
    .map((doc) => doc.toJS() as RenderedObject | null)
    .filter((o): o is RenderedObject => o !== null);
}

export function findObject(objects: readonly RenderedObject[], kind: string, name: string): RenderedObject {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name} in the rendered kind manifests`);
  return found;
}

/** A Secret certs.sh created: its keys and, for each, the file kubectl read it from. */
export interface KindSecret {
  readonly namespace: string;
  readonly name: string;
  readonly type: string | undefined;
  /** key (tls.crt, tls.key, ca.crt) → the file the script passed as `--from-file=KEY=PATH`. */
  readonly files: Readonly<Record<string, string>>;
}

export interface KindCerts {
  /** KIND_PKI_DIR: the demo CA and the issued keys and certificates. */
  readonly pkiDir: string;
  /** What the script logged (its `log` lines go to stderr). */
  readonly stderr: string;
  /** Every kubectl call, one argument list each, in order. */
  readonly kubectlCalls: readonly (readonly string[])[];
  /** The Secrets, in the order the script created them. */
  readonly secrets: readonly KindSecret[];
}

/**
 * Runs kind/scripts/certs.sh with KIND_PKI_DIR under `workDir` and a stand-in kubectl on PATH: it appends
 * its arguments (tab-separated, one call per line, in a single write) to a file and swallows what
 * `apply -f -` reads.
 */
export async function runKindCerts(workDir: string): Promise<KindCerts> {
  const pkiDir = path.join(workDir, 'pki');
  const stubDir = path.join(workDir, 'stub-bin');
  mkdirSync(stubDir, { recursive: true });
  const calls = path.join(workDir, 'kubectl-calls.txt');
  writeFileSync(calls, '');
  writeFileSync(
    path.join(stubDir, 'kubectl'),
    [
      '#!/bin/sh',
      // One write per call: `create … | apply -f -` runs two of these at once, appending to one file.
      `line="$1"; shift; tab=$(printf '\\t'); for arg in "$@"; do line="$line$tab$arg"; done`,
      `printf '%s\\n' "$line" >> '${calls}'`,
      'case "$*" in *apply*) cat > /dev/null ;; esac',
      '',
    ].join('\n'),
  );
  chmodSync(path.join(stubDir, 'kubectl'), 0o755);
  const { stderr } = await execFileAsync('bash', [path.join(kindDir, 'scripts', 'certs.sh')], {
    env: { ...process.env, PATH: `${stubDir}:${process.env['PATH'] ?? ''}`, KIND_PKI_DIR: pkiDir },
    timeout: 60_000,
  });
  const kubectlCalls = readFileSync(calls, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => line.split('\t'));
  const secrets = kubectlCalls.flatMap((args): KindSecret[] => {
    const at = args.indexOf('create');
    if (at < 0 || args[at + 1] !== 'secret' || args[at + 2] !== 'generic') return [];
    const flag = (name: string): string | undefined =>
      args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
    const namespaceAt = args.indexOf('-n');
    const files: Record<string, string> = {};
    for (const arg of args.filter((a) => a.startsWith('--from-file='))) {
      const [key = '', ...file] = arg.slice('--from-file='.length).split('=');
      files[key] = file.join('=');
    }
    return [
      {
        namespace: namespaceAt >= 0 ? (args[namespaceAt + 1] ?? '') : '',
        name: args[at + 3] ?? '',
        type: flag('type'),
        files,
      },
    ];
  });
  return { pkiDir, stderr, kubectlCalls, secrets };
}

/**
 * Lays a Secret out in `dir` as its volume would be: one file per key, with the volume's defaultMode.
 * Returns `dir`.
 */
export function writeSecretVolume(secret: KindSecret, dir: string, mode: number): string {
  mkdirSync(dir, { recursive: true });
  for (const [key, source] of Object.entries(secret.files)) {
    const target = path.join(dir, key);
    copyFileSync(source, target);
    chmodSync(target, mode);
  }
  return dir;
}
