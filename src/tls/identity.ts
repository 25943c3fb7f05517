/**
 * Who a verified client certificate names, in one short string for /debug/syncz and `status`: its URI
 * SANs (SPIFFE IDs, the usual workload identity) when it has any, else its subject CN. Pure.
 */

/** The parts of node:tls's PeerCertificate read here. */
export interface PeerCertificateFields {
  readonly subject?: Readonly<Record<string, string | readonly string[] | undefined>> | undefined;
  /** As node:tls reports it: `DNS:a, URI:spiffe://x, IP Address:1.2.3.4`; values with commas are quoted. */
  readonly subjectaltname?: string | undefined;
}

/** `spiffe://…` (several joined by ", "), else `CN=…`, else undefined (no name worth showing). */
export function peerIdentity(certificate: PeerCertificateFields | undefined): string | undefined {
  if (certificate === undefined) return undefined;
  const uris = subjectAltNames(certificate.subjectaltname ?? '')
    .filter((name) => name.type === 'URI')
    .map((name) => name.value);
  if (uris.length > 0) return uris.join(', ');
  const cn = certificate.subject?.['CN'];
  const common = typeof cn === 'string' ? cn : cn?.[0];
  return common === undefined || common === '' ? undefined : `CN=${common}`;
}

export interface SubjectAltName {
  readonly type: string;
  readonly value: string;
}

/** Splits node:tls's subjectaltname text, honouring the JSON-style quotes it puts around odd values. */
export function subjectAltNames(text: string): SubjectAltName[] {
  const names: SubjectAltName[] = [];
  let at = 0;
  while (at < text.length) {
    const colon = text.indexOf(':', at);
    if (colon < 0) break;
    const type = text.slice(at, colon).trim();
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      // A quoted value is a JSON string: find its closing quote, skipping escapes.
      end = colon + 2;
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      try {
        value = JSON.parse(text.slice(colon + 1, end + 1)) as string;
      } catch {
        value = text.slice(colon + 2, end);
      }
      end = text.indexOf(',', end);
    } else {
      end = text.indexOf(',', colon);
      value = text.slice(colon + 1, end < 0 ? text.length : end);
    }
    names.push({ type, value: value.trim() });
    if (end < 0) break;
    at = end + 1;
  }
  return names;
}
