/**
 * A throwaway PKI for TLS tests, made with the openssl CLI in a temp dir (the same tool kind/scripts
 * uses): CAs, server certificates for 127.0.0.1/localhost, client certificates with a CN and a SPIFFE
 * URI SAN. EC P-256 keys: generated in milliseconds, spoken by Envoy, grpc-js and node:tls alike.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface CertFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

export interface IssueOptions {
  /** Subject CN. */
  readonly cn: string;
  readonly dns?: readonly string[];
  readonly ips?: readonly string[];
  readonly uris?: readonly string[];
  /** `serverAuth` for servers, `clientAuth` for clients (Envoy and node:tls do not insist; grpc-go does). */
  readonly usage: 'serverAuth' | 'clientAuth';
}

export interface TestPki {
  readonly dir: string;
  /** A self-signed CA named `name`. */
  ca(name: string): CertFiles;
  /** A certificate named `name` signed by `ca`. */
  issue(ca: CertFiles, name: string, options: IssueOptions): CertFiles;
  /** Removes the directory. */
  remove(): void;
}

function openssl(args: readonly string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], timeout: 20_000 });
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export function createTestPki(): TestPki {
  const dir = mkdtempSync(path.join(tmpdir(), 'readygate-pki-'));
  let serial = 1;
  return {
    dir,
    ca(name) {
      const files = { certFile: path.join(dir, `${name}.pem`), keyFile: path.join(dir, `${name}.key`) };
      openssl(
        [
          'req',
          '-x509',
          ...EC_KEY,
          '-keyout',
          files.keyFile,
          '-out',
          files.certFile,
          '-days',
          '2',
          '-subj',
          `/CN=${name}`,
          '-addext',
          'basicConstraints=critical,CA:TRUE',
          '-addext',
          'keyUsage=critical,keyCertSign,cRLSign',
        ],
        dir,
      );
      return files;
    },
    issue(ca, name, options) {
      const files = { certFile: path.join(dir, `${name}.pem`), keyFile: path.join(dir, `${name}.key`) };
      const csr = path.join(dir, `${name}.csr`);
      const sans = [
        ...(options.dns ?? []).map((value) => `DNS:${value}`),
        ...(options.ips ?? []).map((value) => `IP:${value}`),
        ...(options.uris ?? []).map((value) => `URI:${value}`),
      ];
      openssl(
        [
          'req',
          '-new',
          ...EC_KEY,
          '-keyout',
          files.keyFile,
          '-out',
          csr,
          '-subj',
          `/CN=${options.cn}`,
          '-addext',
          'basicConstraints=critical,CA:FALSE',
          '-addext',
          `extendedKeyUsage=${options.usage}`,
          ...(sans.length > 0 ? ['-addext', `subjectAltName=${sans.join(',')}`] : []),
        ],
        dir,
      );
      openssl(
        [
          'x509',
          '-req',
          '-in',
          csr,
          '-CA',
          ca.certFile,
          '-CAkey',
          ca.keyFile,
          '-set_serial',
          String(serial++),
          '-days',
          '2',
          '-copy_extensions',
          'copy',
          '-out',
          files.certFile,
        ],
        dir,
      );
      return files;
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
