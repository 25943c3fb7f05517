#!/usr/bin/env bash
# Issues the demo's mTLS certificates with openssl and stores them as Secrets (kubernetes.io/tls with
# ca.crt): readygate-tls (the xDS server, DNS SAN readygate), envoy-gateway-tls (the Envoys' client
# certificate, for xDS and ext_proc) and readygate-extproc-tls (the ext_proc sidecar, DNS SAN
# readygate-extproc). The CA stays on this machine in kind/.pki (git-ignored) and is reused, so running
# this again only issues new leaf certificates: that is a rotation, which the pods pick up without a
# restart (kubelet refreshes mounted Secrets within about a minute; readygate reloads them).
set -Eeuo pipefail
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need openssl kubectl

PKI="${KIND_PKI_DIR:-${KIND_DIR}/.pki}"
DAYS="${CERT_DAYS:-30}"
mkdir -p "$PKI"
chmod 700 "$PKI"

if [[ ! -s "$PKI/ca.key" || ! -s "$PKI/ca.crt" ]]; then
  log "creating the demo CA in $PKI"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 365 -subj "/CN=readygate-demo-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

# issue NAME CN USAGE SANS: a P-256 key and a certificate signed by the demo CA.
issue() {
  local name="$1" cn="$2" usage="$3" sans="$4"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$PKI/$name.key" -out "$PKI/$name.csr" -subj "/CN=$cn" \
    -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=$usage" \
    -addext "subjectAltName=$sans" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days "$DAYS" -copy_extensions copy -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr"
}

# secret NAMESPACE NAME FILE-PREFIX: create or replace the Secret from the issued files.
secret() {
  kctl -n "$1" create secret generic "$2" --type=kubernetes.io/tls \
    --from-file=tls.crt="$PKI/$3.crt" --from-file=tls.key="$PKI/$3.key" --from-file=ca.crt="$PKI/ca.crt" \
    --dry-run=client -o yaml | kctl apply -f - >/dev/null
  log "secret $1/$2: $(openssl x509 -in "$PKI/$3.crt" -noout -subject -enddate | tr '\n' ' ')"
}

issue readygate readygate serverAuth \
  "DNS:readygate,DNS:readygate.readygate.svc,DNS:readygate.readygate.svc.cluster.local"
issue envoy-gateway envoy-gateway clientAuth "URI:spiffe://readygate-demo/ns/gateway/envoy"
issue readygate-extproc readygate-extproc serverAuth "DNS:readygate-extproc"

secret readygate readygate-tls readygate
secret gateway envoy-gateway-tls envoy-gateway
secret gateway readygate-extproc-tls readygate-extproc
