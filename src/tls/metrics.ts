/**
 * TLS counters: handshakes refused (by listener and reason) and reloads of the certificate files. The
 * TLS shells call these; without a registry (tests, library use) they count nothing.
 */
import { Counter, type Registry } from 'prom-client';

/** Why a TLS handshake did not produce a connection. */
export type HandshakeFailureReason =
  /** The client did not finish its handshake within the handshake timeout. */
  | 'timeout'
  /** mTLS: no client certificate, or one that does not chain to the client CA. */
  | 'client_certificate'
  /** The client did not negotiate HTTP/2 with ALPN. */
  | 'alpn'
  /** Anything else: not TLS, no shared cipher or version, a reset mid-handshake. */
  | 'protocol';

/** Which server the handshake was for. */
export type TlsListenerName = 'xds' | 'extproc';

export interface TlsMetrics {
  handshakeFailed(listener: TlsListenerName, reason: HandshakeFailureReason): void;
  reloaded(result: 'ok' | 'failed'): void;
}

export const noTlsMetrics: TlsMetrics = Object.freeze({
  handshakeFailed: () => undefined,
  reloaded: () => undefined,
});

export function createTlsMetrics(registry: Registry): TlsMetrics {
  const failures = new Counter({
    name: 'readygate_tls_handshake_failures_total',
    help: 'TLS handshakes that did not produce a connection, by listener and reason (timeout, client_certificate, alpn, protocol).',
    labelNames: ['listener', 'reason'],
    registers: [registry],
  });
  const reloads = new Counter({
    name: 'readygate_tls_reloads_total',
    help: 'Changes of the --tls-* files picked up (result="ok") or refused, the old material kept (result="failed").',
    labelNames: ['result'],
    registers: [registry],
  });
  return {
    handshakeFailed: (listener, reason) => {
      failures.inc({ listener, reason });
    },
    reloaded: (result) => {
      reloads.inc({ result });
    },
  };
}
