/**
 * The endpoint model every source produces and every consumer reads. Shaped like discovery.k8s.io/v1
 * EndpointSlices so that the file source and the Kubernetes source feed one rule set.
 */

/** EndpointSlice conditions. `undefined` means the field was absent; see eligibility.ts for the defaults. */
export interface EndpointConditions {
  readonly ready?: boolean | undefined;
  readonly serving?: boolean | undefined;
  readonly terminating?: boolean | undefined;
}

export interface TargetRef {
  readonly kind?: string | undefined;
  readonly namespace?: string | undefined;
  readonly name?: string | undefined;
  readonly uid?: string | undefined;
}

export interface EndpointModel {
  /** Fungible addresses of one endpoint; like kube-proxy, only the first is used. */
  readonly addresses: readonly string[];
  readonly conditions: EndpointConditions;
  readonly targetRef?: TargetRef | undefined;
  readonly zone?: string | undefined;
  /**
   * EndpointSlice `hints.forZones`: the zones whose clients should use this endpoint (Topology Aware
   * Routing). Honoured only as kube-proxy does (src/model/zones.ts).
   */
  readonly forZones?: readonly string[] | undefined;
  readonly nodeName?: string | undefined;
  readonly hostname?: string | undefined;
  /**
   * Target port per service-port key, when this endpoint's slice maps a port differently from the
   * service-level default (named target ports can resolve to different numbers per pod).
   */
  readonly ports?: Readonly<Record<string, number>> | undefined;
  /**
   * Set by the Kubernetes source when the pod's containers are ready and the only unmet readiness gate
   * is readygate's own: the slice says not ready, yet Envoys must learn the endpoint for the gate to
   * ever turn True. Never set for terminating pods.
   */
  readonly gatePending?: boolean | undefined;
}

export interface ServicePortModel {
  /** Cluster-name suffix: the Service port's name, or its number when unnamed. */
  readonly key: string;
  /** The Service port number (gRPC listener names use it). */
  readonly port: number;
  /** Default endpoint (target) port; an endpoint's `ports[key]` overrides it. */
  readonly targetPort: number;
  /** Kubernetes appProtocol; `kubernetes.io/h2c`, `h2c` and `grpc` make the cluster speak HTTP/2. */
  readonly appProtocol?: string | undefined;
}

export interface ServiceModel {
  readonly namespace: string;
  readonly name: string;
  readonly ports: readonly ServicePortModel[];
  readonly endpoints: readonly EndpointModel[];
  /**
   * The Service's `readygate.io/*` annotations, unparsed and sorted (src/model/policy.ts parses them).
   * Raw rather than parsed so the store's fingerprint changes exactly when the author's text does, and a
   * fixed typo clears its problem.
   */
  readonly annotations?: Readonly<Record<string, string>> | undefined;
}

/** `<namespace>/<name>`: the identity of a service in a snapshot. */
export type ServiceKey = string;

export function serviceKey(service: { readonly namespace: string; readonly name: string }): ServiceKey {
  return `${service.namespace}/${service.name}`;
}

/** Fixed interface: the Envoy cluster (and EDS resource) name of a Service port. */
export function clusterName(
  service: { readonly namespace: string; readonly name: string },
  portKey: string,
): string {
  return `${service.namespace}/${service.name}:${portKey}`;
}

/** The Listener/RouteConfiguration name a proxyless gRPC client dials as `xds:///<name>`. */
export function grpcListenerName(
  service: { readonly namespace: string; readonly name: string },
  port: number,
): string {
  return `${service.name}.${service.namespace}:${port}`;
}
