/**
 * The Envoy bootstraps the demo runs, from envoy/demo-readygate.template.yaml and
 * envoy/demo-naive.template.yaml (shipped in the package, so users can read exactly what was compared).
 * The ready-only setup (b) runs the naive template — a plain EDS cluster with Envoy's defaults — and (b)
 * and (c) both get DEMO_RETRY_POLICY on their route, so the two differ only in their control plane, their
 * preStop hook and readygate's ext_proc.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { ErrorCode, ReadygateError, errorMessage } from '../errors.js';
import { EXTPROC_RESPONSE_ATTRIBUTES } from '../extproc/attributes.js';
import { RETRY_BUDGET, SAFE_RETRY } from '../xds/translate.js';
import type { GatewayKind } from './slice.js';

/** src/demo/ and dist/demo/ are both two levels below the package root. */
const ENVOY_DIR = new URL('../../envoy/', import.meta.url);

export const TEMPLATE_FILES: Readonly<Record<GatewayKind, string>> = {
  readygate: 'demo-readygate.template.yaml',
  'ready-only': 'demo-naive.template.yaml',
  naive: 'demo-naive.template.yaml',
};

/**
 * What (b) and (c) retry: the gateways' SAFE_RETRY, in a bootstrap's JSON form. (a) keeps Envoy's
 * default, no retry: it is today's baseline.
 */
export const DEMO_RETRY_POLICY = Object.freeze({
  retry_on: SAFE_RETRY.retryOn,
  num_retries: SAFE_RETRY.numRetries,
  retry_host_predicate: [
    {
      name: SAFE_RETRY.hostPredicate,
      typed_config: { '@type': `type.googleapis.com/${SAFE_RETRY.hostPredicateType}` },
    },
  ],
  host_selection_retry_max_attempts: SAFE_RETRY.hostSelectionMaxAttempts,
});

interface RouteEntry {
  route?: Record<string, unknown>;
}

/** Sets DEMO_RETRY_POLICY on every route of every static listener's route_config; returns the count. */
export function addRetryPolicy(bootstrap: Record<string, unknown>): number {
  let routes = 0;
  const listeners = (bootstrap['static_resources'] as { listeners?: unknown[] } | undefined)?.listeners ?? [];
  for (const listener of listeners as { filter_chains?: { filters?: { typed_config?: unknown }[] }[] }[]) {
    for (const chain of listener.filter_chains ?? []) {
      for (const filter of chain.filters ?? []) {
        const config = filter.typed_config as
          { route_config?: { virtual_hosts?: { routes?: RouteEntry[] }[] } } | undefined;
        for (const host of config?.route_config?.virtual_hosts ?? []) {
          for (const entry of host.routes ?? []) {
            if (!entry.route) continue;
            entry.route['retry_policy'] = structuredClone(DEMO_RETRY_POLICY);
            routes++;
          }
        }
      }
    }
  }
  return routes;
}

export type PlaceholderValue = string | number | readonly string[];

const WHOLE = /^\{\{([A-Z0-9_]+)\}\}$/;
const INSIDE = /\{\{([A-Z0-9_]+)\}\}/g;

/**
 * Replaces `{{NAME}}` in a parsed YAML tree. A string that is only a placeholder takes the value's own
 * type (a port stays a number, the attribute list stays a list); inside longer text it is substituted as
 * text. Unknown placeholders are an error, never left in a config Envoy would reject with a worse message.
 */
export function fillTemplate(node: unknown, values: Readonly<Record<string, PlaceholderValue>>): unknown {
  const lookup = (name: string): PlaceholderValue => {
    const value = values[name];
    if (value === undefined) {
      throw new ReadygateError(
        ErrorCode.CONFIG_INVALID,
        `bootstrap template placeholder {{${name}}} has no value`,
      );
    }
    return value;
  };
  if (typeof node === 'string') {
    const whole = WHOLE.exec(node);
    if (whole?.[1] !== undefined) return lookup(whole[1]);
    return node.replace(INSIDE, (_match, name: string) => {
      const value = lookup(name);
      if (typeof value === 'object') {
        throw new ReadygateError(
          ErrorCode.CONFIG_INVALID,
          `bootstrap template placeholder {{${name}}} is a list`,
        );
      }
      return String(value);
    });
  }
  if (Array.isArray(node)) return node.map((item) => fillTemplate(item, values));
  if (node !== null && typeof node === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(node)) out[key] = fillTemplate(value, values);
    return out;
  }
  return node;
}

export interface BootstrapValues {
  readonly nodeId: string;
  readonly cluster: string;
  readonly xdsHost: string;
  readonly xdsPort: number;
  /** readygate only. */
  readonly extprocHost?: string;
  readonly extprocPort?: number;
}

export function demoBootstrap(kind: GatewayKind, values: BootstrapValues): Record<string, unknown> {
  const file = new URL(TEMPLATE_FILES[kind], ENVOY_DIR);
  let parsed: unknown;
  try {
    parsed = parseYaml(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new ReadygateError(
      ErrorCode.CONFIG_INVALID,
      `cannot read the demo's Envoy bootstrap ${file.pathname}: ${errorMessage(error)}`,
      { cause: error },
    );
  }
  const placeholders: Record<string, PlaceholderValue> = {
    NODE_ID: values.nodeId,
    CLUSTER: values.cluster,
    XDS_HOST: values.xdsHost,
    XDS_PORT: values.xdsPort,
    EXTPROC_RESPONSE_ATTRIBUTES: EXTPROC_RESPONSE_ATTRIBUTES,
  };
  if (values.extprocHost !== undefined) placeholders['EXTPROC_HOST'] = values.extprocHost;
  if (values.extprocPort !== undefined) placeholders['EXTPROC_PORT'] = values.extprocPort;
  const bootstrap = fillTemplate(parsed, placeholders) as Record<string, unknown>;
  if (kind === 'naive') return bootstrap;
  if (addRetryPolicy(bootstrap) === 0) {
    throw new ReadygateError(
      ErrorCode.CONFIG_INVALID,
      `the demo's Envoy bootstrap ${file.pathname} has no route to put the retry policy on`,
    );
  }
  if (kind === 'ready-only') addRetryBudget(bootstrap, values.cluster);
  const node = bootstrap['node'] as Record<string, unknown> | undefined;
  if (node && kind === 'ready-only') node['cluster'] = 'ready-only-demo';
  return bootstrap;
}

/**
 * (b)'s cluster is static in its bootstrap, so it gets the retry budget readygate's CDS clusters carry
 * (RETRY_BUDGET, docs/envoy.md "Retries"): with Envoy's default of 3 retries in flight, a pod dying under
 * load made retries overflow as 503 upstream-overflow, and (b) would lose for a reason (c) does not have.
 */
function addRetryBudget(bootstrap: Record<string, unknown>, cluster: string): void {
  const clusters = (bootstrap['static_resources'] as { clusters?: Record<string, unknown>[] } | undefined)
    ?.clusters;
  const target = clusters?.find((c) => c['name'] === cluster);
  if (target === undefined) {
    throw new ReadygateError(
      ErrorCode.CONFIG_INVALID,
      `the demo's ready-only Envoy bootstrap has no static cluster ${cluster} to put the retry budget on`,
    );
  }
  target['circuit_breakers'] = {
    thresholds: [
      {
        retry_budget: {
          budget_percent: { value: RETRY_BUDGET.budgetPercent },
          min_retry_concurrency: RETRY_BUDGET.minRetryConcurrency,
        },
      },
    ],
  };
}
