/**
 * Command-line configuration: which flags each command takes, where a value may come from (flag,
 * `READYGATE_*` env var, `--config` file) and how it is validated into a frozen, typed config.
 * Pure: the CLI reads files and the environment and hands the contents in, so every rule here is
 * table-tested without touching the process.
 *
 * Precedence is flag > env > config file > default. Every problem becomes one ReadygateError
 * (CONFIG_INVALID) whose message names where the bad value came from, so the CLI can print it as a
 * single line.
 */
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ErrorCode, ReadygateError } from './errors.js';
import { checkHostPort } from './net.js';

// ---------------------------------------------------------------------------------------------------
// Value parsers. Each returns the parsed value or a string describing what is wrong with `text`.
// ---------------------------------------------------------------------------------------------------

export { checkHostPort as parseHostPort, type HostPort } from './net.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

const DURATION_UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
/** Longest accepted duration: beyond ~24.8 days Node's timers overflow, and nothing here waits a day. */
export const MAX_DURATION_MS = 24 * 3_600_000;

/** Go-style durations (`30s`, `500ms`, `1m30s`, `1.5s`) in milliseconds. A bare number is ambiguous. */
export function parseDuration(text: string): number | string {
  const problem = `"${text}" is not a duration (examples: 30s, 500ms, 2m, 1m30s)`;
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(text)) return problem;
  let total = 0;
  for (const part of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    total += Number(part[1]) * (DURATION_UNIT_MS[part[2] ?? ''] ?? Number.NaN);
  }
  if (!Number.isFinite(total)) return problem;
  if (total > MAX_DURATION_MS) return `"${text}" is longer than the maximum of 24h`;
  return Math.round(total);
}

const SIZE_UNIT_BYTES: Readonly<Record<string, number>> = {
  '': 1,
  B: 1,
  KiB: 1024,
  MiB: 2 ** 20,
  GiB: 2 ** 30,
};

/** Byte sizes (`4MiB`, `512KiB`, `1048576`) as a positive whole number of bytes, at most 64 GiB. */
export function parseByteSize(text: string): number | string {
  const match = /^(\d+)(B|KiB|MiB|GiB)?$/.exec(text.trim());
  const bytes = match ? Number(match[1]) * (SIZE_UNIT_BYTES[match[2] ?? ''] ?? Number.NaN) : Number.NaN;
  if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes > 64 * 2 ** 30) {
    return `"${text}" is not a size (examples: 4MiB, 512KiB, 1048576; at least 1 byte, at most 64GiB)`;
  }
  return bytes;
}

export function parseHttpUrl(text: string): string | { readonly problem: string } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    // The usual slip: an address where a URL belongs.
    if (typeof checkHostPort(text) !== 'string')
      return { problem: `"${text}" is not a URL (did you mean http://${text}?)` };
    return { problem: `"${text}" is not a URL (example: http://127.0.0.1:9901)` };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    return { problem: `"${text}" must be an http:// or https:// URL` };
  if (url.hostname === '') return { problem: `"${text}" has no host` };
  // A trailing slash would double up when callers append paths like /clusters.
  return url.href.replace(/\/+$/, '');
}

export type SourceSpec =
  | { readonly kind: 'kubernetes' }
  | {
      readonly kind: 'file';
      /** As given; resolved against the working directory when opened. */ readonly path: string;
    };

export function parseSource(text: string): SourceSpec | string {
  if (text === 'kubernetes') return Object.freeze({ kind: 'kubernetes' });
  if (text.startsWith('file:')) {
    const path = text.slice('file:'.length);
    if (path === '') return `"${text}" names no file (example: file:examples/endpoints.yaml)`;
    return Object.freeze({ kind: 'file', path });
  }
  return `"${text}" is not a source (use file:PATH or kubernetes)`;
}

export interface PodRef {
  readonly namespace: string;
  readonly name: string;
}

export function parsePodRef(text: string): PodRef | string {
  const [namespace, name, ...rest] = text.split('/');
  if (namespace === undefined || name === undefined || rest.length > 0)
    return `"${text}" is not NAMESPACE/NAME (example: default/web-6d4f9c7b8-x2x9k)`;
  if (!isDnsLabel(namespace)) return `"${text}": namespace "${namespace}" is not a valid Kubernetes name`;
  if (!isDnsSubdomain(name)) return `"${text}": pod name "${name}" is not a valid Kubernetes name`;
  return Object.freeze({ namespace, name });
}

export function isDnsLabel(text: string): boolean {
  return text.length <= 63 && DNS_LABEL.test(text);
}

export function isDnsSubdomain(text: string): boolean {
  return text.length <= 253 && text.split('.').every((label) => DNS_LABEL.test(label));
}

const LABEL_KEY =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

/**
 * Checks a Kubernetes label selector (`app=web,tier!=db`, `env in (a,b)`, `!legacy`) so that a typo fails
 * at startup instead of as an API error after the control plane is up.
 */
export function checkLabelSelector(text: string): string | undefined {
  const requirements = splitTopLevel(text);
  if (requirements === undefined) return `"${text}" has unbalanced parentheses`;
  for (const raw of requirements) {
    const requirement = raw.trim();
    const problem = `"${text}": "${requirement}" is not a label selector requirement (examples: app=web, tier!=db, env in (a,b), !legacy)`;
    const set = /^(\S+)\s+(in|notin)\s*\((.*)\)$/.exec(requirement);
    if (set) {
      const values = (set[3] ?? '').split(',').map((v) => v.trim());
      if (!LABEL_KEY.test(set[1] ?? '') || values.some((v) => v === '' || !LABEL_VALUE.test(v)))
        return problem;
      continue;
    }
    const equality = /^([^=!\s]+)\s*(==|=|!=)\s*(\S*)$/.exec(requirement);
    if (equality) {
      if (!LABEL_KEY.test(equality[1] ?? '') || !LABEL_VALUE.test(equality[3] ?? '')) return problem;
      continue;
    }
    const exists = /^!?\s*(\S+)$/.exec(requirement);
    if (exists && LABEL_KEY.test(exists[1] ?? '')) continue;
    return problem;
  }
  return undefined;
}

function splitTopLevel(text: string): string[] | undefined {
  const parts: string[] = [];
  let depth = 0;
  let current = '';
  for (const char of text) {
    if (char === '(') depth += 1;
    if (char === ')') depth -= 1;
    if (depth < 0 || depth > 1) return undefined;
    if (char === ',' && depth === 0) {
      parts.push(current);
      current = '';
    } else current += char;
  }
  if (depth !== 0) return undefined;
  parts.push(current);
  return parts;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const LOG_FORMATS = ['json', 'text'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Env vars carry booleans as text; accept the usual spellings and nothing else. */
export function parseBooleanText(text: string): boolean | undefined {
  const normalized = text.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(normalized)) return true;
  if (['false', '0', 'no', 'off', ''].includes(normalized)) return false;
  return undefined;
}

// ---------------------------------------------------------------------------------------------------
// Zod schemas built on the parsers, so one rule serves flags, env vars and config files.
// ---------------------------------------------------------------------------------------------------

function refined<T>(parse: (text: string) => T | string): z.ZodType<T, string> {
  return z.string().transform((text, ctx): T => {
    const result = parse(text);
    if (typeof result === 'string') {
      ctx.issues.push({ code: 'custom', message: result, input: text });
      return z.NEVER;
    }
    return result;
  });
}

const hostPortSchema = refined(checkHostPort);
const durationSchema = refined(parseDuration);
const connectionCountSchema = refined((text): { count: number } | string =>
  /^[1-9][0-9]{0,6}$/.test(text.trim())
    ? { count: Number(text.trim()) }
    : `"${text}" is not a whole number of connections from 1 to 9999999`,
).transform((v) => v.count);
const byteSizeSchema = refined(parseByteSize);
const sourceSchema = refined(parseSource);
const podSchema = refined(parsePodRef);
const urlSchema = refined((text) => {
  const result = parseHttpUrl(text);
  return typeof result === 'string' ? { url: result } : result.problem;
}).transform((value) => value.url);
const urlListSchema = z.array(z.string()).transform((items, ctx): readonly string[] => {
  const urls: string[] = [];
  for (const item of items.map((text) => text.trim()).filter((text) => text !== '')) {
    const result = parseHttpUrl(item);
    if (typeof result !== 'string') {
      ctx.issues.push({ code: 'custom', message: result.problem, input: items });
      return z.NEVER;
    }
    if (!urls.includes(result)) urls.push(result);
  }
  return Object.freeze(urls);
});
/** A whole number 0..1000000, written in decimal. */
const countSchema = refined((text) =>
  /^\d{1,7}$/.test(text.trim()) && Number(text) <= 1_000_000
    ? { count: Number(text) }
    : `"${text}" is not a whole number from 0 to 1000000`,
).transform((v) => v.count);
const nonEmptyText = refined((text) =>
  text.trim() === '' ? `"${text}" must not be empty` : { text },
).transform((v) => v.text);
const logLevelSchema = refined((text): { level: LogLevel } | string => {
  const level = LOG_LEVELS.find((candidate) => candidate === text);
  return level ? { level } : `"${text}" is not a log level (use one of ${LOG_LEVELS.join(', ')})`;
}).transform((v) => v.level);
const logFormatSchema = refined((text): { format: LogFormat } | string => {
  const format = LOG_FORMATS.find((candidate) => candidate === text);
  return format ? { format } : `"${text}" is not a log format (use json or text)`;
}).transform((v) => v.format);
const terminatingSchema = refined((text): { mode: 'draining' | 'omit' } | string =>
  text === 'draining' || text === 'omit' ? { mode: text } : `"${text}" is not draining or omit`,
).transform((v) => v.mode);
const namespacesSchema = z.array(z.string()).transform((items, ctx): readonly string[] => {
  const names = [...new Set(items.map((item) => item.trim()).filter((item) => item !== ''))];
  // `--namespace ''`, `--namespace ,`: a value was given and names nothing. Reading that as "every
  // namespace" would silently widen what readygate watches (a templating slip); an empty list is an error.
  if (items.length > 0 && names.length === 0) {
    ctx.issues.push({
      code: 'custom',
      message: `${JSON.stringify(items.join(','))} names no namespace; leave the option out to watch every namespace`,
      input: items,
    });
    return z.NEVER;
  }
  const bad = names.find((name) => !isDnsLabel(name));
  if (bad !== undefined) {
    ctx.issues.push({ code: 'custom', message: `"${bad}" is not a valid namespace name`, input: items });
    return z.NEVER;
  }
  return Object.freeze(names);
});
const selectorSchema = refined((text) => checkLabelSelector(text) ?? { selector: text.trim() }).transform(
  (v) => v.selector,
);

export const OUTPUT_FORMATS = ['table', 'wide', 'json', 'yaml'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];
const outputSchema = refined((text): { format: OutputFormat } | string => {
  const format = OUTPUT_FORMATS.find((candidate) => candidate === text);
  return format ? { format } : `"${text}" is not an output format (use one of ${OUTPUT_FORMATS.join(', ')})`;
}).transform((v) => v.format);

// ---------------------------------------------------------------------------------------------------
// Option tables: one row per flag. The flag name is also the config-file key.
// ---------------------------------------------------------------------------------------------------

export type OptionKind = 'string' | 'boolean' | 'list';

export interface OptionDef<Out = unknown> {
  /** Flag name without dashes; also the config-file key. */
  readonly flag: string;
  /** A one-letter alias (`o` for `-o`), for the flags kubectl users type by reflex. */
  readonly short?: string;
  readonly kind: OptionKind;
  readonly env: string;
  /** Input is `string` (string), `boolean` (boolean), `string[]` (list) or undefined when unset. */
  readonly schema: z.ZodType<Out>;
  readonly valueName?: string;
  readonly help: string;
  readonly defaultText?: string;
  /**
   * Help shows the flag as `--[no-]<flag>` (set on booleans that default to on). Every boolean accepts
   * `--no-<flag>`, `--<flag>=false` and `--<flag>=true`, so a value set by env or config can be undone.
   */
  readonly negatable?: boolean;
  /** The value is a file path that must be readable when the command starts (checked by the CLI). */
  readonly readableFile?: boolean;
  /** No default: resolution fails with "--flag is required" when no layer sets it. */
  readonly required?: boolean;
  /** A count: the config file may give it as a YAML number. */
  readonly acceptsNumber?: boolean;
}

function option<Out>(def: OptionDef<Out>): OptionDef<Out> {
  return Object.freeze(def);
}

/** `-o`: how a one-shot command prints its result (src/cli/output.ts). Unset means the command's table. */
const outputOption = option({
  flag: 'output',
  short: 'o',
  kind: 'string',
  env: 'READYGATE_OUTPUT',
  schema: outputSchema.optional(),
  valueName: 'FORMAT',
  help: `Print the result as ${OUTPUT_FORMATS.join(', ')} (wide: the table with more columns; json and yaml: the documented, stable document).`,
  defaultText: 'table',
});

const logLevelOption = option({
  flag: 'log-level',
  kind: 'string',
  env: 'READYGATE_LOG_LEVEL',
  schema: logLevelSchema.prefault('info'),
  valueName: 'LEVEL',
  help: `Log level: ${LOG_LEVELS.join(', ')}.`,
  defaultText: 'info',
});

const logFormatOption = option({
  flag: 'log-format',
  kind: 'string',
  env: 'READYGATE_LOG_FORMAT',
  // No default here: unset means "decide by whether the log stream is a terminal" (src/log.ts).
  schema: logFormatSchema.optional(),
  valueName: 'json|text',
  help: 'Log lines as JSON (one object per line, ISO-8601 UTC time) or as text (local time, level, message, key=value). Default: text when the log stream is a terminal, else json.',
});

/** TLS for the gRPC ports (serve's ADS and ext_proc, the extproc command); src/tls/. */
const tlsOptions = {
  tlsCert: option({
    flag: 'tls-cert',
    kind: 'string',
    env: 'READYGATE_TLS_CERT',
    schema: nonEmptyText.optional(),
    valueName: 'FILE',
    help: 'PEM certificate chain: serve gRPC over TLS (ALPN h2) instead of plain HTTP/2. Needs --tls-key. Reloaded when the file changes.',
    readableFile: true,
  }),
  tlsKey: option({
    flag: 'tls-key',
    kind: 'string',
    env: 'READYGATE_TLS_KEY',
    schema: nonEmptyText.optional(),
    valueName: 'FILE',
    help: 'PEM private key of --tls-cert (unencrypted). Reloaded when the file changes.',
    readableFile: true,
  }),
  tlsClientCa: option({
    flag: 'tls-client-ca',
    kind: 'string',
    env: 'READYGATE_TLS_CLIENT_CA',
    schema: nonEmptyText.optional(),
    valueName: 'FILE',
    help: 'PEM CA bundle: require mTLS; a client without a certificate that chains to it is refused in the handshake. Reloaded when the file changes.',
    readableFile: true,
  }),
} as const;

const serveOptions = {
  source: option({
    flag: 'source',
    kind: 'string',
    env: 'READYGATE_SOURCE',
    schema: sourceSchema.prefault('kubernetes'),
    valueName: 'file:PATH|kubernetes',
    help: 'Where endpoints come from: an endpoints file (watched for edits) or the Kubernetes API.',
    defaultText: 'kubernetes',
  }),
  sourceFileMaxSize: option({
    flag: 'source-file-max-size',
    kind: 'string',
    env: 'READYGATE_SOURCE_FILE_MAX_SIZE',
    schema: byteSizeSchema.prefault('32MiB'),
    valueName: 'SIZE',
    help: 'File source: a larger endpoints file is rejected (at startup: exit 2; later: the last good version keeps being served, readygate_file_source_valid 0).',
    defaultText: '32MiB',
  }),
  xdsAddress: option({
    flag: 'xds-address',
    kind: 'string',
    env: 'READYGATE_XDS_ADDRESS',
    schema: hostPortSchema.prefault('127.0.0.1:18000'),
    valueName: 'HOST:PORT',
    help: 'Where the ADS gRPC server (CDS/EDS for Envoy, LDS/RDS for proxyless gRPC) listens.',
    defaultText: '127.0.0.1:18000',
  }),
  xdsMaxConnections: option({
    flag: 'xds-max-connections',
    kind: 'string',
    env: 'READYGATE_XDS_MAX_CONNECTIONS',
    schema: connectionCountSchema.prefault('10000'),
    valueName: 'N',
    help: 'Connections the ADS port accepts at once (one per Envoy); more are closed as they arrive. See docs/security.md.',
    defaultText: '10000',
    acceptsNumber: true,
  }),
  adminAddress: option({
    flag: 'admin-address',
    kind: 'string',
    env: 'READYGATE_ADMIN_ADDRESS',
    schema: hostPortSchema.prefault('127.0.0.1:9102'),
    valueName: 'HOST:PORT',
    help: 'Where the admin HTTP server listens: /healthz, /readyz, /metrics, /debug/syncz, /debug/resources, /debug/endpoints, /debug/gates, /debug/policy, /drain-wait.',
    defaultText: '127.0.0.1:9102',
  }),
  kubeconfig: option({
    flag: 'kubeconfig',
    kind: 'string',
    env: 'READYGATE_KUBECONFIG',
    schema: nonEmptyText.optional(),
    valueName: 'FILE',
    help: 'Kubeconfig for --source kubernetes. Without it: in-cluster config, then $KUBECONFIG, then ~/.kube/config.',
    readableFile: true,
  }),
  namespaces: option({
    flag: 'namespace',
    kind: 'list',
    env: 'READYGATE_NAMESPACE',
    schema: namespacesSchema.prefault([]),
    valueName: 'NAME[,NAME...]',
    help: 'Namespaces to watch (repeatable or comma-separated). Default: all namespaces.',
  }),
  serviceSelector: option({
    flag: 'service-selector',
    kind: 'string',
    env: 'READYGATE_SERVICE_SELECTOR',
    schema: selectorSchema.optional(),
    valueName: 'SELECTOR',
    help: 'Only Services matching this label selector (e.g. readygate.io/enabled=true). Default: all.',
  }),
  kubernetesRequestTimeout: option({
    flag: 'kubernetes-request-timeout',
    kind: 'string',
    env: 'READYGATE_KUBERNETES_REQUEST_TIMEOUT',
    schema: durationSchema.refine((ms) => ms >= 100, { error: 'must be at least 100ms' }).prefault('8s'),
    valueName: 'DURATION',
    help: 'Kubernetes source: how long a list or watch request may wait for the API to start answering (connect, TLS, first response); past it the request is a failure, logged as a warning.',
    defaultText: '8s',
  }),
  kubernetesListTimeout: option({
    flag: 'kubernetes-list-timeout',
    kind: 'string',
    env: 'READYGATE_KUBERNETES_LIST_TIMEOUT',
    schema: durationSchema.refine((ms) => ms >= 100, { error: 'must be at least 100ms' }).prefault('60s'),
    valueName: 'DURATION',
    help: 'Kubernetes source: deadline for a whole list (body included).',
    defaultText: '60s',
  }),
  kubernetesWatchSilence: option({
    flag: 'kubernetes-watch-silence',
    kind: 'string',
    env: 'READYGATE_KUBERNETES_WATCH_SILENCE',
    schema: durationSchema.refine((ms) => ms >= 100, { error: 'must be at least 100ms' }).prefault('60s'),
    valueName: 'DURATION',
    help: 'Kubernetes source: a watch that delivers no event and no bookmark for this long is re-established; if that fails it is failing (/readyz 503, warning) and relisted. A dead connection is noticed within this plus --kubernetes-request-timeout.',
    defaultText: '60s',
  }),
  terminating: option({
    flag: 'terminating',
    kind: 'string',
    env: 'READYGATE_TERMINATING',
    schema: terminatingSchema.prefault('draining'),
    valueName: 'draining|omit',
    help: 'Terminating endpoints that still serve: send them as DRAINING, or leave them out.',
    defaultText: 'draining',
  }),
  terminatingFallback: option({
    flag: 'terminating-fallback',
    kind: 'boolean',
    env: 'READYGATE_TERMINATING_FALLBACK',
    schema: z.boolean().prefault(true),
    help: 'When a port has no ready endpoint, send its serving terminating endpoints as HEALTHY (Kubernetes ProxyTerminatingEndpoints). Turn off with --no-terminating-fallback.',
    defaultText: 'on',
    negatable: true,
  }),
  readinessGates: option({
    flag: 'readiness-gates',
    kind: 'boolean',
    env: 'READYGATE_READINESS_GATES',
    schema: z.boolean().prefault(false),
    help: 'Kubernetes source: set the readygate.io/envoy-synced readiness gate of pods that declare it, once every Envoy has ACKed them (needs pods/status patch and Lease RBAC, kind/base/rbac-readiness.yaml).',
    defaultText: 'off',
  }),
  gateTimeout: option({
    flag: 'gate-timeout',
    kind: 'string',
    env: 'READYGATE_GATE_TIMEOUT',
    schema: durationSchema.refine((ms) => ms > 0, { error: 'must be longer than 0s' }).prefault('2m'),
    valueName: 'DURATION',
    help: 'How long a gate may wait for Envoys before it is reported as timed out (it stays False unless --gate-flip-on-timeout).',
    defaultText: '2m',
  }),
  gateFlipOnTimeout: option({
    flag: 'gate-flip-on-timeout',
    kind: 'boolean',
    env: 'READYGATE_GATE_FLIP_ON_TIMEOUT',
    schema: z.boolean().prefault(false),
    help: 'Set a gate True anyway when --gate-timeout passes (availability over certainty).',
    defaultText: 'off',
  }),
  gateMinProxies: option({
    flag: 'gate-min-proxies',
    kind: 'string',
    env: 'READYGATE_GATE_MIN_PROXIES',
    schema: countSchema.prefault('1'),
    valueName: 'N',
    help: 'A gate turns True only once at least N connected Envoys (counted across all replicas) ACKed a version routing to the pod; 0 = no minimum.',
    defaultText: '1',
  }),
  leaseNamespace: option({
    flag: 'lease-namespace',
    kind: 'string',
    env: 'READYGATE_LEASE_NAMESPACE',
    schema: nonEmptyText.optional(),
    valueName: 'NAME',
    help: 'Namespace of the Lease that elects the one replica writing pod status. Default: $POD_NAMESPACE, else readygate.',
  }),
  peersDns: option({
    flag: 'peers-dns',
    kind: 'string',
    env: 'READYGATE_PEERS_DNS',
    schema: hostPortSchema.optional(),
    valueName: 'HOST:PORT',
    help: 'Headless Service name and admin port of the other readygate replicas (e.g. readygate-peers.readygate.svc:9102); gates and drain-wait ask them about their Envoys.',
  }),
  extproc: option({
    flag: 'extproc',
    kind: 'boolean',
    env: 'READYGATE_EXTPROC',
    schema: z.boolean().prefault(false),
    help: 'Also host the ext_proc service (see `readygate extproc`) in this process.',
    defaultText: 'off',
  }),
  extprocAddress: option({
    flag: 'extproc-address',
    kind: 'string',
    env: 'READYGATE_EXTPROC_ADDRESS',
    schema: hostPortSchema.prefault('127.0.0.1:18001'),
    valueName: 'HOST:PORT',
    help: 'Where the ext_proc gRPC server listens when --extproc is set.',
    defaultText: '127.0.0.1:18001',
  }),
  xdsStallTimeout: option({
    flag: 'xds-stall-timeout',
    kind: 'string',
    env: 'READYGATE_XDS_STALL_TIMEOUT',
    schema: durationSchema.refine((ms) => ms >= 100, { error: 'must be at least 100ms' }).prefault('30s'),
    valueName: 'DURATION',
    help: 'Close an xDS connection (GOAWAY, then drop) that takes none of the bytes it is sent for this long, e.g. a hung Envoy; it gets the full state when it reconnects.',
    defaultText: '30s',
  }),
  xdsMaxPendingPerConnection: option({
    flag: 'xds-max-pending-per-connection',
    kind: 'string',
    env: 'READYGATE_XDS_MAX_PENDING_PER_CONNECTION',
    schema: byteSizeSchema.prefault('4MiB'),
    valueName: 'SIZE',
    help: "Bytes of responses one xDS connection may hold before the network takes them; beyond it that connection's streams wait and then send their latest state.",
    defaultText: '4MiB',
  }),
  xdsMaxPending: option({
    flag: 'xds-max-pending',
    kind: 'string',
    env: 'READYGATE_XDS_MAX_PENDING',
    schema: byteSizeSchema.prefault('64MiB'),
    valueName: 'SIZE',
    help: 'The same over all xDS connections, to pace a storm of connecting Envoys: beyond it streams wait their turn.',
    defaultText: '64MiB',
  }),
  ...tlsOptions,
  tlsHandshakeTimeout: option({
    flag: 'tls-handshake-timeout',
    kind: 'string',
    env: 'READYGATE_TLS_HANDSHAKE_TIMEOUT',
    schema: durationSchema.refine((ms) => ms > 0, { error: 'must be longer than 0s' }).prefault('10s'),
    valueName: 'DURATION',
    help: 'With --tls-cert: an xDS client that has not finished its TLS handshake by then is disconnected (metric readygate_tls_handshake_failures_total{reason="timeout"}).',
    defaultText: '10s',
  }),
  logLevel: logLevelOption,
  logFormat: logFormatOption,
} as const;

const extprocOptions = {
  address: option({
    flag: 'address',
    kind: 'string',
    env: 'READYGATE_EXTPROC_ADDRESS',
    schema: hostPortSchema.prefault('127.0.0.1:18001'),
    valueName: 'HOST:PORT',
    help: 'Where the ext_proc gRPC server listens.',
    defaultText: '127.0.0.1:18001',
  }),
  debug: option({
    flag: 'debug',
    kind: 'boolean',
    env: 'READYGATE_EXTPROC_DEBUG',
    schema: z.boolean().prefault(false),
    help: 'Add the cluster, upstream address and pod to problem+json bodies (they name internal hosts: never on public traffic).',
    defaultText: 'off',
  }),
  ...tlsOptions,
  logLevel: logLevelOption,
  logFormat: logFormatOption,
} as const;

const statusOptions = {
  envoyAdmin: option({
    flag: 'envoy-admin',
    kind: 'string',
    env: 'READYGATE_ENVOY_ADMIN',
    valueName: 'URL',
    schema: urlSchema.optional(),
    help: "One Envoy's admin URL (e.g. http://127.0.0.1:9901): compare that Envoy cluster by cluster. Without it, --control-plane/--peers-dns give the fleet view: one row per proxy connected to any replica.",
  }),
  controlPlane: option({
    flag: 'control-plane',
    kind: 'list',
    env: 'READYGATE_CONTROL_PLANE',
    schema: urlListSchema.prefault([]),
    valueName: 'URL[,URL...]',
    help: "readygate's admin URL (e.g. http://127.0.0.1:9102). Repeat it (or use --peers-dns) for every replica: each proxy streams from one of them. Without --envoy-admin: list the proxies on these replicas; with it: compare that Envoy with the replica holding its stream.",
  }),
  peersDns: option({
    flag: 'peers-dns',
    kind: 'string',
    env: 'READYGATE_PEERS_DNS',
    schema: hostPortSchema.optional(),
    valueName: 'HOST:PORT',
    help: 'Headless Service name and admin port of the readygate replicas (e.g. readygate-peers.readygate.svc:9102): ask every replica it resolves to, as with repeated --control-plane.',
  }),
  timeout: option({
    flag: 'timeout',
    kind: 'string',
    env: 'READYGATE_STATUS_TIMEOUT',
    schema: durationSchema.refine((ms) => ms > 0, { error: 'must be longer than 0s' }).prefault('5s'),
    valueName: 'DURATION',
    help: 'Give up (exit 3, unknown) when the admins have not all answered within this.',
    defaultText: '5s',
  }),
  json: option({
    flag: 'json',
    kind: 'boolean',
    env: 'READYGATE_STATUS_JSON',
    schema: z.boolean().prefault(false),
    help: 'The same as -o json (kept for scripts written before -o); an explicit -o wins.',
    defaultText: 'off',
  }),
  output: outputOption,
  logLevel: logLevelOption,
  logFormat: logFormatOption,
} as const;

const drainWaitOptions = {
  pod: option({
    flag: 'pod',
    kind: 'string',
    env: 'READYGATE_POD',
    schema: podSchema,
    valueName: 'NAMESPACE/NAME',
    help: 'The pod that is shutting down.',
    required: true,
  }),
  timeout: option({
    flag: 'timeout',
    kind: 'string',
    env: 'READYGATE_DRAIN_TIMEOUT',
    schema: durationSchema.refine((ms) => ms > 0, { error: 'must be longer than 0s' }).prefault('30s'),
    valueName: 'DURATION',
    help: 'Give up (exit 1) after this long, e.g. 30s, 2m.',
    defaultText: '30s',
  }),
  controlPlane: option({
    flag: 'control-plane',
    kind: 'string',
    env: 'READYGATE_CONTROL_PLANE',
    schema: urlSchema.prefault('http://127.0.0.1:9102'),
    valueName: 'URL',
    help: "readygate's admin URL, asked whether every Envoy has stopped sending new requests to the pod.",
    defaultText: 'http://127.0.0.1:9102',
  }),
  output: outputOption,
  logLevel: logLevelOption,
  logFormat: logFormatOption,
} as const;

const versionOptions = {
  output: outputOption,
  logLevel: logLevelOption,
  logFormat: logFormatOption,
} as const;

const demoOptions = {
  short: option({
    flag: 'short',
    kind: 'boolean',
    env: 'READYGATE_DEMO_SHORT',
    schema: z.boolean().prefault(false),
    help: 'Run shorter phases (what the integration test uses).',
    defaultText: 'off',
  }),
  out: option({
    flag: 'out',
    kind: 'string',
    env: 'READYGATE_DEMO_OUT',
    schema: nonEmptyText.prefault('demo-output'),
    valueName: 'DIR',
    help: 'Directory for the results table (JSON) and the timeline chart.',
    defaultText: 'demo-output',
  }),
  logLevel: logLevelOption,
  logFormat: logFormatOption,
} as const;

interface CommandDef<Options extends Readonly<Record<string, OptionDef>>> {
  readonly summary: string;
  readonly description: string;
  readonly options: Options;
}

export const COMMANDS = Object.freeze({
  serve: {
    summary: 'Run the control plane: watch a source, serve CDS/EDS over ADS to Envoy.',
    description:
      'Runs until SIGTERM or SIGINT, then closes the source, ends every xDS stream with a status and closes the admin server.',
    options: serveOptions,
  },
  extproc: {
    summary: 'Run the ext_proc service that maps upstream failures to 502/503/504 with problem+json.',
    description: 'Runs until SIGTERM or SIGINT. Envoy calls it through an ext_proc filter.',
    options: extprocOptions,
  },
  status: {
    summary: "Every proxy's sync state per xDS type, or one Envoy against readygate; exit 1 when not synced.",
    description:
      "Without --envoy-admin: one row per proxy streaming from any replica given (--control-plane, --peers-dns), from each replica's /debug/syncz. With --envoy-admin: that Envoy's admin (/clusters, /config_dump) against the replica it streams from.",
    options: statusOptions,
  },
  'drain-wait': {
    summary: 'preStop helper: wait until every Envoy stopped sending new requests to a pod.',
    description: 'Exits 0 when the pod is out of every load assignment Envoy ACKed, 1 on timeout.',
    options: drainWaitOptions,
  },
  demo: {
    summary: 'Rollouts, a slow gateway, a crash and an outage under load: naive, ready-only, readygate.',
    description:
      'Starts real Envoys, three control planes (one readygate) and backends on 127.0.0.x; prints a side-by-side table.',
    options: demoOptions,
  },
  version: {
    summary:
      'Print the version, git commit, Node.js, the xDS/ext_proc APIs served and the Envoy tested against.',
    description: '`readygate --version` prints the same.',
    options: versionOptions,
  },
} satisfies Record<string, CommandDef<Readonly<Record<string, OptionDef>>>>);

export type CommandName = keyof typeof COMMANDS;
export const COMMAND_NAMES = Object.freeze(Object.keys(COMMANDS)) as readonly CommandName[];

export function isCommandName(text: string): text is CommandName {
  return Object.hasOwn(COMMANDS, text);
}

type ConfigOf<Options> = {
  readonly [K in keyof Options]: Options[K] extends OptionDef<infer Out> ? Out : never;
};

export type ServeConfig = ConfigOf<typeof serveOptions>;
export type ExtprocConfig = ConfigOf<typeof extprocOptions>;
export type StatusConfig = ConfigOf<typeof statusOptions>;
export type DrainWaitConfig = ConfigOf<typeof drainWaitOptions>;
export type DemoConfig = ConfigOf<typeof demoOptions>;
export type VersionConfig = ConfigOf<typeof versionOptions>;

export interface CommandConfigs {
  readonly serve: ServeConfig;
  readonly extproc: ExtprocConfig;
  readonly status: StatusConfig;
  readonly 'drain-wait': DrainWaitConfig;
  readonly demo: DemoConfig;
  readonly version: VersionConfig;
}

/** Env var naming the config file when --config is not given. */
export const CONFIG_ENV = 'READYGATE_CONFIG';

// ---------------------------------------------------------------------------------------------------
// Command line.
// ---------------------------------------------------------------------------------------------------

type RawValue = string | boolean | readonly string[];

/** Where a value came from, so an error can say which flag, env var or file key to fix. */
export type Origin =
  | { readonly kind: 'flag'; readonly flag: string }
  | { readonly kind: 'env'; readonly name: string; readonly text: string }
  | { readonly kind: 'file'; readonly path: string; readonly key: string };

interface Sourced {
  readonly value: RawValue;
  readonly origin: Origin;
}

export interface ParsedCommandLine {
  readonly help: boolean;
  /** `--config FILE` when given on the command line. */
  readonly configPath?: string | undefined;
  /** Keyed by option key (e.g. `xdsAddress`). */
  readonly values: ReadonlyMap<string, Sourced>;
}

function configInvalid(message: string): ReadygateError {
  return new ReadygateError(ErrorCode.CONFIG_INVALID, message);
}

/** `[config key, option]` pairs of a command, in table order. */
export function optionEntries(command: CommandName): [string, OptionDef][] {
  return Object.entries(COMMANDS[command].options as Readonly<Record<string, OptionDef>>);
}

/** Parses the arguments after the command name. Throws CONFIG_INVALID on unknown or malformed flags. */
export function parseCommandLine(command: CommandName, args: readonly string[]): ParsedCommandLine {
  const entries = optionEntries(command);
  const byFlag = new Map(entries.map(([key, def]) => [def.flag, { key, def }]));
  const parseOptions: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
    config: { type: 'string' },
  };
  for (const [, def] of entries)
    parseOptions[def.flag] = {
      type: def.kind === 'boolean' ? 'boolean' : 'string',
      ...(def.short === undefined ? {} : { short: def.short }),
    };

  // Non-strict with tokens: parseArgs' own errors are long and mention internals; ours name the flag.
  const { tokens } = parseArgs({
    args: [...args],
    options: parseOptions,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const values = new Map<string, Sourced>();
  let help = false;
  let configPath: string | undefined;
  const lists = new Map<string, string[]>();
  const usage = `see readygate ${command} --help`;

  for (const token of tokens) {
    if (token.kind === 'option-terminator') continue;
    if (token.kind === 'positional') {
      throw configInvalid(`unexpected argument "${token.value}" for readygate ${command} (${usage})`);
    }
    const { name, rawName } = token;
    if (name === 'help') {
      help = true;
      continue;
    }
    const negated = name.startsWith('no-') ? byFlag.get(name.slice(3)) : undefined;
    const known = byFlag.get(name);
    const isString = name === 'config' || (known !== undefined && known.def.kind !== 'boolean');
    if (isString) {
      const value = token.value;
      if (value === undefined || (!token.inlineValue && value.startsWith('-') && value !== '-')) {
        throw configInvalid(`${rawName} needs a value (${usage})`);
      }
      if (name === 'config') {
        configPath = value;
      } else if (known?.def.kind === 'list') {
        const items = lists.get(known.key) ?? [];
        items.push(...value.split(','));
        lists.set(known.key, items);
        values.set(known.key, { value: items, origin: { kind: 'flag', flag: rawName } });
      } else if (known) {
        values.set(known.key, { value, origin: { kind: 'flag', flag: rawName } });
      }
      continue;
    }
    const booleanTarget =
      known?.def.kind === 'boolean' ? known : negated?.def.kind === 'boolean' ? negated : undefined;
    if (booleanTarget) {
      const { key, def } = booleanTarget;
      let value = known !== undefined;
      if (token.value !== undefined) {
        // kubectl style: --flag=false turns off a default-on flag or one set by env or config file.
        if (known === undefined) throw configInvalid(`${rawName} takes no value (${usage})`);
        const parsed = token.value === '' ? undefined : parseBooleanText(token.value);
        if (parsed === undefined)
          throw configInvalid(
            `${rawName}: "${token.value}" is not a boolean (use --${def.flag}=true or --${def.flag}=false)`,
          );
        value = parsed;
      }
      values.set(key, { value, origin: { kind: 'flag', flag: rawName } });
      continue;
    }
    throw configInvalid(`unknown flag ${rawName} for readygate ${command} (${usage})`);
  }
  return { help, configPath, values };
}

// ---------------------------------------------------------------------------------------------------
// Environment and config file.
// ---------------------------------------------------------------------------------------------------

export function environmentValues(
  command: CommandName,
  env: Readonly<Record<string, string | undefined>>,
): ReadonlyMap<string, Sourced> {
  const values = new Map<string, Sourced>();
  for (const [key, def] of optionEntries(command)) {
    const text = env[def.env];
    // An empty variable is how shells and manifests usually "unset" a value; treat it as absent.
    if (text === undefined || text === '') continue;
    const origin: Origin = { kind: 'env', name: def.env, text };
    if (def.kind === 'boolean') {
      const value = parseBooleanText(text);
      if (value === undefined)
        throw configInvalid(`${def.env}="${text}" is not a boolean (use true or false)`);
      values.set(key, { value, origin });
    } else if (def.kind === 'list') {
      values.set(key, { value: text.split(','), origin });
    } else {
      values.set(key, { value: text, origin });
    }
  }
  return values;
}

/**
 * `READYGATE_*` variables readygate reads outside the flag table: the test harness, the scripts that
 * fetch Envoy and Kubernetes binaries, and the demo. They are not typos, so they draw no warning.
 */
export const TOOLING_ENV: readonly string[] = Object.freeze([
  'READYGATE_CACHE_DIR',
  'READYGATE_CLUSTER_NAME',
  'READYGATE_ENVOY_BIN',
  'READYGATE_ENVOY_VERSION',
  'READYGATE_ETCD_VERSION',
  'READYGATE_FUZZ_SEED',
  'READYGATE_H2SPEC_BIN',
  'READYGATE_H2SPEC_VERSION',
  'READYGATE_K8S_BIN_DIR',
  'READYGATE_K8S_VERSION',
  'READYGATE_KUBECTL',
  'READYGATE_NODE_BIN_DIR',
  'READYGATE_NODE_IMAGES_DIR',
  'READYGATE_PROGRESS_SECONDS',
  'READYGATE_TEST_NODE_LINES',
  'READYGATE_TEST_VERBOSE',
]);

/** Every `READYGATE_*` name readygate knows: any command's flags (a shared env serves several), --config, tooling. */
export function knownEnvironmentNames(): ReadonlySet<string> {
  const names = new Set<string>([CONFIG_ENV, ...TOOLING_ENV]);
  for (const command of COMMAND_NAMES) for (const [, def] of optionEntries(command)) names.add(def.env);
  return names;
}

export interface UnknownVariable {
  readonly name: string;
  /** The known name closest to it, when it is close enough to be a likely typo. */
  readonly suggestion?: string | undefined;
}

/** `READYGATE_*` variables that nothing reads (a misspelt name would otherwise be silently ignored). */
export function unknownEnvironmentVariables(
  env: Readonly<Record<string, string | undefined>>,
): readonly UnknownVariable[] {
  const known = knownEnvironmentNames();
  const unknown: UnknownVariable[] = [];
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith('READYGATE_') || known.has(name)) continue;
    unknown.push({ name, suggestion: closestName(name, known) });
  }
  return unknown;
}

/** The closest candidate by edit distance, if within a third of the name's length (typos, not rewrites). */
function closestName(name: string, candidates: Iterable<string>): string | undefined {
  const suffix = name.slice('READYGATE_'.length);
  let best: { name: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const distance = editDistance(suffix, candidate.slice('READYGATE_'.length));
    if (best === undefined || distance < best.distance) best = { name: candidate, distance };
  }
  return best !== undefined && best.distance <= Math.max(2, Math.floor(suffix.length / 3))
    ? best.name
    : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i += 1) {
    const current = [i];
    for (let j = 1; j <= b.length; j += 1) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/** Parses a config file's text (YAML, which includes JSON). Throws CONFIG_INVALID naming the file. */
export function parseConfigText(path: string, text: string): Readonly<Record<string, unknown>> {
  let data: unknown;
  try {
    data = parseYaml(text);
  } catch (error) {
    throw configInvalid(`${path}: not valid YAML or JSON: ${yamlErrorText(error)}`);
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data))
    throw configInvalid(`${path}: expected a mapping of flag names to values`);
  return data as Record<string, unknown>;
}

/**
 * Values for `command` from a parsed config file. Keys are flag names. The file may be flat (keys of the
 * command being run) or have one section per command (`serve: {...}`, `extproc: {...}`) so one file can
 * configure several commands; a command's section wins over flat keys. Unknown keys are errors, in every
 * section, so a typo never silently falls back to a default.
 */
export function configFileValues(
  command: CommandName,
  path: string,
  data: Readonly<Record<string, unknown>>,
): ReadonlyMap<string, Sourced> {
  const values = new Map<string, Sourced>();
  const flat: [string, unknown][] = [];
  let section: Readonly<Record<string, unknown>> | undefined;
  for (const [key, value] of Object.entries(data)) {
    // `extproc` is both a command (section) and a serve flag (boolean): a mapping means the section.
    const isSection =
      isCommandName(key) && value !== null && typeof value === 'object' && !Array.isArray(value);
    if (isSection) {
      const sectionData = value as Record<string, unknown>;
      for (const sectionKey of Object.keys(sectionData)) {
        if (!optionEntries(key).some(([, def]) => def.flag === sectionKey))
          throw configInvalid(
            `${path}: unknown key ${key}.${sectionKey} (readygate ${key} has no --${sectionKey})`,
          );
      }
      if (key === command) section = sectionData;
    } else {
      flat.push([key, value]);
    }
  }
  const entries = optionEntries(command);
  const assign = (fileKey: string, value: unknown, label: string): void => {
    const entry = entries.find(([, def]) => def.flag === fileKey);
    if (!entry)
      throw configInvalid(`${path}: unknown key ${label} (readygate ${command} has no --${fileKey})`);
    const [key, def] = entry;
    const origin: Origin = { kind: 'file', path, key: label };
    values.set(key, { value: configValue(def, value, `${path}: ${label}`), origin });
  };
  for (const [key, value] of flat) assign(key, value, key);
  if (section) for (const [key, value] of Object.entries(section)) assign(key, value, `${command}.${key}`);
  return values;
}

/** A YAML parse error as one line (the library's message continues with a multi-line excerpt). */
export function yamlErrorText(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return (message.split('\n')[0] ?? '').replace(/:$/, '');
}

function configValue(def: OptionDef, value: unknown, label: string): RawValue {
  if (def.kind === 'boolean') {
    if (typeof value !== 'boolean')
      throw configInvalid(`${label}: expected true or false, got ${describe(value)}`);
    return value;
  }
  if (def.kind === 'list') {
    if (typeof value === 'string') return value.split(',');
    if (Array.isArray(value) && value.every((item) => typeof item === 'string')) return value;
    throw configInvalid(`${label}: expected a list of strings, got ${describe(value)}`);
  }
  if (def.acceptsNumber === true && typeof value === 'number') return String(value);
  if (typeof value !== 'string') throw configInvalid(`${label}: expected a string, got ${describe(value)}`);
  return value;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return `${typeof value} ${JSON.stringify(value)}`;
}

// ---------------------------------------------------------------------------------------------------
// Resolution.
// ---------------------------------------------------------------------------------------------------

export interface ConfigLayers {
  readonly flags: ReadonlyMap<string, Sourced>;
  readonly env?: ReadonlyMap<string, Sourced>;
  readonly file?: ReadonlyMap<string, Sourced>;
}

/**
 * Merges the layers (flag > env > file > default), validates each value and freezes the result. Values a
 * higher layer overrides are validated too: a bad READYGATE_* variable or config key is a latent failure
 * (the next run without the flag breaks), so it is reported now, naming that source.
 */
export function resolveConfig<C extends CommandName>(command: C, layers: ConfigLayers): CommandConfigs[C] {
  const config: Record<string, unknown> = {};
  for (const [key, def] of optionEntries(command)) {
    const candidates = [layers.flags.get(key), layers.env?.get(key), layers.file?.get(key)].filter(
      (sourced) => sourced !== undefined,
    );
    const winner = candidates[0];
    const result = def.schema.safeParse(winner?.value);
    if (!result.success) {
      const issue = result.error.issues[0];
      if (winner === undefined) throw configInvalid(`--${def.flag} is required (or set ${def.env})`);
      throw configInvalid(`${originLabel(winner.origin)}: ${issueText(issue?.message, winner.value)}`);
    }
    for (const overridden of candidates.slice(1)) {
      const check = def.schema.safeParse(overridden.value);
      if (check.success || winner === undefined) continue;
      throw configInvalid(
        `${originLabel(overridden.origin)}: ${issueText(check.error.issues[0]?.message, overridden.value)} ` +
          `(overridden by ${originLabel(winner.origin)}, but still invalid: fix or remove it)`,
      );
    }
    config[key] = result.data;
  }
  return Object.freeze(config) as unknown as CommandConfigs[C];
}

function originLabel(origin: Origin): string {
  switch (origin.kind) {
    case 'flag':
      return origin.flag;
    case 'env':
      return origin.name;
    case 'file':
      return `${origin.path}: ${origin.key}`;
  }
}

function issueText(message: string | undefined, value: RawValue): string {
  // Parser messages already quote the value; a bare refine message does not.
  if (message === undefined) return `invalid value ${JSON.stringify(value)}`;
  return message.startsWith('"') ? message : `${JSON.stringify(value)} ${message}`;
}

/** The whole pipeline for callers that already hold the inputs (tests, embedding). */
export function buildConfig<C extends CommandName>(
  command: C,
  inputs: {
    readonly args: readonly string[];
    readonly env?: Readonly<Record<string, string | undefined>>;
    readonly configFile?: { readonly path: string; readonly text: string };
  },
): CommandConfigs[C] {
  const commandLine = parseCommandLine(command, inputs.args);
  const file = inputs.configFile
    ? configFileValues(
        command,
        inputs.configFile.path,
        parseConfigText(inputs.configFile.path, inputs.configFile.text),
      )
    : undefined;
  return resolveConfig(command, {
    flags: commandLine.values,
    env: environmentValues(command, inputs.env ?? {}),
    ...(file ? { file } : {}),
  });
}

// ---------------------------------------------------------------------------------------------------
// Help.
// ---------------------------------------------------------------------------------------------------

export function commandHelp(command: CommandName): string {
  const def = COMMANDS[command];
  const lines = [`Usage: readygate ${command} [flags]`, '', def.summary, def.description, '', 'Flags:'];
  const rows: [string, string][] = [];
  for (const [, option] of optionEntries(command)) {
    const long = option.negatable ? `--[no-]${option.flag}` : `--${option.flag}`;
    const flag = option.short === undefined ? long : `-${option.short}, ${long}`;
    const head = option.valueName ? `${flag} ${option.valueName}` : flag;
    const notes = [
      option.required === true ? 'required' : undefined,
      option.defaultText !== undefined ? `default ${option.defaultText}` : undefined,
      `env ${option.env}`,
    ]
      .filter((note) => note !== undefined)
      .join('; ');
    rows.push([head, `${option.help} (${notes})`]);
  }
  rows.push(['--config FILE', `YAML or JSON file with the same keys as the flags (env ${CONFIG_ENV}).`]);
  rows.push(['-h, --help', 'Show this help.']);
  for (const [head, text] of rows) lines.push(`  ${head}`, `      ${text}`);
  lines.push('', 'Precedence: flag > READYGATE_* env var > config file > default.');
  if (optionEntries(command).some(([, option]) => option.kind === 'boolean'))
    lines.push('Boolean flags also take --no-<flag>, --<flag>=true and --<flag>=false.');
  lines.push('');
  return lines.join('\n');
}

export function topLevelHelp(version: string): string {
  const width = Math.max(...COMMAND_NAMES.map((name) => name.length));
  return [
    `readygate ${version}: an Envoy control plane that sends only endpoints that can take traffic now.`,
    '',
    'Usage: readygate <command> [flags]',
    '',
    'Commands:',
    ...COMMAND_NAMES.map((name) => `  ${name.padEnd(width)}  ${COMMANDS[name].summary}`),
    '',
    'Run `readygate <command> --help` for its flags. `readygate --version` prints the version.',
    'Exit codes: 0 success, 1 runtime failure (or drift/timeout), 2 invalid flags or config, 3 could not check (status, drain-wait), 4 pod unknown (drain-wait).',
    '',
  ].join('\n');
}
