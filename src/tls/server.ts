/**
 * The TLS face of an HTTP/2 port: node:tls with ALPN h2 only, an optional client CA (mTLS: a client
 * without a certificate that chains to it is refused in the handshake), a handshake timeout, and new
 * material from the reloader for every later handshake. Established connections keep the context they
 * were made with: a rotation never drops a stream.
 */
import type { Socket } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { peerIdentity } from './identity.js';
import { secureContextOptions } from './material.js';
import {
  noTlsMetrics,
  type HandshakeFailureReason,
  type TlsListenerName,
  type TlsMetrics,
} from './metrics.js';
import type { TlsReloader } from './reloader.js';

/** Envoy finishes a handshake in milliseconds; ten seconds is room for a loaded node, not for a squatter. */
export const DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/** At most one log line per reason this often; the counter has every failure. */
const FAILURE_LOG_INTERVAL_MS = 10_000;

export interface TlsListenerOptions {
  readonly reloader: TlsReloader;
  readonly listener: TlsListenerName;
  /** A client that has not finished its handshake by then is disconnected. */
  readonly handshakeTimeoutMs: number;
  readonly logger: Logger;
  readonly metrics?: TlsMetrics;
  /** The per-socket write buffer (node:net's highWaterMark). */
  readonly highWaterMark?: number;
}

/** A connection that finished its handshake: the socket and, with mTLS, who its certificate names. */
export type TlsConnectionHandler = (socket: TLSSocket, identity: string | undefined) => void;

/** Why a handshake failed, from node:tls's error (codes: OpenSSL reasons as ERR_SSL_*). */
export function handshakeFailureReason(error: unknown): HandshakeFailureReason {
  const rawCode = (error as { code?: unknown } | null)?.code;
  const code = typeof rawCode === 'string' ? rawCode : '';
  const message = errorMessage(error).toLowerCase();
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return 'timeout';
  if (code.includes('NO_APPLICATION_PROTOCOL') || message.includes('no application protocol')) return 'alpn';
  if (
    code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE' ||
    code === 'ERR_SSL_CERTIFICATE_VERIFY_FAILED' ||
    message.includes('peer did not return a certificate') ||
    message.includes('certificate verify failed')
  )
    return 'client_certificate';
  return 'protocol';
}

export function createTlsListener(
  options: TlsListenerOptions,
  onConnection: TlsConnectionHandler,
): tls.Server {
  const { reloader, listener, logger } = options;
  const metrics = options.metrics ?? noTlsMetrics;
  const mutual = reloader.current.clientCa !== undefined;
  const server = tls.createServer(
    {
      ...secureContextOptions(reloader.current),
      ALPNProtocols: ['h2'],
      // The server's cipher order (PREFERRED_CIPHERS), not the client's.
      honorCipherOrder: true,
      requestCert: mutual,
      rejectUnauthorized: mutual,
      handshakeTimeout: options.handshakeTimeoutMs,
      noDelay: true,
      ...(options.highWaterMark === undefined ? {} : { highWaterMark: options.highWaterMark }),
    },
    (socket) => {
      // gRPC is HTTP/2 only; a client that offered no ALPN at all would speak who knows what.
      if (socket.alpnProtocol !== 'h2') {
        failed('alpn', `no ALPN h2 (offered ${String(socket.alpnProtocol)})`, socket);
        socket.destroy();
        return;
      }
      onConnection(socket, mutual ? peerIdentity(socket.getPeerCertificate()) : undefined);
    },
  );
  // A refused client's address, for the log line. node:tls destroys the TLS socket before it reports a
  // refused certificate, and a destroyed socket no longer knows its peer; the TCP socket under it was
  // seen alive here first. node:tls keeps it as the TLS socket's `_parent` (not documented: a node that
  // drops it logs "unknown", and test/integration/kind-mtls.test.ts fails on that).
  const addresses = new WeakMap<object, string>();
  server.on('connection', (raw: Socket) => {
    addresses.set(raw, `${raw.remoteAddress ?? 'unknown'}:${raw.remotePort ?? 0}`);
  });
  const peerOf = (socket: TLSSocket): string => {
    if (socket.remoteAddress !== undefined) return `${socket.remoteAddress}:${socket.remotePort ?? 0}`;
    const parent = (socket as { _parent?: unknown })._parent;
    return (typeof parent === 'object' && parent !== null && addresses.get(parent)) || 'unknown:0';
  };
  const lastLogged = new Map<HandshakeFailureReason, { at: number; suppressed: number }>();
  const failed = (reason: HandshakeFailureReason, detail: string, socket: TLSSocket): void => {
    metrics.handshakeFailed(listener, reason);
    const now = Date.now();
    const last = lastLogged.get(reason);
    if (last && now - last.at < FAILURE_LOG_INTERVAL_MS) {
      last.suppressed += 1;
      return;
    }
    const suppressed = last?.suppressed ?? 0;
    lastLogged.set(reason, { at: now, suppressed: 0 });
    const peer = peerOf(socket);
    logger.warn(
      { event: 'tls.handshake-failed', listener, reason, peer, suppressed },
      `${listener} TLS handshake from ${peer} failed (${reason}): ${detail}${suppressed > 0 ? ` (${suppressed} more since the last line)` : ''}`,
    );
  };
  server.on('tlsClientError', (error, socket) => {
    // A certificate that does not chain to the client CA is checked by node:tls after OpenSSL's part
    // of the handshake; it destroys the socket, which surfaces here as a hang-up, with the reason kept
    // in authorizationError (a code such as UNABLE_TO_VERIFY_LEAF_SIGNATURE, despite its Error typing).
    const refusedCertificate = socket.authorizationError as unknown;
    if (typeof refusedCertificate === 'string' && refusedCertificate !== '')
      failed('client_certificate', `client certificate refused: ${refusedCertificate}`, socket);
    else failed(handshakeFailureReason(error), errorMessage(error).split('\n')[0] ?? '', socket);
    socket.destroy();
  });
  const unsubscribe = reloader.onChange((material) => {
    try {
      server.setSecureContext(secureContextOptions(material));
    } catch (error) {
      // The reloader checked the material with the same call; this is belt and braces.
      logger.error(
        { event: 'tls.context-refused', listener, err: errorMessage(error) },
        `${listener}: new TLS material refused; keeping the previous: ${errorMessage(error)}`,
      );
    }
  });
  server.on('close', unsubscribe);
  return server;
}
