/**
 * Importing a module that may be absent from this build (a command or source whose implementation has
 * not landed, or was left out of a trimmed build). Only the module itself being absent counts: a missing
 * dependency *inside* it is a real error and propagates.
 */
import { fileURLToPath } from 'node:url';

export async function importOptional(
  specifier: string,
  base: string,
): Promise<Readonly<Record<string, unknown>> | undefined> {
  const url = new URL(specifier, base);
  try {
    return (await import(url.href)) as Record<string, unknown>;
  } catch (error) {
    if (isModuleMissing(error, url)) return undefined;
    throw error;
  }
}

function isModuleMissing(error: unknown, url: URL): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (code !== 'ERR_MODULE_NOT_FOUND') return false;
  // "Cannot find module '<missing>' imported from <importer>": compare <missing> only, since a module
  // that exists but imports something absent names itself as the importer.
  const missing = /Cannot find module '([^']+)'/.exec(error instanceof Error ? error.message : '')?.[1];
  if (missing === undefined) return false;
  const path = fileURLToPath(url);
  // Compiled builds look for the .js file; under tsx the .ts source is what is missing.
  return missing === path || missing === path.replace(/\.js$/, '.ts') || missing === url.href;
}

/** A named function export of an optional module; throws if the module exists but lacks it. */
export async function importOptionalFunction(
  specifier: string,
  exportName: string,
  base: string,
): Promise<((...args: never[]) => unknown) | undefined> {
  const module = await importOptional(specifier, base);
  if (!module) return undefined;
  const value = module[exportName];
  if (typeof value !== 'function') {
    throw new Error(
      `${fileURLToPath(new URL(specifier, base))} does not export a function named ${exportName}`,
    );
  }
  return value as (...args: never[]) => unknown;
}
