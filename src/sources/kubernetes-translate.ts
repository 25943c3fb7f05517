/**
 * Pure mapping from a Service and its EndpointSlices (discovery.k8s.io/v1) to the ServiceModel every source
 * produces. No I/O and no logging: problems come back as `warnings` so the caller decides how loudly to
 * report them, and the table tests in test/unit/kubernetes-translate.test.ts can pin every case.
 *
 * Conditions pass through untouched (nil stays undefined): readiness is decided once, in
 * src/model/eligibility.ts, never here.
 */
import { isIP } from 'node:net';
import { policyAnnotations } from '../model/policy.js';
import {
  serviceKey,
  type EndpointConditions,
  type EndpointModel,
  type ServiceKey,
  type ServiceModel,
  type ServicePortModel,
  type TargetRef,
} from '../model/types.js';

/**
 * The parts of a Service and an EndpointSlice this module reads, as they arrive on the wire. Watch events
 * carry plain JSON (with `null` where Go has a nil slice), lists carry client-node's model classes; both fit
 * these shapes, and tests can write them as literals.
 */
type Maybe<T> = T | null | undefined;

export interface ObjectMetaShape {
  readonly namespace?: Maybe<string>;
  readonly name?: Maybe<string>;
  readonly labels?: Maybe<Readonly<Record<string, string>>>;
  readonly annotations?: Maybe<Readonly<Record<string, string>>>;
}

export interface ServicePortShape {
  readonly name?: Maybe<string>;
  readonly port?: Maybe<number>;
  readonly targetPort?: Maybe<number | string>;
  readonly protocol?: Maybe<string>;
  readonly appProtocol?: Maybe<string>;
}

export interface ServiceShape {
  readonly metadata?: Maybe<ObjectMetaShape>;
  readonly spec?: Maybe<{
    readonly type?: Maybe<string>;
    readonly clusterIP?: Maybe<string>;
    readonly ports?: Maybe<readonly ServicePortShape[]>;
  }>;
}

export interface EndpointShape {
  readonly addresses?: Maybe<readonly string[]>;
  readonly conditions?: Maybe<{
    readonly ready?: Maybe<boolean>;
    readonly serving?: Maybe<boolean>;
    readonly terminating?: Maybe<boolean>;
  }>;
  readonly targetRef?: Maybe<{
    readonly kind?: Maybe<string>;
    readonly namespace?: Maybe<string>;
    readonly name?: Maybe<string>;
    readonly uid?: Maybe<string>;
  }>;
  readonly zone?: Maybe<string>;
  readonly hints?: Maybe<{ readonly forZones?: Maybe<readonly Maybe<{ readonly name?: Maybe<string> }>[]> }>;
  readonly nodeName?: Maybe<string>;
  readonly hostname?: Maybe<string>;
}

export interface EndpointSliceShape {
  readonly metadata?: Maybe<ObjectMetaShape>;
  readonly addressType?: Maybe<string>;
  readonly ports?: Maybe<readonly { name?: Maybe<string>; port?: Maybe<number>; protocol?: Maybe<string> }[]>;
  readonly endpoints?: Maybe<readonly EndpointShape[]>;
}

/** The label that ties an EndpointSlice to its Service (set by the controller and by hand-managed slices). */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export type SkipReason = 'external-name' | 'invalid';

export interface ServiceTranslation {
  /** Absent when the Service is skipped. */
  readonly model?: ServiceModel;
  readonly skipped?: SkipReason;
  /** Human-readable problems with parts of the objects that were left out; empty when all was usable. */
  readonly warnings: readonly string[];
}

/** `<namespace>/<service>` an EndpointSlice belongs to, or undefined when it carries no service-name label. */
export function serviceKeyOfSlice(slice: EndpointSliceShape): ServiceKey | undefined {
  const name = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
  const namespace = slice.metadata?.namespace;
  if (!name || !namespace) return undefined;
  return serviceKey({ namespace, name });
}

/** `<namespace>/<name>` of any namespaced object, or undefined when either part is missing. */
export function objectKey(object: { readonly metadata?: Maybe<ObjectMetaShape> }): string | undefined {
  const namespace = object.metadata?.namespace;
  const name = object.metadata?.name;
  if (!namespace || !name) return undefined;
  return `${namespace}/${name}`;
}

/**
 * Builds the model of one Service from all slices labelled with its name. Slices are merged in name order so
 * the result (and its fingerprint in the store) does not depend on the order the informer delivered them.
 */
export function translateService(
  service: ServiceShape,
  slices: readonly EndpointSliceShape[],
): ServiceTranslation {
  const namespace = service.metadata?.namespace;
  const name = service.metadata?.name;
  if (!namespace || !name) {
    return { skipped: 'invalid', warnings: ['Service without metadata.namespace or metadata.name'] };
  }
  // ExternalName Services are a DNS CNAME with no endpoints; there is nothing to send Envoy.
  if (service.spec?.type === 'ExternalName') return { skipped: 'external-name', warnings: [] };

  const warnings: string[] = [];
  const bindings = translatePorts(service, warnings);
  const endpoints: EndpointModel[] = [];
  const ordered = [...slices].sort((a, b) => compareStrings(a.metadata?.name ?? '', b.metadata?.name ?? ''));
  for (const slice of ordered) endpoints.push(...translateSlice(slice, bindings, warnings));
  const ports = bindings.map((binding) => binding.model);
  // Policy values are validated downstream (src/model/policy.ts), per key, so one bad annotation costs
  // only its own field; here they are only carried.
  const annotations = policyAnnotations(service.metadata.annotations);
  return {
    model: { namespace, name, ports, endpoints, ...(annotations === undefined ? {} : { annotations }) },
    warnings,
  };
}

/** A model port plus the slice port name it is matched by. */
interface PortBinding {
  readonly model: ServicePortModel;
  /** Slice port names mirror Service port names; an unnamed Service port is the slice port named ''. */
  readonly slicePortName: string;
}

/**
 * Service ports → model ports. Only TCP ports become clusters: Envoy's clusters here carry HTTP/gRPC over
 * TCP, and a UDP/SCTP port has nothing for them to do.
 */
function translatePorts(service: ServiceShape, warnings: string[]): PortBinding[] {
  const bindings: PortBinding[] = [];
  for (const [index, port] of listOf(service.spec?.ports).entries()) {
    if (!isPortNumber(port.port)) {
      warnings.push(`spec.ports[${index}] has no valid port number; skipped`);
      continue;
    }
    const protocol = port.protocol ?? 'TCP';
    if (protocol !== 'TCP') {
      warnings.push(`port ${port.name ?? port.port} uses ${protocol}; only TCP ports are served`);
      continue;
    }
    const model: ServicePortModel = {
      key: port.name ? port.name : String(port.port),
      port: port.port,
      // Kubernetes defaults targetPort to port. A named targetPort has no service-level number: each slice
      // resolves it per endpoint (EndpointModel.ports), which always overrides this default.
      targetPort: typeof port.targetPort === 'number' ? port.targetPort : port.port,
      ...(port.appProtocol ? { appProtocol: port.appProtocol } : {}),
    };
    bindings.push({ model, slicePortName: port.name ?? '' });
  }
  return bindings;
}

/** Which target port each service-port key maps to in this slice; keys the slice lacks are absent. */
function slicePortsByKey(
  slice: EndpointSliceShape,
  bindings: readonly PortBinding[],
): Record<string, number> {
  const byKey: Record<string, number> = {};
  for (const { model, slicePortName } of bindings) {
    const slicePort = listOf(slice.ports).find(
      (p) => (p.name ?? '') === slicePortName && (p.protocol ?? 'TCP') === 'TCP',
    );
    if (slicePort && isPortNumber(slicePort.port)) byKey[model.key] = slicePort.port;
  }
  return byKey;
}

function translateSlice(
  slice: EndpointSliceShape,
  bindings: readonly PortBinding[],
  warnings: string[],
): EndpointModel[] {
  const sliceName = slice.metadata?.name ?? '(unnamed)';
  const addressType = slice.addressType;
  if (addressType !== 'IPv4' && addressType !== 'IPv6') {
    // FQDN slices are deprecated and Envoy's EDS needs IP addresses.
    warnings.push(`EndpointSlice ${sliceName}: addressType ${addressType || '(unset)'} is not served`);
    return [];
  }
  const family = addressType === 'IPv4' ? 4 : 6;
  const portsByKey = slicePortsByKey(slice, bindings);
  const endpoints: EndpointModel[] = [];
  // JSON from the API has `"endpoints": null` for an empty slice, whatever the generated types say.
  for (const [index, endpoint] of listOf(slice.endpoints).entries()) {
    const addresses = listOf(endpoint.addresses).filter((a): a is string => typeof a === 'string');
    const first = addresses[0];
    if (first === undefined || isIP(first) !== family) {
      warnings.push(
        `EndpointSlice ${sliceName}: endpoints[${index}] has no valid ${addressType} address; skipped`,
      );
      continue;
    }
    endpoints.push(
      compact({
        addresses,
        conditions: translateConditions(endpoint.conditions),
        targetRef: endpoint.targetRef ? translateTargetRef(endpoint.targetRef) : undefined,
        zone: endpoint.zone ?? undefined,
        forZones: forZonesOf(endpoint.hints),
        nodeName: endpoint.nodeName ?? undefined,
        hostname: endpoint.hostname ?? undefined,
        // Always set for Kubernetes endpoints: the slice, not the Service, says which target port each
        // endpoint listens on (named target ports resolve per pod).
        ports: { ...portsByKey },
      }),
    );
  }
  return endpoints;
}

/** Copies only the conditions that are set: nil must stay distinguishable from false. */
function translateConditions(conditions: EndpointShape['conditions']): EndpointConditions {
  const result: { ready?: boolean; serving?: boolean; terminating?: boolean } = {};
  if (typeof conditions?.ready === 'boolean') result.ready = conditions.ready;
  if (typeof conditions?.serving === 'boolean') result.serving = conditions.serving;
  if (typeof conditions?.terminating === 'boolean') result.terminating = conditions.terminating;
  return result;
}

function translateTargetRef(ref: NonNullable<EndpointShape['targetRef']>): TargetRef {
  return compact({
    kind: ref.kind ?? undefined,
    namespace: ref.namespace ?? undefined,
    name: ref.name ?? undefined,
    uid: ref.uid ?? undefined,
  });
}

function listOf<T>(value: readonly T[] | null | undefined): readonly T[] {
  return value ?? [];
}

function isPortNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 && value <= 65535;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Drops undefined fields so models compare (and fingerprint) the same however they were built. */
function compact<T extends object>(value: T): T {
  const result: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(value)) if (field !== undefined) result[key] = field;
  return result as T;
}

/**
 * Names from `hints.forZones`; undefined when there are none (an endpoint without hints, which
 * src/model/zones.ts treats as kube-proxy does). The API server caps the list at 8 entries; the same cap
 * here bounds what a malformed object can make readygate keep.
 */
function forZonesOf(hints: EndpointShape['hints']): string[] | undefined {
  const names = listOf(hints?.forZones)
    .slice(0, MAX_HINTED_ZONES)
    .map((hint) => hint?.name)
    .filter((name): name is string => typeof name === 'string' && name !== '');
  return names.length === 0 ? undefined : names;
}

const MAX_HINTED_ZONES = 8;
