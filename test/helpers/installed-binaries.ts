/** Finds a test binary the way `npm test` provides it: an environment variable, else its install script. */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * `envVar`'s value, else the last line `scripts/<script>` prints (it installs or builds into the cache
 * outside the repo, or finds it there). `mustExist` names what the printed path must hold, relative to
 * it ('' for the path itself).
 */
export async function installedPath(
  envVar: string,
  script: string,
  options: { readonly timeoutMs: number; readonly mustExist: string },
): Promise<string> {
  const fromEnv = process.env[envVar];
  if (fromEnv) return fromEnv;
  const { stdout } = await execFileAsync('bash', [path.join(repoRoot, 'scripts', script)], {
    timeout: options.timeoutMs,
    maxBuffer: 16 * 1024 * 1024,
  });
  const printed = stdout.trim().split('\n').pop() ?? '';
  if (!existsSync(path.join(printed, options.mustExist))) {
    const what = options.mustExist === '' ? 'which does not exist' : `which holds no ${options.mustExist}`;
    throw new Error(`scripts/${script} printed "${printed}", ${what}`);
  }
  return printed;
}
