/**
 * Trace context and per-Service numbers through the real Envoy and readygate's ext_proc server: the
 * problem+json of a mapped failure names the request's W3C trace id (read through the
 * `request.headers['traceparent']` attribute) only when the header is valid, and the mapping is counted
 * per Service (the cluster name) and cause.
 */
import test from 'ava';
import { startTopology, type Topology } from '../../bench/extproc-fixture.js';
import { FailureCause } from '../../src/extproc/classify.js';
import { EXTPROC_METRIC_NAMES } from '../../src/extproc/metrics.js';

let topology: Topology | undefined;

test.before(async () => {
  topology = await startTopology({ messageTimeout: '2s' });
});

test.after.always(async () => {
  await topology?.close();
});

const env = (): Topology => {
  if (topology === undefined) throw new Error('topology did not start');
  return topology;
};

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';

async function problemFor(headers: Record<string, string>): Promise<Record<string, unknown>> {
  const response = await fetch(`${env().baseUrl}/refused`, { headers, signal: AbortSignal.timeout(10_000) });
  const text = await response.text();
  if (response.status !== 503) throw new Error(`expected 503, got ${response.status}: ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

test.serial('a valid traceparent puts its trace id in the problem; x-request-id is kept', async (t) => {
  const body = await problemFor({
    traceparent: `00-${TRACE_ID}-00f067aa0ba902b7-01`,
    'x-request-id': 'req-123',
  });
  t.is(body['trace_id'], TRACE_ID);
  t.is(body['request_id'], 'req-123');
});

const invalid: [string, string][] = [
  ['all-zero trace id', `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`],
  ['all-zero parent id', `00-${TRACE_ID}-${'0'.repeat(16)}-01`],
  ['uppercase hex', `00-${TRACE_ID.toUpperCase()}-00f067aa0ba902b7-01`],
  ['version ff', `ff-${TRACE_ID}-00f067aa0ba902b7-01`],
  ['short trace id', `00-${TRACE_ID.slice(2)}-00f067aa0ba902b7-01`],
  ['garbage', 'banana'],
];
for (const [title, traceparent] of invalid) {
  test.serial(`an invalid traceparent (${title}) gives no trace id`, async (t) => {
    const body = await problemFor({ traceparent });
    t.false('trace_id' in body);
    t.is(body['status'], 503);
  });
}

test.serial('mapped responses are counted per Service and cause', async (t) => {
  const before = await countFor('refused');
  await problemFor({});
  await problemFor({});
  t.is((await countFor('refused')) - before, 2);
});

async function countFor(service: string): Promise<number> {
  const metric = env().registry.getSingleMetric(EXTPROC_METRIC_NAMES.mappedByService);
  if (!metric) return 0;
  return (
    (await metric.get()).values.find(
      (v) => v.labels['service'] === service && v.labels['cause'] === FailureCause.UPSTREAM_CONNECT_FAILURE,
    )?.value ?? 0
  );
}
