/**
 * The pure parts of src/tls: identity from a peer certificate, handshake failure reasons, and the
 * reloader's decisions (reload, keep, refuse once, confirm before refusing) with its file reads
 * replaced by a function the test controls; the material itself comes from real openssl output.
 */
import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import test from 'ava';
import { silentLogger } from '../../src/log.js';
import { peerIdentity, subjectAltNames } from '../../src/tls/identity.js';
import { DEFAULT_CIPHERS } from 'node:tls';
import {
  PREFERRED_CIPHERS,
  checkTlsMaterial,
  type TlsFileContents,
  type TlsFiles,
} from '../../src/tls/material.js';
import { createTlsMetrics } from '../../src/tls/metrics.js';
import { TlsReloader } from '../../src/tls/reloader.js';
import { handshakeFailureReason } from '../../src/tls/server.js';
import { createTestPki, type CertFiles } from '../helpers/tls-certs.js';
import { counterValue } from '../helpers/tls-fixtures.js';

const pki = createTestPki();
const ca = pki.ca('ca');
const issue = (name: string): CertFiles =>
  pki.issue(ca, name, { cn: 'readygate', dns: ['readygate'], usage: 'serverAuth' });
const [v1, v2] = [issue('v1'), issue('v2')];
test.after.always(() => {
  pki.remove();
});

const files: TlsFiles = { certFile: 'tls.crt', keyFile: 'tls.key', clientCaFile: 'ca.crt' };
const contents = (cert: CertFiles, key: CertFiles = cert): TlsFileContents => ({
  cert: readFileSync(cert.certFile),
  key: readFileSync(key.keyFile),
  clientCa: readFileSync(ca.certFile),
});

test('identity: URI SANs first, else the CN, else nothing', (t) => {
  t.is(
    peerIdentity({ subject: { CN: 'gateway-1' }, subjectaltname: 'DNS:gw, URI:spiffe://td/ns/a/sa/b' }),
    'spiffe://td/ns/a/sa/b',
  );
  t.is(
    peerIdentity({ subjectaltname: 'URI:spiffe://td/a, URI:spiffe://td/b' }),
    'spiffe://td/a, spiffe://td/b',
  );
  t.is(peerIdentity({ subject: { CN: 'gateway-1' }, subjectaltname: 'DNS:gw' }), 'CN=gateway-1');
  t.is(peerIdentity({ subject: { CN: ['first', 'second'] } }), 'CN=first');
  t.is(peerIdentity({ subject: { O: 'acme' } }), undefined);
  t.is(peerIdentity(undefined), undefined);
});

test('subjectAltNames: quoted values keep their commas', (t) => {
  t.deepEqual(subjectAltNames('DNS:a, URI:"spiffe://td/x,y", IP Address:127.0.0.1'), [
    { type: 'DNS', value: 'a' },
    { type: 'URI', value: 'spiffe://td/x,y' },
    { type: 'IP Address', value: '127.0.0.1' },
  ]);
  t.deepEqual(subjectAltNames(''), []);
});

test('handshake failure reasons from node:tls errors', (t) => {
  const error = (code: string, message = ''): Error => Object.assign(new Error(message), { code });
  t.is(handshakeFailureReason(error('ERR_TLS_HANDSHAKE_TIMEOUT')), 'timeout');
  t.is(handshakeFailureReason(error('ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE')), 'client_certificate');
  t.is(handshakeFailureReason(error('ERR_SSL_NO_APPLICATION_PROTOCOL')), 'alpn');
  t.is(handshakeFailureReason(error('ERR_SSL_WRONG_VERSION_NUMBER')), 'protocol');
  t.is(handshakeFailureReason(error('ECONNRESET', 'socket hang up')), 'protocol');
});

test('checkTlsMaterial: the same files give the same digest; any change gives another', (t) => {
  const a = checkTlsMaterial(files, contents(v1));
  t.is(checkTlsMaterial(files, contents(v1)).digest, a.digest);
  t.not(checkTlsMaterial(files, contents(v2)).digest, a.digest);
  t.is(a.certSubject, 'CN=readygate');
  t.regex(a.certNotAfter, /^\d{4}-\d\d-\d\dT/);
});

/** A reloader whose files are whatever `state.now` holds; no watch, no poll (start() is not called). */
function reloaderOver(initial: TlsFileContents) {
  const state = { now: initial as TlsFileContents | Error };
  const registry = new Registry();
  const reloader = new TlsReloader({
    files,
    initial: checkTlsMaterial(files, initial),
    logger: silentLogger,
    metrics: createTlsMetrics(registry),
    read: () => (state.now instanceof Error ? Promise.reject(state.now) : Promise.resolve(state.now)),
  });
  const seen: string[] = [];
  reloader.onChange((material) => seen.push(material.digest));
  const count = (result: string): Promise<number> =>
    counterValue(registry, 'readygate_tls_reloads_total', { result });
  return { state, reloader, seen, count };
}

test('reloader: unchanged files do nothing; new good files reach every listener once', async (t) => {
  const { state, reloader, seen, count } = reloaderOver(contents(v1));
  t.teardown(() => {
    reloader.close();
  });
  t.is(await reloader.check(), 'unchanged');
  state.now = contents(v2);
  t.is(await reloader.check(), 'reloaded');
  t.is(await reloader.check(), 'unchanged');
  t.deepEqual(seen, [checkTlsMaterial(files, contents(v2)).digest]);
  t.is(reloader.current.digest, seen[0] ?? '');
  t.is(await count('ok'), 1);
  t.is(await count('failed'), 0);
});

test('reloader: a mismatched pair is refused on the second look, counted once, the old material kept', async (t) => {
  const { state, reloader, seen, count } = reloaderOver(contents(v1));
  t.teardown(() => {
    reloader.close();
  });
  const before = reloader.current;
  state.now = contents(v2, v1);
  t.is(await reloader.check(), 'unconfirmed');
  t.is(await count('failed'), 0);
  t.is(await reloader.check(), 'refused');
  t.is(await reloader.check(), 'refused');
  t.is(await count('failed'), 1);
  t.is(reloader.current, before);
  t.deepEqual(seen, []);
  // The pair completed (the key arrived): picked up.
  state.now = contents(v2);
  t.is(await reloader.check(), 'reloaded');
  t.is(await count('ok'), 1);
});

test('reloader: a half-written pair that completes before the second look is never reported', async (t) => {
  const { state, reloader, count } = reloaderOver(contents(v1));
  t.teardown(() => {
    reloader.close();
  });
  state.now = contents(v2, v1);
  t.is(await reloader.check(), 'unconfirmed');
  state.now = contents(v2);
  t.is(await reloader.check(), 'reloaded');
  t.is(await count('failed'), 0);
});

test('reloader: files that vanish are refused like bad ones; back to the old files clears it', async (t) => {
  const { state, reloader, count } = reloaderOver(contents(v1));
  t.teardown(() => {
    reloader.close();
  });
  state.now = new Error('--tls-cert tls.crt: cannot read it (no such file)');
  t.is(await reloader.check(), 'unconfirmed');
  t.is(await reloader.check(), 'refused');
  t.is(await count('failed'), 1);
  state.now = contents(v1);
  t.is(await reloader.check(), 'unchanged');
  // The same problem again later is a new incident, reported again.
  state.now = new Error('--tls-cert tls.crt: cannot read it (no such file)');
  t.is(await reloader.check(), 'unconfirmed');
  t.is(await reloader.check(), 'refused');
  t.is(await count('failed'), 2);
});

test("cipher order: AES-128-GCM first, the same set as node's default otherwise", (t) => {
  const preferred = PREFERRED_CIPHERS.split(':');
  t.is(preferred[0], 'TLS_AES_128_GCM_SHA256');
  t.deepEqual([...preferred].sort(), DEFAULT_CIPHERS.split(':').sort());
});
