import test from 'ava';
import { codecFor } from '../../src/protos/envoy-protos.js';
import { ResourceCache } from '../../src/xds/cache.js';
import { DELTA_DISCOVERY_RESPONSE, DISCOVERY_RESPONSE } from '../../src/xds/messages.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { stringField } from '../../src/xds/wire.js';

const cla = (name: string, port: number) => ({
  typeUrl: TypeUrl.ENDPOINT,
  name,
  message: {
    cluster_name: name,
    endpoints: [
      {
        lb_endpoints: [
          { endpoint: { address: { socket_address: { address: '10.0.0.1', port_value: port } } } },
        ],
      },
    ],
  },
});

interface DecodedResponse {
  version_info?: string;
  system_version_info?: string;
  type_url: string;
  nonce: string;
  resources: { type_url?: string; name?: string; version?: string }[];
}

test('a one-resource SotW body is built once per cache state and decodes with a nonce appended', (t) => {
  const cache = new ResourceCache();
  cache.update([cla('ns/a:http', 80), cla('ns/b:http', 80)], []);
  const resource = cache.get(TypeUrl.ENDPOINT, 'ns/a:http')!;
  const version = cache.typeVersion(TypeUrl.ENDPOINT);
  const first = cache.sotwBody(TypeUrl.ENDPOINT, version, [resource], false);
  t.is(cache.sotwBody(TypeUrl.ENDPOINT, version, [resource], false), first);
  t.deepEqual(first.entries, [['ns/a:http', resource.version]]);

  const decoded = codecFor<DecodedResponse>(DISCOVERY_RESPONSE).decode(
    Buffer.concat([first.bytes, stringField(5, '9')]),
  );
  t.is(decoded.version_info, version);
  t.is(decoded.type_url, TypeUrl.ENDPOINT);
  t.is(decoded.nonce, '9');
  t.is(decoded.resources.length, 1);
});

test('a change clears the shared bodies, so no stream gets bytes of a replaced version', (t) => {
  const cache = new ResourceCache();
  cache.update([cla('ns/a:http', 80)], []);
  const before = cache.get(TypeUrl.ENDPOINT, 'ns/a:http')!;
  const oldBody = cache.deltaBody(TypeUrl.ENDPOINT, [before]);
  cache.update([cla('ns/a:http', 81)], []);
  const after = cache.get(TypeUrl.ENDPOINT, 'ns/a:http')!;
  t.not(after.version, before.version);
  const newBody = cache.deltaBody(TypeUrl.ENDPOINT, [after]);
  t.not(newBody, oldBody);
  const decoded = codecFor<DecodedResponse>(DELTA_DISCOVERY_RESPONSE).decode(newBody.bytes);
  t.deepEqual(
    decoded.resources.map((r) => [r.name, r.version]),
    [['ns/a:http', after.version]],
  );
  t.is(decoded.type_url, TypeUrl.ENDPOINT);
});

test('a whole-type SotW body is shared only for the same set version', (t) => {
  const cache = new ResourceCache();
  cache.update([cla('ns/a:http', 80), cla('ns/b:http', 80)], []);
  const all = [...cache.resources(TypeUrl.ENDPOINT).values()];
  const version = cache.typeVersion(TypeUrl.ENDPOINT);
  const body = cache.sotwBody(TypeUrl.ENDPOINT, version, all, true);
  t.is(cache.sotwBody(TypeUrl.ENDPOINT, version, all, true), body);
  t.not(cache.sotwBody(TypeUrl.ENDPOINT, 'another-version', all, true), body);
  t.is(body.entries.length, 2);
});
