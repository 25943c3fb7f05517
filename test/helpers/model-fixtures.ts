/** Small endpoint models shared by xDS tests. */
import type { EndpointConditions, EndpointModel, ServiceModel } from '../../src/model/types.js';

export const READY: EndpointConditions = { ready: true, serving: true, terminating: false };
export const SERVING_TERMINATING: EndpointConditions = { ready: false, serving: true, terminating: true };
export const NOT_SERVING: EndpointConditions = { ready: false, serving: false, terminating: true };

export function endpoint(
  address: string,
  conditions: EndpointConditions = READY,
  pod?: string,
): EndpointModel {
  return { addresses: [address], conditions, targetRef: { kind: 'Pod', name: pod ?? `pod-${address}` } };
}

export function service(
  name: string,
  endpoints: EndpointModel[],
  port: { key?: string; port?: number; appProtocol?: string } = {},
  namespace = 'default',
): ServiceModel {
  const number = port.port ?? 8080;
  return {
    namespace,
    name,
    ports: [
      {
        key: port.key ?? 'http',
        port: number,
        targetPort: number,
        ...(port.appProtocol === undefined ? {} : { appProtocol: port.appProtocol }),
      },
    ],
    endpoints,
  };
}
