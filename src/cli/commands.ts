/**
 * The dispatch table: which module runs each command. Bodies are imported lazily so `readygate status`
 * never loads gRPC servers and `--help` stays instant.
 *
 * status, drain-wait and demo are written in their own modules; until one lands, its command still
 * parses and validates its flags and then reports that it is not in this build. When it lands, replace
 * its `optionalRunner(...)` with a direct import, e.g.
 * `load: async () => (await import('../status/command.js')).runStatus`.
 */
import type { CommandConfigs, CommandName } from '../config.js';
import type { CommandRunner } from './context.js';
import { importOptionalFunction } from './optional-module.js';

export interface CommandEntry<C extends CommandName> {
  /** The command body, or undefined when this build does not include it. */
  readonly load: () => Promise<CommandRunner<CommandConfigs[C]> | undefined>;
  /**
   * Runs until told to stop: SIGTERM/SIGINT abort its shutdown signal instead of killing the process,
   * so it can close listeners and child processes first.
   */
  readonly longRunning: boolean;
}

export const COMMAND_RUNNERS: { readonly [C in CommandName]: CommandEntry<C> } = {
  serve: { longRunning: true, load: async () => (await import('./serve.js')).runServe },
  extproc: { longRunning: true, load: async () => (await import('./extproc.js')).runExtproc },
  status: { longRunning: false, load: async () => (await import('../status/command.js')).runStatus },
  'drain-wait': { longRunning: false, load: async () => (await import('../drain/command.js')).runDrainWait },
  demo: { longRunning: true, load: async () => (await import('../demo/command.js')).runDemo },
  version: { longRunning: false, load: async () => (await import('./version.js')).runVersion },
};

/** Kept for commands whose body may be absent from a build (see the header comment). */
export async function optionalRunner<Config>(
  specifier: string,
  exportName: string,
): Promise<CommandRunner<Config> | undefined> {
  return (await importOptionalFunction(specifier, exportName, import.meta.url)) as
    CommandRunner<Config> | undefined;
}
