/**
 * Sidecar streams over real gRPC (the control plane with a raw ADS client): what a scoped sidecar, an
 * open one and a gateway are sent on one control plane, and that the readiness gate does not wait for a
 * scoped sidecar on a cluster it is never sent.
 */
import test from 'ava';
import { RoutingHistory } from '../../src/readiness/routing-history.js';
import { gateVerdict } from '../../src/readiness/verdicts.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { startControlPlaneFixture } from '../helpers/control-plane-fixture.js';
import { endpoint, service } from '../helpers/model-fixtures.js';
import { unpack, type SotwResponse } from '../helpers/xds-client.js';

const services = () => [service('web', [endpoint('127.0.0.2')]), service('api', [endpoint('127.0.0.3')])];

function sidecarNode(id: string, egress?: string) {
  const fields: Record<string, Record<string, unknown>> = {
    'readygate.io/outbound-port': { number_value: 15001 },
  };
  if (egress !== undefined) fields['readygate.io/egress'] = { string_value: egress };
  return { id, metadata: { fields } };
}

const names = (response: SotwResponse): string[] =>
  response.resources
    .map((r) => unpack<{ name?: string; cluster_name?: string }>(r))
    .map((m) => m.name ?? m.cluster_name ?? '?')
    .sort();

test('SotW: a scoped sidecar gets its clusters and the outbound listener; a gateway what it always got', async (t) => {
  const { client, plane, store } = await startControlPlaneFixture(t, services());
  const scoped = client.sotw();
  scoped.send({ node: sidecarNode('scoped', 'default/api'), type_url: TypeUrl.CLUSTER });
  const cds = await scoped.next();
  t.deepEqual(names(cds), ['default/api:http']);
  scoped.send({ type_url: TypeUrl.CLUSTER, response_nonce: cds.nonce!, version_info: cds.version_info! });
  scoped.send({ type_url: TypeUrl.ENDPOINT, resource_names: ['default/api:http'] });
  const eds = await scoped.next();
  t.deepEqual(names(eds), ['default/api:http']);
  scoped.send({
    type_url: TypeUrl.ENDPOINT,
    resource_names: ['default/api:http'],
    response_nonce: eds.nonce!,
    version_info: eds.version_info!,
  });
  scoped.send({ type_url: TypeUrl.LISTENER });
  const lds = await scoped.next();
  t.deepEqual(names(lds), ['readygate.outbound']);
  scoped.send({ type_url: TypeUrl.LISTENER, response_nonce: lds.nonce!, version_info: lds.version_info! });

  const gateway = client.sotw();
  gateway.send({ node: { id: 'gateway' }, type_url: TypeUrl.CLUSTER });
  t.deepEqual(names(await gateway.next()), ['default/api:http', 'default/web:http']);
  gateway.send({ type_url: TypeUrl.LISTENER });
  t.deepEqual(names(await gateway.next()), []);

  // The readiness gate: a web pod waits for the gateway, never for the sidecar scoped to api.
  const streams = plane.sync.streams;
  const scopedState = streams.find((s) => s.nodeId === 'scoped')!;
  t.false(scopedState.type(TypeUrl.CLUSTER).isSubscribed('default/web:http'));
  t.true(scopedState.type(TypeUrl.CLUSTER).isSubscribed('default/api:http'));
  const history = new RoutingHistory();
  history.record('default/web:http', 'v1', new Map([['default/pod-127.0.0.2', 'HEALTHY']]));
  const verdict = gateVerdict('default/pod-127.0.0.2', history, streams);
  t.deepEqual(verdict.waitingOn, ['gateway']);

  // web changes: nothing for the scoped sidecar; api changes: its endpoints.
  store.upsert(service('web', [endpoint('127.0.0.2'), endpoint('127.0.0.4')]));
  t.true(await scoped.silentFor(300));
  store.upsert(service('api', [endpoint('127.0.0.5')]));
  const pushed = await scoped.next();
  t.is(pushed.type_url, TypeUrl.ENDPOINT);
  t.deepEqual(names(pushed), ['default/api:http']);
});
