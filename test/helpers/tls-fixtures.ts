/**
 * What TLS tests share: a PKI (test/helpers/tls-certs.ts), a directory laid out like a mounted
 * Kubernetes Secret (files behind a `..data` symlink that rotation swaps atomically, as the kubelet
 * does), the counters of a TlsMetrics registry, and a bootstrap of the shipped envoy/gateway-ads-tls.yaml
 * pointed at test files.
 */
import { mkdirSync, copyFileSync, renameSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { objectAt, type Json } from './gateway-bootstrap.js';
import type { CertFiles, TestPki } from './tls-certs.js';

/** The files a Secret holds, kubernetes.io/tls style. */
export interface SecretFiles {
  readonly cert: CertFiles;
  readonly ca: CertFiles;
}

/** A Secret mount: `tls.crt`, `tls.key`, `ca.crt` as symlinks into `..data`, which points at a version dir. */
export class SecretMount {
  readonly dir: string;
  #version = 0;

  constructor(pki: TestPki, name: string, files: SecretFiles) {
    this.dir = path.join(pki.dir, name);
    mkdirSync(this.dir);
    this.#writeVersion(files);
    symlinkSync(`..v${this.#version}`, path.join(this.dir, '..data'));
    for (const file of ['tls.crt', 'tls.key', 'ca.crt'])
      symlinkSync(path.join('..data', file), path.join(this.dir, file));
  }

  get certFile(): string {
    return path.join(this.dir, 'tls.crt');
  }
  get keyFile(): string {
    return path.join(this.dir, 'tls.key');
  }
  get caFile(): string {
    return path.join(this.dir, 'ca.crt');
  }

  /** Replaces the contents the way the kubelet does: a new version dir, then one rename of `..data`. */
  rotate(files: SecretFiles): void {
    this.#writeVersion(files);
    const temporary = path.join(this.dir, '..data_tmp');
    symlinkSync(`..v${this.#version}`, temporary);
    renameSync(temporary, path.join(this.dir, '..data'));
  }

  #writeVersion(files: SecretFiles): void {
    this.#version += 1;
    const versionDir = path.join(this.dir, `..v${this.#version}`);
    mkdirSync(versionDir);
    copyFileSync(files.cert.certFile, path.join(versionDir, 'tls.crt'));
    copyFileSync(files.cert.keyFile, path.join(versionDir, 'tls.key'));
    copyFileSync(files.ca.certFile, path.join(versionDir, 'ca.crt'));
  }
}

/** A counter's value for exactly these labels (0 when never counted). */
export async function counterValue(
  registry: Registry,
  name: string,
  labels: Readonly<Record<string, string>>,
): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return 0;
  const { values } = await metric.get();
  const match = values.find((value) =>
    Object.entries(labels).every(([key, wanted]) => String(value.labels[key]) === wanted),
  );
  return match?.value ?? 0;
}

/** The TLS settings of the xds cluster in a gateway-ads-tls.yaml bootstrap. */
export function xdsTlsContext(bootstrap: Json): Json {
  return objectAt(
    bootstrap,
    'static_resources',
    'clusters',
    0,
    'transport_socket',
    'typed_config',
    'common_tls_context',
  );
}

/** Points the xds cluster's TLS at these files; `clientCert` undefined: Envoy presents no certificate. */
export function useEnvoyTlsFiles(
  bootstrap: Json,
  files: { readonly clientCert: CertFiles | undefined; readonly trustedCa: string },
): Json {
  const context = xdsTlsContext(bootstrap);
  if (files.clientCert === undefined) delete context['tls_certificates'];
  else
    context['tls_certificates'] = [
      {
        certificate_chain: { filename: files.clientCert.certFile },
        private_key: { filename: files.clientCert.keyFile },
      },
    ];
  objectAt(context, 'validation_context', 'trusted_ca')['filename'] = files.trustedCa;
  return bootstrap;
}

export interface HandshakeResult {
  /** The server certificate's serial number, as node:tls reports it (hex). */
  readonly serverSerial: string;
  readonly alpn: string | false | null;
  /** The negotiated cipher suite (standard name). */
  readonly cipher: string;
}

/** One TLS handshake as a client (ALPN h2, SNI readygate); resolves with what the server presented. */
export function handshake(
  port: number,
  options: { readonly ca: string; readonly client?: CertFiles; readonly timeoutMs?: number },
): Promise<HandshakeResult> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      servername: 'readygate',
      ALPNProtocols: ['h2'],
      ca: readFileSync(options.ca),
      ...(options.client
        ? { cert: readFileSync(options.client.certFile), key: readFileSync(options.client.keyFile) }
        : {}),
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('handshake timed out'));
    }, options.timeoutMs ?? 5000);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const serverSerial = socket.getPeerCertificate().serialNumber;
      const alpn = socket.alpnProtocol;
      const cipher = socket.getCipher().standardName;
      socket.destroy();
      resolve({ serverSerial, alpn, cipher });
    });
    socket.once('error', (error: Error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}
