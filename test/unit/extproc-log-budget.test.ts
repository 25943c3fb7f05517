/**
 * The ext_proc log budget: one line per key per interval, the suppressed count carried by the next line;
 * and the server at info level writing one `extproc.mapped` line per cause while /metrics counts them all.
 */
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { ResponseAttribute } from '../../src/extproc/attributes.js';
import { LogBudget } from '../../src/extproc/log-budget.js';
import { EXTPROC_METRIC_NAMES } from '../../src/extproc/metrics.js';
import { PROCESS_METHOD_PATH, startExtprocServer } from '../../src/extproc/server.js';
import { codecFor } from '../../src/protos/envoy-protos.js';

test('LogBudget: first event logs, the rest of the interval is counted, the next line reports them', (t) => {
  const budget = new LogBudget(10_000);
  t.deepEqual(budget.take('a', 0), { suppressed: 0 });
  t.is(budget.take('a', 1), undefined);
  t.is(budget.take('a', 9_999), undefined);
  // Another key has its own budget.
  t.deepEqual(budget.take('b', 5), { suppressed: 0 });
  t.deepEqual(budget.take('a', 10_000), { suppressed: 2 });
  t.is(budget.take('a', 10_001), undefined);
  t.deepEqual(budget.take('a', 50_000), { suppressed: 1 });
  t.deepEqual(budget.take('a', 60_000), { suppressed: 0 });
});

test('info level: 200 mapped 503s of one cause write one log line; the metric counts 200', async (t) => {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      callback();
    },
  });
  const registry = new Registry();
  const server = await startExtprocServer({
    address: '127.0.0.1:0',
    registry,
    logger: pino({ level: 'info', base: null }, sink),
  });
  const client = new grpc.Client(server.address, grpc.credentials.createInsecure());
  t.teardown(async () => {
    client.close();
    await server.close();
  });
  const message = codecFor<object>('envoy.service.ext_proc.v3.ProcessingRequest').encode({
    response_headers: { headers: { headers: [{ key: ':status', raw_value: Buffer.from('503') }] } },
    attributes: {
      'envoy.filters.http.ext_proc': { fields: { [ResponseAttribute.FLAGS]: { number_value: 2 } } },
    },
  });
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const call = client.makeBidiStreamRequest<Buffer, Buffer>(
        PROCESS_METHOD_PATH,
        (value) => value,
        (value) => value,
      );
      call.on('data', () => undefined);
      call.on('error', () => undefined);
      call.on('status', () => {
        resolve();
      });
      call.write(message);
    });
  for (let i = 0; i < 20; i++) await Promise.all(Array.from({ length: 10 }, one));
  const mappedLines = lines.filter((line) => line['event'] === 'extproc.mapped');
  // The whole run is far shorter than the 10 s interval.
  t.is(mappedLines.length, 1);
  t.is(mappedLines[0]?.['cause'], 'no-healthy-upstream');
  t.is(mappedLines[0]?.['suppressed'], 0);
  const metric = await registry.getSingleMetric(EXTPROC_METRIC_NAMES.mapped)!.get();
  t.is(
    metric.values.reduce((sum, value) => sum + value.value, 0),
    200,
  );
});
