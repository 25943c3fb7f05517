#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and etcd from the Go module proxy into a cache outside
# the repo and prints the directory holding them. Rebuilds only what is missing, so CI pays once per machine.
#
# Why a wrapper module: k8s.io/kubernetes requires its staging modules at v0.0.0 and points them at
# ./staging via replace lines that a dependent module ignores; replacing each with its published v0.Y.Z tag
# makes the build resolvable (kubernetes/kubernetes#79384).
set -Eeuo pipefail

# The one place the Kubernetes and etcd versions are pinned. 1.34 matches @kubernetes/client-node 1.4.x.
K8S_VERSION="${READYGATE_K8S_VERSION:-1.34.10}"
ETCD_VERSION="${READYGATE_ETCD_VERSION:-3.6.4}"

# shellcheck source=scripts/cache-dir.sh
source "$(dirname "${BASH_SOURCE[0]}")/cache-dir.sh"
# shellcheck source=scripts/progress.sh
source "$(dirname "${BASH_SOURCE[0]}")/progress.sh"
PROGRESS_NAME=k8s-binaries
OUT="$CACHE_ROOT/k8s/v$K8S_VERSION-etcd$ETCD_VERSION"
LOG="$CACHE_ROOT/k8s/build-v$K8S_VERSION.log"
# Build times stay on record in the build log too.
PROGRESS_LOG="$LOG"
mkdir -p "$OUT"

# Messages go to stderr and, with a timestamp, to the build log, so build times stay on record.
log() {
  printf 'k8s-binaries: %s\n' "$*" >&2
  printf '%s k8s-binaries: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$LOG" 2>/dev/null || true
}

command -v go >/dev/null || { log "go is required (Go >= 1.24 for Kubernetes $K8S_VERSION)"; exit 1; }

lock_cache_dir "$OUT"

export CGO_ENABLED=0 GOFLAGS=-mod=mod
# Not in a `||` context on purpose: that would switch off errexit inside the build functions.
trap 'log "build failed; see $LOG"; tail -20 "$LOG" >&2' ERR

build_kube() {
  local minor="${K8S_VERSION#1.}" work gomod
  work=$(mktemp -d)
  # The build's own output goes to the log; the progress lines go to stderr.
  progress_start "resolving the Kubernetes v$K8S_VERSION modules (log: $LOG)"
  (
    cd "$work"
    go mod init local/readygate-kbin >/dev/null 2>&1
    gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    for m in $(grep -oE '^[[:space:]]*k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$gomod" | awk '{print $1}' | sort -u); do
      go mod edit "-replace=$m=$m@v0.$minor"
    done
    go get "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION" "k8s.io/kubernetes/cmd/kube-controller-manager@v$K8S_VERSION"
  ) >>"$LOG" 2>&1
  progress_done
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor%%.*}"
  for cmd in kube-apiserver kube-controller-manager; do
    if [ ! -x "$OUT/$cmd" ]; then
      progress_start "building $cmd v$K8S_VERSION"
      (cd "$work" && go build -trimpath -ldflags "$ld" -o "$OUT/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd") >>"$LOG" 2>&1
      mv "$OUT/$cmd.tmp" "$OUT/$cmd"
      progress_done
    fi
  done
  rm -rf "$work"
}

build_etcd() {
  local work
  work=$(mktemp -d)
  progress_start "building etcd v$ETCD_VERSION (log: $LOG)"
  (
    cd "$work"
    go mod init local/readygate-etcdbin >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
    go build -trimpath -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "$OUT/etcd.tmp" "$OUT/etcd"
  ) >>"$LOG" 2>&1
  rm -rf "$work"
  progress_done
}

if [ ! -x "$OUT/kube-apiserver" ] || [ ! -x "$OUT/kube-controller-manager" ]; then
  log "building Kubernetes v$K8S_VERSION from the Go module proxy (first run only; ~6 minutes on 2 cores)"
  build_kube
fi
if [ ! -x "$OUT/etcd" ]; then
  build_etcd
fi
echo "$OUT"
