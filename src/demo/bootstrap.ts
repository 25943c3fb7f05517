/**
 * The two Envoy bootstraps the demo runs, from envoy/demo-readygate.template.yaml and
 * envoy/demo-naive.template.yaml (shipped in the package, so users can read exactly what was compared).
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { ErrorCode, ReadygateError, errorMessage } from '../errors.js';
import { EXTPROC_RESPONSE_ATTRIBUTES } from '../extproc/attributes.js';
import type { GatewayKind } from './slice.js';

/** src/demo/ and dist/demo/ are both two levels below the package root. */
const ENVOY_DIR = new URL('../../envoy/', import.meta.url);

export const TEMPLATE_FILES: Readonly<Record<GatewayKind, string>> = {
  readygate: 'demo-readygate.template.yaml',
  naive: 'demo-naive.template.yaml',
};

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
  return fillTemplate(parsed, placeholders) as Record<string, unknown>;
}
