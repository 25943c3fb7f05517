// Writes dist/build-info.json: the git commit this build was made from, for `readygate version`.
// Outside a git checkout (an npm tarball, a source archive) the commit is "unknown"; this never fails
// the build. Usage: node scripts/build-info.mjs [OUT_FILE] (default dist/build-info.json).
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.resolve(process.argv[2] ?? path.join(repoRoot, 'dist', 'build-info.json'));

function git(...args) {
  try {
    return execFileSync('git', args, {
      cwd: repoRoot,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 10_000,
    }).trim();
  } catch {
    return undefined; // no git, or not a checkout
  }
}

const commit = git('rev-parse', 'HEAD');
// Tracked files only: build outputs and caches are untracked and would mark every build dirty.
const changes = commit === undefined ? undefined : git('status', '--porcelain', '--untracked-files=no');
const info = {
  commit: commit !== undefined && /^[0-9a-f]{40}$/.test(commit) ? commit : 'unknown',
  gitTreeState: changes === undefined ? 'unknown' : changes === '' ? 'clean' : 'dirty',
};
mkdirSync(path.dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify(info, null, 2) + '\n');
