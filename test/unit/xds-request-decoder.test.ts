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
