import { readFileSync } from 'node:fs';
import test from 'ava';
import { parse as parseYaml } from 'yaml';
import {
  EXTPROC_RESPONSE_ATTRIBUTES,
  ResponseAttribute,
  flattenAttributes,
  headerValue,
  parseText,
  parseUnsigned,
  responseFacts,
} from '../../src/extproc/attributes.js';
import { FailureCause } from '../../src/extproc/classify.js';
import { fillTemplate } from '../../src/demo/bootstrap.js';
import {
  CAUSE_HEADER,
  PROBLEM_CONTENT_TYPE,
  hasNoContent,
  problemResponse,
} from '../../src/extproc/problem.js';

test('parseUnsigned accepts numbers and their printed forms, nothing else', (t) => {
  t.is(parseUnsigned(64), 64);
  t.is(parseUnsigned('64'), 64);
  t.is(parseUnsigned(' 64 '), 64);
  t.is(parseUnsigned('64u'), 64);
  t.is(parseUnsigned('0x40'), 64);
  t.is(parseUnsigned('64.0'), 64);
  t.is(parseUnsigned(0), 0);
  for (const bad of [-1, 1.5, Number.NaN, Infinity, '', 'x', '-3', '6 4', '1e3', '64.5', true]) {
    t.is(parseUnsigned(bad), undefined, String(bad));
  }
  t.is(parseUnsigned(undefined), undefined);
});

test('parseText trims, unquotes CEL-printed strings and drops empties', (t) => {
  t.is(parseText('via_upstream'), 'via_upstream');
  t.is(parseText('"terminating"'), 'terminating');
  t.is(parseText('  '), undefined);
  t.is(parseText(5), undefined);
});

test('headerValue prefers raw_value, matches names case-insensitively', (t) => {
  const headers = [
    { key: ':status', raw_value: Buffer.from('503') },
    { key: 'X-Request-Id', value: 'abc' },
    { key: 'empty', value: '' },
  ];
  t.is(headerValue(headers, ':status'), '503');
  t.is(headerValue(headers, 'x-request-id'), 'abc');
  t.is(headerValue(headers, 'empty'), '');
  t.is(headerValue(headers, 'missing'), undefined);
  t.is(headerValue(undefined, ':status'), undefined);
});

test('flattenAttributes merges every filter key and both Value spellings', (t) => {
  const flat = flattenAttributes({
    'envoy.filters.http.ext_proc': { fields: { a: { string_value: 'x' }, b: { number_value: 3 } } },
    'readygate.ext_proc_5xx': { fields: { c: { boolValue: true }, d: { stringValue: 'y' }, e: {} } },
    broken: undefined,
  });
  t.deepEqual(
    [...flat.entries()],
    [
      ['a', 'x'],
      ['b', 3],
      ['c', true],
      ['d', 'y'],
    ],
  );
});

test('responseFacts reads a 1.36.4-shaped response_headers message', (t) => {
  const facts = responseFacts([{ key: ':status', raw_value: Buffer.from('503') }], {
    'envoy.filters.http.ext_proc': {
      fields: {
        [ResponseAttribute.FLAGS]: { number_value: 32 },
        [ResponseAttribute.CODE_DETAILS]: { string_value: 'upstream_reset_before_response_started{x}' },
        [ResponseAttribute.CLUSTER_NAME]: { string_value: 'default/web:http' },
        [ResponseAttribute.UPSTREAM_ADDRESS]: { string_value: '127.0.0.5:8080' },
        [ResponseAttribute.HOST_STATE]: { string_value: 'ready' },
        [ResponseAttribute.HOST_POD]: { string_value: 'web-1' },
        [ResponseAttribute.REQUEST_ID]: { string_value: 'rid' },
      },
    },
  });
  t.deepEqual(facts, {
    status: 503,
    responseFlags: 32,
    codeDetails: 'upstream_reset_before_response_started{x}',
    clusterName: 'default/web:http',
    upstreamAddress: '127.0.0.5:8080',
    hostState: 'ready',
    pod: 'web-1',
    requestId: 'rid',
  });
});

test('responseFacts: flags as strings, request id from the header when the attribute is absent', (t) => {
  const facts = responseFacts(
    [
      { key: ':status', value: '504' },
      { key: 'x-request-id', value: 'from-header' },
    ],
    { f: { fields: { [ResponseAttribute.FLAGS]: { string_value: '4' } } } },
  );
  t.deepEqual(facts, { status: 504, responseFlags: 4, requestId: 'from-header' });
  t.deepEqual(responseFacts(undefined, undefined), {});
});

test('the bootstrap template asks Envoy for exactly the attributes readygate reads', (t) => {
  const text = readFileSync(new URL('../../envoy/extproc-failures.template.yaml', import.meta.url), 'utf8');
  t.true(text.includes("response_attributes: '{{EXTPROC_RESPONSE_ATTRIBUTES}}'"));
  const filled = fillTemplate(parseYaml("a: '{{LIST}}'\nb: 'x{{N}}'\nc: '{{N}}'"), {
    LIST: EXTPROC_RESPONSE_ATTRIBUTES,
    N: 7,
  });
  t.deepEqual(filled, { a: [...EXTPROC_RESPONSE_ATTRIBUTES], b: 'x7', c: 7 });
  t.throws(() => fillTemplate({ a: '{{MISSING}}' }, {}), { message: /MISSING/ });
});

test('problem document: stable type URI, request id, Retry-After on 503, no internals without debug', (t) => {
  const facts = {
    status: 500,
    requestId: 'rid-1',
    upstreamAddress: '127.0.0.9:80',
    pod: 'web-0',
    clusterName: 'default/web:http',
  };
  const decision = { status: 503, cause: FailureCause.ENDPOINT_TERMINATING, retryAfterSeconds: 1 };
  const plain = problemResponse(decision, facts, { debug: false });
  t.is(plain.status, 503);
  t.deepEqual(plain.headers, {
    'content-type': PROBLEM_CONTENT_TYPE,
    [CAUSE_HEADER]: 'endpoint-terminating',
    'cache-control': 'no-store',
    'retry-after': '1',
  });
  t.deepEqual(JSON.parse(plain.body!.toString('utf8')), {
    type: 'https://readygate.dev/problems/endpoint-terminating',
    title: 'Endpoint shutting down',
    status: 503,
    detail: 'The endpoint that took the request is shutting down and failed it; a retry reaches another one.',
    request_id: 'rid-1',
  });
  const debug = JSON.parse(
    problemResponse(decision, facts, { debug: true }).body!.toString('utf8'),
  ) as Record<string, unknown>;
  t.is(debug['upstream'], '127.0.0.9:80');
  t.is(debug['pod'], 'web-0');
  t.is(debug['cluster'], 'default/web:http');
  const gateway = problemResponse(
    { status: 504, cause: FailureCause.UPSTREAM_TIMEOUT },
    {},
    { debug: false },
  );
  t.is(gateway.headers['retry-after'], undefined);
  t.false('request_id' in (JSON.parse(gateway.body!.toString('utf8')) as object));
});

test('hasNoContent: HEAD, 1xx, 204 and 304 have none; methods are case-sensitive; unknown keeps the body', (t) => {
  t.true(hasNoContent('HEAD', 503));
  for (const status of [100, 101, 103, 204, 304]) t.true(hasNoContent('GET', status), String(status));
  for (const method of ['GET', 'POST', 'head', 'OPTIONS', undefined]) {
    t.false(hasNoContent(method, 503), String(method));
  }
  t.false(hasNoContent('GET', 200));
});

test('problem response to HEAD: the GET headers, no body; request.method reaches the facts', (t) => {
  const facts = responseFacts([{ key: ':status', value: '503' }], {
    'envoy.filters.http.ext_proc': {
      fields: { [ResponseAttribute.REQUEST_METHOD]: { string_value: 'HEAD' } },
    },
  });
  t.is(facts.method, 'HEAD');
  const decision = { status: 503, cause: FailureCause.NO_HEALTHY_UPSTREAM, retryAfterSeconds: 1 };
  const head = problemResponse(decision, facts, { debug: false });
  const get = problemResponse(decision, { ...facts, method: 'GET' }, { debug: false });
  t.is(head.body, undefined);
  t.truthy(get.body);
  t.deepEqual(head.headers, get.headers);
  t.is(head.status, 503);
});
