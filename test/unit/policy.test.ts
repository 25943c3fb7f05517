import test from 'ava';
import { parsePolicy, policyAnnotations, problemLabel, PolicyKey } from '../../src/model/policy.js';
import { clusterFor, DEFAULT_TRANSLATE_OPTIONS, translateService } from '../../src/xds/translate.js';
import { ResourceCache } from '../../src/xds/cache.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { endpoint, service } from '../helpers/model-fixtures.js';

const valid: [string, Record<string, string>, object][] = [
  ['nothing set', {}, {}],
  ['connect timeout in ms', { [PolicyKey.CONNECT_TIMEOUT]: '250ms' }, { connectTimeoutMs: 250 }],
  ['connect timeout in fractional s', { [PolicyKey.CONNECT_TIMEOUT]: '1.5s' }, { connectTimeoutMs: 1500 }],
  ['idle timeout in minutes', { [PolicyKey.IDLE_TIMEOUT]: '2m' }, { idleTimeoutMs: 120_000 }],
  [
    'slow start with aggression',
    { [PolicyKey.SLOW_START]: '30s', [PolicyKey.SLOW_START_AGGRESSION]: '1.5' },
    { slowStartWindowMs: 30_000, slowStartAggression: 1.5 },
  ],
  [
    'slow start with least-request',
    { [PolicyKey.SLOW_START]: '10s', [PolicyKey.LB_POLICY]: 'least-request' },
    { slowStartWindowMs: 10_000, lbPolicy: 'least-request' },
  ],
  [
    'breakers',
    {
      [PolicyKey.MAX_CONNECTIONS]: '10',
      [PolicyKey.MAX_PENDING_REQUESTS]: '5',
      [PolicyKey.MAX_REQUESTS]: '20',
    },
    { maxConnections: 10, maxPendingRequests: 5, maxRequests: 20 },
  ],
  [
    'outlier overrides, 0 % ejection allowed',
    { [PolicyKey.OUTLIER_CONSECUTIVE_GATEWAY_ERRORS]: '7', [PolicyKey.OUTLIER_MAX_EJECTION_PERCENT]: '0' },
    { outlierConsecutiveGatewayErrors: 7, outlierMaxEjectionPercent: 0 },
  ],
  [
    'ring hash on a header',
    { [PolicyKey.LB_POLICY]: 'ring-hash', [PolicyKey.HASH_HEADER]: 'x-user' },
    { lbPolicy: 'ring-hash', hashHeader: 'x-user' },
  ],
  ['random', { [PolicyKey.LB_POLICY]: 'random' }, { lbPolicy: 'random' }],
  ['other prefixes are not ours', { 'example.com/connect-timeout': 'banana' }, {}],
];

for (const [title, annotations, overrides] of valid) {
  test(`valid: ${title}`, (t) => {
    t.deepEqual(parsePolicy(annotations), { overrides, problems: [] });
  });
}

const invalid: [string, Record<string, string>, object, string[]][] = [
  [
    'banana',
    { [PolicyKey.CONNECT_TIMEOUT]: 'banana' },
    {},
    [
      'readygate.io/connect-timeout: "banana" is not a duration (a number with ms, s, m or h, for example 250ms or 2s)',
    ],
  ],
  [
    'negative duration',
    { [PolicyKey.IDLE_TIMEOUT]: '-5s' },
    {},
    ['readygate.io/idle-timeout: "-5s" is negative'],
  ],
  [
    'duration out of range',
    { [PolicyKey.CONNECT_TIMEOUT]: '2m' },
    {},
    ['readygate.io/connect-timeout: "2m" is out of range (1ms to 1m)'],
  ],
  [
    'sub-millisecond duration',
    { [PolicyKey.CONNECT_TIMEOUT]: '0.5ms' },
    {},
    ['readygate.io/connect-timeout: "0.5ms" is not a whole number of milliseconds'],
  ],
  [
    'negative count',
    { [PolicyKey.MAX_REQUESTS]: '-1' },
    {},
    ['readygate.io/max-requests: "-1" is out of range (1 to 4294967295)'],
  ],
  [
    'zero breaker',
    { [PolicyKey.MAX_CONNECTIONS]: '0' },
    {},
    ['readygate.io/max-connections: "0" is out of range (1 to 4294967295)'],
  ],
  [
    'fractional count',
    { [PolicyKey.MAX_PENDING_REQUESTS]: '1.5' },
    {},
    ['readygate.io/max-pending-requests: "1.5" is not a whole number'],
  ],
  [
    'percent out of range, the valid key next to it still applies',
    { [PolicyKey.OUTLIER_MAX_EJECTION_PERCENT]: '150', [PolicyKey.MAX_REQUESTS]: '9' },
    { maxRequests: 9 },
    ['readygate.io/outlier-max-ejection-percent: "150" is out of range (0 to 100)'],
  ],
  [
    'unknown balancer',
    { [PolicyKey.LB_POLICY]: 'fastest' },
    {},
    ['readygate.io/lb-policy: "fastest" is not one of round-robin, least-request, random, ring-hash'],
  ],
  [
    'ring hash without a header falls back to round-robin',
    { [PolicyKey.LB_POLICY]: 'ring-hash' },
    {},
    ['readygate.io/lb-policy: ring-hash needs readygate.io/hash-header (the header to hash on)'],
  ],
  [
    'ring hash with an invalid header reports the header only',
    { [PolicyKey.LB_POLICY]: 'ring-hash', [PolicyKey.HASH_HEADER]: 'X User' },
    {},
    ['readygate.io/hash-header: "X User" is not a lowercase HTTP header name'],
  ],
  [
    'hash header without ring hash',
    { [PolicyKey.HASH_HEADER]: 'x-user' },
    {},
    ['readygate.io/hash-header: only applies with readygate.io/lb-policy: ring-hash'],
  ],
  [
    'slow start with random',
    { [PolicyKey.SLOW_START]: '10s', [PolicyKey.LB_POLICY]: 'random' },
    { lbPolicy: 'random' },
    ['readygate.io/slow-start: Envoy ramps only round-robin and least-request, not random'],
  ],
  [
    'aggression without slow start',
    { [PolicyKey.SLOW_START_AGGRESSION]: '2' },
    {},
    ['readygate.io/slow-start-aggression: only applies with readygate.io/slow-start'],
  ],
  [
    'aggression zero',
    { [PolicyKey.SLOW_START]: '10s', [PolicyKey.SLOW_START_AGGRESSION]: '0' },
    { slowStartWindowMs: 10_000 },
    ['readygate.io/slow-start-aggression: "0" is out of range (0.01 to 10)'],
  ],
  [
    'unknown readygate.io/ key',
    { 'readygate.io/conect-timeout': '1s' },
    {},
    [
      'readygate.io/conect-timeout: unknown readygate.io/ annotation (known: readygate.io/connect-timeout, readygate.io/hash-header, readygate.io/idle-timeout, readygate.io/lb-policy, readygate.io/max-connections, readygate.io/max-pending-requests, readygate.io/max-requests, readygate.io/outlier-consecutive-gateway-errors, readygate.io/outlier-max-ejection-percent, readygate.io/slow-start, readygate.io/slow-start-aggression, readygate.io/zone-aware)',
    ],
  ],
  ['zone-aware true', { [PolicyKey.ZONE_AWARE]: 'true' }, { zoneAware: true }, []],
  // false is the default, so it leaves no override: the output is the same as without the key.
  ['zone-aware false', { [PolicyKey.ZONE_AWARE]: 'false' }, {}, []],
  [
    'zone-aware takes only true or false',
    { [PolicyKey.ZONE_AWARE]: 'yes' },
    {},
    ['readygate.io/zone-aware: "yes" is not true or false'],
  ],
  [
    'a huge value is quoted short',
    { [PolicyKey.CONNECT_TIMEOUT]: 'x'.repeat(10_000) },
    {},
    [
      `readygate.io/connect-timeout: "${'x'.repeat(64)}…" is not a duration (a number with ms, s, m or h, for example 250ms or 2s)`,
    ],
  ],
];

for (const [title, annotations, overrides, messages] of invalid) {
  test(`invalid: ${title}`, (t) => {
    const parsed = parsePolicy(annotations);
    t.deepEqual(parsed.overrides, overrides);
    t.deepEqual(
      parsed.problems.map((p) => p.message),
      messages,
    );
  });
}

test('policyAnnotations keeps only readygate.io/ keys, sorted; none is undefined', (t) => {
  t.deepEqual(
    policyAnnotations({
      'readygate.io/slow-start': '5s',
      'kubectl.kubernetes.io/x': 'y',
      'readygate.io/a': '1',
    }),
    { 'readygate.io/a': '1', 'readygate.io/slow-start': '5s' },
  );
  t.is(policyAnnotations({ a: 'b' }), undefined);
  t.is(policyAnnotations(null), undefined);
});

test('problem labels are bounded: unknown keys fold into one label', (t) => {
  t.is(problemLabel(PolicyKey.MAX_REQUESTS), PolicyKey.MAX_REQUESTS);
  t.is(problemLabel('readygate.io/anything-at-all'), 'unknown');
});

test('every override lands in its Envoy field', (t) => {
  const port = { key: 'http', port: 80, targetPort: 80 };
  const cluster = clusterFor('ns/web:http', port, DEFAULT_TRANSLATE_OPTIONS, {
    connectTimeoutMs: 250,
    idleTimeoutMs: 4000,
    slowStartWindowMs: 30_000,
    slowStartAggression: 2,
    maxConnections: 10,
    maxPendingRequests: 5,
    maxRequests: 20,
    outlierConsecutiveGatewayErrors: 7,
    outlierMaxEjectionPercent: 20,
    lbPolicy: 'least-request',
  });
  t.deepEqual(cluster['connect_timeout'], { seconds: 0, nanos: 250_000_000 });
  t.is(cluster['lb_policy'], 'LEAST_REQUEST');
  t.deepEqual(cluster['least_request_lb_config'], {
    slow_start_config: {
      slow_start_window: { seconds: 30, nanos: 0 },
      aggression: { default_value: 2, runtime_key: 'readygate.slow_start.aggression' },
    },
  });
  t.deepEqual(cluster['circuit_breakers'], {
    thresholds: [
      {
        retry_budget: { budget_percent: { value: 20 }, min_retry_concurrency: { value: 50 } },
        max_connections: { value: 10 },
        max_pending_requests: { value: 5 },
        max_requests: { value: 20 },
      },
    ],
  });
  const outlier = cluster['outlier_detection'] as Record<string, unknown>;
  t.deepEqual(outlier['consecutive_gateway_failure'], { value: 7 });
  t.deepEqual(outlier['max_ejection_percent'], { value: 20 });
  const options = cluster['typed_extension_protocol_options'] as Record<string, { value: Buffer }>;
  t.truthy(options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions']);
});

test('default clusters carry no lb_policy, connection breakers or protocol options, only the retry budget; ring hash puts the hash policy on the gRPC route', (t) => {
  const port = { key: 'http', port: 80, targetPort: 80 };
  const plain = clusterFor('ns/web:http', port, DEFAULT_TRANSLATE_OPTIONS);
  t.deepEqual(plain['circuit_breakers'], {
    thresholds: [{ retry_budget: { budget_percent: { value: 20 }, min_retry_concurrency: { value: 50 } } }],
  });
  t.deepEqual(Object.keys(plain).sort(), [
    'circuit_breakers',
    'common_lb_config',
    'connect_timeout',
    'eds_cluster_config',
    'name',
    'outlier_detection',
    'type',
  ]);
  const drafts = translateService({
    ...service('web', [endpoint('10.0.0.1')]),
    annotations: { [PolicyKey.LB_POLICY]: 'ring-hash', [PolicyKey.HASH_HEADER]: 'x-user' },
  });
  const route = drafts.find((d) => d.typeUrl === TypeUrl.ROUTE)!.message;
  t.deepEqual((route['virtual_hosts'] as { routes: { route: unknown }[] }[])[0]!.routes[0]!.route, {
    cluster: 'default/web:http',
    hash_policy: [{ header: { header_name: 'x-user' } }],
  });
  const cluster = drafts.find((d) => d.typeUrl === TypeUrl.CLUSTER)!.message;
  t.is(cluster['lb_policy'], 'RING_HASH');
});

test('encode-once: an endpoint change re-sends the CLA only; a policy change re-sends the cluster only', (t) => {
  const cache = new ResourceCache();
  const annotations = { [PolicyKey.MAX_REQUESTS]: '50' };
  const first = { ...service('web', [endpoint('10.0.0.1')]), annotations };
  cache.update(translateService(first), []);
  const clusterVersion = cache.get(TypeUrl.CLUSTER, 'default/web:http')!.version;
  const endpointVersion = cache.get(TypeUrl.ENDPOINT, 'default/web:http')!.version;

  cache.update(translateService({ ...service('web', [endpoint('10.0.0.2')]), annotations }), []);
  t.is(cache.get(TypeUrl.CLUSTER, 'default/web:http')!.version, clusterVersion);
  t.not(cache.get(TypeUrl.ENDPOINT, 'default/web:http')!.version, endpointVersion);
  const endpointVersion2 = cache.get(TypeUrl.ENDPOINT, 'default/web:http')!.version;

  cache.update(
    translateService({
      ...service('web', [endpoint('10.0.0.2')]),
      annotations: { [PolicyKey.MAX_REQUESTS]: '60' },
    }),
    [],
  );
  t.not(cache.get(TypeUrl.CLUSTER, 'default/web:http')!.version, clusterVersion);
  t.is(cache.get(TypeUrl.ENDPOINT, 'default/web:http')!.version, endpointVersion2);
});
