import test from 'ava';
import { silentLogger } from '../../src/log.js';
import { EndpointStore } from '../../src/model/store.js';
import type { ServiceModel } from '../../src/model/types.js';
import { codecFor } from '../../src/protos/envoy-protos.js';
import { ResourceCache, type CacheChange } from '../../src/xds/cache.js';
import { TranslationPipeline } from '../../src/xds/control-plane.js';
import { parseNodeProfile, type SidecarProfile } from '../../src/xds/node-metadata.js';
import { OutboundCatalog } from '../../src/xds/outbound-catalog.js';
import { OutboundViews } from '../../src/xds/outbound-views.js';
import { MessageName, TypeUrl } from '../../src/xds/resource-types.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/xds/translate.js';
import { outboundDomains } from '../../src/xds/translate-outbound.js';
import { endpoint, service } from '../helpers/model-fixtures.js';

function profile(egress?: string, namespace?: string): SidecarProfile {
  const fields: Record<string, { string_value?: string; number_value?: number }> = {
    'readygate.io/outbound-port': { number_value: 15001 },
  };
  if (egress !== undefined) fields['readygate.io/egress'] = { string_value: egress };
  if (namespace !== undefined) fields['readygate.io/namespace'] = { string_value: namespace };
  const parsed = parseNodeProfile({ fields });
  if (parsed.mode !== 'sidecar') throw new Error(parsed.problems.join('; '));
  return parsed;
}

function twoPorts(name: string, ports: number[], namespace = 'default'): ServiceModel {
  return {
    namespace,
    name,
    ports: ports.map((port) => ({ key: `p${port}`, port, targetPort: port })),
    endpoints: [endpoint('127.0.0.2')],
  };
}

test('Host forms: bare names in the proxy namespace only; port-less forms mean port 80 or the only port', (t) => {
  const one = { namespace: 'shop', name: 'web', ports: [{ port: 8080, cluster: 'shop/web:http' }] };
  t.deepEqual(outboundDomains(one, 8080, true), [
    'web',
    'web:8080',
    'web.shop',
    'web.shop:8080',
    'web.shop.svc',
    'web.shop.svc:8080',
    'web.shop.svc.cluster.local',
    'web.shop.svc.cluster.local:8080',
  ]);
  t.deepEqual(outboundDomains(one, 8080, false), [
    'web.shop',
    'web.shop:8080',
    'web.shop.svc',
    'web.shop.svc:8080',
    'web.shop.svc.cluster.local',
    'web.shop.svc.cluster.local:8080',
  ]);
  const with80 = {
    namespace: 'shop',
    name: 'web',
    ports: [
      { port: 80, cluster: 'shop/web:http' },
      { port: 9090, cluster: 'shop/web:admin' },
    ],
  };
  t.deepEqual(outboundDomains(with80, 80, false).slice(0, 2), ['web.shop', 'web.shop:80']);
  t.deepEqual(outboundDomains(with80, 9090, false).slice(0, 2), ['web.shop:9090', 'web.shop.svc:9090']);
  const noDefault = { ...with80, ports: [with80.ports[1]!, { port: 9091, cluster: 'shop/web:b' }] };
  t.false(outboundDomains(noDefault, 9090, false).includes('web.shop'));
  t.false(outboundDomains(noDefault, 9091, false).includes('web.shop'));
});

function setup(services: ServiceModel[]) {
  const store = new EndpointStore();
  store.replaceAll(services);
  const cache = new ResourceCache();
  const catalog = new OutboundCatalog();
  const views = new OutboundViews(cache, catalog);
  const pipeline = new TranslationPipeline(store, cache, DEFAULT_TRANSLATE_OPTIONS, silentLogger, catalog);
  return { store, cache, catalog, views, pipeline };
}

interface DecodedRoute {
  name: string;
  virtual_hosts: {
    name: string;
    domains: string[];
    retry_policy?: {
      retry_on: string;
      num_retries: { value: number };
      retry_host_predicate: { name: string }[];
      host_selection_retry_max_attempts: string | number;
    };
  }[];
}

function route(bytes: Buffer): DecodedRoute {
  return codecFor<DecodedRoute>(MessageName.ROUTE_CONFIGURATION).decode(bytes);
}

test('a scoped view holds exactly the matching clusters, endpoints and virtual hosts', (t) => {
  const { cache, views } = setup([
    service('web', [endpoint('127.0.0.2')]),
    service('api', [endpoint('127.0.0.3')]),
    service('web', [endpoint('127.0.0.4')], {}, 'other'),
  ]);
  const changes: CacheChange[] = [];
  const view = views.acquire(profile('default/web,other/*'), { handleCacheChange: (c) => changes.push(c) });
  t.deepEqual([...view.resources(TypeUrl.CLUSTER).keys()].sort(), ['default/web:http', 'other/web:http']);
  t.deepEqual([...view.resources(TypeUrl.ENDPOINT).keys()].sort(), ['default/web:http', 'other/web:http']);
  t.is(
    view.resources(TypeUrl.CLUSTER).get('default/web:http'),
    cache.get(TypeUrl.CLUSTER, 'default/web:http'),
  );
  t.not(view.typeVersion(TypeUrl.CLUSTER), cache.typeVersion(TypeUrl.CLUSTER));
  const decoded = route(view.resources(TypeUrl.ROUTE).get('readygate.outbound')!.body);
  t.is(decoded.name, 'readygate.outbound');
  t.deepEqual(
    decoded.virtual_hosts.map((v) => [v.name, v.domains.length]),
    [
      ['default/web:http', 8],
      ['other/web:http', 6],
      ['readygate.unknown-host', 1],
    ],
  );
  // Each Service's routes retry what never reached an app, on another host, as the gateways do.
  const policy = decoded.virtual_hosts[0]!.retry_policy!;
  t.is(policy.retry_on, 'connect-failure,refused-stream,reset-before-request');
  t.is(policy.num_retries.value, 2);
  t.deepEqual(
    policy.retry_host_predicate.map((p) => p.name),
    ['envoy.retry_host_predicates.previous_hosts'],
  );
  t.is(Number(policy.host_selection_retry_max_attempts), 3);
  t.is(decoded.virtual_hosts[2]!.retry_policy, undefined, 'the unknown-host answer has nothing to retry');
  t.deepEqual([...view.resources(TypeUrl.LISTENER).keys()], ['readygate.outbound']);
  t.true(view.wildcardReceivesAll(TypeUrl.LISTENER));
  t.false(cache.wildcardReceivesAll(TypeUrl.LISTENER));
});

test('an unscoped view shares the cache’s own clusters and whole-set bodies', (t) => {
  const { cache, views } = setup([service('web', [endpoint('127.0.0.2')])]);
  const view = views.acquire(profile(), { handleCacheChange: () => undefined });
  t.is(view.resources(TypeUrl.CLUSTER), cache.resources(TypeUrl.CLUSTER));
  t.is(view.typeVersion(TypeUrl.ENDPOINT), cache.typeVersion(TypeUrl.ENDPOINT));
  const all = [...cache.resources(TypeUrl.CLUSTER).values()];
  const version = cache.typeVersion(TypeUrl.CLUSTER);
  t.is(
    view.sotwBody(TypeUrl.CLUSTER, version, all, true),
    cache.sotwBody(TypeUrl.CLUSTER, version, all, true),
  );
});

test('a port renumbered changes no cluster but every view’s routes, sent straight to their streams', (t) => {
  const { store, views, pipeline } = setup([
    service('web', [endpoint('127.0.0.2')]),
    service('api', [endpoint('127.0.0.3')]),
  ]);
  const scopedChanges: CacheChange[] = [];
  const scoped = views.acquire(profile('default/api'), { handleCacheChange: (c) => scopedChanges.push(c) });
  const openChanges: CacheChange[] = [];
  views.acquire(profile(), { handleCacheChange: (c) => openChanges.push(c) });
  const routeVersion = scoped.typeVersion(TypeUrl.ROUTE);
  const summary = (change: CacheChange) =>
    [...change].map(([type, c]) => `${type.split('.').pop()} ${[...c.changed].join()}`).sort();

  // web's endpoints: only the open view sees it; no view's routes change.
  store.upsert(service('web', [endpoint('127.0.0.2'), endpoint('127.0.0.5')]));
  pipeline.flush();
  // (Cache changes reach views through the ADS service, not wired here: only the catalog's own events.)
  t.deepEqual(scopedChanges, []);
  t.deepEqual(openChanges, []);
  t.is(scoped.typeVersion(TypeUrl.ROUTE), routeVersion);

  // A renumbered port moves no resource but the routes: the catalog tells the views' streams directly.
  store.upsert({
    ...service('api', [endpoint('127.0.0.3')]),
    ports: [{ key: 'http', port: 9090, targetPort: 8080 }],
  });
  pipeline.flush();
  t.deepEqual(scopedChanges.map(summary), [['RouteConfiguration readygate.outbound']]);
  t.deepEqual(openChanges.map(summary), [['RouteConfiguration readygate.outbound']]);
  t.true(
    route(scoped.resources(TypeUrl.ROUTE).get('readygate.outbound')!.body).virtual_hosts[0]!.domains.includes(
      'api:9090',
    ),
  );
});

test('views apply cache changes: a scoped view keeps only its part of each', (t) => {
  const { store, cache, views, pipeline } = setup([
    service('web', [endpoint('127.0.0.2')]),
    service('api', [endpoint('127.0.0.3')]),
  ]);
  const scoped = views.acquire(profile('default/api'), { handleCacheChange: () => undefined });
  const seen: CacheChange[] = [];
  cache.on('change', (change) => {
    views.apply(change);
    seen.push(scoped.changeOf(change));
  });
  store.upsert(service('web', [endpoint('127.0.0.2'), endpoint('127.0.0.5')]));
  pipeline.flush();
  t.is(seen.length, 1);
  t.is(seen[0]!.size, 0);
  store.upsert(service('api', [endpoint('127.0.0.6')]));
  pipeline.flush();
  t.deepEqual(
    [...seen[1]!].map(([type, c]) => [type, [...c.changed], [...c.removed]]),
    [[TypeUrl.ENDPOINT, ['default/api:http'], []]],
  );
  store.upsert(twoPorts('shop', [80, 81]));
  store.delete('default/api');
  pipeline.flush();
  t.deepEqual(
    [...seen[2]!].map(([type, c]) => [type, [...c.changed], [...c.removed]]),
    [
      [TypeUrl.CLUSTER, [], ['default/api:http']],
      [TypeUrl.ENDPOINT, [], ['default/api:http']],
      [TypeUrl.ROUTE, ['readygate.outbound'], []],
    ],
  );
  t.deepEqual([...scoped.resources(TypeUrl.CLUSTER).keys()], []);
  t.deepEqual(
    route(scoped.resources(TypeUrl.ROUTE).get('readygate.outbound')!.body).virtual_hosts.map((v) => v.name),
    ['readygate.unknown-host'],
  );
});

test('views are shared per profile and dropped with their last stream', (t) => {
  const { views } = setup([service('web', [endpoint('127.0.0.2')])]);
  const a = { handleCacheChange: () => undefined };
  const b = { handleCacheChange: () => undefined };
  const first = views.acquire(profile('default/web,default/api'), a);
  const second = views.acquire(profile('default/api, default/web'), b);
  t.is(first, second);
  t.is(views.size, 1);
  views.acquire(profile('default/web', 'shop'), a);
  t.is(views.size, 2);
  views.release(first, a);
  t.is(views.size, 2);
  views.release(first, b);
  t.is(views.size, 1);
});
