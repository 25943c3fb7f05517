/**
 * Zone-aware routing's pure parts (src/model/zones.ts, the priorities in src/xds/translate.ts) and its
 * encode-once shell (CachedResource.forZone, src/xds/zone-views.ts), without Envoy:
 * test/integration/zone-aware-envoy.test.ts drives the real one.
 */
import test from 'ava';
import { eligibleHosts } from '../../src/model/eligibility.js';
import type { EndpointModel, ServiceModel } from '../../src/model/types.js';
import { zoneTiers } from '../../src/model/zones.js';
import { codecFor } from '../../src/protos/envoy-protos.js';
import { parseEndpointsFile } from '../../src/sources/file-format.js';
import { silentLogger } from '../../src/log.js';
import { EndpointStore } from '../../src/model/store.js';
import { RoutingHistory } from '../../src/readiness/routing-history.js';
import { ResourceCache } from '../../src/xds/cache.js';
import { TranslationPipeline } from '../../src/xds/control-plane.js';
import { parseNodeProfile } from '../../src/xds/node-metadata.js';
import { OutboundCatalog } from '../../src/xds/outbound-catalog.js';
import { OutboundViews } from '../../src/xds/outbound-views.js';
import { MessageName, TypeUrl } from '../../src/xds/resource-types.js';
import { DEFAULT_TRANSLATE_OPTIONS, translateService } from '../../src/xds/translate.js';
import { nodeZone, ZoneViews } from '../../src/xds/zone-views.js';
import { endpoint, SERVING_TERMINATING, service } from '../helpers/model-fixtures.js';

const CLUSTER = 'default/web:http';

function at(address: string, zone: string, forZones?: string[], conditions = endpoint(address).conditions) {
  return { ...endpoint(address, conditions), zone, ...(forZones ? { forZones } : {}) } as EndpointModel;
}

function web(endpoints: EndpointModel[], annotations?: Record<string, string>): ServiceModel {
  return { ...service('web', endpoints), ...(annotations ? { annotations } : {}) };
}

const ZONE_AWARE = { 'readygate.io/zone-aware': 'true' };

function hostsOf(model: ServiceModel) {
  return eligibleHosts(model, model.ports[0]!, DEFAULT_TRANSLATE_OPTIONS.eligibility);
}

/** address → zone tier, as "local: … | remote: …". */
function tiers(model: ServiceModel, zone: string): string {
  const result = zoneTiers(hostsOf(model), zone);
  const list = (hosts: readonly { address: string }[]) => hosts.map((h) => h.address).join(',');
  return `${result.match} local: ${list(result.local)} | remote: ${list(result.remote)}`;
}

interface DecodedCla {
  endpoints?: { locality?: { zone?: string }; priority?: number; lb_endpoints?: unknown[] }[];
}

/** A CLA's localities as "zone@priority×hosts", in order. */
function shape(body: Buffer): string {
  const cla = codecFor<DecodedCla>(MessageName.CLUSTER_LOAD_ASSIGNMENT).decode(body);
  return (cla.endpoints ?? [])
    .map((l) => `${l.locality?.zone ?? ''}@${l.priority ?? 0}×${l.lb_endpoints?.length ?? 0}`)
    .join(' ');
}

test('by zone: the Envoy zone’s endpoints are local, the rest remote; no local endpoint means one tier', (t) => {
  const model = web([at('10.0.0.1', 'a'), at('10.0.0.2', 'b'), at('10.0.0.3', 'a'), at('10.0.0.4', 'c')]);
  t.is(tiers(model, 'a'), 'zone local: 10.0.0.1,10.0.0.3 | remote: 10.0.0.2,10.0.0.4');
  t.is(tiers(model, 'c'), 'zone local: 10.0.0.4 | remote: 10.0.0.1,10.0.0.2,10.0.0.3');
  t.is(tiers(model, 'z'), 'zone local:  | remote: 10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4');
});

test('hints: used when every ready endpoint has them, so a hinted endpoint of another zone is local', (t) => {
  const model = web([
    at('10.0.0.1', 'a', ['a']),
    at('10.0.0.2', 'a', ['a']),
    // The slice controller moved b's only endpoint's share to a zone without endpoints (c) and one
    // of a's to b: kube-proxy in b uses .3 only if hinted for b.
    at('10.0.0.3', 'b', ['c']),
    at('10.0.0.4', 'a', ['b']),
  ]);
  t.is(tiers(model, 'a'), 'hints local: 10.0.0.1,10.0.0.2 | remote: 10.0.0.3,10.0.0.4');
  t.is(tiers(model, 'b'), 'hints local: 10.0.0.4 | remote: 10.0.0.1,10.0.0.2,10.0.0.3');
  t.is(tiers(model, 'c'), 'hints local: 10.0.0.3 | remote: 10.0.0.1,10.0.0.2,10.0.0.4');
});

test('hints: one ready endpoint without hints voids them all (kube-proxy); zones decide instead', (t) => {
  const model = web([at('10.0.0.1', 'a', ['b']), at('10.0.0.2', 'b', ['b']), at('10.0.0.3', 'b')]);
  t.is(tiers(model, 'b'), 'zone local: 10.0.0.2,10.0.0.3 | remote: 10.0.0.1');
});

test('hints: a terminating endpoint without hints does not void them (kube-proxy reads ready ones)', (t) => {
  const model = web([
    at('10.0.0.1', 'a', ['b']),
    at('10.0.0.2', 'b', ['a']),
    at('10.0.0.3', 'b', undefined, SERVING_TERMINATING),
  ]);
  t.is(tiers(model, 'b'), 'hints local: 10.0.0.1 | remote: 10.0.0.2,10.0.0.3');
});

test('hints: no endpoint hinted for this zone means hints are ignored for it, and zones decide', (t) => {
  const model = web([at('10.0.0.1', 'a', ['a']), at('10.0.0.2', 'b', ['a'])]);
  t.is(tiers(model, 'b'), 'zone local: 10.0.0.2 | remote: 10.0.0.1');
});

function cacheOf(model: ServiceModel): ResourceCache {
  const cache = new ResourceCache();
  cache.update(translateService(model), []);
  return cache;
}

test('zone-aware: a zone’s CLA has its endpoints at priority 0, the rest at 1; others get the plain CLA', (t) => {
  const model = web([at('10.0.0.1', 'a'), at('10.0.0.2', 'b'), at('10.0.0.3', 'b')], ZONE_AWARE);
  const plain = cacheOf(model).get(TypeUrl.ENDPOINT, CLUSTER)!;
  t.is(shape(plain.body), 'a@0×1 b@0×2');
  t.is(shape(plain.forZone('a').body), 'a@0×1 b@1×2');
  t.is(shape(plain.forZone('b').body), 'b@0×2 a@1×1');
  // A zone no endpoint is in (or made up by an Envoy) costs nothing: the plain resource itself.
  t.is(plain.forZone('elsewhere'), plain);
  // Encoded once per (cluster, zone).
  t.is(plain.forZone('a'), plain.forZone('a'));
});

test('zone-aware with every endpoint in one zone: that zone’s variant is the plain CLA, not a copy', (t) => {
  const plain = cacheOf(web([at('10.0.0.1', 'a'), at('10.0.0.2', 'a')], ZONE_AWARE)).get(
    TypeUrl.ENDPOINT,
    CLUSTER,
  )!;
  t.is(plain.forZone('a'), plain);
});

test('zone-aware "false" or absent: the same bytes as before, and no variants', (t) => {
  const endpoints = [at('10.0.0.1', 'a'), at('10.0.0.2', 'b')];
  const absent = cacheOf(web(endpoints)).get(TypeUrl.ENDPOINT, CLUSTER)!;
  const off = cacheOf(web(endpoints, { 'readygate.io/zone-aware': 'false' })).get(TypeUrl.ENDPOINT, CLUSTER)!;
  const on = cacheOf(web(endpoints, ZONE_AWARE)).get(TypeUrl.ENDPOINT, CLUSTER)!;
  t.true(off.body.equals(absent.body));
  t.is(off.zoned, undefined);
  t.is(off.forZone('a'), off);
  // The zone-less CLA of a zone-aware Service is unchanged too: Envoys without a zone see no difference.
  t.true(on.body.equals(absent.body));
});

test('zone views: a gateway in zone a reads the variant, version and table included; others read the cache', (t) => {
  const cache = cacheOf(web([at('10.0.0.1', 'a'), at('10.0.0.2', 'b')], ZONE_AWARE));
  const zones = new ZoneViews(cache);
  const target = {};
  const viewA = zones.acquire(cache, '', 'a', target);
  t.is(zones.acquire(cache, '', 'a', {}), viewA, 'one view per (base, zone)');
  const variant = viewA.resources(TypeUrl.ENDPOINT).get(CLUSTER)!;
  t.is(shape(variant.body), 'a@0×1 b@1×1');
  t.not(viewA.typeVersion(TypeUrl.ENDPOINT), cache.typeVersion(TypeUrl.ENDPOINT));
  t.is(viewA.versionTable(TypeUrl.ENDPOINT).get(CLUSTER), variant.version);
  // Clusters and the other types are the cache's own.
  t.is(viewA.resources(TypeUrl.CLUSTER), cache.resources(TypeUrl.CLUSTER));
  // A zone without local endpoints reads the cache's own map.
  const viewZ = zones.acquire(cache, '', 'z', target);
  t.is(viewZ.resources(TypeUrl.ENDPOINT), cache.resources(TypeUrl.ENDPOINT));
  t.is(viewZ.typeVersion(TypeUrl.ENDPOINT), cache.typeVersion(TypeUrl.ENDPOINT));
  zones.release(viewZ, target);
  t.is(zones.size, 1);
});

test('zone views: switching zone-aware on changes nothing in the plain CLA, yet zone views see the change', (t) => {
  const endpoints = [at('10.0.0.1', 'a'), at('10.0.0.2', 'b')];
  const cache = cacheOf(web(endpoints));
  const zones = new ZoneViews(cache);
  const viewA = zones.acquire(cache, '', 'a', {});
  const before = viewA.typeVersion(TypeUrl.ENDPOINT);
  t.is(before, cache.typeVersion(TypeUrl.ENDPOINT));
  const change = cache.update(translateService(web(endpoints, ZONE_AWARE)), []);
  t.deepEqual([...(change.get(TypeUrl.ENDPOINT)?.changed ?? [])], [CLUSTER]);
  t.is(cache.typeVersion(TypeUrl.ENDPOINT), before, 'zone-less Envoys: same version, nothing to send');
  t.not(viewA.typeVersion(TypeUrl.ENDPOINT), before);
  t.is(shape(viewA.resources(TypeUrl.ENDPOINT).get(CLUSTER)!.body), 'a@0×1 b@1×1');
  // And off again: back to the plain CLA.
  cache.update(translateService(web(endpoints)), []);
  t.is(viewA.typeVersion(TypeUrl.ENDPOINT), before);
  // A hints-only edit (the plain CLA carries no hints) reaches zone views too.
  cache.update(
    translateService(web([at('10.0.0.1', 'a', ['b']), at('10.0.0.2', 'b', ['a'])], ZONE_AWARE)),
    [],
  );
  t.is(shape(viewA.resources(TypeUrl.ENDPOINT).get(CLUSTER)!.body), 'b@0×1 a@1×1');
});

test('zone views over a scoped sidecar view: its Services only, zone-aware ones as the zone variant', (t) => {
  const store = new EndpointStore();
  store.replaceAll([
    web([at('10.0.0.1', 'a'), at('10.0.0.2', 'b')], ZONE_AWARE),
    { ...service('api', [at('10.0.0.3', 'a'), at('10.0.0.4', 'b')]), annotations: ZONE_AWARE },
    service('db', [at('10.0.0.5', 'a'), at('10.0.0.6', 'b')]),
  ]);
  const cache = new ResourceCache();
  const catalog = new OutboundCatalog();
  const views = new OutboundViews(cache, catalog);
  cache.on('change', (change) => {
    views.apply(change);
  });
  const pipeline = new TranslationPipeline(store, cache, DEFAULT_TRANSLATE_OPTIONS, silentLogger, catalog);
  pipeline.flush();
  const profile = parseNodeProfile({
    fields: {
      'readygate.io/outbound-port': { number_value: 15001 },
      'readygate.io/egress': { string_value: 'default/web,default/db' },
    },
  });
  if (profile.mode !== 'sidecar') throw new Error('not a sidecar profile');
  const target = { handleCacheChange: () => undefined };
  const outbound = views.acquire(profile, target);
  const zoned = views.zones.acquire(outbound, outbound.key, 'b', target);
  const shapes = () =>
    [...zoned.resources(TypeUrl.ENDPOINT).values()].map((r) => `${r.name} ${shape(r.body)}`).sort();
  t.deepEqual(shapes(), ['default/db:http a@0×1 b@0×1', 'default/web:http b@0×1 a@1×1']);
  // The scope still holds after an endpoint change (the zone view rebuilds from the sidecar's view).
  store.upsert(web([at('10.0.0.1', 'a'), at('10.0.0.2', 'b'), at('10.0.0.7', 'b')], ZONE_AWARE));
  pipeline.flush();
  t.deepEqual(shapes(), ['default/db:http a@0×1 b@0×1', 'default/web:http b@0×2 a@1×1']);
  t.is(zoned.resources(TypeUrl.LISTENER), outbound.resources(TypeUrl.LISTENER));
  views.zones.release(zoned, target);
  t.is(views.zones.size, 0);
});

test('routing history: a zone variant’s version routes as its plain version (gate and drain verdicts)', (t) => {
  const endpoints = [at('10.0.0.1', 'a'), at('10.0.0.2', 'b', undefined, SERVING_TERMINATING)];
  const cache = cacheOf(web(endpoints, ZONE_AWARE));
  const history = new RoutingHistory({ versionsPerCluster: 2 });
  history.follow(cache);
  const plain = cache.get(TypeUrl.ENDPOINT, CLUSTER)!;
  const variant = new ZoneViews(cache).acquire(cache, '', 'a', {}).resources(TypeUrl.ENDPOINT).get(CLUSTER)!;
  t.not(variant.version, plain.version);
  const expected = [
    ['default/pod-10.0.0.1', 'HEALTHY'],
    ['default/pod-10.0.0.2', 'DRAINING'],
  ];
  t.deepEqual([...(history.summary(CLUSTER, plain.version) ?? [])], expected);
  t.deepEqual([...(history.summary(CLUSTER, variant.version) ?? [])], expected);
  t.is(history.currentVersion(CLUSTER), plain.version, 'a variant never becomes the current version');
  // The variant is forgotten with its plain version (two newer versions evict it).
  cache.update(translateService(web([at('10.0.0.3', 'a')], ZONE_AWARE)), []);
  cache.update(translateService(web([at('10.0.0.4', 'a')], ZONE_AWARE)), []);
  t.is(history.summary(CLUSTER, variant.version), undefined);
});

test('node zone: absent, empty or oversized reads as no zone', (t) => {
  t.is(nodeZone(undefined), undefined);
  t.is(nodeZone({}), undefined);
  t.is(nodeZone({ zone: '' }), undefined);
  t.is(nodeZone({ zone: 'x'.repeat(129) }), undefined);
  t.is(nodeZone({ zone: 'eu-west-1a' }), 'eu-west-1a');
});

test('file source: zone and forZones per endpoint reach the model; more than 8 hinted zones is an error', (t) => {
  const [model] = parseEndpointsFile(
    [
      'services:',
      '- namespace: default',
      '  name: web',
      '  ports: [{name: http, port: 8080}]',
      '  annotations: {readygate.io/zone-aware: "true"}',
      '  endpoints:',
      '  - {addresses: ["10.0.0.1"], zone: a, forZones: [a, c]}',
      '',
    ].join('\n'),
  );
  t.deepEqual(model?.endpoints[0]?.zone, 'a');
  t.deepEqual(model?.endpoints[0]?.forZones, ['a', 'c']);
  t.deepEqual(model?.annotations, ZONE_AWARE);
  const error = t.throws(() =>
    parseEndpointsFile(
      `services:\n- {namespace: default, name: web, ports: [{port: 80}], endpoints: [{addresses: ["10.0.0.1"], forZones: [a,b,c,d,e,f,g,h,i]}]}\n`,
    ),
  );
  t.regex(error.message, /forZones takes at most 8 zones/);
});
