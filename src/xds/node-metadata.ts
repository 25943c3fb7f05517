/**
 * What an Envoy says about itself in its node metadata, read once per stream: whether it is a sidecar
 * (wants an outbound listener and routes by Service name) and which Services it may call. Pure.
 *
 * Metadata is the client's input like any request field: anything malformed makes the Envoy a gateway
 * (what it would get without the keys) plus a warning, never a failed stream, so a typo in one pod's
 * bootstrap cannot take its proxy down.
 */

/** The node metadata keys readygate reads (docs/sidecar.md). */
export const NodeMetadataKey = {
  OUTBOUND_PORT: 'readygate.io/outbound-port',
  EGRESS: 'readygate.io/egress',
  NAMESPACE: 'readygate.io/namespace',
  EXTPROC_CLUSTER: 'readygate.io/extproc-cluster',
} as const;

/** The namespace whose Services answer to their bare names when the node does not name its own. */
export const DEFAULT_PROXY_NAMESPACE = 'default';

/** Longest egress value read; a bootstrap listing more Services than this wants `namespace/*`. */
export const MAX_EGRESS_CHARS = 64 * 1024;

/** google.protobuf.Struct as decoded (snake_case, see scripts/build-protos.mjs). */
export interface StructValue {
  readonly fields?: Readonly<Record<string, ProtoValue | undefined>> | undefined;
}
export interface ProtoValue {
  readonly string_value?: string;
  readonly number_value?: number;
  readonly bool_value?: boolean;
  readonly struct_value?: StructValue;
}

/** Which Services a sidecar may call; `undefined` means every Service. */
export interface EgressScope {
  /** `namespace/service` keys. */
  readonly services: ReadonlySet<string>;
  /** Namespaces matched whole (`namespace/*`). */
  readonly namespaces: ReadonlySet<string>;
  /** Canonical text (sorted, deduplicated): equal scopes, equal keys. */
  readonly key: string;
}

export interface SidecarProfile {
  readonly mode: 'sidecar';
  readonly outboundPort: number;
  /** The app's namespace: its Services also answer to bare `svc` and `svc:port`. */
  readonly namespace: string;
  /** Bootstrap cluster of the ext_proc 5xx mapper; absent = the listener has no ext_proc filter. */
  readonly extprocCluster: string | undefined;
  readonly egress: EgressScope | undefined;
}

export interface GatewayProfile {
  readonly mode: 'gateway';
  /** Why sidecar metadata was ignored, if it was. */
  readonly problems: readonly string[];
}

export type ProxyProfile = SidecarProfile | GatewayProfile;

export const GATEWAY: GatewayProfile = Object.freeze({ mode: 'gateway', problems: Object.freeze([]) });

/** A DNS-1123 label: what Kubernetes allows for namespace and Service names. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** Envoy cluster names in a bootstrap: no control characters or spaces, bounded. */
const CLUSTER_NAME = /^[A-Za-z0-9_.:/-]{1,200}$/;

export function parseNodeProfile(metadata: StructValue | undefined): ProxyProfile {
  const fields = metadata?.fields ?? {};
  const portValue = fields[NodeMetadataKey.OUTBOUND_PORT];
  if (portValue === undefined) return GATEWAY;
  const problems: string[] = [];
  const outboundPort = parsePort(portValue, problems);
  const egressValue = fields[NodeMetadataKey.EGRESS];
  const egress = egressValue === undefined ? undefined : parseEgress(egressValue, problems);
  const namespaceValue = fields[NodeMetadataKey.NAMESPACE];
  let namespace = DEFAULT_PROXY_NAMESPACE;
  if (namespaceValue !== undefined) {
    const text = namespaceValue.string_value;
    if (text === undefined || !DNS_LABEL.test(text))
      problems.push(`${NodeMetadataKey.NAMESPACE} must be a namespace name, got ${describe(namespaceValue)}`);
    else namespace = text;
  }
  const extprocValue = fields[NodeMetadataKey.EXTPROC_CLUSTER];
  let extprocCluster: string | undefined;
  if (extprocValue !== undefined) {
    const text = extprocValue.string_value;
    if (text === undefined || !CLUSTER_NAME.test(text))
      problems.push(
        `${NodeMetadataKey.EXTPROC_CLUSTER} must be a bootstrap cluster name, got ${describe(extprocValue)}`,
      );
    else extprocCluster = text;
  }
  if (problems.length > 0 || outboundPort === undefined) return { mode: 'gateway', problems };
  return { mode: 'sidecar', outboundPort, namespace, extprocCluster, egress: egress ?? undefined };
}

function parsePort(value: ProtoValue, problems: string[]): number | undefined {
  // YAML `15001` arrives as a number, `"15001"` as a string: both mean the port.
  const raw =
    value.number_value ??
    (value.string_value !== undefined && /^[0-9]{1,5}$/.test(value.string_value)
      ? Number(value.string_value)
      : undefined);
  if (raw === undefined || !Number.isInteger(raw) || raw < 1 || raw > 65535) {
    problems.push(`${NodeMetadataKey.OUTBOUND_PORT} must be a port number 1-65535, got ${describe(value)}`);
    return undefined;
  }
  return raw;
}

/** A scope from its text (a canonical `key` included); undefined if malformed or `*`. */
export function parseEgressText(text: string): EgressScope | undefined {
  return text === '*' ? undefined : parseEgress({ string_value: text }, []);
}

/** `undefined` with a problem pushed when malformed; a valid value always gives a scope. */
function parseEgress(value: ProtoValue, problems: string[]): EgressScope | undefined {
  const text = value.string_value;
  if (text === undefined) {
    problems.push(`${NodeMetadataKey.EGRESS} must be a string, got ${describe(value)}`);
    return undefined;
  }
  if (text.length > MAX_EGRESS_CHARS) {
    problems.push(`${NodeMetadataKey.EGRESS} is longer than ${MAX_EGRESS_CHARS} characters`);
    return undefined;
  }
  const services = new Set<string>();
  const namespaces = new Set<string>();
  for (const raw of text.split(',')) {
    const pattern = raw.trim();
    if (pattern === '') continue;
    const slash = pattern.indexOf('/');
    const namespace = pattern.slice(0, slash);
    const service = pattern.slice(slash + 1);
    if (slash < 0 || !DNS_LABEL.test(namespace) || (service !== '*' && !DNS_LABEL.test(service))) {
      problems.push(
        `${NodeMetadataKey.EGRESS}: ${JSON.stringify(truncate(pattern))} is not namespace/service or namespace/*`,
      );
      return undefined;
    }
    if (service === '*') namespaces.add(namespace);
    else services.add(pattern);
  }
  if (services.size === 0 && namespaces.size === 0) {
    // An empty list would scope the proxy to nothing: almost surely a templating slip, not intent.
    problems.push(`${NodeMetadataKey.EGRESS} names no Service (leave it out to allow every Service)`);
    return undefined;
  }
  for (const key of services) if (namespaces.has(key.slice(0, key.indexOf('/')))) services.delete(key);
  const key = [...[...namespaces].map((ns) => `${ns}/*`), ...services].sort().join(',');
  return { services, namespaces, key };
}

/** Whether a Service (`namespace/name`) is within a scope; no scope allows everything. */
export function inScope(scope: EgressScope | undefined, serviceKey: string): boolean {
  if (scope === undefined) return true;
  if (scope.services.has(serviceKey)) return true;
  return scope.namespaces.has(serviceKey.slice(0, serviceKey.indexOf('/')));
}

/** `<namespace>/<service>` of a cluster or CLA name `<namespace>/<service>:<port>`. */
export function serviceKeyOfCluster(name: string): string {
  const colon = name.indexOf(':');
  return colon < 0 ? name : name.slice(0, colon);
}

/** Equal profiles share one set of resources (outbound-views.ts); this is their identity. */
export function sidecarKey(profile: SidecarProfile): string {
  return [
    profile.outboundPort,
    profile.namespace,
    profile.extprocCluster ?? '',
    profile.egress?.key ?? '*',
  ].join('|');
}

/** The profile as /debug/syncz shows it. */
export interface ProxyProfileJson {
  mode: 'gateway' | 'sidecar';
  outboundPort?: number;
  namespace?: string;
  extprocCluster?: string;
  egress?: string;
  problems?: string[];
  /** node.locality.zone, when declared (zone-views.ts). */
  zone?: string;
}

export function profileJson(profile: ProxyProfile): ProxyProfileJson {
  if (profile.mode === 'gateway')
    return profile.problems.length === 0
      ? { mode: 'gateway' }
      : { mode: 'gateway', problems: [...profile.problems] };
  return {
    mode: 'sidecar',
    outboundPort: profile.outboundPort,
    namespace: profile.namespace,
    ...(profile.extprocCluster === undefined ? {} : { extprocCluster: profile.extprocCluster }),
    egress: profile.egress?.key ?? '*',
  };
}

function describe(value: ProtoValue): string {
  if (value.string_value !== undefined) return JSON.stringify(truncate(value.string_value));
  if (value.number_value !== undefined) return String(value.number_value);
  if (value.bool_value !== undefined) return String(value.bool_value);
  return 'a non-scalar value';
}

function truncate(text: string): string {
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}
