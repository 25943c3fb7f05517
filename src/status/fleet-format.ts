/**
 * How the fleet view prints: the `-o json|yaml` document and the `table`/`wide` columns. Pure, tested in
 * test/unit/status-fleet.test.ts. Columns follow `istioctl proxy-status`: the proxy, one column per xDS
 * type, then where it streams from; LDS/RDS only when some proxy asked for them (proxyless gRPC).
 */
import { table } from '../cli/table.js';
import { SyncState, TYPE_COLUMNS, type FleetView, type ProxyRow, type TypeColumn } from './fleet.js';

/** The `-o json|yaml` document: its fields are documented in docs/cli.md and only ever added to. */
export interface FleetDocument {
  readonly replicas: FleetView['replicas'];
  readonly proxies: FleetView['proxies'];
  readonly summary: {
    readonly proxies: number;
    readonly synced: number;
    readonly notSynced: number;
    readonly unreachableReplicas: number;
  };
}

export function fleetDocument(view: FleetView): FleetDocument {
  const synced = view.proxies.filter((p) => p.synced).length;
  return {
    replicas: view.replicas,
    proxies: view.proxies,
    summary: {
      proxies: view.proxies.length,
      synced,
      notSynced: view.proxies.length - synced,
      unreachableReplicas: view.replicas.filter((r) => !r.reachable).length,
    },
  };
}

/** kubectl's AGE style: 42s, 3m10s, 7m, 5h, 2d. */
export function age(seconds: number): string {
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h`;
  return `${Math.floor(hours / 24)}d`;
}

function stateCell(row: ProxyRow, column: TypeColumn): string {
  const state = row.types[column].state;
  return state === SyncState.NOT_SENT ? 'NOT SENT' : state;
}

/** The first line of every current NACK: `CDS: <error>; EDS: <error>`. */
function nackCell(row: ProxyRow): string {
  const errors = TYPE_COLUMNS.flatMap((column) => {
    const nack = row.types[column].nack;
    return nack ? [`${column}: ${(nack.error.split('\n')[0] ?? '').trim()}`] : [];
  });
  return errors.length === 0 ? '-' : errors.join('; ');
}

function versionsCell(row: ProxyRow, columns: readonly TypeColumn[]): string {
  return columns
    .filter((column) => row.types[column].requested)
    .map((column) => `${column}:${row.types[column].ackedVersion ?? '-'}`)
    .join(' ');
}

export function formatFleet(
  view: FleetView,
  options: { readonly wide: boolean; readonly nowMs: number },
): string {
  const columns: readonly TypeColumn[] = view.servesListeners ? TYPE_COLUMNS : ['CDS', 'EDS'];
  const showIdentity = options.wide || view.proxies.some((p) => p.identity !== null);
  const header = ['NAME', ...columns, 'REPLICA', 'STREAM', 'VERSION', 'LAST ACK'];
  if (showIdentity) header.push('IDENTITY');
  if (options.wide) header.push('CLUSTER', 'PEER', 'CONNECTED', 'ACKED VERSIONS', 'NACK ERROR');
  const rows = view.proxies.map((p) => {
    const cells = [
      p.nodeId === '' ? '(no node id)' : p.nodeId,
      ...columns.map((column) => stateCell(p, column)),
      p.replica,
      p.stream === 'delta' ? 'ADS Delta' : 'ADS SotW',
      p.userAgent ?? '-',
      p.lastAckAgeSeconds === null ? 'never' : `${age(p.lastAckAgeSeconds)} ago`,
    ];
    if (showIdentity) cells.push(p.identity ?? '-');
    if (options.wide) {
      const connectedMs = Date.parse(p.connectedAt);
      cells.push(
        p.nodeCluster === '' ? '-' : p.nodeCluster,
        p.peer,
        Number.isNaN(connectedMs) ? '-' : age(Math.max(0, Math.round((options.nowMs - connectedMs) / 1000))),
        versionsCell(p, columns),
        nackCell(p),
      );
    }
    return cells;
  });
  const lines =
    view.proxies.length === 0
      ? ['No proxies are connected to the replica(s) asked.']
      : table([header, ...rows]);
  for (const replica of view.replicas)
    if (!replica.reachable)
      lines.push(`! ${replica.error ?? replica.url}: the proxies on that replica are not listed.`);
  return lines.join('\n') + '\n';
}
