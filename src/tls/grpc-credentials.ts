/**
 * grpc-js server credentials that follow the TLS reloader, for the ext_proc server. grpc-js 1.14 has
 * certificate providers (experimental API): the server subscribes when it binds and calls
 * setSecureContext on its node:http2 secure server for every update, so new handshakes get new
 * material and established connections keep theirs. The provider hands grpc-js only material the
 * reloader has checked: an update grpc-js could not use would make it drop every new connection.
 */
import * as grpc from '@grpc/grpc-js';
import type { TlsMaterial } from './material.js';
import type { TlsReloader } from './reloader.js';

type Provider = grpc.experimental.CertificateProvider;
type CaListener = grpc.experimental.CaCertificateUpdateListener;
type IdentityListener = grpc.experimental.IdentityCertificateUpdateListener;

class ReloadingCertificateProvider implements Provider {
  readonly #reloader: TlsReloader;
  readonly #ca = new Set<CaListener>();
  readonly #identity = new Set<IdentityListener>();
  #unsubscribe: (() => void) | undefined;

  constructor(reloader: TlsReloader) {
    this.#reloader = reloader;
  }

  addCaCertificateListener(listener: CaListener): void {
    this.#ca.add(listener);
    this.#subscribe();
    // Later, not now: grpc-js subscribes before it registers the server that should hear the answer.
    process.nextTick(() => {
      if (this.#ca.has(listener)) listener(caUpdate(this.#reloader.current));
    });
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.#ca.delete(listener);
    this.#maybeUnsubscribe();
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.#identity.add(listener);
    this.#subscribe();
    process.nextTick(() => {
      if (this.#identity.has(listener)) listener(identityUpdate(this.#reloader.current));
    });
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.#identity.delete(listener);
    this.#maybeUnsubscribe();
  }

  #subscribe(): void {
    this.#unsubscribe ??= this.#reloader.onChange((material) => {
      for (const listener of this.#ca) listener(caUpdate(material));
      for (const listener of this.#identity) listener(identityUpdate(material));
    });
  }

  #maybeUnsubscribe(): void {
    if (this.#ca.size > 0 || this.#identity.size > 0) return;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
  }
}

function caUpdate(material: TlsMaterial): grpc.experimental.CaCertificateUpdate | null {
  return material.clientCa === undefined ? null : { caCertificate: material.clientCa };
}

function identityUpdate(material: TlsMaterial): grpc.experimental.IdentityCertificateUpdate {
  return { certificate: material.cert, privateKey: material.key };
}

/** TLS server credentials from the reloader; with a client CA, clients must present a certificate. */
export function reloadingServerCredentials(reloader: TlsReloader): grpc.ServerCredentials {
  const provider = new ReloadingCertificateProvider(reloader);
  const mutual = reloader.current.clientCa !== undefined;
  // grpc-js 1.14 names this function's first parameter caCertificateProvider in its typings, but passes
  // it on as the identity provider (server-credentials.js); the CA provider is the second.
  return grpc.experimental.createCertificateProviderServerCredentials(
    provider,
    mutual ? provider : null,
    mutual,
  );
}
