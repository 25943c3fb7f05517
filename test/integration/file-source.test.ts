import { mkdtemp, mkdir, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import test, { type ExecutionContext } from 'ava';
import { pino } from 'pino';
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
}

/** Polling off by default: the timing assertions must hold on filesystem events alone. */
async function setup(
  t: ExecutionContext,
  options: { pollIntervalMs?: number; initial?: string } = {},
): Promise<Fixture> {
  const dir = await mkdtemp(path.join(tmpdir(), 'readygate-file-source-'));
  const file = path.join(dir, 'endpoints.yaml');
  await writeFile(file, options.initial ?? endpointsYaml([{ name: 'web', addresses: ['127.0.0.2'] }]));
  const store = new EndpointStore();
  const { logger, lines } = capturingLogger();
  const source = await startFileSource({
    path: file,
    store,
    logger,
    pollIntervalMs: options.pollIntervalMs ?? 0,
  });
  t.teardown(async () => {
    await source.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { dir, file, store, lines, source };
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
  const { file, store, lines } = await setup(t);
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

  const fixed = await timedEdit(store, () =>
    writeFile(file, endpointsYaml([{ name: 'web', addresses: ['127.0.0.9'] }])),
  );
  t.deepEqual(addressesOf(store), { 'default/web': ['127.0.0.9'] });
  t.true(fixed <= APPLY_BOUND_MS, `${fixed.toFixed(1)} ms`);
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

test.serial('delete keeps the last good state; a recreated file is picked up', async (t) => {
  const { file, store, lines } = await setup(t);
  let changes = 0;
  store.on('change', () => (changes += 1));
  await unlink(file);
  await waitForLog(lines, FileSourceEvent.MISSING, 1);
  t.is(changes, 0);
  t.deepEqual(addressesOf(store), { 'default/web': ['127.0.0.2'] });

  const ms = await timedEdit(store, () =>
    writeFile(file, endpointsYaml([{ name: 'api', addresses: ['127.0.0.5'] }])),
  );
  t.deepEqual(addressesOf(store), { 'default/api': ['127.0.0.5'] });
  t.true(ms <= APPLY_BOUND_MS, `${ms.toFixed(1)} ms`);
  t.is(lines.filter((line) => line.event === FileSourceEvent.MISSING).length, 1);
});

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
