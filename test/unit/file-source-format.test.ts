import { readFileSync } from 'node:fs';
import test from 'ava';
import { ErrorCode, isReadygateError } from '../../src/errors.js';
import { eligibleHosts } from '../../src/model/eligibility.js';
import type { ServiceModel } from '../../src/model/types.js';
import { formatIssuePath, parseEndpointsFile } from '../../src/sources/file-format.js';

test('the design example maps to the model; omitted fields stay absent', (t) => {
  const services = parseEndpointsFile(`
services:
- namespace: default
  name: web
  ports: [{name: http, port: 8080}]
  endpoints:
  - addresses: ["127.0.0.2"]
    conditions: {ready: true, serving: true, terminating: false}
    targetRef: {kind: Pod, name: web-6d4f}
    zone: a
  - addresses: ["127.0.0.3"]
`);
  t.deepEqual(services, [
    {
      namespace: 'default',
      name: 'web',
      ports: [{ key: 'http', port: 8080, targetPort: 8080 }],
      endpoints: [
        {
          addresses: ['127.0.0.2'],
          conditions: { ready: true, serving: true, terminating: false },
          targetRef: { kind: 'Pod', name: 'web-6d4f' },
          zone: 'a',
        },
        { addresses: ['127.0.0.3'], conditions: {} },
      ],
    },
  ] satisfies ServiceModel[]);
});

test('JSON works too; unnamed ports are keyed by number; every optional field carries through', (t) => {
  const services = parseEndpointsFile(
    JSON.stringify({
      services: [
        {
          namespace: 'payments',
          name: 'ledger',
          ports: [
            { port: 9090, appProtocol: 'kubernetes.io/h2c', protocol: 'TCP' },
            { name: 'metrics', port: 9100 },
          ],
          endpoints: [
            {
              addresses: ['::1', '127.0.0.9'],
              conditions: { ready: null, serving: false, terminating: true },
              targetRef: { kind: 'Pod', name: 'ledger-0', namespace: 'payments', uid: 'u-1' },
              zone: 'z',
              nodeName: 'node-1',
              hostname: 'ledger-0',
            },
          ],
        },
      ],
    }),
  );
  t.deepEqual(services[0]?.ports, [
    { key: '9090', port: 9090, targetPort: 9090, appProtocol: 'kubernetes.io/h2c' },
    { key: 'metrics', port: 9100, targetPort: 9100 },
  ]);
  t.deepEqual(services[0]?.endpoints[0], {
    addresses: ['::1', '127.0.0.9'],
    conditions: { serving: false, terminating: true },
    targetRef: { kind: 'Pod', name: 'ledger-0', namespace: 'payments', uid: 'u-1' },
    zone: 'z',
    nodeName: 'node-1',
    hostname: 'ledger-0',
  });
});

test("a service without endpoints (absent, [] or kubectl's null) and an empty services list are valid", (t) => {
  t.deepEqual(parseEndpointsFile('services: []'), []);
  for (const endpoints of ['endpoints: []', 'endpoints: null', 'endpoints:']) {
    t.deepEqual(
      parseEndpointsFile(`services: [{namespace: a, name: b, ports: [{port: 80}], ${endpoints}}]`)[0]
        ?.endpoints,
      [],
    );
  }
  t.deepEqual(parseEndpointsFile('services: [{namespace: a, name: b, ports: [{port: 80}]}]'), [
    { namespace: 'a', name: 'b', ports: [{ key: '80', port: 80, targetPort: 80 }], endpoints: [] },
  ]);
});

test('the shipped example parses and gives the documented health per host', (t) => {
  const services = parseEndpointsFile(
    readFileSync(new URL('../../examples/endpoints.yaml', import.meta.url), 'utf8'),
  );
  t.deepEqual(
    services.map((s) => `${s.namespace}/${s.name}`),
    ['default/web', 'payments/ledger'],
  );
  const hosts = services.map((service) =>
    eligibleHosts(service, service.ports[0]!).map((h) => `${h.address}:${h.port} ${h.health}`),
  );
  t.deepEqual(hosts, [
    ['127.0.0.2:8080 HEALTHY', '127.0.0.3:8080 HEALTHY', '127.0.0.4:8080 DRAINING'],
    ['127.0.0.5:9090 HEALTHY'],
  ]);
});

const svc = (body: string): string =>
  `services:\n- {namespace: default, name: web, ports: [{port: 80}], ${body}}`;

const invalidCases: [string, string, string][] = [
  ['empty file', '', 'the file is empty (expected a "services" list)'],
  ['a list at the top', '- a', 'expected object, received array'],
  ['misspelt top-level key', 'servics: []', 'unknown field "servics"'],
  ['services not a list', 'services: {}', 'services: expected array, received object'],
  [
    'missing name',
    'services: [{namespace: a, ports: [{port: 80}]}]',
    'services[0].name: missing (expected string)',
  ],
  [
    'addresses not a list',
    svc('endpoints: [{addresses: ["127.0.0.1"]}, {addresses: ["127.0.0.2"]}, {addresses: "127.0.0.3"}]'),
    'services[0].endpoints[2].addresses: expected array, received string',
  ],
  [
    'host name instead of an IP',
    svc('endpoints: [{addresses: ["web.local"]}]'),
    'services[0].endpoints[0].addresses[0]: must be an IP address (Envoy load assignments take addresses, not host names)',
  ],
  [
    'no addresses',
    svc('endpoints: [{addresses: []}]'),
    'services[0].endpoints[0].addresses: needs at least one address',
  ],
  [
    'misspelt conditions',
    svc('endpoints: [{addresses: ["127.0.0.1"], condtions: {ready: false}}]'),
    'services[0].endpoints[0]: unknown field "condtions"',
  ],
  [
    'condition not a boolean',
    svc('endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: "yes"}}]'),
    'services[0].endpoints[0].conditions.ready: expected boolean, received string',
  ],
  [
    'unknown condition',
    svc('endpoints: [{addresses: ["127.0.0.1"], conditions: {healthy: true}}]'),
    'services[0].endpoints[0].conditions: unknown field "healthy"',
  ],
  [
    'targetRef without a name',
    svc('endpoints: [{addresses: ["127.0.0.1"], targetRef: {kind: Pod}}]'),
    'services[0].endpoints[0].targetRef.name: missing (expected string)',
  ],
  [
    'port out of range',
    'services: [{namespace: a, name: b, ports: [{port: 70000}]}]',
    'services[0].ports[0].port: port must be 1-65535',
  ],
  [
    'port not an integer',
    'services: [{namespace: a, name: b, ports: [{port: 80.5}]}]',
    'services[0].ports[0].port: port must be an integer',
  ],
  [
    'port given as a string',
    'services: [{namespace: a, name: b, ports: [{port: "80"}]}]',
    'services[0].ports[0].port: expected number, received string',
  ],
  [
    'no ports',
    'services: [{namespace: a, name: b, ports: []}]',
    'services[0].ports: needs at least one port',
  ],
  [
    'numeric port name',
    'services: [{namespace: a, name: b, ports: [{name: "80", port: 80}]}]',
    'services[0].ports[0].name: port name must contain a letter',
  ],
  [
    'UDP port',
    'services: [{namespace: a, name: b, ports: [{port: 53, protocol: UDP}]}]',
    'services[0].ports[0].protocol: only TCP is supported',
  ],
  [
    'bad namespace',
    'services: [{namespace: Default, name: b, ports: [{port: 80}]}]',
    "services[0].namespace: namespace must be lowercase letters, digits and '-' (a DNS label)",
  ],
  [
    'duplicate service',
    'services:\n- {namespace: a, name: b, ports: [{port: 80}]}\n- {namespace: a, name: c, ports: [{port: 80}]}\n- {namespace: a, name: b, ports: [{port: 81}]}',
    'services[2]: duplicate service a/b (also services[0])',
  ],
  [
    'duplicate named port',
    'services: [{namespace: a, name: b, ports: [{name: http, port: 80}, {name: http, port: 81}]}]',
    'services[0].ports[1]: duplicate port key "http" (also ports[0])',
  ],
  [
    'duplicate unnamed port',
    'services: [{namespace: a, name: b, ports: [{port: 80}, {name: web, port: 81}, {port: 80}]}]',
    'services[0].ports[2]: duplicate port key "80" (also ports[0])',
  ],
  [
    'YAML syntax',
    'services: [',
    'not valid YAML or JSON: Flow sequence in block collection must be sufficiently indented and end with a ] at line 1, column 12',
  ],
  [
    // Starts like JSON, is not strict JSON: the YAML parser decides, and its message (with position) is reported.
    'broken JSON',
    '{"services": [}',
    'not valid YAML or JSON: Flow sequence in block collection must be sufficiently indented and end with a ] at line 1, column 15',
  ],
  [
    'duplicate YAML key',
    'services: []\nservices: []',
    'not valid YAML or JSON: Map keys must be unique at line 2, column 1',
  ],
];

for (const [name, text, reason] of invalidCases) {
  test(`rejected: ${name}`, (t) => {
    const error = t.throws(() => parseEndpointsFile(text));
    t.true(isReadygateError(error, ErrorCode.SOURCE_FILE_INVALID));
    t.is(error.message, reason);
  });
}

test('formatIssuePath', (t) => {
  t.is(formatIssuePath([]), '');
  t.is(formatIssuePath(['services', 0, 'endpoints', 2, 'addresses']), 'services[0].endpoints[2].addresses');
});

test('a document starting with { is read as JSON, or as YAML flow style when it is not strict JSON', (t) => {
  const service = { namespace: 'default', name: 'web', ports: [{ name: 'http', port: 8080 }] };
  const expected = [
    {
      namespace: 'default',
      name: 'web',
      ports: [{ key: 'http', port: 8080, targetPort: 8080 }],
      endpoints: [],
    },
  ];
  t.deepEqual(parseEndpointsFile(`  \n${JSON.stringify({ services: [service] }, null, 2)}`), expected);
  // YAML flow style with a comment and unquoted keys: not JSON, still a valid endpoints file.
  t.deepEqual(
    parseEndpointsFile(
      '{services: [{namespace: default, name: web, ports: [{name: http, port: 8080}]}]} # flow\n',
    ),
    expected,
  );
});
