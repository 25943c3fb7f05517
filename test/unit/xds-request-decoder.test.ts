import test from 'ava';
import { codecFor } from '../../src/protos/envoy-protos.js';
import { DISCOVERY_REQUEST, type DiscoveryRequest } from '../../src/xds/messages.js';
import { decodeDiscoveryRequest } from '../../src/xds/request-decoder.js';

const codec = codecFor<DiscoveryRequest & Record<string, unknown>>(DISCOVERY_REQUEST);

const cases: Record<string, Record<string, unknown>> = {
  'initial request with node': {
    node: { id: 'envoy-1', cluster: 'gw', user_agent_name: 'envoy' },
    type_url: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  },
  'EDS ACK with names': {
    version_info: 'abc',
    resource_names: ['default/web:http', 'default/api:grpc', 'ns/ü:80'],
    type_url: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
    response_nonce: '42',
  },
  NACK: {
    version_info: 'v1',
    type_url: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
    response_nonce: '7',
    error_detail: { code: 3, message: 'bad cluster' },
  },
  'with resource locators (skipped)': {
    type_url: 'type.googleapis.com/envoy.config.listener.v3.Listener',
    resource_locators: [{ name: 'x' }],
    resource_names: ['a'],
  },
};

for (const [name, message] of Object.entries(cases)) {
  test(`fast decoder agrees with protobufjs: ${name}`, (t) => {
    const bytes = codec.encode(message as DiscoveryRequest & Record<string, unknown>);
    const reference = codec.decode(bytes);
    const fast = decodeDiscoveryRequest(bytes);
    t.deepEqual(fast.resource_names, reference.resource_names);
    t.is(fast.type_url, reference.type_url);
    t.is(fast.version_info, reference.version_info);
    t.is(fast.response_nonce, reference.response_nonce);
    t.is(fast.node?.id, reference.node?.id);
    t.is(fast.error_detail?.message, reference.error_detail?.message);
  });
}

test('equal subscriptions give equal resourceNamesBytes; a different one does not', (t) => {
  const encode = (names: string[], nonce: string) =>
    codec.encode({ resource_names: names, type_url: 't', response_nonce: nonce });
  const a = decodeDiscoveryRequest(encode(['x', 'y'], '1'));
  const b = decodeDiscoveryRequest(encode(['x', 'y'], '2'));
  const c = decodeDiscoveryRequest(encode(['x', 'z'], '3'));
  t.true(a.resourceNamesBytes.equals(b.resourceNamesBytes));
  t.false(a.resourceNamesBytes.equals(c.resourceNamesBytes));
});

test('truncated and malformed bytes throw instead of returning half a request', (t) => {
  const bytes = codec.encode({
    type_url: 'type.googleapis.com/x',
    resource_names: ['abc'],
  });
  t.throws(() => decodeDiscoveryRequest(bytes.subarray(0, bytes.length - 2)), { instanceOf: RangeError });
  t.throws(
    () =>
      decodeDiscoveryRequest(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])),
    {
      instanceOf: RangeError,
    },
  );
  t.throws(() => decodeDiscoveryRequest(Buffer.from([0x0b])), { instanceOf: RangeError }); // wire type 3
});

/** protobufjs writes fields in number order; these build other valid orders by hand. */
function lengthField(field: number, value: string): Buffer {
  const body = Buffer.from(value, 'utf8');
  if (body.length > 127) throw new Error('test helper: short fields only');
  return Buffer.concat([Buffer.from([(field << 3) | 2, body.length]), body]);
}
const names = (...list: string[]) => Buffer.concat(list.map((n) => lengthField(3, n)));

test('previous names found verbatim are skipped and the previous buffer is shared', (t) => {
  const first = decodeDiscoveryRequest(
    codec.encode({ version_info: 'v1', resource_names: ['a', 'b', 'c'], type_url: 't', response_nonce: '1' }),
  );
  const hint = Buffer.from(first.resourceNamesBytes);
  const again = decodeDiscoveryRequest(
    codec.encode({ version_info: 'v2', resource_names: ['a', 'b', 'c'], type_url: 't', response_nonce: '2' }),
    [Buffer.from('unrelated'), hint],
  );
  t.is(again.resourceNamesBytes, hint);
  t.deepEqual(again.resource_names, ['a', 'b', 'c']);
  t.is(again.version_info, 'v2');
  t.is(again.type_url, 't');
  t.is(again.response_nonce, '2');
});

test('a hint that does not match, or only begins the names, gives the same result as no hint', (t) => {
  const hint = names('a', 'b');
  const messages: Record<string, Buffer> = {
    'different names': codec.encode({ resource_names: ['a', 'x'], type_url: 't', response_nonce: '1' }),
    'more names after the hint': codec.encode({
      resource_names: ['a', 'b', 'c'],
      type_url: 't',
      response_nonce: '1',
    }),
    'fewer names than the hint': codec.encode({ resource_names: ['a'], type_url: 't', response_nonce: '1' }),
    'names split by another field': Buffer.concat([names('a', 'b'), lengthField(4, 't'), names('c')]),
    'hint longer than the message': names('a'),
  };
  for (const [label, bytes] of Object.entries(messages)) {
    const plain = decodeDiscoveryRequest(bytes);
    const hinted = decodeDiscoveryRequest(bytes, [hint]);
    t.deepEqual(hinted.resource_names, plain.resource_names, label);
    t.true(hinted.resourceNamesBytes.equals(plain.resourceNamesBytes), label);
    t.is(hinted.type_url, plain.type_url, label);
    t.is(hinted.response_nonce, plain.response_nonce, label);
  }
  t.deepEqual(decodeDiscoveryRequest(messages['names split by another field']!, [hint]).resource_names, [
    'a',
    'b',
    'c',
  ]);
});
