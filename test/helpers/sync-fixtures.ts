/**
 * Puts an ACKed version into a stream's sync state the way a protocol stream does: mark it sent, record
 * the response, record its ACK (which emits 'ack' as a real one does).
 */
import type { StreamSyncState, SyncStatus } from '../../src/xds/sync-status.js';

let nonce = 1000;

export function ackVersion(
  sync: SyncStatus,
  stream: StreamSyncState,
  typeUrl: string,
  name: string,
  version: string,
): void {
  const sent = String(++nonce);
  stream.type(typeUrl).versions.setSent(name, version);
  sync.recordSent(stream, typeUrl, {
    versionInfo: `v${sent}`,
    nonce: sent,
    entries: [[name, version]],
    completeSet: false,
    bytes: 0,
  });
  sync.recordAck(stream, typeUrl, sent, `v${sent}`);
}
