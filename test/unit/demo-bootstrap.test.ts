import test from 'ava';
import { DEMO_RETRY_POLICY, demoBootstrap, fillTemplate } from '../../src/demo/bootstrap.js';
import { EXTPROC_RESPONSE_ATTRIBUTES } from '../../src/extproc/attributes.js';
import { firstEndpointAddress, valueAt } from '../helpers/gateway-bootstrap.js';

test('fillTemplate: a whole placeholder takes the value’s type, an embedded one becomes text', (t) => {
  const filled = fillTemplate(
    { port: '{{PORT}}', list: '{{LIST}}', text: 'node-{{ID}}', nested: [{ keep: 1, flag: true }] },
    { PORT: 7, LIST: ['a', 'b'], ID: 'x' },
  );
  t.deepEqual(filled, { port: 7, list: ['a', 'b'], text: 'node-x', nested: [{ keep: 1, flag: true }] });
});

test('fillTemplate: a placeholder without a value, or a list inside text, is an error', (t) => {
  t.throws(() => fillTemplate({ a: '{{MISSING}}' }, {}), { message: /\{\{MISSING\}\} has no value/ });
  t.throws(() => fillTemplate({ a: 'x-{{LIST}}' }, { LIST: ['a'] }), { message: /is a list/ });
});

const values = { nodeId: 'n', cluster: 'default/web:http', xdsHost: '127.0.0.1', xdsPort: 18000 };

test('readygate bootstrap: CDS over ADS, runtime flags, local replies mapped, ext_proc on 5xx with the attributes ext_proc reads', (t) => {
  const bootstrap = demoBootstrap('readygate', { ...values, extprocHost: '127.0.0.1', extprocPort: 18001 });
  t.deepEqual(valueAt(bootstrap, 'dynamic_resources', 'cds_config'), { ads: {}, resource_api_version: 'V3' });
  t.deepEqual(valueAt(bootstrap, 'layered_runtime', 'layers', 0, 'static_layer'), {
    'envoy.reloadable_features.skip_ext_proc_on_local_reply': false,
    'envoy.reloadable_features.router_filter_resetall_on_local_reply': true,
    'envoy.reloadable_features.ext_proc_graceful_grpc_close': true,
  });
  const hcm = valueAt(
    bootstrap,
    'static_resources',
    'listeners',
    0,
    'filter_chains',
    0,
    'filters',
    0,
    'typed_config',
  );
  const filters = valueAt(hcm, 'http_filters') as { name: string }[];
  t.deepEqual(
    filters.map((f) => f.name),
    ['readygate.ext_proc_5xx', 'envoy.filters.http.router'],
  );
  t.deepEqual(
    valueAt(filters[0], 'typed_config', 'extension_config', 'typed_config', 'response_attributes'),
    EXTPROC_RESPONSE_ATTRIBUTES,
  );
  const mappers = valueAt(hcm, 'local_reply_config', 'mappers') as { status_code: number }[];
  t.deepEqual(
    mappers.map((m) => m.status_code),
    [502, 504, 503],
  );
  t.is(valueAt(hcm, 'route_config', 'virtual_hosts', 0, 'routes', 0, 'route', 'cluster'), 'default/web:http');
  const clusters = valueAt(bootstrap, 'static_resources', 'clusters') as { name: string }[];
  t.deepEqual(
    clusters.map((c) => c.name),
    ['readygate_xds', 'readygate_extproc'],
  );
  t.is(firstEndpointAddress(clusters[1])['port_value'], 18001);
});

test('naive bootstrap: same route, only the router, its cluster static with Envoy defaults and EDS endpoints', (t) => {
  const bootstrap = demoBootstrap('naive', values);
  t.is(valueAt(bootstrap, 'dynamic_resources', 'cds_config'), undefined);
  t.is(valueAt(bootstrap, 'layered_runtime'), undefined);
  const hcm = valueAt(
    bootstrap,
    'static_resources',
    'listeners',
    0,
    'filter_chains',
    0,
    'filters',
    0,
    'typed_config',
  );
  t.deepEqual(
    (valueAt(hcm, 'http_filters') as { name: string }[]).map((f) => f.name),
    ['envoy.filters.http.router'],
  );
  t.is(valueAt(hcm, 'local_reply_config'), undefined);
  t.is(valueAt(hcm, 'route_config', 'virtual_hosts', 0, 'routes', 0, 'route', 'cluster'), 'default/web:http');
  // Today's baseline: Envoy's default, no retry.
  t.is(valueAt(hcm, 'route_config', 'virtual_hosts', 0, 'routes', 0, 'route', 'retry_policy'), undefined);
  const cluster = valueAt(bootstrap, 'static_resources', 'clusters', 0) as Record<string, unknown>;
  t.is(cluster['name'], 'default/web:http');
  t.is(cluster['type'], 'EDS');
  // Default panic threshold (50 %) and no health checks: nothing set.
  t.is(cluster['common_lb_config'], undefined);
  t.is(cluster['health_checks'], undefined);
});

const routeOf = (bootstrap: Record<string, unknown>): unknown =>
  valueAt(
    bootstrap,
    'static_resources',
    'listeners',
    0,
    'filter_chains',
    0,
    'filters',
    0,
    'typed_config',
    'route_config',
    'virtual_hosts',
    0,
    'routes',
    0,
    'route',
  );

test('ready-only and readygate bootstraps retry exactly what never reached an app, on another host', (t) => {
  const expected = {
    retry_on: 'connect-failure,refused-stream,reset-before-request',
    num_retries: 2,
    retry_host_predicate: [
      {
        name: 'envoy.retry_host_predicates.previous_hosts',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate',
        },
      },
    ],
    host_selection_retry_max_attempts: 3,
  };
  t.deepEqual(DEMO_RETRY_POLICY, expected);
  const readyOnly = demoBootstrap('ready-only', values);
  t.deepEqual(valueAt(routeOf(readyOnly), 'retry_policy'), expected);
  t.is(valueAt(readyOnly, 'node', 'cluster'), 'ready-only-demo');
  // Otherwise the naive template: a static EDS cluster with Envoy's defaults, no ext_proc.
  t.is(valueAt(readyOnly, 'dynamic_resources', 'cds_config'), undefined);
  const readygate = demoBootstrap('readygate', { ...values, extprocHost: '127.0.0.1', extprocPort: 18001 });
  t.deepEqual(valueAt(routeOf(readygate), 'retry_policy'), expected);
  t.is(valueAt(routeOf(readygate), 'timeout'), '5s');
  // (b)'s static cluster carries the retry budget (c)'s CDS clusters get from readygate; (a) none.
  const budget = { retry_budget: { budget_percent: { value: 20 }, min_retry_concurrency: 50 } };
  const staticCluster = (b: Record<string, unknown>) =>
    (valueAt(b, 'static_resources', 'clusters') as { name: string; circuit_breakers?: unknown }[]).find(
      (c) => c.name === 'default/web:http',
    );
  t.deepEqual(staticCluster(readyOnly)?.circuit_breakers, { thresholds: [budget] });
  t.is(staticCluster(demoBootstrap('naive', values))?.circuit_breakers, undefined);
  t.is(valueAt(demoBootstrap('naive', values), 'layered_runtime'), undefined);
});
