/**
 * The fleet view of `readygate status` (no --envoy-admin): one row per xDS stream on any replica asked,
 * with each type's sync state derived from that replica's /debug/syncz, in the spirit of
 * `istioctl proxy-status`. Pure: the command fetches the documents, this turns them into rows and an
 * exit code, so every state and code is table-tested without a network (test/unit/status-fleet.test.ts).
 *
 * State per type, from readygate's record of the stream (what it sent, what came back):
 *   SYNCED    the latest response of that type was ACKed;
 *   STALE     the latest response is still unanswered;
 *   NACK      the latest response was rejected (the error is kept);
 *   NOT_SENT  nothing of that type was sent on this stream.
 * A type the proxy never asked for is NOT_SENT and does not count; one it asked for counts.
 */
import { TypeUrl } from '../xds/resource-types.js';
import type { SynczEntry, SynczTypeEntry } from '../xds/sync-status.js';

export const SyncState = {
  SYNCED: 'SYNCED',
  STALE: 'STALE',
  NACK: 'NACK',
  NOT_SENT: 'NOT_SENT',
} as const;
export type SyncState = (typeof SyncState)[keyof typeof SyncState];

/** Short names, in the column order of the table: CDS, EDS, LDS, RDS. */
export const TYPE_COLUMNS = ['CDS', 'EDS', 'LDS', 'RDS'] as const;
export type TypeColumn = (typeof TYPE_COLUMNS)[number];

const TYPE_URL_OF: Readonly<Record<TypeColumn, TypeUrl>> = {
  CDS: TypeUrl.CLUSTER,
  EDS: TypeUrl.ENDPOINT,
  LDS: TypeUrl.LISTENER,
  RDS: TypeUrl.ROUTE,
};

export interface NackView {
  /** Envoy's error_detail message, whole (it can span lines). */
  readonly error: string;
  /** The version_info Envoy reported with the NACK: the version it still holds. */
  readonly version: string;
  readonly time: string;
  readonly resources: readonly string[];
}

export interface TypeView {
  readonly typeUrl: string;
  readonly state: SyncState;
  /** The proxy asked for this type on this stream: only then does its state count for the exit code. */
  readonly requested: boolean;
  readonly sentVersion: string | null;
  readonly ackedVersion: string | null;
  readonly lastAckTime: string | null;
  /** The rejection of the latest response, when state is NACK; else null. */
  readonly nack: NackView | null;
}

export interface ProxyRow {
  readonly nodeId: string;
  readonly nodeCluster: string;
  /** The admin URL of the replica this stream is on. */
  readonly replica: string;
  readonly streamId: number;
  readonly stream: 'sotw' | 'delta';
  /** The proxy's address as the replica sees it. */
  readonly peer: string;
  /** The verified client certificate's identity (mTLS), else null. */
  readonly identity: string | null;
  /** e.g. `envoy/1.36.4`; null when the proxy did not say (or the replica is older). */
  readonly userAgent: string | null;
  readonly connectedAt: string;
  readonly types: Readonly<Record<TypeColumn, TypeView>>;
  /** The newest ACK of any type on this stream. */
  readonly lastAckTime: string | null;
  /** Seconds from lastAckTime to when this view was made (this machine's clock); null without an ACK. */
  readonly lastAckAgeSeconds: number | null;
  /** Every type the proxy asked for is SYNCED. */
  readonly synced: boolean;
}

export interface ReplicaView {
  readonly url: string;
  readonly reachable: boolean;
  /** Why it could not be read; null when reachable. */
  readonly error: string | null;
  readonly proxies: number;
}

export interface FleetView {
  readonly replicas: readonly ReplicaView[];
  readonly proxies: readonly ProxyRow[];
  /** Whether any proxy has a requested LDS or RDS stream: the table shows those columns only then. */
  readonly servesListeners: boolean;
}

export type ReplicaSyncz =
  { readonly url: string; readonly syncz: unknown } | { readonly url: string; readonly error: string };

function typeView(typeUrl: string, entry: SynczTypeEntry | undefined): TypeView {
  if (entry === undefined)
    return {
      typeUrl,
      state: SyncState.NOT_SENT,
      requested: false,
      sentVersion: null,
      ackedVersion: null,
      lastAckTime: null,
      nack: null,
    };
  const state =
    entry.status === 'SYNCED'
      ? SyncState.SYNCED
      : entry.status === 'NACKED'
        ? SyncState.NACK
        : entry.status === 'STALE'
          ? SyncState.STALE
          : SyncState.NOT_SENT;
  const nack =
    state === SyncState.NACK && entry.lastNack
      ? {
          error: entry.lastNack.error,
          version: entry.lastNack.version,
          time: entry.lastNack.time,
          // Absent from replicas older than the field.
          resources: [...((entry.lastNack.resources as readonly string[] | undefined) ?? [])],
        }
      : null;
  return {
    typeUrl,
    state,
    requested: true,
    sentVersion: entry.sent?.version ?? null,
    ackedVersion: entry.acked?.version ?? null,
    lastAckTime: entry.acked?.time ?? null,
    nack,
  };
}

/**
 * Accepts only what a readygate /debug/syncz can be: a list of streams, each with its strings and a
 * map of type entries. Anything else (another server's JSON, a truncated or hand-made document) makes
 * the replica unreadable (exit 3) instead of crashing the command or printing `undefined`.
 */
function isSyncz(value: unknown): value is SynczEntry[] {
  return Array.isArray(value) && value.every(isSynczEntry);
}

function isObject(value: unknown): value is Readonly<Record<string, unknown>> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A `sent`/`acked` record, or none. */
function isRecordOrNone(value: unknown): boolean {
  return (
    value === null ||
    value === undefined ||
    (isObject(value) && typeof value.version === 'string' && typeof value.time === 'string')
  );
}

/** A `lastNack` record (its `resources` absent from older replicas), or none. */
function isNackOrNone(value: unknown): boolean {
  if (value === null || value === undefined) return true;
  if (!isObject(value) || !isRecordOrNone(value) || typeof value.error !== 'string') return false;
  const resources = value.resources;
  return (
    resources === undefined || (Array.isArray(resources) && resources.every((r) => typeof r === 'string'))
  );
}

function isSynczEntry(entry: unknown): boolean {
  if (!isObject(entry)) return false;
  const strings = ['nodeId', 'nodeCluster', 'peer', 'connectedAt'].every(
    (key) => typeof entry[key] === 'string',
  );
  // Absent from replicas older than these fields.
  const optionalStrings = ['identity', 'userAgent'].every(
    (key) => entry[key] === undefined || entry[key] === null || typeof entry[key] === 'string',
  );
  if (!strings || !optionalStrings || typeof entry.streamId !== 'number') return false;
  if (entry.stream !== 'sotw' && entry.stream !== 'delta') return false;
  if (!isObject(entry.types)) return false;
  return Object.values(entry.types).every(
    (type) =>
      isObject(type) &&
      typeof type.status === 'string' &&
      isRecordOrNone(type.sent) &&
      isRecordOrNone(type.acked) &&
      isNackOrNone(type.lastNack),
  );
}

export function proxyRow(replica: string, entry: SynczEntry, nowMs: number): ProxyRow {
  const types = Object.fromEntries(
    TYPE_COLUMNS.map((column) => [column, typeView(TYPE_URL_OF[column], entry.types[TYPE_URL_OF[column]])]),
  ) as Record<TypeColumn, TypeView>;
  const ackTimes = TYPE_COLUMNS.map((c) => types[c].lastAckTime).filter((t): t is string => t !== null);
  const lastAckTime =
    ackTimes.length === 0 ? null : ackTimes.reduce((a, b) => (Date.parse(a) >= Date.parse(b) ? a : b));
  const lastAckMs = lastAckTime === null ? Number.NaN : Date.parse(lastAckTime);
  return {
    nodeId: entry.nodeId,
    nodeCluster: entry.nodeCluster,
    replica,
    streamId: entry.streamId,
    stream: entry.stream,
    peer: entry.peer,
    identity: entry.identity ?? null,
    userAgent: entry.userAgent ?? null,
    connectedAt: entry.connectedAt,
    types,
    lastAckTime,
    // Clocks of two machines: a replica slightly ahead must not show a negative age.
    lastAckAgeSeconds: Number.isNaN(lastAckMs) ? null : Math.max(0, Math.round((nowMs - lastAckMs) / 1000)),
    synced: TYPE_COLUMNS.every((c) => !types[c].requested || types[c].state === SyncState.SYNCED),
  };
}

/** Rows sorted by node id, then replica, then stream, so output is stable for diffing and tests. */
export function fleetView(replicas: readonly ReplicaSyncz[], nowMs: number): FleetView {
  const proxies: ProxyRow[] = [];
  const views: ReplicaView[] = [];
  for (const replica of replicas) {
    if ('error' in replica) {
      views.push({ url: replica.url, reachable: false, error: replica.error, proxies: 0 });
      continue;
    }
    if (!isSyncz(replica.syncz)) {
      views.push({
        url: replica.url,
        reachable: false,
        error: `readygate's admin at ${replica.url} answered /debug/syncz with something that is not a list of streams`,
        proxies: 0,
      });
      continue;
    }
    const rows = replica.syncz.map((entry) => proxyRow(replica.url, entry, nowMs));
    proxies.push(...rows);
    views.push({ url: replica.url, reachable: true, error: null, proxies: rows.length });
  }
  proxies.sort(
    (a, b) =>
      a.nodeId.localeCompare(b.nodeId) || a.replica.localeCompare(b.replica) || a.streamId - b.streamId,
  );
  const servesListeners = proxies.some((p) => p.types.LDS.requested || p.types.RDS.requested);
  return { replicas: views, proxies, servesListeners };
}

/**
 * As for one Envoy: 1 when any proxy is not synced (that is evidence, and wins), else 3 when a replica
 * could not be read (its proxies are unknown), else 0 — also with no proxy connected.
 */
export function fleetExitCode(view: FleetView): 0 | 1 | 3 {
  if (view.proxies.some((p) => !p.synced)) return 1;
  if (view.replicas.some((r) => !r.reachable)) return 3;
  return 0;
}
