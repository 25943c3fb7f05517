import { readdirSync, readFileSync, statSync } from 'node:fs';
import test from 'ava';
import {
  buildConfig,
  checkLabelSelector,
  commandHelp,
  COMMAND_NAMES,
  knownEnvironmentNames,
  optionEntries,
  parseByteSize,
  parseDuration,
  parseHostPort,
  parseHttpUrl,
  parsePodRef,
  parseSource,
  type CommandName,
  unknownEnvironmentVariables,
} from '../../src/config.js';
import { ErrorCode, isReadygateError } from '../../src/errors.js';

// --- value parsers -----------------------------------------------------------------------------------

const hostPorts: [string, { host: string; port: number; address: string } | RegExp][] = [
  ['127.0.0.1:18000', { host: '127.0.0.1', port: 18000, address: '127.0.0.1:18000' }],
  ['localhost:0', { host: 'localhost', port: 0, address: 'localhost:0' }],
  ['[::1]:9102', { host: '::1', port: 9102, address: '[::1]:9102' }],
  ['0.0.0.0:65535', { host: '0.0.0.0', port: 65535, address: '0.0.0.0:65535' }],
  ['127.0.0.1', /is not HOST:PORT/],
  [':18000', /is not HOST:PORT/],
  ['127.0.0.1:', /is not HOST:PORT/],
  ['127.0.0.1:65536', /port 65536 is out of range 0-65535/],
  ['127.0.0.1:099999', /out of range/],
  ['127.0.0.1:80a', /is not HOST:PORT/],
  ['::1:80', /is not HOST:PORT/],
  ['[127.0.0.1]:80', /is not an IPv6 address/],
  ['bad_host:80', /is not a host name or IP address/],
  ['', /is not HOST:PORT/],
];
for (const [input, expected] of hostPorts) {
  test(`parseHostPort(${JSON.stringify(input)})`, (t) => {
    const result = parseHostPort(input);
    if (expected instanceof RegExp) t.regex(result as string, expected);
    else t.deepEqual(result, expected);
  });
}

const sizes: [string, number | RegExp][] = [
  ['4MiB', 4 * 2 ** 20],
  ['512KiB', 512 * 1024],
  ['1048576', 1_048_576],
  ['100B', 100],
  ['1GiB', 2 ** 30],
  ['0', /"0" is not a size/],
  ['4MB', /is not a size/],
  ['-1KiB', /is not a size/],
  ['1.5MiB', /is not a size/],
  ['65GiB', /at most 64GiB/],
  ['', /is not a size/],
];
for (const [input, expected] of sizes) {
  test(`parseByteSize(${JSON.stringify(input)})`, (t) => {
    const result = parseByteSize(input);
    if (expected instanceof RegExp) t.regex(result as string, expected);
    else t.is(result, expected);
  });
}

const durations: [string, number | RegExp][] = [
  ['30s', 30_000],
  ['500ms', 500],
  ['2m', 120_000],
  ['1h', 3_600_000],
  ['1m30s', 90_000],
  ['1.5s', 1500],
  ['0s', 0],
  ['24h', 86_400_000],
  ['30x', /"30x" is not a duration/],
  ['30', /"30" is not a duration/],
  ['s', /is not a duration/],
  ['-1s', /is not a duration/],
  ['1 s', /is not a duration/],
  ['', /is not a duration/],
  ['25h', /longer than the maximum of 24h/],
];
for (const [input, expected] of durations) {
  test(`parseDuration(${JSON.stringify(input)})`, (t) => {
    const result = parseDuration(input);
    if (expected instanceof RegExp) t.regex(result as string, expected);
    else t.is(result, expected);
  });
}

test('parseHttpUrl accepts http(s) and drops a trailing slash', (t) => {
  t.is(parseHttpUrl('http://127.0.0.1:9901/'), 'http://127.0.0.1:9901');
  t.is(parseHttpUrl('https://envoy.local:9901/admin/'), 'https://envoy.local:9901/admin');
  t.deepEqual(parseHttpUrl('ftp://x'), { problem: '"ftp://x" must be an http:// or https:// URL' });
  t.deepEqual(parseHttpUrl('127.0.0.1:9901'), {
    problem: '"127.0.0.1:9901" is not a URL (did you mean http://127.0.0.1:9901?)',
  });
  t.deepEqual(parseHttpUrl('not a url'), {
    problem: '"not a url" is not a URL (example: http://127.0.0.1:9901)',
  });
});

test('parseSource', (t) => {
  t.deepEqual(parseSource('kubernetes'), { kind: 'kubernetes' });
  t.deepEqual(parseSource('file:examples/endpoints.yaml'), { kind: 'file', path: 'examples/endpoints.yaml' });
  t.deepEqual(parseSource('file:/abs/x.json'), { kind: 'file', path: '/abs/x.json' });
  t.is(parseSource('file:'), '"file:" names no file (example: file:examples/endpoints.yaml)');
  t.is(parseSource('k8s'), '"k8s" is not a source (use file:PATH or kubernetes)');
});

test('parsePodRef', (t) => {
  t.deepEqual(parsePodRef('default/web-6d4f9c7b8-x2x9k'), {
    namespace: 'default',
    name: 'web-6d4f9c7b8-x2x9k',
  });
  t.regex(parsePodRef('web') as string, /is not NAMESPACE\/NAME/);
  t.regex(parsePodRef('a/b/c') as string, /is not NAMESPACE\/NAME/);
  t.regex(parsePodRef('Default/web') as string, /namespace "Default" is not a valid Kubernetes name/);
  t.regex(parsePodRef('default/') as string, /pod name "" is not a valid Kubernetes name/);
});

const selectors: [string, boolean][] = [
  ['app=web', true],
  ['app==web,tier!=db', true],
  ['readygate.io/enabled=true', true],
  ['env in (prod, staging)', true],
  ['env notin (dev)', true],
  ['!legacy', true],
  ['app', true],
  ['app=', true],
  ['a b', false],
  ['env in (prod', false],
  ['env in ()', false],
  ['=web', false],
  ['app=we b', false],
  ['Bad/Key=x', false],
];
for (const [selector, valid] of selectors) {
  test(`label selector ${JSON.stringify(selector)} is ${valid ? 'valid' : 'rejected'}`, (t) => {
    t.is(checkLabelSelector(selector) === undefined, valid);
  });
}

// --- resolution: defaults, layers, precedence --------------------------------------------------------

test('serve defaults', (t) => {
  const config = buildConfig('serve', { args: [] });
  t.deepEqual(config, {
    source: { kind: 'kubernetes' },
    sourceFileMaxSize: 32 * 2 ** 20,
    xdsAddress: { host: '127.0.0.1', port: 18000, address: '127.0.0.1:18000' },
    xdsMaxConnections: 10_000,
    adminAddress: { host: '127.0.0.1', port: 9102, address: '127.0.0.1:9102' },
    kubeconfig: undefined,
    namespaces: [],
    serviceSelector: undefined,
    kubernetesRequestTimeout: 8_000,
    kubernetesListTimeout: 60_000,
    kubernetesWatchSilence: 60_000,
    terminating: 'draining',
    terminatingFallback: true,
    readinessGates: false,
    gateTimeout: 120_000,
    gateFlipOnTimeout: false,
    gateMinProxies: 1,
    leaseNamespace: undefined,
    peersDns: undefined,
    extproc: false,
    extprocAddress: { host: '127.0.0.1', port: 18001, address: '127.0.0.1:18001' },
    xdsStallTimeout: 30_000,
    xdsMaxPendingPerConnection: 4 * 2 ** 20,
    xdsMaxPending: 64 * 2 ** 20,
    tlsCert: undefined,
    tlsKey: undefined,
    tlsClientCa: undefined,
    tlsHandshakeTimeout: 10_000,
    logLevel: 'info',
    logFormat: undefined,
  });
  t.true(Object.isFrozen(config));
  t.true(Object.isFrozen(config.xdsAddress));
});

test('defaults of the other commands', (t) => {
  t.deepEqual(buildConfig('extproc', { args: [] }), {
    address: { host: '127.0.0.1', port: 18001, address: '127.0.0.1:18001' },
    debug: false,
    tlsCert: undefined,
    tlsKey: undefined,
    tlsClientCa: undefined,
    logLevel: 'info',
    logFormat: undefined,
  });
  t.deepEqual(buildConfig('status', { args: ['--envoy-admin', 'http://127.0.0.1:9901'] }), {
    envoyAdmin: 'http://127.0.0.1:9901',
    controlPlane: [],
    peersDns: undefined,
    timeout: 5000,
    json: false,
    output: undefined,
    logLevel: 'info',
    logFormat: undefined,
  });
  t.deepEqual(buildConfig('drain-wait', { args: ['--pod', 'default/web-1'] }), {
    pod: { namespace: 'default', name: 'web-1' },
    timeout: 30_000,
    controlPlane: 'http://127.0.0.1:9102',
    output: undefined,
    logLevel: 'info',
    logFormat: undefined,
  });
  t.deepEqual(buildConfig('demo', { args: [] }), {
    short: false,
    out: 'demo-output',
    logLevel: 'info',
    logFormat: undefined,
  });
  t.deepEqual(buildConfig('version', { args: [] }), {
    output: undefined,
    logLevel: 'info',
    logFormat: undefined,
  });
});

test('serve flags', (t) => {
  const config = buildConfig('serve', {
    args: [
      '--source',
      'file:examples/endpoints.yaml',
      '--xds-address=[::1]:0',
      '--admin-address',
      '127.0.0.1:0',
      '--namespace',
      'a,b',
      '--namespace=c',
      '--namespace',
      'a',
      '--service-selector',
      'app in (web, api),!legacy',
      '--terminating',
      'omit',
      '--no-terminating-fallback',
      '--extproc',
      '--extproc-address',
      '127.0.0.1:0',
      '--log-level',
      'debug',
    ],
  });
  t.deepEqual(config.source, { kind: 'file', path: 'examples/endpoints.yaml' });
  t.is(config.xdsAddress.address, '[::1]:0');
  t.is(config.adminAddress.port, 0);
  t.deepEqual(config.namespaces, ['a', 'b', 'c']);
  t.is(config.serviceSelector, 'app in (web, api),!legacy');
  t.is(config.terminating, 'omit');
  t.false(config.terminatingFallback);
  t.true(config.extproc);
  t.is(config.extprocAddress.port, 0);
  t.is(config.logLevel, 'debug');
});

test('serve: the xDS isolation limits from flags, and their bad values refused by name', (t) => {
  const config = buildConfig('serve', {
    args: ['--xds-stall-timeout', '2s', '--xds-max-pending-per-connection', '512KiB'],
    env: { READYGATE_XDS_MAX_PENDING: '16MiB' },
  });
  t.is(config.xdsStallTimeout, 2000);
  t.is(config.xdsMaxPendingPerConnection, 512 * 1024);
  t.is(config.xdsMaxPending, 16 * 2 ** 20);
  const tooShort = t.throws(() => buildConfig('serve', { args: ['--xds-stall-timeout', '10ms'] }));
  t.regex(tooShort.message, /--xds-stall-timeout.*must be at least 100ms/);
  const notASize = t.throws(() => buildConfig('serve', { args: ['--xds-max-pending', '4 MB'] }));
  t.regex(notASize.message, /--xds-max-pending.*"4 MB" is not a size/);
});

test('precedence: flag > env > config file > default, per key', (t) => {
  const configFile = {
    path: 'readygate.yaml',
    text: [
      'xds-address: 127.0.0.1:1001',
      'admin-address: 127.0.0.1:1002',
      'terminating: omit',
      'namespace: [from-file]',
    ].join('\n'),
  };
  const env = { READYGATE_XDS_ADDRESS: '127.0.0.1:2001', READYGATE_ADMIN_ADDRESS: '127.0.0.1:2002' };
  const config = buildConfig('serve', { args: ['--xds-address', '127.0.0.1:3001'], env, configFile });
  t.is(config.xdsAddress.port, 3001, 'flag beats env and file');
  t.is(config.adminAddress.port, 2002, 'env beats file');
  t.is(config.terminating, 'omit', 'file beats default');
  t.deepEqual(config.namespaces, ['from-file']);
  t.is(config.extprocAddress.port, 18001, 'default when nobody sets it');
});

test('env vars: booleans, lists, and empty means unset', (t) => {
  const config = buildConfig('serve', {
    args: [],
    env: {
      READYGATE_EXTPROC: 'true',
      READYGATE_TERMINATING_FALLBACK: '0',
      READYGATE_NAMESPACE: 'a, b',
      READYGATE_XDS_ADDRESS: '',
    },
  });
  t.true(config.extproc);
  t.false(config.terminatingFallback);
  t.deepEqual(config.namespaces, ['a', 'b']);
  t.is(config.xdsAddress.port, 18000);
});

test('config file: command sections win over flat keys; other sections only checked', (t) => {
  const text = JSON.stringify({
    'log-level': 'warn',
    extproc: { address: '127.0.0.1:4001', debug: true },
    serve: { 'log-level': 'error', extproc: true },
  });
  const serve = buildConfig('serve', { args: [], configFile: { path: 'c.json', text } });
  t.is(serve.logLevel, 'error');
  t.true(serve.extproc);
  const extproc = buildConfig('extproc', { args: [], configFile: { path: 'c.json', text } });
  t.is(extproc.address.port, 4001);
  t.true(extproc.debug);
  t.is(extproc.logLevel, 'warn');
});

test('config file: an empty file sets nothing', (t) => {
  t.is(
    buildConfig('serve', { args: [], configFile: { path: 'empty.yaml', text: '' } }).xdsAddress.port,
    18000,
  );
});

// --- every validation error: one line, naming the flag, env var or file key -------------------------

interface ErrorCase {
  readonly command: CommandName;
  readonly args?: string[];
  readonly env?: Record<string, string>;
  readonly file?: string;
  readonly message: string;
}

const errorCases: ErrorCase[] = [
  {
    command: 'serve',
    args: ['--xds-address', 'localhost'],
    message: '--xds-address: "localhost" is not HOST:PORT (example: 127.0.0.1:18000, [::1]:18000)',
  },
  {
    command: 'serve',
    args: ['--admin-address=127.0.0.1:70000'],
    message: '--admin-address: "127.0.0.1:70000": port 70000 is out of range 0-65535',
  },
  {
    command: 'serve',
    env: { READYGATE_XDS_ADDRESS: 'nope' },
    message: 'READYGATE_XDS_ADDRESS: "nope" is not HOST:PORT (example: 127.0.0.1:18000, [::1]:18000)',
  },
  {
    command: 'serve',
    file: 'xds-address: nope',
    message: 'cfg.yaml: xds-address: "nope" is not HOST:PORT (example: 127.0.0.1:18000, [::1]:18000)',
  },
  {
    command: 'serve',
    args: ['--bogus'],
    message: 'unknown flag --bogus for readygate serve (see readygate serve --help)',
  },
  {
    command: 'serve',
    args: ['--address', '127.0.0.1:1'],
    message: 'unknown flag --address for readygate serve (see readygate serve --help)',
  },
  {
    command: 'serve',
    args: ['-x'],
    message: 'unknown flag -x for readygate serve (see readygate serve --help)',
  },
  {
    command: 'serve',
    args: ['--no-extproc-address'],
    message: 'unknown flag --no-extproc-address for readygate serve (see readygate serve --help)',
  },
  {
    command: 'serve',
    args: ['extra'],
    message: 'unexpected argument "extra" for readygate serve (see readygate serve --help)',
  },
  {
    command: 'serve',
    args: ['--xds-address'],
    message: '--xds-address needs a value (see readygate serve --help)',
  },
  {
    command: 'serve',
    args: ['--source', '--extproc'],
    message: '--source needs a value (see readygate serve --help)',
  },
  {
    command: 'serve',
    args: ['--extproc=maybe'],
    message: '--extproc: "maybe" is not a boolean (use --extproc=true or --extproc=false)',
  },
  {
    command: 'serve',
    args: ['--extproc='],
    message: '--extproc: "" is not a boolean (use --extproc=true or --extproc=false)',
  },
  {
    command: 'serve',
    args: ['--no-extproc=false'],
    message: '--no-extproc takes no value (see readygate serve --help)',
  },
  {
    command: 'serve',
    args: ['--log-format', 'yaml'],
    message: '--log-format: "yaml" is not a log format (use json or text)',
  },
  {
    command: 'serve',
    args: ['--source-file-max-size', '10MB'],
    message:
      '--source-file-max-size: "10MB" is not a size (examples: 4MiB, 512KiB, 1048576; at least 1 byte, at most 64GiB)',
  },
  {
    // The flag wins, but the bad env var would break the next run without it: reported now, by name.
    command: 'drain-wait',
    args: ['--pod', 'default/web', '--timeout', '10s'],
    env: { READYGATE_DRAIN_TIMEOUT: '10' },
    message:
      'READYGATE_DRAIN_TIMEOUT: "10" is not a duration (examples: 30s, 500ms, 2m, 1m30s) (overridden by --timeout, but still invalid: fix or remove it)',
  },
  {
    command: 'serve',
    args: ['--xds-address', '127.0.0.1:1'],
    file: 'xds-address: nowhere\n',
    message:
      'cfg.yaml: xds-address: "nowhere" is not HOST:PORT (example: 127.0.0.1:18000, [::1]:18000) (overridden by --xds-address, but still invalid: fix or remove it)',
  },
  {
    command: 'serve',
    env: { READYGATE_LOG_FORMAT: 'txt' },
    file: 'log-format: json\n',
    message: 'READYGATE_LOG_FORMAT: "txt" is not a log format (use json or text)',
  },
  {
    // Env overrides the file, and the file's bad value is still named as the file's.
    command: 'serve',
    env: { READYGATE_LOG_FORMAT: 'text' },
    file: 'serve:\n  log-format: plain\n',
    message:
      'cfg.yaml: serve.log-format: "plain" is not a log format (use json or text) (overridden by READYGATE_LOG_FORMAT, but still invalid: fix or remove it)',
  },
  {
    command: 'serve',
    args: ['--source', 'etcd'],
    message: '--source: "etcd" is not a source (use file:PATH or kubernetes)',
  },
  {
    command: 'serve',
    args: ['--terminating', 'drop'],
    message: '--terminating: "drop" is not draining or omit',
  },
  {
    command: 'serve',
    args: ['--namespace', 'ok,Not_OK'],
    message: '--namespace: "Not_OK" is not a valid namespace name',
  },
  {
    command: 'serve',
    args: ['--log-level', 'loud'],
    message:
      '--log-level: "loud" is not a log level (use one of fatal, error, warn, info, debug, trace, silent)',
  },
  {
    command: 'serve',
    args: ['--service-selector', 'app=a b'],
    message:
      '--service-selector: "app=a b": "app=a b" is not a label selector requirement (examples: app=web, tier!=db, env in (a,b), !legacy)',
  },
  { command: 'serve', args: ['--kubeconfig='], message: '--kubeconfig: "" must not be empty' },
  {
    command: 'serve',
    env: { READYGATE_EXTPROC: 'maybe' },
    message: 'READYGATE_EXTPROC="maybe" is not a boolean (use true or false)',
  },
  {
    command: 'serve',
    file: 'xds-adress: 127.0.0.1:1',
    message: 'cfg.yaml: unknown key xds-adress (readygate serve has no --xds-adress)',
  },
  {
    command: 'serve',
    file: 'address: 127.0.0.1:1',
    message: 'cfg.yaml: unknown key address (readygate serve has no --address)',
  },
  {
    command: 'serve',
    file: 'extproc: {adress: 127.0.0.1:1}',
    message: 'cfg.yaml: unknown key extproc.adress (readygate extproc has no --adress)',
  },
  {
    command: 'serve',
    file: 'extproc: "yes"',
    message: 'cfg.yaml: extproc: expected true or false, got string "yes"',
  },
  {
    command: 'serve',
    file: 'xds-address: 18000',
    message: 'cfg.yaml: xds-address: expected a string, got number 18000',
  },
  {
    command: 'serve',
    file: 'namespace: {a: 1}',
    message: 'cfg.yaml: namespace: expected a list of strings, got a mapping',
  },
  {
    command: 'serve',
    file: '- xds-address',
    message: 'cfg.yaml: expected a mapping of flag names to values',
  },
  {
    command: 'serve',
    file: 'serve:\n  xds-address: [',
    message:
      'cfg.yaml: not valid YAML or JSON: Flow sequence in block collection must be sufficiently indented and end with a ] at line 2, column 17',
  },
  {
    command: 'serve',
    file: 'log-level: info\nlog-level: debug',
    message: 'cfg.yaml: not valid YAML or JSON: Map keys must be unique at line 2, column 1',
  },
  {
    command: 'extproc',
    args: ['--address', '1.2.3.4'],
    message: '--address: "1.2.3.4" is not HOST:PORT (example: 127.0.0.1:18000, [::1]:18000)',
  },
  {
    command: 'extproc',
    args: ['--xds-address', '1.2.3.4:1'],
    message: 'unknown flag --xds-address for readygate extproc (see readygate extproc --help)',
  },
  {
    command: 'status',
    args: ['--envoy-admin', '127.0.0.1:9901'],
    message: '--envoy-admin: "127.0.0.1:9901" is not a URL (did you mean http://127.0.0.1:9901?)',
  },
  {
    command: 'status',
    args: ['--envoy-admin', 'http://127.0.0.1:9901', '--control-plane', 'nope'],
    message: '--control-plane: "nope" is not a URL (example: http://127.0.0.1:9901)',
  },
  { command: 'drain-wait', message: '--pod is required (or set READYGATE_POD)' },
  {
    command: 'drain-wait',
    args: ['--pod', 'web'],
    message: '--pod: "web" is not NAMESPACE/NAME (example: default/web-6d4f9c7b8-x2x9k)',
  },
  {
    command: 'drain-wait',
    args: ['--pod', 'default/web', '--timeout', '30x'],
    message: '--timeout: "30x" is not a duration (examples: 30s, 500ms, 2m, 1m30s)',
  },
  {
    command: 'drain-wait',
    args: ['--pod', 'default/web', '--timeout', '0s'],
    message: '--timeout: "0s" must be longer than 0s',
  },
  {
    command: 'drain-wait',
    args: ['--pod', 'default/web'],
    env: { READYGATE_DRAIN_TIMEOUT: '10' },
    message: 'READYGATE_DRAIN_TIMEOUT: "10" is not a duration (examples: 30s, 500ms, 2m, 1m30s)',
  },
  { command: 'demo', args: ['--out', ''], message: '--out: "" must not be empty' },
  {
    command: 'demo',
    args: ['--short=sometimes'],
    message: '--short: "sometimes" is not a boolean (use --short=true or --short=false)',
  },
];

for (const [index, c] of errorCases.entries()) {
  test(`error ${index}: ${c.command} ${[...(c.args ?? []), ...Object.keys(c.env ?? {}), c.file ?? ''].join(' ')}`, (t) => {
    const error = t.throws(() =>
      buildConfig(c.command, {
        args: c.args ?? [],
        ...(c.env ? { env: c.env } : {}),
        ...(c.file !== undefined ? { configFile: { path: 'cfg.yaml', text: c.file } } : {}),
      }),
    );
    t.true(isReadygateError(error, ErrorCode.CONFIG_INVALID));
    t.is(error.message, c.message);
    t.false(error.message.includes('\n'));
  });
}

// --- help --------------------------------------------------------------------------------------------

for (const command of COMMAND_NAMES) {
  test(`${command} --help lists every flag with its env var`, (t) => {
    const help = commandHelp(command);
    t.true(help.startsWith(`Usage: readygate ${command} [flags]\n`));
    for (const [, option] of optionEntries(command)) {
      t.true(help.includes(`--${option.flag}`) || help.includes(`--[no-]${option.flag}`), option.flag);
      t.true(help.includes(`env ${option.env}`), option.env);
    }
    t.true(help.includes('--config FILE'));
  });
}

test('--xds-max-connections: a whole number from 1, from a flag or a YAML number; anything else is refused', (t) => {
  t.is(buildConfig('serve', { args: ['--xds-max-connections', '250'] }).xdsMaxConnections, 250);
  const text = 'serve:\n  xds-max-connections: 500\n';
  t.is(buildConfig('serve', { args: [], configFile: { path: 'c.yaml', text } }).xdsMaxConnections, 500);
  for (const bad of ['0', '-1', '1.5', 'many', '100000000']) {
    t.throws(() => buildConfig('serve', { args: [`--xds-max-connections=${bad}`] }), {
      message: `--xds-max-connections: "${bad}" is not a whole number of connections from 1 to 9999999`,
    });
  }
});

// --- booleans: every one can be turned on and off from the command line ------------------------------

/** The least each command needs to resolve, so only the boolean under test varies. */
const REQUIRED_ARGS: Readonly<Record<CommandName, readonly string[]>> = {
  serve: [],
  extproc: [],
  status: ['--envoy-admin', 'http://127.0.0.1:9901'],
  'drain-wait': ['--pod', 'default/web-1'],
  demo: [],
  version: [],
};

const booleanOptions = COMMAND_NAMES.flatMap((command) =>
  optionEntries(command)
    .filter(([, option]) => option.kind === 'boolean')
    .map(([key, option]) => ({ command, key, option })),
);

test('there are boolean flags to test (the table below is not vacuous)', (t) => {
  t.true(booleanOptions.length >= 6);
});

for (const { command, key, option } of booleanOptions) {
  test(`${command} --${option.flag}: --no-, =false and =true override env and config file`, (t) => {
    const resolve = (args: string[], layers: { env?: string; file?: boolean } = {}): unknown =>
      (
        buildConfig(command, {
          args: [...REQUIRED_ARGS[command], ...args],
          ...(layers.env !== undefined ? { env: { [option.env]: layers.env } } : {}),
          ...(layers.file !== undefined
            ? {
                configFile: {
                  path: 'c.yaml',
                  text: `${command}:\n  ${option.flag}: ${String(layers.file)}\n`,
                },
              }
            : {}),
        }) as unknown as Record<string, unknown>
      )[key];
    t.is(resolve([`--${option.flag}`]), true);
    t.is(resolve([`--no-${option.flag}`]), false);
    t.is(resolve([`--no-${option.flag}`], { env: 'true' }), false);
    t.is(resolve([`--no-${option.flag}`], { file: true }), false);
    t.is(resolve([`--${option.flag}=false`], { env: 'on' }), false);
    t.is(resolve([`--${option.flag}=false`], { file: true }), false);
    t.is(resolve([`--${option.flag}=true`], { env: 'false' }), true);
    t.is(resolve([`--${option.flag}=true`], { file: false }), true);
    for (const spelling of ['1', 'yes', 'on', 'TRUE']) t.is(resolve([`--${option.flag}=${spelling}`]), true);
    for (const spelling of ['0', 'no', 'off', 'False'])
      t.is(resolve([`--${option.flag}=${spelling}`]), false);
    // The last one on the line wins, as for every other flag.
    t.is(resolve([`--${option.flag}`, `--no-${option.flag}`]), false);
    t.is(resolve([`--no-${option.flag}`, `--${option.flag}=true`]), true);
  });
}

// --- unknown READYGATE_* variables -----------------------------------------------------------------------

test('unknown READYGATE_* variables are named, with the closest known one when it looks like a typo', (t) => {
  t.deepEqual(
    unknownEnvironmentVariables({
      READYGATE_LOG_LEVL: 'debug',
      READYGATE_XDS_ADRESS: '127.0.0.1:1',
      READYGATE_LOG_LEVEL: 'info',
      READYGATE_CONFIG: 'x.yaml',
      READYGATE_ENVOY_BIN: '/usr/bin/envoy',
      READYGATE_DEMO_SHORT: 'true',
      READYGATE_COMPLETELY_DIFFERENT_THING: '1',
      PATH: '/usr/bin',
      readygate_log_level: 'debug',
    }),
    [
      { name: 'READYGATE_COMPLETELY_DIFFERENT_THING', suggestion: undefined },
      { name: 'READYGATE_LOG_LEVL', suggestion: 'READYGATE_LOG_LEVEL' },
      { name: 'READYGATE_XDS_ADRESS', suggestion: 'READYGATE_XDS_ADDRESS' },
    ],
  );
  t.deepEqual(unknownEnvironmentVariables({}), []);
});

test('every READYGATE_* variable the scripts and test harness set is known: no warning in their runs', (t) => {
  const known = knownEnvironmentNames();
  const dirs = ['../../scripts/', '../helpers/'];
  const used = new Set<string>();
  for (const dir of dirs) {
    const url = new URL(dir, import.meta.url);
    for (const name of readdirSync(url)) {
      if (!statSync(new URL(name, url)).isFile()) continue;
      const text = readFileSync(new URL(name, url), 'utf8');
      for (const match of text.matchAll(/READYGATE_[A-Z0-9_]*[A-Z0-9]/g)) used.add(match[0]);
    }
  }
  t.true(used.has('READYGATE_NODE_BIN_DIR'), 'the scan sees scripts/run-tests.mjs');
  t.deepEqual(
    [...used].filter((name) => !known.has(name)),
    [],
  );
});
