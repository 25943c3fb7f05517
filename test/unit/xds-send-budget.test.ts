import test from 'ava';
import { startControlPlaneFixture } from '../helpers/control-plane-fixture.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { endpoint, service } from '../helpers/model-fixtures.js';
import { unpack } from '../helpers/xds-client.js';

type Cla = {
  endpoints: { lb_endpoints: { endpoint: { address: { socket_address: { address: string } } } }[] }[];
};
const addresses = (cla: Cla): string[] =>
  cla.endpoints.flatMap((l) => l.lb_endpoints.map((e) => e.endpoint.address.socket_address.address));

test('with a one-byte send budget every stream is still served, and ends on the latest state', async (t) => {
  // Every response exceeds the budget, so streams take turns: each waits for the previous write.
  const { store, client } = await startControlPlaneFixture(t, [service('web', [endpoint('127.0.0.2')])], {
    maxPendingBytes: 1,
  });
  const streams = Array.from({ length: 5 }, () => client.sotw());
  streams.forEach((s, i) => {
    s.send({ node: { id: `envoy-${i}` }, type_url: TypeUrl.ENDPOINT, resource_names: ['default/web:http'] });
  });
  const first = await Promise.all(streams.map((s) => s.next()));
  t.deepEqual(
    first.map((r) => addresses(unpack<Cla>(r.resources[0]!))),
    Array.from({ length: 5 }, () => ['127.0.0.2']),
  );

  // A burst of changes while streams wait their turn: each stream converges on the last one.
  // (One change per event-loop turn, so each is its own push rather than one coalesced update.)
  for (let i = 3; i <= 22; i++) {
    store.upsert(service('web', [endpoint(`127.0.0.${i}`)]));
    await new Promise((resolve) => setImmediate(resolve));
  }
  for (const s of streams) {
    let last: string[] = [];
    let responses = 0;
    while (last[0] !== '127.0.0.22') {
      last = addresses(unpack<Cla>((await s.next(5000)).resources[0]!));
      responses += 1;
    }
    t.true(responses >= 1 && responses <= 20, `responses: ${responses}`);
    t.true(await s.silentFor(100));
  }
});
