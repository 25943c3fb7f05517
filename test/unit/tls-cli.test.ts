/**
 * The TLS flags through the real CLI (in-process): every mistake with the files is one line on stderr
 * and exit 2 before anything listens; good files make `serve` speak TLS (ALPN h2) on its xDS port and
 * mTLS on its ext_proc port, with a client certificate required on both.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { pino } from 'pino';
import { main } from '../../src/cli/main.js';
import { createTestPki } from '../helpers/tls-certs.js';
import { handshake } from '../helpers/tls-fixtures.js';

const example = fileURLToPath(new URL('../../examples/endpoints.yaml', import.meta.url));

const pki = createTestPki();
const ca = pki.ca('ca');
const server = pki.issue(ca, 'server', {
  cn: 'readygate',
  dns: ['readygate'],
  ips: ['127.0.0.1'],
  usage: 'serverAuth',
});
const client = pki.issue(ca, 'client', { cn: 'gateway-1', usage: 'clientAuth' });
const garbage = path.join(pki.dir, 'garbage.pem');
writeFileSync(garbage, 'not a certificate\n');
const missing = path.join(pki.dir, 'missing.pem');
test.after.always(() => {
  pki.remove();
});

interface LogLine {
  readonly event?: string;
  readonly address?: string;
  readonly xds?: string;
}

async function run(
  args: string[],
  options: { env?: Record<string, string>; signal?: AbortSignal; logger?: pino.Logger } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(args, {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    env: options.env ?? {},
    ...(options.signal ? { signal: options.signal } : {}),
    logger: options.logger ?? pino({ level: 'silent' }),
  });
  return { code, stdout, stderr };
}

const serve = [
  'serve',
  '--source',
  `file:${example}`,
  '--xds-address',
  '127.0.0.1:0',
  '--admin-address',
  '127.0.0.1:0',
];

const badInputs: { name: string; args: string[]; env?: Record<string, string>; stderr: string }[] = [
  {
    name: 'serve: a certificate without its key',
    args: [...serve, '--tls-cert', server.certFile],
    stderr: '--tls-cert needs --tls-key (the private key of that certificate)',
  },
  {
    name: 'serve: a key without its certificate (from the environment)',
    args: serve,
    env: { READYGATE_TLS_KEY: server.keyFile },
    stderr: '--tls-key needs --tls-cert (the certificate of that key)',
  },
  {
    name: 'serve: a client CA without a server certificate',
    args: [...serve, '--tls-client-ca', ca.certFile],
    stderr: '--tls-client-ca needs --tls-cert and --tls-key',
  },
  {
    name: 'serve: a certificate file that does not exist',
    args: [...serve, '--tls-cert', missing, '--tls-key', server.keyFile],
    stderr: `--tls-cert ${missing}: cannot read it (no such file)`,
  },
  {
    name: 'serve: a key that belongs to another certificate',
    args: [...serve, '--tls-cert', server.certFile, '--tls-key', client.keyFile],
    stderr: `--tls-key ${client.keyFile} does not match the certificate in --tls-cert ${server.certFile}`,
  },
  {
    name: 'serve: a certificate file with no certificate in it',
    args: [...serve, '--tls-cert', garbage, '--tls-key', server.keyFile],
    stderr: `--tls-cert ${garbage}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)`,
  },
  {
    name: 'serve: a client CA that is not a CA',
    args: [
      ...serve,
      '--tls-cert',
      server.certFile,
      '--tls-key',
      server.keyFile,
      '--tls-client-ca',
      client.certFile,
    ],
    stderr: `--tls-client-ca ${client.certFile}: "CN=gateway-1" is not a CA certificate`,
  },
  {
    name: 'serve: a client CA file with no certificate in it',
    args: [...serve, '--tls-cert', server.certFile, '--tls-key', server.keyFile, '--tls-client-ca', garbage],
    stderr: `--tls-client-ca ${garbage}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)`,
  },
  {
    name: 'serve: a zero handshake timeout',
    args: [...serve, '--tls-handshake-timeout', '0s'],
    stderr: '--tls-handshake-timeout: "0s" must be longer than 0s',
  },
  {
    name: 'extproc: a key that belongs to another certificate',
    args: ['extproc', '--address', '127.0.0.1:0', '--tls-cert', server.certFile, '--tls-key', client.keyFile],
    stderr: `--tls-key ${client.keyFile} does not match the certificate in --tls-cert ${server.certFile}`,
  },
  {
    name: 'extproc: a certificate without its key',
    args: ['extproc', '--address', '127.0.0.1:0', '--tls-cert', server.certFile],
    stderr: '--tls-cert needs --tls-key (the private key of that certificate)',
  },
];

for (const input of badInputs) {
  test(`bad TLS input, one line and exit 2: ${input.name}`, async (t) => {
    const result = await run(input.args, input.env ? { env: input.env } : {});
    t.is(result.stderr, `readygate: ${input.stderr}\n`);
    t.is(result.code, 2);
    t.is(result.stdout, '');
  });
}

function capture(): { logger: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino(
    { level: 'info', base: null },
    { write: (line: string) => lines.push(JSON.parse(line) as LogLine) },
  );
  return { logger, lines };
}

async function waitForEvent(lines: LogLine[], event: string, timeoutMs = 30_000): Promise<LogLine> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const line = lines.find((candidate) => candidate.event === event);
    if (line) return line;
    await sleep(10);
  }
  throw new Error(`no ${event} log line within ${timeoutMs} ms`);
}

const portOf = (address: string): number => Number(address.slice(address.lastIndexOf(':') + 1));

test('serve with TLS files from a config file: mTLS (ALPN h2) on the xDS and the ext_proc port', async (t) => {
  const config = path.join(pki.dir, 'readygate.yaml');
  writeFileSync(
    config,
    `serve:\n  tls-cert: ${server.certFile}\n  tls-key: ${server.keyFile}\n  tls-client-ca: ${ca.certFile}\n`,
  );
  const { logger, lines } = capture();
  const controller = new AbortController();
  const running = run([...serve, '--config', config, '--extproc', '--extproc-address', '127.0.0.1:0'], {
    signal: controller.signal,
    logger,
  });
  const started = await waitForEvent(lines, 'serve.started');
  const extproc = await waitForEvent(lines, 'extproc.listening');
  for (const port of [portOf(started.xds!), portOf(extproc.address!)]) {
    const result = await handshake(port, { ca: ca.certFile, client });
    t.is(result.alpn, 'h2');
    t.is(result.serverSerial, '01');
  }
  controller.abort();
  const result = await running;
  t.is(result.code, 0);
  t.is(result.stderr, '');
});
