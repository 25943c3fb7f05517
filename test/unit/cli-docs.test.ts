/**
 * Help and docs true to the code: every flag each command accepts is in its `--help` and its section of
 * docs/cli.md (and docs/cli.md names no flag the command does not accept); every admin route the running
 * server registers is in `serve --help`, docs/cli.md and docs/operations.md.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import test from 'ava';
import { pino } from 'pino';
import { main } from '../../src/cli/main.js';
import { COMMAND_NAMES, CONFIG_ENV, optionEntries, type CommandName } from '../../src/config.js';

// The reference is written by hand for readability; this keeps it from drifting from the option table.
const reference = readFileSync(new URL('../../docs/cli.md', import.meta.url), 'utf8');
const operations = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');
/** The table of admin paths at the top of docs/operations.md (rows starting with a path). */
const operationsRouteTable = operations
  .split('\n')
  .filter((line) => /^\| `\//.test(line))
  .join('\n');
const example = fileURLToPath(new URL('../../examples/endpoints.yaml', import.meta.url));

function section(command: CommandName): string | undefined {
  return reference.split(`## \`readygate ${command}\``)[1]?.split('\n## ')[0];
}

/** What `readygate <args>` prints on stdout, run in-process. */
async function stdoutOf(args: string[]): Promise<string> {
  let stdout = '';
  const code = await main(args, {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: () => true },
    env: {},
    logger: pino({ level: 'silent' }),
  });
  if (code !== 0) throw new Error(`readygate ${args.join(' ')} exited ${code}`);
  return stdout;
}

/** Every long flag a command accepts: its option table (each boolean also as --no-), --config, --help. */
function acceptedFlags(command: CommandName): Set<string> {
  const flags = new Set(['--config', '--help']);
  for (const [, option] of optionEntries(command)) {
    flags.add(`--${option.flag}`);
    if (option.kind === 'boolean') flags.add(`--no-${option.flag}`);
  }
  return flags;
}

for (const command of COMMAND_NAMES) {
  test(`docs/cli.md documents every flag and env var of ${command}`, (t) => {
    const text = section(command);
    if (text === undefined) {
      t.fail(`no section for readygate ${command}`);
      return;
    }
    for (const [, option] of optionEntries(command)) {
      const flag = option.negatable ? `--[no-]${option.flag}` : `--${option.flag}`;
      t.true(text.includes(`\`${flag}`), `${command} ${flag}`);
      t.true(text.includes(`\`${option.env}\``), `${command} ${option.env}`);
      if (option.defaultText !== undefined && !['on', 'off'].includes(option.defaultText)) {
        t.true(
          text.includes(`\`${option.defaultText}\``),
          `${command} ${flag} default ${option.defaultText}`,
        );
      }
    }
  });

  test(`docs/cli.md lists no flag that ${command} does not accept`, (t) => {
    const text = section(command) ?? '';
    const accepted = acceptedFlags(command);
    // The first column of the section's flag table: | `--flag VALUE` | ...
    const documented = [...text.matchAll(/^\| `(--(?:\[no-\])?[a-z0-9-]+)/gm)].map((match) =>
      (match[1] ?? '').replace('[no-]', ''),
    );
    // A command with flags has a table of them (so this test cannot pass by finding no rows).
    if (optionEntries(command).length > 0) t.true(documented.length > 0, `${command}: no flag table found`);
    for (const flag of documented) t.true(accepted.has(flag), `${command}: docs/cli.md lists ${flag}`);
  });

  test(`readygate ${command} --help shows every flag it accepts`, async (t) => {
    const help = await stdoutOf([command, '--help']);
    t.is(await stdoutOf(['help', command]), help);
    for (const flag of acceptedFlags(command)) {
      const shown = help.includes(flag) || help.includes(flag.replace(/^--(no-)?/, '--[no-]'));
      const negation = flag.startsWith('--no-') && help.includes('--no-<flag>');
      t.true(shown || negation, `${command} --help: ${flag}`);
    }
    t.true(help.includes('-h, --help'));
  });
}

test('docs/cli.md documents --config and its env var', (t) => {
  t.true(reference.includes('`--config FILE`'));
  t.true(reference.includes(`\`${CONFIG_ENV}\``));
});

/** Route keys written in the admin modules (`'/path': handler`), read from the source. */
function routesInSource(): string[] {
  const files = [
    ...readdirSync(new URL('../../src/admin/', import.meta.url)).map((name) => `admin/${name}`),
    'readiness/admin-routes.ts',
    'cli/serve.ts', // /debug/policy: the annotation reports, wired where they start
  ];
  const routes = new Set<string>();
  for (const file of files) {
    const text = readFileSync(new URL(`../../src/${file}`, import.meta.url), 'utf8');
    for (const match of text.matchAll(/^\s*'(\/[a-z_/-]*)'\s*:/gm)) routes.add(match[1] ?? '');
  }
  return [...routes].sort();
}

/** The routes a running `serve` answers, from its own 404 listing. */
async function routesOfRunningServe(): Promise<string[]> {
  const lines: { event?: string; admin?: string }[] = [];
  const logger = pino(
    { level: 'info', base: null },
    { write: (line: string) => lines.push(JSON.parse(line) as object) },
  );
  const controller = new AbortController();
  const running = main(
    [
      'serve',
      '--source',
      `file:${example}`,
      '--xds-address',
      '127.0.0.1:0',
      '--admin-address',
      '127.0.0.1:0',
    ],
    {
      stdout: { write: () => true },
      stderr: { write: () => true },
      env: {},
      logger,
      signal: controller.signal,
    },
  );
  try {
    const deadline = performance.now() + 30_000;
    let admin: string | undefined;
    while (admin === undefined && performance.now() < deadline) {
      admin = lines.find((line) => line.event === 'serve.started')?.admin;
      if (admin === undefined) await sleep(10);
    }
    if (admin === undefined) throw new Error('serve did not start within 30 s');
    const response = await fetch(`http://${admin}/no-such-route`);
    return ((await response.json()) as { endpoints: string[] }).endpoints;
  } finally {
    controller.abort();
    await running;
  }
}

test('every admin route is in serve --help, docs/cli.md and docs/operations.md', async (t) => {
  const live = await routesOfRunningServe();
  // The scan and the live server agree, so neither list can silently miss a route.
  t.deepEqual(live, routesInSource());
  t.true(live.length >= 8);
  const help = await stdoutOf(['serve', '--help']);
  const serveSection = section('serve') ?? '';
  for (const route of live) {
    t.true(help.includes(route), `serve --help: ${route}`);
    t.true(serveSection.includes(`\`${route}\``), `docs/cli.md: ${route}`);
    t.true(operationsRouteTable.includes(`| \`${route}\``), `docs/operations.md route table: ${route}`);
  }
});
