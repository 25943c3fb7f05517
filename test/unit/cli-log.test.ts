/**
 * --log-format: the text and JSON line shapes, the terminal-or-not default, and both end to end through
 * the built CLI (bin/readygate.js runs dist/: `npm run build` first).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { pino } from 'pino';
import { defaultLogFormat, formatTextLine, localTimestamp, textDestination } from '../../src/log.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const example = fileURLToPath(new URL('../../examples/endpoints.yaml', import.meta.url));

test('the default format: text at a terminal, json anywhere else; an explicit choice always wins', (t) => {
  t.is(defaultLogFormat(undefined, true), 'text');
  t.is(defaultLogFormat(undefined, false), 'json');
  t.is(defaultLogFormat('json', true), 'json');
  t.is(defaultLogFormat('text', false), 'text');
});

test('localTimestamp: YYYY-MM-DD HH:MM:SS.mmm from the local clock fields', (t) => {
  const time = new Date(2026, 0, 5, 7, 3, 9, 45);
  t.is(localTimestamp(time), '2026-01-05 07:03:09.045');
});

test('text lines: local time, level, message, then key=value (quoted when needed, objects as JSON)', (t) => {
  const iso = '2026-12-05T07:03:39.123Z';
  const stamp = localTimestamp(new Date(iso));
  const line = JSON.stringify({
    level: 40,
    time: iso,
    name: 'readygate',
    component: 'source.file',
    path: 'my endpoints.yaml',
    services: 3,
    ok: false,
    flags: ['--kubeconfig'],
    quote: 'say "hi"',
    empty: '',
    err: { type: 'Error', message: 'boom: no such file', stack: 'Error: boom\n    at x' },
    msg: 'endpoints file rejected',
  });
  t.is(
    formatTextLine(line),
    `${stamp} WARN  endpoints file rejected component=source.file path="my endpoints.yaml" services=3 ok=false flags=["--kubeconfig"] quote="say \\"hi\\"" empty="" err="boom: no such file"`,
  );
  t.is(formatTextLine(JSON.stringify({ level: 30, time: iso, msg: 'started' })), `${stamp} INFO  started`);
  t.is(formatTextLine(JSON.stringify({ level: 60, time: iso, msg: 'x' })), `${stamp} FATAL x`);
  // Not JSON (cannot come from pino, but never lose a line): passed through.
  t.is(formatTextLine('plain words\n'), 'plain words');
});

test('a pino logger writing through textDestination produces text lines with child bindings', (t) => {
  const written: string[] = [];
  const logger = pino(
    { base: null, timestamp: pino.stdTimeFunctions.isoTime },
    textDestination({ write: (text: string) => written.push(text) }),
  );
  logger.child({ component: 'xds' }).info({ node: 'envoy-1' }, 'stream opened');
  t.is(written.length, 1);
  t.regex(
    written[0] ?? '',
    /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO {2}stream opened component=xds node=envoy-1\n$/,
  );
});

/** Runs `readygate serve` on the example file until it logs that it serves, then SIGTERM; returns stdout. */
async function serveOnce(
  args: string[],
  env: Record<string, string>,
): Promise<{ stdout: string; code: number }> {
  const child = spawn(
    process.execPath,
    [
      'bin/readygate.js',
      'serve',
      '--source',
      `file:${example}`,
      '--xds-address',
      '127.0.0.1:0',
      '--admin-address',
      '127.0.0.1:0',
      ...args,
    ],
    // Piped stdout: not a terminal, so without --log-format the default must be json.
    { cwd: root, env: { PATH: process.env['PATH'] ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stopping = false;
  child.stdout.setEncoding('utf8');
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  child.stdout.on('data', (chunk: string) => {
    stdout += chunk;
    // Once: a second SIGTERM after shutdown began would exit at once (143), or kill an exiting process.
    if (!stopping && stdout.includes('readygate serving xDS')) {
      stopping = true;
      child.kill('SIGTERM');
    }
  });
  const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
  if (code === null) stdout += `\nkilled by ${signal ?? '?'}`;
  clearTimeout(killer);
  return { stdout, code: code ?? -1 };
}

test('end to end: piped stdout gets JSON lines with ISO-8601 UTC time; unknown env vars warn once', async (t) => {
  const before = Date.now();
  const { stdout, code } = await serveOnce([], { READYGATE_LOG_LEVL: 'debug' });
  t.is(code, 0);
  const records = stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { time: string; level: number; msg: string; event?: string });
  for (const record of records) {
    t.regex(record.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const at = Date.parse(record.time);
    t.true(at >= before - 1000 && at <= Date.now() + 1000, record.time);
  }
  const warnings = records.filter((record) => record.event === 'cli.unknown-env');
  t.is(warnings.length, 1);
  t.is(warnings[0]?.level, 40);
  t.is(
    warnings[0]?.msg,
    'unknown environment variable READYGATE_LOG_LEVL is ignored (did you mean READYGATE_LOG_LEVEL?)',
  );
});

test('end to end: --log-format text (and READYGATE_LOG_FORMAT) prints local time, level, message, key=value', async (t) => {
  // A zone with a half-hour offset: a UTC timestamp mislabelled as local would be off by 5h30.
  for (const [args, env] of [
    [['--log-format', 'text'], {}],
    [[], { READYGATE_LOG_FORMAT: 'text' }],
  ] as [string[], Record<string, string>][]) {
    const { stdout, code } = await serveOnce(args, { TZ: 'Asia/Kolkata', ...env });
    t.is(code, 0, stdout);
    const lines = stdout.trim().split('\n');
    const serving = lines.find((line) => line.includes('readygate serving xDS'));
    t.truthy(serving, stdout);
    const match =
      /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) INFO {2}readygate serving xDS on 127\.0\.0\.1:\d+, admin on 127\.0\.0\.1:\d+ event=serve\.started xds=127\.0\.0\.1:\d+ admin=127\.0\.0\.1:\d+ source=file:\S+$/.exec(
        serving ?? '',
      );
    t.truthy(match, serving);
    // Kolkata is UTC+05:30 all year: read the stamp back as that zone and it must be about now.
    const asUtc = Date.parse(`${(match?.[1] ?? '').replace(' ', 'T')}+05:30`);
    t.true(Math.abs(asUtc - Date.now()) < 60_000, match?.[1]);
    for (const line of lines) t.false(line.startsWith('{'), line);
  }
});
