import test from 'ava';
import { eligibleHosts } from '../../src/model/eligibility.js';
import type { EndpointConditions } from '../../src/model/types.js';
import {
  type EndpointShape,
  type EndpointSliceShape,
  type ServicePortShape,
  type ServiceShape,
  objectKey,
  serviceKeyOfSlice,
  translateService,
  SERVICE_NAME_LABEL,
} from '../../src/sources/kubernetes-translate.js';

const service = (
  ports: ServicePortShape[],
  spec: Partial<NonNullable<ServiceShape['spec']>> = {},
): ServiceShape => ({
  metadata: { namespace: 'shop', name: 'web' },
  spec: { ports, ...spec },
});

interface SliceEndpoint {
  address: string | string[];
  conditions?: EndpointConditions;
  extra?: Partial<EndpointShape>;
}

const slice = (
  name: string,
  endpoints: SliceEndpoint[],
  ports: EndpointSliceShape['ports'] = [{ name: 'http', port: 8080, protocol: 'TCP' }],
  addressType = 'IPv4',
): EndpointSliceShape => ({
  metadata: { namespace: 'shop', name, labels: { [SERVICE_NAME_LABEL]: 'web' } },
  addressType,
  ports,
  endpoints: endpoints.map((e) => ({
    addresses: Array.isArray(e.address) ? e.address : [e.address],
    ...(e.conditions ? { conditions: e.conditions } : {}),
    ...e.extra,
  })),
});

const httpPort: ServicePortShape = {
  name: 'http',
  port: 80,
  targetPort: 'http',
  protocol: 'TCP',
};

test('ports: key is the name, or the number when unnamed; numeric targetPort is the default', (t) => {
  const result = translateService(
    service([{ name: 'http', port: 80, targetPort: 8080, appProtocol: 'kubernetes.io/h2c' }, { port: 9090 }]),
    [],
  );
  t.deepEqual(result.model?.ports, [
    { key: 'http', port: 80, targetPort: 8080, appProtocol: 'kubernetes.io/h2c' },
    { key: '9090', port: 9090, targetPort: 9090 },
  ]);
  t.deepEqual(result.warnings, []);
});

test('UDP ports are left out with a warning', (t) => {
  const result = translateService(service([{ name: 'dns', port: 53, protocol: 'UDP' }, { port: 80 }]), []);
  t.deepEqual(
    result.model?.ports.map((p) => p.key),
    ['80'],
  );
  t.deepEqual(result.warnings, ['port dns uses UDP; only TCP ports are served']);
});

test('conditions pass through with nil kept as undefined (absent)', (t) => {
  const combos: EndpointConditions[] = [];
  for (const ready of [true, false, undefined])
    for (const serving of [true, false, undefined])
      for (const terminating of [true, false, undefined]) {
        const c: { ready?: boolean; serving?: boolean; terminating?: boolean } = {};
        if (ready !== undefined) c.ready = ready;
        if (serving !== undefined) c.serving = serving;
        if (terminating !== undefined) c.terminating = terminating;
        combos.push(c);
      }
  const endpoints = combos.map((conditions, i) => ({ address: `10.0.0.${i + 1}`, conditions }));
  const result = translateService(service([httpPort]), [slice('web-a', endpoints)]);
  t.is(result.model?.endpoints.length, 27);
  for (const [i, endpoint] of (result.model?.endpoints ?? []).entries()) {
    t.deepEqual(endpoint.conditions, combos[i]);
    for (const key of ['ready', 'serving', 'terminating'] as const) {
      if (combos[i]?.[key] === undefined) t.false(key in endpoint.conditions);
    }
  }
});

test('a slice without conditions at all reads as ready (nil everywhere)', (t) => {
  const result = translateService(service([httpPort]), [slice('web-a', [{ address: '10.0.0.1' }])]);
  t.deepEqual(result.model?.endpoints[0]?.conditions, {});
  t.deepEqual(
    eligibleHosts(result.model!, result.model!.ports[0]!).map((h) => [h.address, h.port, h.health]),
    [['10.0.0.1', 8080, 'HEALTHY']],
  );
});

test('several slices merge in name order, whatever order they arrive in', (t) => {
  const a = slice('web-a', [{ address: '10.0.0.1' }]);
  const b = slice('web-b', [{ address: '10.0.0.2' }]);
  const forward = translateService(service([httpPort]), [a, b]);
  const backward = translateService(service([httpPort]), [b, a]);
  t.deepEqual(forward, backward);
  t.deepEqual(
    forward.model?.endpoints.map((e) => e.addresses[0]),
    ['10.0.0.1', '10.0.0.2'],
  );
});

test('named target ports resolve per slice: the same service port maps to different numbers', (t) => {
  const a = slice('web-a', [{ address: '10.0.0.1' }], [{ name: 'http', port: 8080 }]);
  const b = slice('web-b', [{ address: '10.0.0.2' }], [{ name: 'http', port: 9090 }]);
  const result = translateService(service([httpPort]), [a, b]);
  t.deepEqual(
    result.model?.endpoints.map((e) => e.ports),
    [{ http: 8080 }, { http: 9090 }],
  );
  t.deepEqual(
    eligibleHosts(result.model!, result.model!.ports[0]!).map((h) => `${h.address}:${h.port}`),
    ['10.0.0.1:8080', '10.0.0.2:9090'],
  );
});

test('an unnamed service port matches the slice port named "" (or without a name)', (t) => {
  const withEmpty = slice('web-a', [{ address: '10.0.0.1' }], [{ name: '', port: 8080 }]);
  const withoutName = slice('web-b', [{ address: '10.0.0.2' }], [{ port: 8081 }]);
  const result = translateService(service([{ port: 80, targetPort: 8080 }]), [withEmpty, withoutName]);
  t.deepEqual(
    result.model?.endpoints.map((e) => e.ports),
    [{ '80': 8080 }, { '80': 8081 }],
  );
});

test('a slice lacking a service port gives its endpoints no entry for it (they do not serve that port)', (t) => {
  const result = translateService(service([httpPort, { name: 'admin', port: 9000, targetPort: 9000 }]), [
    slice('web-a', [{ address: '10.0.0.1' }], [{ name: 'http', port: 8080 }]),
  ]);
  t.deepEqual(result.model?.endpoints[0]?.ports, { http: 8080 });
  t.deepEqual(eligibleHosts(result.model!, result.model!.ports[1]!), []);
});

test('a slice port with another protocol does not match a TCP service port', (t) => {
  const result = translateService(service([httpPort]), [
    slice('web-a', [{ address: '10.0.0.1' }], [{ name: 'http', port: 8080, protocol: 'UDP' }]),
  ]);
  t.deepEqual(result.model?.endpoints[0]?.ports, {});
});

test('IPv6 slices are served; an address of the wrong family is skipped with a warning', (t) => {
  const v6 = slice('web-v6', [{ address: 'fd00::1' }, { address: '10.0.0.9' }], undefined, 'IPv6');
  const result = translateService(service([httpPort]), [v6]);
  t.deepEqual(
    result.model?.endpoints.map((e) => e.addresses),
    [['fd00::1']],
  );
  t.deepEqual(result.warnings, ['EndpointSlice web-v6: endpoints[1] has no valid IPv6 address; skipped']);
});

test('FQDN slices are not served', (t) => {
  const result = translateService(service([httpPort]), [
    slice('web-fqdn', [{ address: 'example.com' }], undefined, 'FQDN'),
  ]);
  t.deepEqual(result.model?.endpoints, []);
  t.deepEqual(result.warnings, ['EndpointSlice web-fqdn: addressType FQDN is not served']);
});

test('endpoint details: targetRef, zone, nodeName, hostname; all addresses kept', (t) => {
  const result = translateService(service([httpPort]), [
    slice('web-a', [
      {
        address: ['10.0.0.1', '10.0.0.2'],
        conditions: { ready: true },
        extra: {
          targetRef: { kind: 'Pod', namespace: 'shop', name: 'web-1', uid: 'u-1' },
          zone: 'zone-a',
          nodeName: 'node-1',
          hostname: 'web-1',
        },
      },
    ]),
  ]);
  t.deepEqual(result.model?.endpoints, [
    {
      addresses: ['10.0.0.1', '10.0.0.2'],
      conditions: { ready: true },
      targetRef: { kind: 'Pod', namespace: 'shop', name: 'web-1', uid: 'u-1' },
      zone: 'zone-a',
      nodeName: 'node-1',
      hostname: 'web-1',
      ports: { http: 8080 },
    },
  ]);
});

test('an empty slice as the API sends it ("endpoints": null) gives no endpoints and no warning', (t) => {
  const empty = { ...slice('web-a', []), endpoints: null } as unknown as EndpointSliceShape;
  const result = translateService(service([httpPort]), [empty]);
  t.deepEqual(result.model?.endpoints, []);
  t.deepEqual(result.warnings, []);
});

test('an endpoint without addresses is skipped with a warning, the rest of the slice is kept', (t) => {
  const result = translateService(service([httpPort]), [
    slice('web-a', [{ address: [] }, { address: '10.0.0.2' }]),
  ]);
  t.deepEqual(
    result.model?.endpoints.map((e) => e.addresses[0]),
    ['10.0.0.2'],
  );
  t.deepEqual(result.warnings, ['EndpointSlice web-a: endpoints[0] has no valid IPv4 address; skipped']);
});

test('ExternalName Services are skipped', (t) => {
  const result = translateService(service([], { type: 'ExternalName' }), []);
  t.deepEqual(result, { skipped: 'external-name', warnings: [] });
});

test('headless Services (clusterIP None) are served like any other', (t) => {
  const result = translateService(service([httpPort], { clusterIP: 'None' }), [
    slice('web-a', [{ address: '10.0.0.1' }]),
  ]);
  t.is(result.model?.endpoints.length, 1);
  t.is(result.skipped, undefined);
});

test('a Service without a name is invalid', (t) => {
  const result = translateService({ metadata: { namespace: 'shop' }, spec: {} }, []);
  t.is(result.skipped, 'invalid');
  t.is(result.model, undefined);
});

test('a Service without ports still has a model (no clusters), a port without a number is skipped', (t) => {
  const result = translateService(service([{ name: 'broken' }]), []);
  t.deepEqual(result.model, { namespace: 'shop', name: 'web', ports: [], endpoints: [] });
  t.deepEqual(result.warnings, ['spec.ports[0] has no valid port number; skipped']);
});

test('duplicate address in two slices: both passed through, eligibility keeps one host', (t) => {
  const result = translateService(service([httpPort]), [
    slice('web-a', [{ address: '10.0.0.1', conditions: { ready: false } }]),
    slice('web-b', [{ address: '10.0.0.1', conditions: { ready: true } }]),
  ]);
  t.is(result.model?.endpoints.length, 2);
  t.deepEqual(
    eligibleHosts(result.model!, result.model!.ports[0]!).map((h) => [h.address, h.port, h.health]),
    [['10.0.0.1', 8080, 'HEALTHY']],
  );
});

test('keys: slices by their service-name label, objects by namespace/name', (t) => {
  t.is(serviceKeyOfSlice(slice('web-a', [])), 'shop/web');
  t.is(
    serviceKeyOfSlice({ metadata: { namespace: 'shop', name: 'x' }, addressType: 'IPv4', endpoints: [] }),
    undefined,
  );
  t.is(objectKey({ metadata: { namespace: 'shop', name: 'web' } }), 'shop/web');
  t.is(objectKey({ metadata: { name: 'web' } }), undefined);
});

test('hints.forZones reaches the model as zone names; empty or malformed hints read as none', (t) => {
  const result = translateService(service([httpPort]), [
    slice('web-a', [
      {
        address: '10.0.0.1',
        extra: { zone: 'zone-a', hints: { forZones: [{ name: 'zone-a' }, { name: 'zone-c' }] } },
      },
      { address: '10.0.0.2', extra: { zone: 'zone-b', hints: { forZones: [] } } },
      { address: '10.0.0.3', extra: { zone: 'zone-b', hints: { forZones: [null, { name: '' }] } } },
      { address: '10.0.0.4', extra: { zone: 'zone-b', hints: null } },
    ]),
  ]);
  t.deepEqual(
    result.model?.endpoints.map((e) => [e.addresses[0], e.forZones]),
    [
      ['10.0.0.1', ['zone-a', 'zone-c']],
      ['10.0.0.2', undefined],
      ['10.0.0.3', undefined],
      ['10.0.0.4', undefined],
    ],
  );
  t.false(
    'forZones' in (result.model?.endpoints[1] ?? {}),
    'absent, not undefined: fingerprints stay as before',
  );
});
