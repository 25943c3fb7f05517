/** A control plane on a free loopback port over a given model, with a raw xDS client, torn down after. */
import { EndpointStore } from '../../src/model/store.js';
import type { ServiceModel } from '../../src/model/types.js';
import {
  startControlPlane,
  type ControlPlane,
  type ControlPlaneOptions,
} from '../../src/xds/control-plane.js';
import { SERVING_TERMINATING, endpoint, service } from './model-fixtures.js';
import { XdsTestClient } from './xds-client.js';

/** web: one ready and one serving-terminating endpoint; empty: an unnamed port with no endpoints. */
export function webAndEmpty(): ServiceModel[] {
  return [
    service('web', [endpoint('127.0.0.2'), endpoint('127.0.0.3', SERVING_TERMINATING)]),
    service('empty', [], { key: '80', port: 80 }),
  ];
}

export interface ControlPlaneFixture {
  readonly store: EndpointStore;
  readonly plane: ControlPlane;
  readonly client: XdsTestClient;
}

export async function startControlPlaneFixture(
  t: { teardown: (fn: () => Promise<void> | void) => void },
  services: ServiceModel[] = webAndEmpty(),
  options: Partial<Omit<ControlPlaneOptions, 'store' | 'xdsAddress'>> = {},
): Promise<ControlPlaneFixture> {
  const store = new EndpointStore();
  store.replaceAll(services);
  const plane = await startControlPlane({ ...options, store, xdsAddress: '127.0.0.1:0' });
  const client = new XdsTestClient(plane.address);
  t.teardown(async () => {
    client.close();
    await plane.close();
  });
  return { store, plane, client };
}
