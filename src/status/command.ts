/**
 * `readygate status`, in two forms.
 *
 * Without --envoy-admin, the fleet view (fleet.ts): every replica's /debug/syncz, one row per connected
 * proxy with its per-type sync state. Exit 0 all synced (or none connected); 1 a proxy not synced;
 * 3 a replica could not be read (1 wins: it is evidence); 2 neither form's flags given.
 *
 * With --envoy-admin: reads one Envoy's admin and, with --control-plane (repeatable) or --peers-dns,
 * the admin of every readygate replica; compares Envoy with the replica it streams from (compare.ts).
 * Both print a table, a wider table, JSON or YAML (-o).
 *
 * Exit codes (docs/cli.md): 0 in sync; 1 drift; 2 bad flags; 3 unknown — an admin did not answer
 * within --timeout, or this Envoy has no stream on any replica that answered, so its versions could not
 * be checked. An Envoy that could not be checked is never reported as in sync: each Envoy streams from
 * one replica, and asking another says nothing about what it ACKed.
 *
 * Without --control-plane there is nothing to compare with: it prints what Envoy has and counts only
 * NACK evidence (Envoy's update_rejected counters) as drift.
 */
import type { StatusConfig } from '../config.js';
import { ErrorCode, ExitCode, ReadygateError, errorMessage } from '../errors.js';
import type { CommandContext } from '../cli/context.js';
import { isDocumentFormat, outputFormat, renderDocument } from '../cli/output.js';
import { httpGet, withDeadline } from '../net.js';
import { dnsPeers } from '../readiness/peers.js';
import {
  compareStatus,
  envoyNodeId,
  replicaOfNode,
  STATS_FILTER,
  type EnvoyDocuments,
  type ReadygateDocuments,
  type StatusReport,
} from './compare.js';
import { fleetExitCode, fleetView, type ReplicaSyncz } from './fleet.js';
import { fleetDocument, formatFleet } from './fleet-format.js';
import { formatReport } from './format.js';

/** The default --timeout: admin endpoints answer from memory; a slow one is a stuck process, not a busy one. */
export const FETCH_TIMEOUT_MS = 5000;

/** When the whole command must be done, and what shuts it down early. */
export interface StatusDeadline {
  readonly at: number;
  readonly signal: AbortSignal;
}

function unknown(message: string, cause?: unknown): ReadygateError {
  return new ReadygateError(ErrorCode.ADMIN_UNREACHABLE, message, {
    exitCode: ExitCode.UNKNOWN,
    ...(cause === undefined ? {} : { cause }),
  });
}

async function fetchJson(
  base: string,
  path: string,
  what: string,
  deadline: StatusDeadline,
): Promise<unknown> {
  const timeoutMs = Math.max(0, deadline.at - Date.now());
  let answer;
  try {
    answer = await httpGet(`${base}${path}`, {
      deadlineMs: timeoutMs,
      signal: deadline.signal,
      headers: { accept: 'application/json' },
    });
  } catch (error) {
    // No path: the four reads run in parallel, and which one fails first is chance.
    throw unknown(`cannot reach ${what} at ${base}: ${errorMessage(error)}`, error);
  }
  if (answer.status !== 200) {
    // A 404 on /debug/* usually means the URL is some other server's (Envoy's admin given as readygate's).
    throw unknown(
      `${what} at ${base} answered ${path} with HTTP ${answer.status}${answer.status === 404 ? ` (is ${base} really ${what}?)` : ''}`,
    );
  }
  try {
    return JSON.parse(answer.body) as unknown;
  } catch {
    throw unknown(`${what} at ${base} answered ${path} with something that is not JSON`);
  }
}

export async function readEnvoy(base: string, deadline: StatusDeadline): Promise<EnvoyDocuments> {
  const what = "Envoy's admin";
  const [serverInfo, clusters, configDump, stats] = await Promise.all([
    fetchJson(base, '/server_info', what, deadline),
    fetchJson(base, '/clusters?format=json', what, deadline),
    fetchJson(base, '/config_dump?include_eds', what, deadline),
    fetchJson(base, `/stats?format=json&filter=${encodeURIComponent(STATS_FILTER)}`, what, deadline),
  ]);
  return { serverInfo, clusters, configDump, stats };
}

export async function readReadygate(base: string, deadline: StatusDeadline): Promise<ReadygateDocuments> {
  const what = "readygate's admin";
  const [endpoints, resources, syncz] = await Promise.all([
    fetchJson(base, '/debug/endpoints', what, deadline),
    fetchJson(base, '/debug/resources', what, deadline),
    fetchJson(base, '/debug/syncz?resources=true', what, deadline),
  ]);
  return { endpoints, resources, syncz };
}

/** Every replica to ask: the --control-plane URLs, then what --peers-dns resolves to (all of them). */
async function replicaUrls(config: StatusConfig, deadline: StatusDeadline): Promise<string[]> {
  const urls = [...config.controlPlane];
  if (config.peersDns) {
    const { host, port } = config.peersDns;
    let resolved: readonly string[];
    try {
      resolved = await withDeadline(
        dnsPeers({ name: host, port, self: [] })(),
        Math.max(0, deadline.at - Date.now()),
        `resolving ${host}`,
      );
    } catch (error) {
      throw unknown(`--peers-dns ${host}:${port}: ${errorMessage(error)}`, error);
    }
    if (resolved.length === 0)
      throw unknown(`--peers-dns ${host}:${port} resolves to no address: no readygate replica to ask`);
    for (const url of resolved) if (!urls.includes(url)) urls.push(url);
  }
  return urls;
}

type ReplicaAnswer = { url: string; docs: ReadygateDocuments } | { url: string; error: string };

export async function runStatus(config: StatusConfig, context: CommandContext): Promise<number> {
  const deadline: StatusDeadline = { at: Date.now() + config.timeout, signal: context.shutdown };
  if (config.envoyAdmin !== undefined) return runEnvoyStatus(config.envoyAdmin, config, context, deadline);
  if (config.controlPlane.length === 0 && config.peersDns === undefined) {
    throw new ReadygateError(
      ErrorCode.CONFIG_INVALID,
      'status needs --control-plane URL or --peers-dns HOST:PORT (every proxy on those replicas), or --envoy-admin URL (one Envoy) (see readygate status --help)',
    );
  }
  return runFleetStatus(config, context, deadline);
}

/** The fleet view: every replica's /debug/syncz, one row per stream. */
async function runFleetStatus(
  config: StatusConfig,
  context: CommandContext,
  deadline: StatusDeadline,
): Promise<number> {
  const urls = await replicaUrls(config, deadline);
  const answers = await Promise.all(
    urls.map(async (url): Promise<ReplicaSyncz> => {
      try {
        return { url, syncz: await fetchJson(url, '/debug/syncz', "readygate's admin", deadline) };
      } catch (error) {
        return { url, error: errorMessage(error) };
      }
    }),
  );
  const nowMs = Date.now();
  const view = fleetView(answers, nowMs);
  if (view.replicas.every((r) => !r.reachable)) {
    // Nothing was read: one line, as for any unreachable admin.
    throw unknown(view.replicas.map((r) => r.error ?? r.url).join('; '));
  }
  const code = fleetExitCode(view);
  context.logger.debug(
    { event: 'status.fleet', proxies: view.proxies.length, exitCode: code },
    'fleet status read',
  );
  const format = outputFormat(config);
  context.stdout.write(
    isDocumentFormat(format)
      ? renderDocument(format, fleetDocument(view))
      : formatFleet(view, { wide: format === 'wide', nowMs }),
  );
  return code;
}

/** One Envoy against the replica it streams from. */
async function runEnvoyStatus(
  envoyAdmin: string,
  config: StatusConfig,
  context: CommandContext,
  deadline: StatusDeadline,
): Promise<number> {
  const urls = await replicaUrls(config, deadline);
  // readygate first: it is the reference, so a push it makes while Envoy is read shows up as Envoy being
  // behind (true at that instant), never as Envoy being ahead of what readygate says it serves.
  const replicas = await Promise.all(
    urls.map(async (url): Promise<ReplicaAnswer> => {
      try {
        return { url, docs: await readReadygate(url, deadline) };
      } catch (error) {
        return { url, error: errorMessage(error) };
      }
    }),
  );
  const answered = replicas.filter((r): r is { url: string; docs: ReadygateDocuments } => 'docs' in r);
  const failed = replicas.filter((r): r is { url: string; error: string } => 'error' in r);
  if (urls.length > 0 && answered.length === 0) {
    // Nothing to compare with: one line, like any unreachable admin.
    throw unknown(failed.map((r) => r.error).join('; '));
  }
  const envoy = await readEnvoy(envoyAdmin, deadline);
  const picked = replicaOfNode(
    answered.map((r) => r.docs),
    envoyNodeId(envoy),
  );
  // No replica holds the stream: compare hosts with the first that answered (drift there is still drift).
  const reference = answered[picked === -1 ? 0 : picked];
  let report: StatusReport = compareStatus(envoy, reference?.docs);
  if (failed.length > 0) {
    report = {
      ...report,
      notes: [
        ...report.notes,
        ...failed.map((r) =>
          picked === -1
            ? `${r.error} (this Envoy may stream from that replica).`
            : `${r.error} (not needed: this Envoy streams from ${reference?.url ?? '?'}).`,
        ),
      ],
    };
  }
  context.logger.debug(
    { event: 'status.compared', drift: report.drift, unknown: report.unknown },
    'status compared',
  );
  const format = outputFormat(config);
  if (isDocumentFormat(format)) {
    context.stdout.write(
      renderDocument(format, {
        envoyAdminUrl: envoyAdmin,
        controlPlaneUrl: reference?.url ?? null,
        controlPlaneUrls: urls,
        unreachable: failed.map((r) => r.url),
        ...report,
      }),
    );
  } else {
    context.stdout.write(
      formatReport(
        report,
        { envoy: envoyAdmin, ...(reference === undefined ? {} : { controlPlane: reference.url }) },
        { wide: format === 'wide' },
      ),
    );
  }
  if (report.drift) return ExitCode.FAILED;
  return report.unknown ? ExitCode.UNKNOWN : ExitCode.OK;
}
