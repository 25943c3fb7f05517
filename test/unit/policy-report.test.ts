import test from 'ava';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { EndpointStore } from '../../src/model/store.js';
import type { PolicyProblem } from '../../src/model/policy.js';
import { parseEndpointsFile } from '../../src/sources/file-format.js';
import { translateService } from '../../src/sources/kubernetes-translate.js';
import { invalidAnnotationEventName } from '../../src/sources/kubernetes-events.js';
import { POLICY_LOG_INTERVAL_MS, PolicyProblemReporter } from '../../src/sources/policy-report.js';
import { endpoint, service } from '../helpers/model-fixtures.js';

interface Line {
  event?: string;
  service?: string;
  key?: string;
  msg?: string;
}

function setup() {
  const lines: Line[] = [];
  const logger = pino(
    { level: 'info', base: null, timestamp: false },
    { write: (line: string) => lines.push(JSON.parse(line) as Line) },
  );
  const store = new EndpointStore();
  const registry = new Registry();
  const recorded: [string, PolicyProblem][] = [];
  let now = 1_000_000;
  const reporter = new PolicyProblemReporter({
    store,
    logger,
    registry,
    events: (key, problem) => {
      recorded.push([key, problem]);
      return Promise.resolve();
    },
    now: () => now,
  });
  const advance = (ms: number) => {
    now += ms;
  };
  const put = (annotations: Record<string, string> | undefined) =>
    store.upsert({ ...service('web', [endpoint('10.0.0.1')]), ...(annotations ? { annotations } : {}) });
  const metric = async (name: string, key: string) =>
    (await registry.getSingleMetric(name)!.get()).values.find((v) => v.labels['key'] === key)?.value;
  return { lines, store, reporter, recorded, advance, put, metric };
}

test('a new problem: one log line, one Event, counted; an unrelated change repeats none of them', async (t) => {
  const { lines, reporter, recorded, put, metric } = setup();
  put({ 'readygate.io/connect-timeout': 'banana' });
  put({ 'readygate.io/connect-timeout': 'banana', 'example.com/other': 'x' }); // same problem again
  const warnings = lines.filter((l) => l.event === 'policy.invalid-annotation');
  t.deepEqual(warnings, [
    {
      event: 'policy.invalid-annotation',
      service: 'default/web',
      key: 'readygate.io/connect-timeout',
      msg: 'default/web: readygate.io/connect-timeout: "banana" is not a duration (a number with ms, s, m or h, for example 250ms or 2s); using the default',
      level: 40,
    } as Line,
  ]);
  t.is(recorded.length, 1);
  t.is(await metric('readygate_policy_invalid_annotations_total', 'readygate.io/connect-timeout'), 1);
  t.is(await metric('readygate_policy_invalid_annotations', 'readygate.io/connect-timeout'), 1);
  t.is(reporter.toJSON()[0]?.problems[0]?.since, new Date(1_000_000).toISOString());
});

test('a flapping value logs once a minute per Service and key, but every new value is an Event', (t) => {
  const { lines, recorded, advance, put } = setup();
  put({ 'readygate.io/max-requests': '-1' });
  put({ 'readygate.io/max-requests': '-2' });
  put({ 'readygate.io/max-requests': '-3' });
  t.is(lines.filter((l) => l.event === 'policy.invalid-annotation').length, 1);
  t.is(recorded.length, 3);
  advance(POLICY_LOG_INTERVAL_MS);
  put({ 'readygate.io/max-requests': '-4' });
  t.is(lines.filter((l) => l.event === 'policy.invalid-annotation').length, 2);
});

test('fixing the annotation clears /debug and the gauge; deleting the Service does too', async (t) => {
  const { lines, store, reporter, put, metric } = setup();
  put({ 'readygate.io/bogus': '1' });
  t.is(await metric('readygate_policy_invalid_annotations', 'unknown'), 1);
  put(undefined);
  t.deepEqual(reporter.toJSON(), []);
  t.is(await metric('readygate_policy_invalid_annotations', 'unknown'), 0);
  t.true(lines.some((l) => l.event === 'policy.annotation-fixed' && l.key === 'readygate.io/bogus'));
  put({ 'readygate.io/bogus': '1' });
  store.delete('default/web');
  t.deepEqual(reporter.toJSON(), []);
  // The counter counts findings, so it stays.
  t.is(await metric('readygate_policy_invalid_annotations_total', 'unknown'), 2);
});

test('a failing Event write is logged, not thrown', async (t) => {
  const lines: Line[] = [];
  const logger = pino(
    { level: 'info', base: null, timestamp: false },
    { write: (line: string) => lines.push(JSON.parse(line) as Line) },
  );
  const store = new EndpointStore();
  new PolicyProblemReporter({ store, logger, events: () => Promise.reject(new Error('forbidden')) });
  store.upsert({ ...service('web', []), annotations: { 'readygate.io/lb-policy': 'x' } });
  await new Promise((resolve) => setImmediate(resolve));
  t.true(lines.some((l) => l.event === 'policy.event-failed'));
});

test('Event names are stable per Service, key and message, and valid object names', (t) => {
  const problem = { key: 'readygate.io/slow-start', value: 'x', message: 'readygate.io/slow-start: "x" is…' };
  const name = invalidAnnotationEventName('shop/web', problem);
  t.regex(name, /^web\.readygate-[0-9a-f]{16}$/);
  t.is(invalidAnnotationEventName('shop/web', { ...problem }), name);
  t.not(invalidAnnotationEventName('shop/web', { ...problem, message: 'other' }), name);
});

test('both sources carry only readygate.io/ annotations into the model', (t) => {
  const [fromFile] = parseEndpointsFile(`
services:
  - namespace: shop
    name: web
    annotations:
      readygate.io/slow-start: 30s
      example.com/owner: team-a
    ports: [{ name: http, port: 8080 }]
`);
  t.deepEqual(fromFile?.annotations, { 'readygate.io/slow-start': '30s' });
  const fromKubernetes = translateService(
    {
      metadata: {
        namespace: 'shop',
        name: 'web',
        annotations: {
          'readygate.io/slow-start': '30s',
          'kubectl.kubernetes.io/last-applied-configuration': '{}',
        },
      },
      spec: { ports: [{ name: 'http', port: 80 }] },
    },
    [],
  );
  t.deepEqual(fromKubernetes.model?.annotations, { 'readygate.io/slow-start': '30s' });
  const plain = translateService(
    { metadata: { namespace: 'shop', name: 'web' }, spec: { ports: [{ port: 80 }] } },
    [],
  );
  t.false(plain.model !== undefined && 'annotations' in plain.model);
});

test('the file source rejects a non-string annotation value with the path', (t) => {
  const error = t.throws(() =>
    parseEndpointsFile(`
services:
  - namespace: shop
    name: web
    annotations: { readygate.io/max-requests: 5 }
    ports: [{ port: 8080 }]
`),
  );
  t.is(error.message, 'services[0].annotations.readygate.io/max-requests: annotation values must be strings');
});
