/**
 * `readygate status`: reads one Envoy's admin and, with --control-plane, readygate's admin; compares them
 * (compare.ts) and prints a table or JSON. Exit 0 in sync, 1 on drift; an admin that cannot be read is
 * a ReadygateError (ADMIN_UNREACHABLE), which the CLI prints as one line and exits 1.
 *
 * Without --control-plane there is nothing to compare with: it prints what Envoy has and counts only
 * NACK evidence (Envoy's update_rejected counters) as drift.
 */
import type { StatusConfig } from '../config.js';
import { ErrorCode, ReadygateError, errorMessage } from '../errors.js';
import type { CommandContext } from '../cli/context.js';
import { compareStatus, STATS_FILTER, type EnvoyDocuments, type ReadygateDocuments } from './compare.js';
import { formatReport } from './format.js';

/** Per request. Admin endpoints answer from memory; a slow one is a stuck process, not a busy one. */
export const FETCH_TIMEOUT_MS = 5000;

async function fetchJson(base: string, path: string, what: string, signal: AbortSignal): Promise<unknown> {
  const url = `${base}${path}`;
  let response: Response;
  try {
    response = await fetch(url, {
      signal: AbortSignal.any([signal, AbortSignal.timeout(FETCH_TIMEOUT_MS)]),
      headers: { accept: 'application/json' },
    });
  } catch (error) {
    throw new ReadygateError(
      ErrorCode.ADMIN_UNREACHABLE,
      `cannot reach ${what} at ${base}: ${fetchProblem(error)}`,
      {
        cause: error,
      },
    );
  }
  let text: string;
  try {
    text = await response.text();
  } catch (error) {
    throw new ReadygateError(
      ErrorCode.ADMIN_UNREACHABLE,
      `${what} at ${base} broke off ${path}: ${fetchProblem(error)}`,
      {
        cause: error,
      },
    );
  }
  if (!response.ok) {
    // A 404 on /debug/* usually means the URL is some other server's (Envoy's admin given as readygate's).
    throw new ReadygateError(
      ErrorCode.ADMIN_UNREACHABLE,
      `${what} at ${base} answered ${path} with HTTP ${response.status}${response.status === 404 ? ` (is ${base} really ${what}?)` : ''}`,
    );
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ReadygateError(
      ErrorCode.ADMIN_UNREACHABLE,
      `${what} at ${base} answered ${path} with something that is not JSON`,
    );
  }
}

/** The useful part of a fetch failure: undici hides the socket error (ECONNREFUSED, …) in `cause`. */
function fetchProblem(error: unknown): string {
  if (error instanceof Error && error.name === 'TimeoutError')
    return `no answer within ${FETCH_TIMEOUT_MS} ms`;
  const cause =
    error instanceof Error ? (error.cause as { code?: unknown; message?: unknown } | undefined) : undefined;
  if (typeof cause?.code === 'string') return cause.code;
  if (cause instanceof Error) return cause.message;
  return errorMessage(error);
}

export async function readEnvoy(base: string, signal: AbortSignal): Promise<EnvoyDocuments> {
  const what = "Envoy's admin";
  const [serverInfo, clusters, configDump, stats] = await Promise.all([
    fetchJson(base, '/server_info', what, signal),
    fetchJson(base, '/clusters?format=json', what, signal),
    fetchJson(base, '/config_dump?include_eds', what, signal),
    fetchJson(base, `/stats?format=json&filter=${encodeURIComponent(STATS_FILTER)}`, what, signal),
  ]);
  return { serverInfo, clusters, configDump, stats };
}

export async function readReadygate(base: string, signal: AbortSignal): Promise<ReadygateDocuments> {
  const what = "readygate's admin";
  const [endpoints, resources, syncz] = await Promise.all([
    fetchJson(base, '/debug/endpoints', what, signal),
    fetchJson(base, '/debug/resources', what, signal),
    fetchJson(base, '/debug/syncz?resources=true', what, signal),
  ]);
  return { endpoints, resources, syncz };
}

export async function runStatus(config: StatusConfig, context: CommandContext): Promise<number> {
  // readygate first: it is the reference, so a push it makes while Envoy is read shows up as Envoy being
  // behind (true at that instant), never as Envoy being ahead of what readygate says it serves.
  const readygate =
    config.controlPlane === undefined
      ? undefined
      : await readReadygate(config.controlPlane, context.shutdown);
  const envoy = await readEnvoy(config.envoyAdmin, context.shutdown);
  const report = compareStatus(envoy, readygate);
  context.logger.debug({ event: 'status.compared', drift: report.drift }, 'status compared');
  if (config.json) {
    context.stdout.write(
      JSON.stringify(
        { envoyAdminUrl: config.envoyAdmin, controlPlaneUrl: config.controlPlane ?? null, ...report },
        null,
        2,
      ) + '\n',
    );
  } else {
    context.stdout.write(
      formatReport(report, {
        envoy: config.envoyAdmin,
        ...(config.controlPlane === undefined ? {} : { controlPlane: config.controlPlane }),
      }),
    );
  }
  return report.drift ? 1 : 0;
}
