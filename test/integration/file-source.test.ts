import { mkdtemp, mkdir, readFile, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import test, { type ExecutionContext } from 'ava';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { ErrorCode, isReadygateError } from '../../src/errors.js';
import { EndpointStore, type StoreChange } from '../../src/model/store.js';
import { FileSourceEvent, startFileSource, type FileSource } from '../../src/sources/file.js';

/** The bound the issue sets for an edit to reach the store. */
const APPLY_BOUND_MS = 100;

interface LogLine {
  readonly level: number;
  readonly event?: string;
  readonly msg: string;
  readonly reason?: string;
  readonly path?: string;
  readonly was?: string;
  readonly bytes?: number;
}

function capturingLogger(): { logger: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino(
    { level: 'info', base: null },
    {
      write(line: string) {
        lines.push(JSON.parse(line) as LogLine);
      },
    },
  );
  return { logger, lines };
}

function endpointsYaml(services: { name: string; addresses: string[]; terminating?: boolean }[]): string {
  const lines = ['services:'];
  for (const service of services) {
    lines.push(
      `- namespace: default`,
      `  name: ${service.name}`,
      `  ports: [{name: http, port: 8080}]`,
      `  endpoints:`,
    );
    for (const address of service.addresses) {
      lines.push(`  - addresses: ["${address}"]`);
      lines.push(
        `    conditions: {ready: ${!service.terminating}, serving: true, terminating: ${service.terminating ?? false}}`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}

const addressesOf = (store: EndpointStore): Record<string, string[]> =>
  Object.fromEntries(
    store.services.map((s) => [`${s.namespace}/${s.name}`, s.endpoints.map((e) => e.addresses[0]!)]),
  );

/** Resolves with the next store change, or rejects after `timeoutMs` (bounded, never hangs a test). */
function nextChange(store: EndpointStore, timeoutMs = 2000): Promise<StoreChange> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      store.off('change', onChange);
      reject(new Error(`no store change within ${timeoutMs} ms`));
    }, timeoutMs);
    const onChange = (change: StoreChange): void => {
      clearTimeout(timer);
      resolve(change);
    };
    store.once('change', onChange);
  });
}

async function waitForLog(
  lines: LogLine[],
  event: string,
  count: number,
  timeoutMs = 2000,
): Promise<LogLine[]> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const matching = lines.filter((line) => line.event === event);
    if (matching.length >= count) return matching;
    await sleep(5);
  }
  throw new Error(`fewer than ${count} "${event}" log lines within ${timeoutMs} ms`);
}

interface Fixture {
  readonly dir: string;
  readonly file: string;
  readonly store: EndpointStore;
  readonly lines: LogLine[];
  readonly source: FileSource;
  readonly registry: Registry;
}

/** Polling off by default: the timing assertions must hold on filesystem events alone. */
async function setup(
  t: ExecutionContext,
  options: { pollIntervalMs?: number; initial?: string; missingGraceMs?: number; maxBytes?: number } = {},
): Promise<Fixture> {
  const dir = await mkdtemp(path.join(tmpdir(), 'readygate-file-source-'));
  const file = path.join(dir, 'endpoints.yaml');
  await writeFile(file, options.initial ?? endpointsYaml([{ name: 'web', addresses: ['127.0.0.2'] }]));
  const store = new EndpointStore();
  const { logger, lines } = capturingLogger();
  const registry = new Registry();
  const source = await startFileSource({
    path: file,
    store,
    logger,
    registry,
    pollIntervalMs: options.pollIntervalMs ?? 0,
    ...(options.missingGraceMs !== undefined ? { missingGraceMs: options.missingGraceMs } : {}),
    ...(options.maxBytes !== undefined ? { maxBytes: options.maxBytes } : {}),
  });
  t.teardown(async () => {
    await source.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { dir, file, store, lines, source, registry };
}

/** The value of readygate_file_source_valid as /metrics would show it. */
async function validGauge(registry: Registry): Promise<number | undefined> {
  const metric = await registry.getSingleMetric('readygate_file_source_valid')?.get();
  return metric?.values[0]?.value;
}

/** Writes `text` and returns how long until the store changed. */
async function timedEdit(store: EndpointStore, write: () => Promise<void>): Promise<number> {
  const changed = nextChange(store);
  const started = performance.now();
  await write();
  await changed;
  return performance.now() - started;
}

test.serial('initial load fills the store and marks it synced', async (t) => {
  const { store, lines, source } = await setup(t, {
    initial: endpointsYaml([
      { name: 'web', addresses: ['127.0.0.2', '127.0.0.3'] },
      { name: 'api', addresses: ['127.0.0.4'], terminating: true },
    ]),
  });
  t.true(store.synced);
  t.deepEqual(addressesOf(store), {
    'default/web': ['127.0.0.2', '127.0.0.3'],
    'default/api': ['127.0.0.4'],
  });
  t.deepEqual(store.get('default/api')?.endpoints[0]?.conditions, {
    ready: false,
    serving: true,
    terminating: true,
  });
  t.true(path.isAbsolute(source.path));
  t.is(lines.filter((line) => line.event === FileSourceEvent.APPLIED).length, 1);
});

test.serial(`in-place edits reach the store within ${APPLY_BOUND_MS} ms`, async (t) => {
  const { file, store } = await setup(t);
  const elapsed: number[] = [];
  for (let round = 0; round < 5; round += 1) {
    const addresses = Array.from({ length: round + 2 }, (_, i) => `127.0.1.${i + 1}`);
    elapsed.push(await timedEdit(store, () => writeFile(file, endpointsYaml([{ name: 'web', addresses }]))));
    t.deepEqual(addressesOf(store), { 'default/web': addresses });
  }
  t.log(`edit → store (ms): ${elapsed.map((ms) => ms.toFixed(1)).join(', ')}`);
  for (const ms of elapsed) t.true(ms <= APPLY_BOUND_MS, `${ms.toFixed(1)} ms`);
});

test.serial('a rename-replace (editor / atomic write) is picked up, and later edits still are', async (t) => {
  const { dir, file, store } = await setup(t);
  for (let round = 0; round < 3; round += 1) {
    const addresses = [`127.0.2.${round + 1}`];
    const ms = await timedEdit(store, async () => {
      const temporary = path.join(dir, `.endpoints.yaml.${round}.tmp`);
      await writeFile(temporary, endpointsYaml([{ name: 'web', addresses }]));
      await rename(temporary, file);
    });
    t.deepEqual(addressesOf(store), { 'default/web': addresses });
    t.true(ms <= APPLY_BOUND_MS, `${ms.toFixed(1)} ms`);
  }
});

test.serial('an invalid edit is rejected with one log line and the last good state stays', async (t) => {
  const { file, store, lines, source, registry } = await setup(t);
  t.is(await validGauge(registry), 1);
  const before = store.get('default/web');
  let changes = 0;
  store.on('change', () => (changes += 1));

  await writeFile(
    file,
    'services:\n- {namespace: default, name: web, ports: [{port: 80}], endpoints: [{addresses: "127.0.0.9"}]}\n',
  );
  const [rejected] = await waitForLog(lines, FileSourceEvent.REJECTED, 1);
  t.is(rejected?.reason, 'services[0].endpoints[0].addresses: expected array, received string');
  t.is(rejected?.path, file);
  t.is(
    rejected?.msg,
    `endpoints file ${file} rejected: services[0].endpoints[0].addresses: expected array, received string; keeping the last good state`,
  );
  // Let any further events for the same bad content arrive: still one line, store untouched.
  await sleep(100);
  t.is(lines.filter((line) => line.event === FileSourceEvent.REJECTED).length, 1);
  t.is(changes, 0);
  t.is(store.get('default/web'), before);
  // Visible beyond the log: the gauge, and a warning under /readyz (still ready: the last good version serves).
  t.false(source.valid);
  t.is(await validGauge(registry), 0);
  const readiness = source.readiness();
  t.true(readiness.ready);
  t.regex(
    readiness.warnings?.[0] ?? '',
    new RegExp(
      `^endpoints file ${file} was rejected: services\\[0\\]\\.endpoints\\[0\\]\\.addresses: expected array, received string; serving its last good version \\(applied \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\)$`,
    ),
  );

  const fixed = await timedEdit(store, () =>
    writeFile(file, endpointsYaml([{ name: 'web', addresses: ['127.0.0.9'] }])),
  );
  t.deepEqual(addressesOf(store), { 'default/web': ['127.0.0.9'] });
  t.true(fixed <= APPLY_BOUND_MS, `${fixed.toFixed(1)} ms`);
  const [again] = await waitForLog(lines, FileSourceEvent.VALID_AGAIN, 1);
  t.is(
    again?.msg,
    `endpoints file ${file} is valid again (it was rejected: services[0].endpoints[0].addresses: expected array, received string); serving its current content`,
  );
  t.true(source.valid);
  t.is(await validGauge(registry), 1);
  t.deepEqual(source.readiness(), { ready: true });
});

test.serial('undoing a rejected edit (back to the content served) makes the file valid again', async (t) => {
  const initial = endpointsYaml([{ name: 'web', addresses: ['127.0.0.2'] }]);
  const { file, lines, source, registry } = await setup(t, { initial });
  await writeFile(file, 'services: [\n');
  await waitForLog(lines, FileSourceEvent.REJECTED, 1);
  t.is(await validGauge(registry), 0);
  await writeFile(file, initial);
  await waitForLog(lines, FileSourceEvent.VALID_AGAIN, 1);
  t.true(source.valid);
  t.is(await validGauge(registry), 1);
  // Nothing was applied: the store already had this content.
  t.is(lines.filter((line) => line.event === FileSourceEvent.APPLIED).length, 1);
});

test.serial('a file over the size limit is refused without parsing; the last good state stays', async (t) => {
  const maxBytes = 4096;
  const { file, store, lines, source, registry } = await setup(t, { maxBytes });
  const many = endpointsYaml([
    { name: 'web', addresses: Array.from({ length: 100 }, (_, i) => `127.0.4.${i + 1}`) },
  ]);
  const size = Buffer.byteLength(many);
  t.true(size > maxBytes);
  await writeFile(file, many);
  const [rejected] = await waitForLog(lines, FileSourceEvent.REJECTED, 1);
  t.is(
    rejected?.reason,
    `the file is ${(size / 1024).toFixed(1)} KiB (${size} bytes), over --source-file-max-size 4.0 KiB`,
  );
  t.deepEqual(addressesOf(store), { 'default/web': ['127.0.0.2'] });
  t.false(source.valid);
  t.is(await validGauge(registry), 0);
  t.true(source.readiness().warnings?.[0]?.includes('over --source-file-max-size 4.0 KiB') ?? false);

  await writeFile(file, endpointsYaml([{ name: 'web', addresses: ['127.0.4.1'] }]));
  await waitForLog(lines, FileSourceEvent.VALID_AGAIN, 1);
  t.deepEqual(addressesOf(store), { 'default/web': ['127.0.4.1'] });
  t.is(await validGauge(registry), 1);
  t.is(lines.filter((line) => line.event === FileSourceEvent.REJECTED).length, 1);
});

test.serial('a first load over the size limit fails with a clear SOURCE_FILE_INVALID', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'readygate-file-source-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'endpoints.yaml');
  await writeFile(file, endpointsYaml([{ name: 'web', addresses: ['127.0.0.2'] }]));
  const size = (await readFile(file)).length;
  const store = new EndpointStore();
  const error = await t.throwsAsync(startFileSource({ path: file, store, maxBytes: 64 }));
  t.true(isReadygateError(error, ErrorCode.SOURCE_FILE_INVALID));
  t.is(
    error.message,
    `endpoints file ${file}: the file is ${size} B (${size} bytes), over --source-file-max-size 64 B`,
  );
  t.false(store.synced);
});

test.serial('a large file logs a line before parsing and its size and load time when applied', async (t) => {
  // Generated JSON, as large files usually are (and parsed fast, so this stays cheap).
  const services = Array.from({ length: 4000 }, (_, i) => ({
    namespace: 'default',
    name: `svc-${i}`,
    ports: [{ name: 'http', port: 8080 }],
    endpoints: [
      {
        addresses: [`10.0.${i >> 8}.${i & 255}`],
        conditions: { ready: true },
        targetRef: { kind: 'Pod', name: `svc-${i}-0` },
      },
    ],
  }));
  const text = JSON.stringify({ services }, null, 1);
  const bytes = Buffer.byteLength(text);
  t.true(bytes >= 2 ** 20, `${bytes} bytes`);
  const { lines, store } = await setup(t, { initial: text });
  t.is(store.size, 4000);
  const loading = lines.filter((line) => line.event === FileSourceEvent.LOADING);
  t.is(loading.length, 1);
  t.is(loading[0]?.bytes, bytes);
  const [applied] = lines.filter((line) => line.event === FileSourceEvent.APPLIED);
  t.is(applied?.bytes, bytes);
  t.regex(applied?.msg ?? '', /applied: 4000 services \(4000 changed, 0 removed; \d+\.\d MiB in \d+ ms\)$/);
  t.true(lines.indexOf(loading[0]!) < lines.indexOf(applied!));
});

test.serial('a duplicate service in an edit is rejected', async (t) => {
  const { file, store, lines } = await setup(t);
  await writeFile(
    file,
    endpointsYaml([
      { name: 'web', addresses: ['127.0.0.2'] },
      { name: 'web', addresses: ['127.0.0.3'] },
    ]),
  );
  const [rejected] = await waitForLog(lines, FileSourceEvent.REJECTED, 1);
  t.is(rejected?.reason, 'services[1]: duplicate service default/web (also services[0])');
  t.deepEqual(addressesOf(store), { 'default/web': ['127.0.0.2'] });
});

test.serial('a file caught mid-write (truncated, then written) is not reported as invalid', async (t) => {
  const { file, store, lines } = await setup(t);
  const changed = nextChange(store);
  await writeFile(file, '');
  await sleep(2);
  await writeFile(file, endpointsYaml([{ name: 'web', addresses: ['127.0.0.7'] }]));
  await changed;
  t.deepEqual(addressesOf(store), { 'default/web': ['127.0.0.7'] });
  await sleep(100);
  t.is(lines.filter((line) => line.event === FileSourceEvent.REJECTED).length, 0);
});

test.serial(
  'delete keeps the last good state, is reported after the grace; a recreated file is picked up',
  async (t) => {
    const graceMs = 300;
    const { file, store, lines, source, registry } = await setup(t, { missingGraceMs: graceMs });
    let changes = 0;
    store.on('change', () => (changes += 1));
    const deleted = performance.now();
    await unlink(file);
    const [missing] = await waitForLog(lines, FileSourceEvent.MISSING, 1);
    t.true(performance.now() - deleted >= graceMs, 'not reported before the grace');
    t.is(
      missing?.msg,
      `endpoints file ${file} is missing (for ${graceMs} ms); keeping the last good state until it is back`,
    );
    t.is(changes, 0);
    t.deepEqual(addressesOf(store), { 'default/web': ['127.0.0.2'] });
    t.false(source.valid);
    t.is(await validGauge(registry), 0);
    t.true(source.readiness().ready);
    t.regex(
      source.readiness().warnings?.[0] ?? '',
      new RegExp(
        `^endpoints file ${file} is missing; serving its last good version \\(applied \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\)$`,
      ),
    );

    const ms = await timedEdit(store, () =>
      writeFile(file, endpointsYaml([{ name: 'api', addresses: ['127.0.0.5'] }])),
    );
    t.deepEqual(addressesOf(store), { 'default/api': ['127.0.0.5'] });
    t.true(ms <= APPLY_BOUND_MS, `${ms.toFixed(1)} ms`);
    t.is(lines.filter((line) => line.event === FileSourceEvent.MISSING).length, 1);
    const [again] = await waitForLog(lines, FileSourceEvent.VALID_AGAIN, 1);
    t.is(again?.was, 'is missing');
    t.true(source.valid);
    t.is(await validGauge(registry), 1);
    t.deepEqual(source.readiness(), { ready: true });
  },
);

test.serial(
  'an editor save-by-rename (old file renamed away, new one written later) draws no warning',
  async (t) => {
    // vim's default (backupcopy=auto) and many IDEs: rename endpoints.yaml to a backup, then write a new
    // endpoints.yaml, a new inode. The gap is stretched to 150 ms here, well past the events it raises but
    // inside the (default, 2 s) grace: it must not be reported as missing.
    const { dir, file, store, lines, source, registry } = await setup(t);
    for (let round = 0; round < 3; round += 1) {
      const addresses = [`127.0.3.${round + 1}`];
      const changed = nextChange(store, 5000);
      await rename(file, path.join(dir, 'endpoints.yaml~'));
      await sleep(150);
      await writeFile(file, endpointsYaml([{ name: 'web', addresses }]));
      await unlink(path.join(dir, 'endpoints.yaml~'));
      await changed;
      t.deepEqual(addressesOf(store), { 'default/web': addresses });
    }
    // And the new inode is the one watched: an in-place edit of it is still seen at once.
    const ms = await timedEdit(store, () =>
      writeFile(file, endpointsYaml([{ name: 'web', addresses: ['127.0.3.9'] }])),
    );
    t.true(ms <= APPLY_BOUND_MS, `${ms.toFixed(1)} ms`);
    t.deepEqual(
      lines.filter((line) => line.level >= 40).map((line) => line.msg),
      [],
    );
    t.is(lines.filter((line) => line.event === FileSourceEvent.VALID_AGAIN).length, 0);
    t.true(source.valid);
    t.is(await validGauge(registry), 1);
  },
);

test.serial('a ConfigMap-style symlink swap is picked up', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'readygate-file-source-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // kubelet's layout: endpoints.yaml -> ..data/endpoints.yaml, ..data -> ..<timestamp>/, swapped by rename.
  await mkdir(path.join(dir, '..v1'));
  await writeFile(
    path.join(dir, '..v1', 'endpoints.yaml'),
    endpointsYaml([{ name: 'web', addresses: ['127.0.0.2'] }]),
  );
  await symlink('..v1', path.join(dir, '..data'));
  await symlink(path.join('..data', 'endpoints.yaml'), path.join(dir, 'endpoints.yaml'));
  const store = new EndpointStore();
  const source = await startFileSource({ path: path.join(dir, 'endpoints.yaml'), store, pollIntervalMs: 0 });
  t.teardown(() => source.close());
  t.deepEqual(addressesOf(store), { 'default/web': ['127.0.0.2'] });

  const ms = await timedEdit(store, async () => {
    await mkdir(path.join(dir, '..v2'));
    await writeFile(
      path.join(dir, '..v2', 'endpoints.yaml'),
      endpointsYaml([{ name: 'web', addresses: ['127.0.0.3'] }]),
    );
    await symlink('..v2', path.join(dir, '..data_tmp'));
    await rename(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
  });
  t.deepEqual(addressesOf(store), { 'default/web': ['127.0.0.3'] });
  t.true(ms <= APPLY_BOUND_MS, `${ms.toFixed(1)} ms`);
});

test.serial('the stat poll catches changes the directory watch cannot see', async (t) => {
  // Replacing the whole directory leaves the watch on the old directory's inode: edits in the new one
  // raise no event the source receives, so only the stat poll can notice them.
  const parent = await mkdtemp(path.join(tmpdir(), 'readygate-file-source-'));
  t.teardown(() => rm(parent, { recursive: true, force: true }));
  const dir = path.join(parent, 'conf');
  await mkdir(dir);
  const file = path.join(dir, 'endpoints.yaml');
  await writeFile(file, endpointsYaml([{ name: 'web', addresses: ['127.0.0.2'] }]));
  const store = new EndpointStore();
  const source = await startFileSource({ path: file, store, pollIntervalMs: 50 });
  t.teardown(() => source.close());

  await timedEdit(store, async () => {
    const next = path.join(parent, 'conf-next');
    await mkdir(next);
    await writeFile(
      path.join(next, 'endpoints.yaml'),
      endpointsYaml([{ name: 'web', addresses: ['127.0.0.8'] }]),
    );
    await rename(dir, path.join(parent, 'conf-old'));
    await rename(next, dir);
  });
  t.deepEqual(addressesOf(store), { 'default/web': ['127.0.0.8'] });

  const ms = await timedEdit(store, () =>
    writeFile(file, endpointsYaml([{ name: 'web', addresses: ['127.0.0.9'] }])),
  );
  t.deepEqual(addressesOf(store), { 'default/web': ['127.0.0.9'] });
  t.true(ms <= 1000, `${ms.toFixed(1)} ms`);
});

test.serial('after close, edits are ignored', async (t) => {
  const { file, store, source } = await setup(t);
  await source.close();
  let changes = 0;
  store.on('change', () => (changes += 1));
  await writeFile(file, endpointsYaml([{ name: 'web', addresses: ['127.0.0.99'] }]));
  await sleep(150);
  t.is(changes, 0);
});

test.serial('a first load that fails throws SOURCE_FILE_INVALID with the path and the reason', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'readygate-file-source-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const store = new EndpointStore();

  const missing = path.join(dir, 'missing.yaml');
  const notFound = await t.throwsAsync(startFileSource({ path: missing, store }));
  t.true(isReadygateError(notFound, ErrorCode.SOURCE_FILE_INVALID));
  t.is(notFound.message, `endpoints file ${missing}: cannot read it (no such file)`);

  const bad = path.join(dir, 'bad.yaml');
  await writeFile(bad, 'services:\n- {namespace: a, name: b, ports: [{port: 0}]}\n');
  const invalid = await t.throwsAsync(startFileSource({ path: bad, store }));
  t.true(isReadygateError(invalid, ErrorCode.SOURCE_FILE_INVALID));
  t.is(invalid.message, `endpoints file ${bad}: services[0].ports[0].port: port must be 1-65535`);

  const directory = await t.throwsAsync(startFileSource({ path: dir, store }));
  t.is(directory.message, `endpoints file ${dir}: cannot read it (it is a directory)`);
  t.false(store.synced);
  t.is(store.size, 0);
});
