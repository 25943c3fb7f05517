/**
 * The ext_proc server over a raw grpc-js client: well-formed streams, each protocol violation's exact
 * status, and ≥ 10,000 random / malformed / out-of-order messages that must only ever produce OK or
 * INVALID_ARGUMENT — after which the server still answers a well-formed stream correctly.
 */
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { Registry } from 'prom-client';
import { ResponseAttribute } from '../../src/extproc/attributes.js';
import { EXTPROC_METRIC_NAMES } from '../../src/extproc/metrics.js';
import {
  PROCESS_METHOD_PATH,
  addExtprocService,
  startExtprocServer,
  type ExtprocServer,
} from '../../src/extproc/server.js';
import { codecFor } from '../../src/protos/envoy-protos.js';

const requestCodec = codecFor<object>('envoy.service.ext_proc.v3.ProcessingRequest');
const responseCodec = codecFor<Record<string, unknown>>('envoy.service.ext_proc.v3.ProcessingResponse');

let server: ExtprocServer | undefined;
let client: grpc.Client | undefined;
const registry = new Registry();

test.before(async () => {
  server = await startExtprocServer({ address: '127.0.0.1:0', registry });
  client = new grpc.Client(server.address, grpc.credentials.createInsecure(), { 'grpc.enable_channelz': 0 });
});

test.after.always(async () => {
  client?.close();
  await server?.close();
});

interface StreamOutcome {
  responses: Record<string, unknown>[];
  code: grpc.status;
  details: string;
}

/** Sends `messages` (already encoded) on one Process stream, half-closes, and collects the outcome. */
function runStream(messages: readonly Buffer[], timeoutMs = 5000): Promise<StreamOutcome> {
  if (client === undefined) throw new Error('client not started');
  const call = client.makeBidiStreamRequest<Buffer, Buffer>(
    PROCESS_METHOD_PATH,
    (value) => value,
    (value) => value,
    new grpc.Metadata(),
    { deadline: Date.now() + timeoutMs },
  );
  const responses: Record<string, unknown>[] = [];
  return new Promise((resolve) => {
    call.on('data', (bytes: Buffer) => responses.push(responseCodec.decode(bytes)));
    call.on('error', () => {
      // The status event carries the outcome.
    });
    call.on('status', (status: grpc.StatusObject) => {
      resolve({ responses, code: status.code, details: status.details });
    });
    for (const message of messages) call.write(message);
    call.end();
  });
}

const headers = (status: string): object => ({
  headers: { headers: [{ key: ':status', raw_value: Buffer.from(status) }] },
});
const attributes = (fields: Record<string, object>): object => ({
  'envoy.filters.http.ext_proc': { fields },
});
const encode = (message: object): Buffer => requestCodec.encode(message);

test('a 503 with UH flags is replaced with the problem document', async (t) => {
  const outcome = await runStream([
    encode({
      response_headers: headers('503'),
      attributes: attributes({
        [ResponseAttribute.FLAGS]: { number_value: 2 },
        [ResponseAttribute.CODE_DETAILS]: { string_value: 'no_healthy_upstream' },
        [ResponseAttribute.REQUEST_ID]: { string_value: 'rid-7' },
      }),
    }),
  ]);
  t.is(outcome.code, grpc.status.OK);
  t.is(outcome.responses.length, 1);
  const common = (outcome.responses[0]?.['response_headers'] as { response: Record<string, unknown> })
    .response;
  t.is(common['status'], 'CONTINUE_AND_REPLACE');
  const mutation = common['header_mutation'] as {
    set_headers: { header: { key: string; raw_value: Buffer }; append_action: string }[];
    remove_headers: string[];
  };
  const set = Object.fromEntries(
    mutation.set_headers.map((h) => [h.header.key, h.header.raw_value.toString()]),
  );
  t.deepEqual(set, {
    ':status': '503',
    'content-type': 'application/problem+json',
    'x-readygate-cause': 'no-healthy-upstream',
    'cache-control': 'no-store',
    'retry-after': '1',
  });
  t.true(mutation.set_headers.every((h) => h.append_action === 'OVERWRITE_IF_EXISTS_OR_ADD'));
  const body = JSON.parse((common['body_mutation'] as { body: Buffer }).body.toString()) as Record<
    string,
    unknown
  >;
  t.deepEqual(body, {
    type: 'https://readygate.dev/problems/no-healthy-upstream',
    title: 'No ready endpoint',
    status: 503,
    detail: 'The service has no endpoint ready to take this request right now.',
    request_id: 'rid-7',
  });
});

test('HEAD: the same status and headers, no body_mutation, and the upstream content-length removed', async (t) => {
  const outcome = await runStream([
    encode({
      response_headers: headers('503'),
      attributes: attributes({
        [ResponseAttribute.FLAGS]: { number_value: 2 },
        [ResponseAttribute.CODE_DETAILS]: { string_value: 'no_healthy_upstream' },
        [ResponseAttribute.REQUEST_METHOD]: { string_value: 'HEAD' },
      }),
    }),
  ]);
  t.is(outcome.code, grpc.status.OK);
  const common = (outcome.responses[0]?.['response_headers'] as { response: Record<string, unknown> })
    .response;
  t.is(common['status'], 'CONTINUE_AND_REPLACE');
  t.is(common['body_mutation'], undefined);
  const mutation = common['header_mutation'] as {
    set_headers: { header: { key: string; raw_value: Buffer } }[];
    remove_headers: string[];
  };
  t.deepEqual(
    Object.fromEntries(mutation.set_headers.map((h) => [h.header.key, h.header.raw_value.toString()])),
    {
      ':status': '503',
      'content-type': 'application/problem+json',
      'x-readygate-cause': 'no-healthy-upstream',
      'cache-control': 'no-store',
      'retry-after': '1',
    },
  );
  t.true(mutation.remove_headers.includes('content-length'));
  // GET keeps its body (and Envoy frames it).
  const get = await runStream([
    encode({
      response_headers: headers('503'),
      attributes: attributes({
        [ResponseAttribute.FLAGS]: { number_value: 2 },
        [ResponseAttribute.REQUEST_METHOD]: { string_value: 'GET' },
      }),
    }),
  ]);
  const getCommon = (get.responses[0]?.['response_headers'] as { response: Record<string, unknown> })
    .response;
  t.truthy(getCommon['body_mutation']);
});

test('a healthy upstream 500 gets a plain CONTINUE; request-side messages are continued', async (t) => {
  const outcome = await runStream([
    encode({ request_headers: headers('') }),
    encode({ request_body: { body: Buffer.from('x') } }),
    encode({ request_body: { body: Buffer.from('y'), end_of_stream: true } }),
    encode({
      response_headers: headers('500'),
      attributes: attributes({ [ResponseAttribute.CODE_DETAILS]: { string_value: 'via_upstream' } }),
    }),
    // After the response_headers answer the stream is over (ended with OK): this is not answered.
    encode({ response_body: { body: Buffer.from('z') } }),
  ]);
  t.is(outcome.code, grpc.status.OK);
  t.deepEqual(
    outcome.responses.map((r) => Object.keys(r)),
    [['request_headers'], ['request_body'], ['request_body'], ['response_headers']],
  );
  t.deepEqual(outcome.responses[3], { response_headers: {} });
});

test('the stream ends with OK right after the response_headers answer, without waiting for a half-close', async (t) => {
  if (client === undefined) throw new Error('client not started');
  // Envoy would reset a stream left open once it has its answer; every reset counts against the
  // server's HTTP/2 stream-reset limit (test/integration/extproc-streams.test.ts).
  const call = client.makeBidiStreamRequest<Buffer, Buffer>(
    PROCESS_METHOD_PATH,
    (value) => value,
    (value) => value,
    new grpc.Metadata(),
    { deadline: Date.now() + 5000 },
  );
  const answers: Record<string, unknown>[] = [];
  const status = await new Promise<grpc.StatusObject>((resolve) => {
    call.on('data', (bytes: Buffer) => answers.push(responseCodec.decode(bytes)));
    call.on('error', () => undefined);
    call.on('status', resolve);
    call.write(
      encode({
        response_headers: headers('503'),
        attributes: attributes({ [ResponseAttribute.FLAGS]: { number_value: 2 } }),
      }),
    );
    // No call.end(): the client side stays open.
  });
  t.is(status.code, grpc.status.OK);
  t.is(answers.length, 1);
  t.truthy(answers[0]?.['response_headers']);
});

const violations: [string, Buffer[], RegExp][] = [
  [
    'bytes that are not protobuf',
    [Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])],
    /malformed ProcessingRequest/,
  ],
  ['a message with no request member', [encode({ observability_mode: true })], /no request member set/],
  [
    'two request members in one message',
    [Buffer.concat([encode({ request_headers: headers('') }), encode({ response_headers: headers('500') })])],
    /several request members: request_headers, response_headers/,
  ],
  [
    'request_headers after request_trailers',
    [encode({ request_trailers: {} }), encode({ request_headers: headers('') })],
    /out-of-order ProcessingRequest: request_headers after request_trailers/,
  ],
  [
    'request_headers twice',
    [encode({ request_headers: headers('') }), encode({ request_headers: headers('') })],
    /out-of-order ProcessingRequest: request_headers after request_headers/,
  ],
  [
    'request_body after response_body',
    [encode({ response_body: {} }), encode({ request_body: {} })],
    /out-of-order ProcessingRequest: request_body after response_body/,
  ],
];

for (const [name, messages, details] of violations) {
  test(`protocol violation: ${name} → INVALID_ARGUMENT`, async (t) => {
    const outcome = await runStream(messages);
    t.is(outcome.code, grpc.status.INVALID_ARGUMENT);
    t.regex(outcome.details, /^RG_ERR_EXTPROC_PROTOCOL: /);
    t.regex(outcome.details, details);
  });
}

/** A random message: valid of a random kind, random bytes, truncated valid bytes, or merged members. */
function randomMessage(): Buffer {
  const kinds = [
    'request_headers',
    'request_body',
    'request_trailers',
    'response_headers',
    'response_body',
    'response_trailers',
  ];
  const pick = Math.floor(Math.random() * 6);
  const kind = kinds[Math.floor(Math.random() * kinds.length)]!;
  switch (pick) {
    case 0:
      return randomBytes(Math.floor(Math.random() * 64));
    case 1: {
      const valid = encode({ response_headers: headers(String(100 + Math.floor(Math.random() * 500))) });
      return valid.subarray(0, Math.floor(Math.random() * valid.length));
    }
    case 2:
      return Buffer.concat([encode({ [kind]: {} }), encode({ response_headers: headers('503') })]);
    case 3:
      return encode({
        response_headers: headers(Math.random() < 0.5 ? 'abc' : '503'),
        attributes: attributes({
          [ResponseAttribute.FLAGS]: Math.random() < 0.5 ? { string_value: 'x' } : { number_value: -5 },
          [ResponseAttribute.CODE_DETAILS]: { number_value: 3 },
        }),
      });
    default:
      return encode(kind.endsWith('headers') ? { [kind]: headers('502') } : { [kind]: {} });
  }
}

test('≥ 10,000 random, malformed and out-of-order messages: only OK / INVALID_ARGUMENT, then a clean stream', async (t) => {
  const target = 10_000;
  const deadline = Date.now() + 60_000;
  let sent = 0;
  const codes = new Map<grpc.status, number>();
  // Bounded in count (target) and time (deadline); 16 streams in flight at once.
  while (sent < target && Date.now() < deadline) {
    const batch: Promise<StreamOutcome>[] = [];
    for (let s = 0; s < 16 && sent < target; s++) {
      const length = 1 + Math.floor(Math.random() * 8);
      const messages = Array.from({ length }, randomMessage);
      sent += messages.length;
      // A generous deadline: only the server's answers may decide the status, not a starved CI machine.
      batch.push(runStream(messages, 20_000));
    }
    for (const outcome of await Promise.all(batch))
      codes.set(outcome.code, (codes.get(outcome.code) ?? 0) + 1);
  }
  t.true(sent >= target, `sent ${sent} messages before the deadline`);
  t.deepEqual(
    [...codes.keys()].sort(),
    [grpc.status.OK, grpc.status.INVALID_ARGUMENT].sort(),
    JSON.stringify([...codes]),
  );
  const errors = await registry.getSingleMetric(EXTPROC_METRIC_NAMES.protocolErrors)!.get();
  t.true(
    errors.values.every((v) =>
      ['malformed', 'empty', 'ambiguous', 'out_of_order'].includes(String(v.labels['kind'])),
    ),
  );

  const outcome = await runStream([
    encode({
      response_headers: headers('502'),
      attributes: attributes({ [ResponseAttribute.FLAGS]: { number_value: 64 } }),
    }),
  ]);
  t.is(outcome.code, grpc.status.OK);
  const common = (outcome.responses[0]?.['response_headers'] as { response: { status: string } }).response;
  t.is(common.status, 'CONTINUE_AND_REPLACE');
});

test('startExtprocServer reports the bound address and rejects a bad one', async (t) => {
  t.regex(server!.address, /^127\.0\.0\.1:\d+$/);
  t.is(server!.address, `127.0.0.1:${server!.port}`);
  await t.throwsAsync(startExtprocServer({ address: 'no-port' }), { message: /host:port/ });
});

test('addExtprocService hosts the service on a server the caller owns, metrics in the caller’s registry', async (t) => {
  const shared = new grpc.Server({ 'grpc.enable_channelz': 0 });
  const sharedRegistry = new Registry();
  addExtprocService(shared, { registry: sharedRegistry });
  const port = await new Promise<number>((resolve, reject) => {
    shared.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => {
      if (error) reject(error);
      else resolve(bound);
    });
  });
  const sharedClient = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  t.teardown(() => {
    sharedClient.close();
    shared.forceShutdown();
  });
  const call = sharedClient.makeBidiStreamRequest<Buffer, Buffer>(
    PROCESS_METHOD_PATH,
    (value) => value,
    (value) => value,
  );
  const answers: Record<string, unknown>[] = [];
  const status = await new Promise<grpc.StatusObject>((resolve) => {
    call.on('data', (bytes: Buffer) => answers.push(responseCodec.decode(bytes)));
    call.on('error', () => undefined);
    call.on('status', resolve);
    call.write(
      encode({
        response_headers: headers('503'),
        attributes: attributes({ [ResponseAttribute.FLAGS]: { number_value: 2 } }),
      }),
    );
    call.end();
  });
  t.is(status.code, grpc.status.OK);
  const common = (answers[0]?.['response_headers'] as { response: { status: string } }).response;
  t.is(common.status, 'CONTINUE_AND_REPLACE');
  const mapped = await sharedRegistry.getSingleMetric(EXTPROC_METRIC_NAMES.mapped)!.get();
  t.deepEqual(
    mapped.values.map((v) => [v.labels['cause'], v.labels['status'], v.value]),
    [['no-healthy-upstream', '503', 1]],
  );
});
