/**
 * TLS material from files: a server certificate chain, its private key and, for mTLS, the CA bundle
 * client certificates must chain to. Everything is checked before it is used, so a key that does not
 * match its certificate is one clear line at startup (exit 2) or a refused reload, never a handshake
 * that fails for every client later.
 */
import { createHash, createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { DEFAULT_CIPHERS, createSecureContext, type SecureContextOptions } from 'node:tls';
import { ErrorCode, ReadygateError, errorMessage } from '../errors.js';

/** The files named by --tls-cert, --tls-key and --tls-client-ca. */
export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  /** With it, clients must present a certificate that chains to one of these CAs (mTLS). */
  readonly clientCaFile?: string | undefined;
}

/** The files' bytes, as read together. */
export interface TlsFileContents {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly clientCa?: Buffer | undefined;
}

/** Checked material, ready for a SecureContext. */
export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly clientCa: Buffer | undefined;
  /** Subject of the server certificate, for logs. */
  readonly certSubject: string;
  /** When the server certificate expires (ISO 8601). */
  readonly certNotAfter: string;
  /** SHA-256 over all three files: equal digests mean nothing changed. */
  readonly digest: string;
}

/**
 * The TLS flags of a command, paired: a certificate without its key (or a CA without a certificate)
 * is a configuration mistake, not a request for plain text. Undefined when TLS is off.
 */
export function tlsFilesFromFlags(flags: {
  readonly tlsCert?: string | undefined;
  readonly tlsKey?: string | undefined;
  readonly tlsClientCa?: string | undefined;
}): TlsFiles | undefined {
  const { tlsCert, tlsKey, tlsClientCa } = flags;
  if (tlsCert === undefined && tlsKey === undefined) {
    if (tlsClientCa !== undefined) throw invalid('--tls-client-ca needs --tls-cert and --tls-key');
    return undefined;
  }
  if (tlsKey === undefined) throw invalid('--tls-cert needs --tls-key (the private key of that certificate)');
  if (tlsCert === undefined) throw invalid('--tls-key needs --tls-cert (the certificate of that key)');
  return Object.freeze({ certFile: tlsCert, keyFile: tlsKey, clientCaFile: tlsClientCa });
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Each PEM certificate block in `pem`, parsed; a block that does not parse is a problem. */
function certificates(pem: Buffer, label: string): X509Certificate[] {
  const blocks = pem.toString('latin1').match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0)
    throw invalid(`${label}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)`);
  return blocks.map((block, index) => {
    try {
      return new X509Certificate(block);
    } catch (error) {
      throw invalid(`${label}: certificate ${index + 1} does not parse (${oneLine(error)})`);
    }
  });
}

/**
 * Checks contents read from `files`: each parses, the key belongs to the first certificate, and
 * OpenSSL accepts the three together. Throws CONFIG_INVALID with one line naming the flag and file.
 */
export function checkTlsMaterial(files: TlsFiles, contents: TlsFileContents): TlsMaterial {
  const certLabel = `--tls-cert ${files.certFile}`;
  const keyLabel = `--tls-key ${files.keyFile}`;
  const [leaf] = certificates(contents.cert, certLabel);
  if (leaf === undefined) throw invalid(`${certLabel}: no certificate in it`);
  let key: KeyObject;
  try {
    key = createPrivateKey(contents.key);
  } catch (error) {
    throw invalid(`${keyLabel}: not an unencrypted PEM private key (${oneLine(error)})`);
  }
  if (!leaf.checkPrivateKey(key))
    throw invalid(`${keyLabel} does not match the certificate in --tls-cert ${files.certFile}`);
  if (files.clientCaFile !== undefined) {
    if (contents.clientCa === undefined) throw invalid(`--tls-client-ca ${files.clientCaFile}: not read`);
    const label = `--tls-client-ca ${files.clientCaFile}`;
    for (const ca of certificates(contents.clientCa, label)) {
      if (!ca.ca) throw invalid(`${label}: "${ca.subject.replaceAll('\n', ', ')}" is not a CA certificate`);
    }
  }
  const material: TlsMaterial = Object.freeze({
    cert: contents.cert,
    key: contents.key,
    clientCa: files.clientCaFile === undefined ? undefined : contents.clientCa,
    certSubject: leaf.subject.replaceAll('\n', ', '),
    certNotAfter: new Date(leaf.validTo).toISOString(),
    digest: digestOf(contents),
  });
  try {
    createSecureContext(secureContextOptions(material));
  } catch (error) {
    throw invalid(`${certLabel}, ${keyLabel}: OpenSSL refuses them (${oneLine(error)})`);
  }
  return material;
}

/** Reads the files together; a file that cannot be read is CONFIG_INVALID naming its flag. */
export async function readTlsFiles(files: TlsFiles): Promise<TlsFileContents> {
  const read = async (flag: string, file: string): Promise<Buffer> => {
    try {
      return await readFile(file);
    } catch (error) {
      throw invalid(`--${flag} ${file}: cannot read it (${oneLine(error)})`);
    }
  };
  const [cert, key, clientCa] = await Promise.all([
    read('tls-cert', files.certFile),
    read('tls-key', files.keyFile),
    files.clientCaFile === undefined ? undefined : read('tls-client-ca', files.clientCaFile),
  ]);
  return { cert, key, clientCa };
}

export async function loadTlsMaterial(files: TlsFiles): Promise<TlsMaterial> {
  return checkTlsMaterial(files, await readTlsFiles(files));
}

/**
 * node's default cipher list with AES-128-GCM moved to the front of the TLS 1.3 suites: what BoringSSL
 * (Envoy) and Go prefer on CPUs with AES instructions, TLS 1.3's mandatory suite, and cheaper per byte
 * than AES-256-GCM, which node puts first. Servers apply it with honorCipherOrder.
 */
export const PREFERRED_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  ...DEFAULT_CIPHERS.split(':').filter((cipher) => !cipher.startsWith('TLS_')),
].join(':');

/** What node:tls needs for a server SecureContext with this material. */
export function secureContextOptions(material: TlsMaterial): SecureContextOptions {
  return {
    cert: material.cert,
    key: material.key,
    ...(material.clientCa === undefined ? {} : { ca: material.clientCa }),
    // TLS 1.2 is what Envoy and grpc-go speak at the least; nothing older.
    minVersion: 'TLSv1.2',
    ciphers: PREFERRED_CIPHERS,
  };
}

export function digestOf(contents: TlsFileContents): string {
  const hash = createHash('sha256');
  for (const part of [contents.cert, contents.key, contents.clientCa ?? Buffer.alloc(0)]) {
    hash.update(String(part.length)).update(':').update(part);
  }
  return hash.digest('hex');
}

function invalid(message: string): ReadygateError {
  return new ReadygateError(ErrorCode.CONFIG_INVALID, message);
}

function oneLine(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'it is a directory';
  return (errorMessage(error).split('\n')[0] ?? '').trim();
}
