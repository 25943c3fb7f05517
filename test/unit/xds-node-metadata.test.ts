import test from 'ava';
import {
  GATEWAY,
  inScope,
  parseNodeProfile,
  profileJson,
  sidecarKey,
  type ProtoValue,
  type SidecarProfile,
} from '../../src/xds/node-metadata.js';

const s = (string_value: string): ProtoValue => ({ string_value });
const n = (number_value: number): ProtoValue => ({ number_value });
const meta = (fields: Record<string, ProtoValue>) => ({ fields });

function sidecar(fields: Record<string, ProtoValue>): SidecarProfile {
  const profile = parseNodeProfile(meta(fields));
  if (profile.mode !== 'sidecar') throw new Error(`not a sidecar: ${profile.problems.join('; ')}`);
  return profile;
}

test('no outbound port: a gateway, whatever else the metadata says', (t) => {
  t.is(parseNodeProfile(undefined), GATEWAY);
  t.is(parseNodeProfile(meta({ 'readygate.io/egress': s('default/web') })), GATEWAY);
  t.is(parseNodeProfile(meta({ 'other.io/key': s('x') })), GATEWAY);
});

test('a port as a YAML number or a string; defaults: namespace default, every Service, no ext_proc', (t) => {
  t.deepEqual(sidecar({ 'readygate.io/outbound-port': n(15001) }), {
    mode: 'sidecar',
    outboundPort: 15001,
    namespace: 'default',
    extprocCluster: undefined,
    egress: undefined,
  });
  t.is(sidecar({ 'readygate.io/outbound-port': s('80') }).outboundPort, 80);
  t.is(sidecar({ 'readygate.io/outbound-port': n(65535) }).outboundPort, 65535);
});

test('bad ports, patterns, namespaces and cluster names fall back to a gateway with every reason', (t) => {
  const cases: [Record<string, ProtoValue>, string[]][] = [
    [
      { 'readygate.io/outbound-port': s('abc') },
      ['readygate.io/outbound-port must be a port number 1-65535, got "abc"'],
    ],
    [
      { 'readygate.io/outbound-port': n(0) },
      ['readygate.io/outbound-port must be a port number 1-65535, got 0'],
    ],
    [
      { 'readygate.io/outbound-port': n(65536) },
      ['readygate.io/outbound-port must be a port number 1-65535, got 65536'],
    ],
    [
      { 'readygate.io/outbound-port': n(80.5) },
      ['readygate.io/outbound-port must be a port number 1-65535, got 80.5'],
    ],
    [
      { 'readygate.io/outbound-port': s('-1') },
      ['readygate.io/outbound-port must be a port number 1-65535, got "-1"'],
    ],
    [
      { 'readygate.io/outbound-port': { bool_value: true } },
      ['readygate.io/outbound-port must be a port number 1-65535, got true'],
    ],
    [
      { 'readygate.io/outbound-port': n(15001), 'readygate.io/egress': s('default/web,web') },
      ['readygate.io/egress: "web" is not namespace/service or namespace/*'],
    ],
    [
      { 'readygate.io/outbound-port': n(15001), 'readygate.io/egress': s('Default/web') },
      ['readygate.io/egress: "Default/web" is not namespace/service or namespace/*'],
    ],
    [
      { 'readygate.io/outbound-port': n(15001), 'readygate.io/egress': s('*/web') },
      ['readygate.io/egress: "*/web" is not namespace/service or namespace/*'],
    ],
    [
      { 'readygate.io/outbound-port': n(15001), 'readygate.io/egress': s('a/b/c') },
      ['readygate.io/egress: "a/b/c" is not namespace/service or namespace/*'],
    ],
    [
      { 'readygate.io/outbound-port': n(15001), 'readygate.io/egress': s(' , ') },
      ['readygate.io/egress names no Service (leave it out to allow every Service)'],
    ],
    [
      { 'readygate.io/outbound-port': n(15001), 'readygate.io/egress': n(3) },
      ['readygate.io/egress must be a string, got 3'],
    ],
    [
      { 'readygate.io/outbound-port': n(15001), 'readygate.io/egress': s('a/b,'.repeat(20_000)) },
      ['readygate.io/egress is longer than 65536 characters'],
    ],
    [
      { 'readygate.io/outbound-port': n(15001), 'readygate.io/namespace': s('Not_A_Namespace') },
      ['readygate.io/namespace must be a namespace name, got "Not_A_Namespace"'],
    ],
    [
      { 'readygate.io/outbound-port': n(15001), 'readygate.io/extproc-cluster': s('has space') },
      ['readygate.io/extproc-cluster must be a bootstrap cluster name, got "has space"'],
    ],
    [
      { 'readygate.io/outbound-port': s('x'), 'readygate.io/egress': s('/') },
      [
        'readygate.io/outbound-port must be a port number 1-65535, got "x"',
        'readygate.io/egress: "/" is not namespace/service or namespace/*',
      ],
    ],
  ];
  for (const [fields, problems] of cases)
    t.deepEqual(parseNodeProfile(meta(fields)), { mode: 'gateway', problems });
});

test('egress: services and whole namespaces; a canonical key; inScope', (t) => {
  const profile = sidecar({
    'readygate.io/outbound-port': n(15001),
    'readygate.io/egress': s(' payments/* , default/web,default/web, payments/api, default/api '),
  });
  t.deepEqual([...(profile.egress?.services ?? [])].sort(), ['default/api', 'default/web']);
  t.deepEqual([...(profile.egress?.namespaces ?? [])], ['payments']);
  t.is(profile.egress?.key, 'default/api,default/web,payments/*');
  t.true(inScope(profile.egress, 'default/web'));
  t.true(inScope(profile.egress, 'payments/anything'));
  t.false(inScope(profile.egress, 'default/other'));
  t.false(inScope(profile.egress, 'paymentsx/api'));
  t.true(inScope(undefined, 'any/thing'));
  // Equal scopes written differently share one key (and so one set of resources).
  const same = sidecar({
    'readygate.io/outbound-port': n(15001),
    'readygate.io/egress': s('default/api,payments/*,default/web'),
  });
  t.is(sidecarKey(same), sidecarKey(profile));
  t.is(sidecarKey(profile), '15001|default||default/api,default/web,payments/*');
  t.deepEqual(profileJson(profile), {
    mode: 'sidecar',
    outboundPort: 15001,
    namespace: 'default',
    egress: 'default/api,default/web,payments/*',
  });
  t.deepEqual(profileJson(GATEWAY), { mode: 'gateway' });
});
