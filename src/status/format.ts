/**
 * The human-readable rendering of a StatusReport: a header about the Envoy node and its stream on
 * readygate, then one block per cluster with its verdict, reasons and a host table. Pure, so the layout
 * is tested without a network. Drifting clusters carry a `<< DRIFT` marker that is easy to grep for.
 */
import {
  isDrift,
  type ClusterReport,
  type StatusReport,
  type TypeSyncView,
  type VersionPair,
} from './compare.js';
import { table } from '../cli/table.js';

export const DRIFT_MARKER = '<< DRIFT';

/** `wide` adds the version sent and gives the NACK error whole (its lines joined), not just its first line. */
function typeLine(label: string, view: TypeSyncView | null, wide: boolean): string[] {
  if (!view)
    return wide ? [label, 'NOT_SENT', '', '', 'last NACK: none'] : [label, 'NOT_SENT', '', 'last NACK: none'];
  const error = view.lastNack
    ? wide
      ? view.lastNack.error
          .split('\n')
          .map((line) => line.trim())
          .filter((line) => line !== '')
          .join(' | ')
      : (view.lastNack.error.split('\n')[0] ?? '')
    : '';
  const nack = view.lastNack
    ? `last NACK ${view.lastNack.time}${view.lastNack.current ? ' (latest response)' : ''}: ${error}`
    : 'last NACK: none';
  const acked = `acked ${view.ackedVersion ?? 'none'}`;
  return wide
    ? [label, view.status, `sent ${view.sentVersion ?? 'none'}`, acked, nack]
    : [label, view.status, acked, nack];
}

function versionText(label: string, pair: VersionPair, hasStream: boolean): string {
  if (pair.current === null) return `${label} not served`;
  // Without this Envoy's stream, readygate has no record of what it ACKed: say so rather than "none".
  if (!hasStream) return `${label} current ${pair.current}, ACK unknown`;
  if (pair.acked === pair.current) return `${label} ${pair.current} (acked)`;
  return `${label} acked ${pair.acked ?? 'none'}, current ${pair.current}`;
}

function clusterBlock(cluster: ClusterReport, hasStream: boolean): string[] {
  const lines = [`${cluster.name}  ${cluster.verdict}${isDrift(cluster.verdict) ? `  ${DRIFT_MARKER}` : ''}`];
  for (const reason of cluster.reasons) lines.push(`  - ${reason}`);
  if (cluster.versions)
    lines.push(
      `  versions: ${versionText('cluster', cluster.versions.cds, hasStream)}; ${versionText('EDS', cluster.versions.eds, hasStream)}`,
    );
  const envoy = cluster.envoy;
  if (envoy) {
    const membership =
      envoy.membershipTotal === null
        ? ''
        : `membership ${envoy.membershipHealthy ?? '?'} healthy / ${envoy.membershipExcluded ?? '?'} excluded / ${envoy.membershipTotal} total; `;
    lines.push(
      `  envoy: ${membership}EDS version_info ${envoy.edsVersionText ?? 'none'}; EDS rejected ${envoy.edsUpdateRejected ?? '?'}; panic ${envoy.lbHealthyPanic ?? '?'}`,
    );
  }
  if (cluster.hosts.length === 0) {
    lines.push('  (no hosts on either side)');
    return lines;
  }
  const compared = cluster.versions !== null;
  const header = compared
    ? ['HOST', 'ENVOY', 'HEALTH FLAGS', 'READYGATE', 'STATE', 'POD', '']
    : ['HOST', 'ENVOY', 'HEALTH FLAGS'];
  const rows = cluster.hosts.map((h) => {
    const envoyCells = [h.envoy?.edsHealth ?? '-', h.envoy?.healthFlags ?? '-'];
    if (!compared) return [h.address, ...envoyCells];
    return [
      h.address,
      ...envoyCells,
      h.readygate?.health ?? '-',
      h.readygate?.state ?? '-',
      h.readygate?.pod ?? '-',
      h.differs ? '*' : '',
    ];
  });
  for (const line of table([header, ...rows])) lines.push(`  ${line}`);
  return lines;
}

export function formatReport(
  report: StatusReport,
  urls: { envoy: string; controlPlane?: string },
  options: { wide?: boolean } = {},
): string {
  const wide = options.wide === true;
  const node = report.node;
  const connected =
    node.connectedToControlPlane === null
      ? ''
      : node.connectedToControlPlane
        ? ', ADS connected'
        : ', ADS DISCONNECTED';
  const lines = [
    `Envoy ${node.id || '(no node id)'} (node cluster ${node.cluster || '-'}) at ${urls.envoy}: Envoy ${node.envoyVersion}, ${node.state}${connected}`,
  ];
  const cp = report.controlPlane;
  if (cp && urls.controlPlane !== undefined) {
    lines.push(
      cp.stream
        ? `readygate at ${urls.controlPlane}: stream ${cp.stream.streamId} (${cp.stream.kind}) from ${cp.stream.peer}${cp.stream.identity === null ? '' : ` (mTLS ${cp.stream.identity})`}, connected ${cp.stream.connectedAt}`
        : `readygate at ${urls.controlPlane}: no stream from this Envoy`,
    );
    for (const line of table([typeLine('CDS', cp.cds, wide), typeLine('EDS', cp.eds, wide)]))
      lines.push(`  ${line}`);
  }
  for (const note of report.notes) lines.push(`! ${note}`);
  const hasStream = (cp?.stream ?? null) !== null;
  for (const cluster of report.clusters) lines.push('', ...clusterBlock(cluster, hasStream));
  lines.push('', summary(report));
  return lines.join('\n') + '\n';
}

export function summary(report: StatusReport): string {
  const drifting = report.clusters.filter((c) => isDrift(c.verdict)).map((c) => c.name);
  const total = report.clusters.length;
  if (report.controlPlane === null) {
    return drifting.length > 0 || report.drift
      ? `${total} cluster(s) in Envoy; NACKs found${drifting.length > 0 ? ` for ${drifting.join(', ')}` : ''}: exit 1.`
      : `${total} cluster(s) in Envoy, no NACKs (not compared with readygate: no --control-plane).`;
  }
  if (report.unknown)
    return `${total} cluster(s); sync UNKNOWN: this Envoy has no stream on the readygate replica(s) asked.`;
  if (!report.drift) return `${total} cluster(s), all in sync.`;
  if (drifting.length === 0) return `${total} cluster(s); Envoy rejected readygate's latest response: drift.`;
  return `${total} cluster(s), ${drifting.length} drifting: ${drifting.join(', ')}.`;
}
