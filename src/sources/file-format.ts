/**
 * The endpoints file format (fixed by the design): YAML or JSON shaped like EndpointSlices, so entries can
 * be copied from `kubectl get endpointslices -o yaml`. Pure: text in, ServiceModels out, or one error
 * message that names the offending path (`services[0].endpoints[2].addresses: expected array, ...`).
 *
 * Unknown fields are rejected rather than ignored: a misspelt `conditons` would otherwise fall back to
 * Kubernetes' defaults (ready) and send traffic to an endpoint the author meant to exclude.
 */
import { isIP } from 'node:net';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ErrorCode, ReadygateError } from '../errors.js';
import { policyAnnotations } from '../model/policy.js';
import type { EndpointModel, ServiceModel, ServicePortModel, TargetRef } from '../model/types.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

const dnsLabel = (what: string): z.ZodString =>
  z
    .string()
    .max(63, { error: `${what} must be at most 63 characters` })
    .regex(DNS_LABEL, { error: `${what} must be lowercase letters, digits and '-' (a DNS label)` });

/** null is accepted as Kubernetes' nil (absent), which is what Go's omitempty round-trips produce. */
const condition = z
  .boolean()
  .nullable()
  .optional()
  .transform((value) => value ?? undefined);

const conditionsSchema = z.strictObject({
  ready: condition,
  serving: condition,
  terminating: condition,
});

const targetRefSchema = z.strictObject({
  kind: z.string().min(1),
  name: z.string().min(1),
  namespace: z.string().min(1).optional(),
  uid: z.string().min(1).optional(),
});

const endpointSchema = z.strictObject({
  addresses: z
    .array(
      z.string().refine((text) => isIP(text) !== 0, {
        error: 'must be an IP address (Envoy load assignments take addresses, not host names)',
      }),
    )
    .min(1, { error: 'needs at least one address' })
    .max(100, { error: 'takes at most 100 addresses (the EndpointSlice limit)' }),
  conditions: conditionsSchema.optional(),
  targetRef: targetRefSchema.optional(),
  zone: z.string().min(1).optional(),
  /** EndpointSlice hints.forZones, as zone names (the API server's limit of 8 applies). */
  forZones: z.array(z.string().min(1)).min(1).max(8, { error: 'forZones takes at most 8 zones' }).optional(),
  nodeName: z.string().min(1).optional(),
  hostname: z.string().min(1).optional(),
});

const portSchema = z.strictObject({
  // Kubernetes port names must contain a letter; that also keeps a name from colliding with the
  // number-as-key of an unnamed port.
  name: dnsLabel('port name')
    .refine((text) => /[a-z]/.test(text), { error: 'port name must contain a letter' })
    .optional(),
  port: z
    .number()
    .int({ error: 'port must be an integer' })
    .min(1, { error: 'port must be 1-65535' })
    .max(65535, { error: 'port must be 1-65535' }),
  appProtocol: z.string().min(1).optional(),
  protocol: z
    .string()
    .refine((text) => text === 'TCP', { error: 'only TCP is supported' })
    .optional(),
});

const serviceSchema = z.strictObject({
  namespace: dnsLabel('namespace'),
  name: dnsLabel('service name'),
  ports: z.array(portSchema).min(1, { error: 'needs at least one port' }),
  // The Service's annotations, as in `kubectl get service -o yaml`. Only readygate.io/* keys are used
  // (docs/policy.md); a bad value is reported and falls back to its default like in Kubernetes, it does
  // not make the whole file invalid.
  annotations: z.record(z.string(), z.string({ error: 'annotation values must be strings' })).optional(),
  // null is what kubectl prints for an EndpointSlice without endpoints (a Go nil slice).
  endpoints: z.array(endpointSchema).nullable().optional(),
});

const documentSchema = z.strictObject({ services: z.array(serviceSchema) });

type ServiceEntry = z.output<typeof serviceSchema>;
type EndpointEntry = z.output<typeof endpointSchema>;

function invalid(reason: string): ReadygateError {
  return new ReadygateError(ErrorCode.SOURCE_FILE_INVALID, reason);
}

/** `services[0].endpoints[2].addresses` from a zod issue path. */
export function formatIssuePath(path: readonly PropertyKey[]): string {
  let text = '';
  for (const segment of path) {
    if (typeof segment === 'number') text += `[${segment}]`;
    else text += text === '' ? String(segment) : `.${String(segment)}`;
  }
  return text;
}

function issueReason(issue: z.core.$ZodIssue): string {
  const where = formatIssuePath(issue.path);
  let message = issue.message
    .replace(/^Invalid input: /, '')
    .replace(/^expected (\w+), received undefined$/, 'missing (expected $1)');
  if (issue.code === 'unrecognized_keys') {
    message = `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((key) => `"${key}"`).join(', ')}`;
  }
  return where === '' ? message : `${where}: ${message}`;
}

/**
 * Parses an endpoints file's text. Throws ReadygateError(SOURCE_FILE_INVALID) whose message is the reason
 * (without the file path, which the caller knows).
 */
export function parseEndpointsFile(text: string): ServiceModel[] {
  let data: unknown;
  try {
    data = parseJsonOrYaml(text);
  } catch (error) {
    const first = ((error instanceof Error ? error.message : String(error)).split('\n')[0] ?? '').replace(
      /:$/,
      '',
    );
    throw invalid(`not valid YAML or JSON: ${first}`);
  }
  if (data === null || data === undefined) throw invalid('the file is empty (expected a "services" list)');
  const result = documentSchema.safeParse(data);
  if (!result.success) {
    // A misspelt key usually also shows up as a missing required one; the misspelling is the news.
    const issues = result.error.issues;
    const issue = issues.find((candidate) => candidate.code === 'unrecognized_keys') ?? issues[0];
    throw invalid(issue ? issueReason(issue) : 'invalid document');
  }

  const services: ServiceModel[] = [];
  const seen = new Map<string, number>();
  result.data.services.forEach((entry, index) => {
    const key = `${entry.namespace}/${entry.name}`;
    const first = seen.get(key);
    if (first !== undefined)
      throw invalid(`services[${index}]: duplicate service ${key} (also services[${first}])`);
    seen.set(key, index);
    services.push(toServiceModel(entry, index));
  });
  return services;
}

/**
 * JSON is YAML, but the YAML parser reads about 1 MB/s while JSON.parse reads a hundred times faster, and
 * large endpoints files are usually generated JSON: a document that looks like a JSON object is tried as
 * JSON first. If that fails it goes to the YAML parser, whose error message (with line and column) is the
 * one reported.
 */
function parseJsonOrYaml(text: string): unknown {
  if (/^\s*\{/.test(text)) {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      // Not strict JSON (comments, trailing commas, YAML flow style): YAML decides.
    }
  }
  return parseYaml(text);
}

function toServiceModel(entry: ServiceEntry, index: number): ServiceModel {
  const ports: ServicePortModel[] = [];
  const keys = new Map<string, number>();
  entry.ports.forEach((port, portIndex) => {
    const key = port.name ?? String(port.port);
    const first = keys.get(key);
    if (first !== undefined) {
      throw invalid(
        `services[${index}].ports[${portIndex}]: duplicate port key "${key}" (also ports[${first}])`,
      );
    }
    keys.set(key, portIndex);
    // The file lists endpoint ports, so the Service port and the target port are the same number.
    ports.push({
      key,
      port: port.port,
      targetPort: port.port,
      ...(port.appProtocol !== undefined ? { appProtocol: port.appProtocol } : {}),
    });
  });
  const annotations = policyAnnotations(entry.annotations);
  return {
    namespace: entry.namespace,
    name: entry.name,
    ports,
    endpoints: (entry.endpoints ?? []).map(toEndpointModel),
    ...(annotations === undefined ? {} : { annotations }),
  };
}

function toEndpointModel(entry: EndpointEntry): EndpointModel {
  const conditions = entry.conditions ?? { ready: undefined, serving: undefined, terminating: undefined };
  const targetRef: TargetRef | undefined = entry.targetRef
    ? {
        kind: entry.targetRef.kind,
        name: entry.targetRef.name,
        ...(entry.targetRef.namespace !== undefined ? { namespace: entry.targetRef.namespace } : {}),
        ...(entry.targetRef.uid !== undefined ? { uid: entry.targetRef.uid } : {}),
      }
    : undefined;
  return {
    addresses: entry.addresses,
    // Absent stays absent: eligibility applies Kubernetes' nil defaults.
    conditions: {
      ...(conditions.ready !== undefined ? { ready: conditions.ready } : {}),
      ...(conditions.serving !== undefined ? { serving: conditions.serving } : {}),
      ...(conditions.terminating !== undefined ? { terminating: conditions.terminating } : {}),
    },
    ...(targetRef ? { targetRef } : {}),
    ...(entry.zone !== undefined ? { zone: entry.zone } : {}),
    ...(entry.forZones !== undefined ? { forZones: entry.forZones } : {}),
    ...(entry.nodeName !== undefined ? { nodeName: entry.nodeName } : {}),
    ...(entry.hostname !== undefined ? { hostname: entry.hostname } : {}),
  };
}
