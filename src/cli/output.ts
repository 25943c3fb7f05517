/**
 * `-o table|wide|json|yaml` for every command that prints a result. A command builds one document (the
 * stable shape documented in docs/cli.md) and its own table; json and yaml are that document, rendered
 * here so every command spells them the same way. YAML comes from the `yaml` package the config and
 * endpoints files are parsed with: quoting of strings that look like numbers or booleans is its job.
 */
import { stringify as stringifyYaml } from 'yaml';
import type { OutputFormat } from '../config.js';

/** `-o` wins; `status --json` (kept for older scripts) means json; otherwise the table. */
export function outputFormat(config: {
  readonly output?: OutputFormat | undefined;
  readonly json?: boolean;
}): OutputFormat {
  return config.output ?? (config.json === true ? 'json' : 'table');
}

export function isDocumentFormat(format: OutputFormat): format is 'json' | 'yaml' {
  return format === 'json' || format === 'yaml';
}

/** The document as JSON (two-space indent) or YAML (no line folding, so a value stays on one line). */
export function renderDocument(format: 'json' | 'yaml', document: unknown): string {
  if (format === 'json') return JSON.stringify(document, null, 2) + '\n';
  return stringifyYaml(document, { lineWidth: 0 });
}
