#!/usr/bin/env bash
# Builds the kubelet and kube-scheduler (the node side of the real-node e2e, see docs/e2e.md) from the Go
# module proxy into a cache outside the repo and prints the directory holding them. Same version pin and
# wrapper-module approach as scripts/k8s-binaries.sh; rebuilds only what is missing.
set -Eeuo pipefail

K8S_VERSION="${READYGATE_K8S_VERSION:-1.34.10}"

# shellcheck source=scripts/cache-dir.sh
source "$(dirname "${BASH_SOURCE[0]}")/cache-dir.sh"
# shellcheck source=scripts/progress.sh
source "$(dirname "${BASH_SOURCE[0]}")/progress.sh"
PROGRESS_NAME=node-binaries
OUT="$CACHE_ROOT/k8s/node-v$K8S_VERSION"
LOG="$CACHE_ROOT/k8s/build-node-v$K8S_VERSION.log"
PROGRESS_LOG="$LOG"
mkdir -p "$OUT"

log() {
  printf 'node-binaries: %s\n' "$*" >&2
  printf '%s node-binaries: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$LOG" 2>/dev/null || true
}

command -v go >/dev/null || { log "go is required (Go >= 1.24 for Kubernetes $K8S_VERSION)"; exit 1; }

lock_cache_dir "$OUT"

export CGO_ENABLED=0 GOFLAGS=-mod=mod
trap 'log "build failed; see $LOG"; tail -20 "$LOG" >&2' ERR

COMMANDS=(kubelet kube-scheduler)

build() {
  local minor="${K8S_VERSION#1.}" work
  work=$(mktemp -d)
  # A cold build takes minutes: progress.sh says every 30 s that it is alive, and how long it took.
  progress_start "building ${COMMANDS[*]} v$K8S_VERSION (log: $LOG)"
  (
    cd "$work"
    go mod init local/readygate-nodebin >/dev/null 2>&1
    gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    for m in $(grep -oE '^[[:space:]]*k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$gomod" | awk '{print $1}' | sort -u); do
      go mod edit "-replace=$m=$m@v0.$minor"
    done
    targets=()
    for cmd in "${COMMANDS[@]}"; do targets+=("k8s.io/kubernetes/cmd/$cmd@v$K8S_VERSION"); done
    go get "${targets[@]}"
    ld="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor%%.*}"
    for cmd in "${COMMANDS[@]}"; do
      if [ ! -x "$OUT/$cmd" ]; then
        go build -trimpath -ldflags "$ld" -o "$OUT/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
        mv "$OUT/$cmd.tmp" "$OUT/$cmd"
      fi
    done
  ) >>"$LOG" 2>&1
  rm -rf "$work"
  progress_done
}

for cmd in "${COMMANDS[@]}"; do
  if [ ! -x "$OUT/$cmd" ]; then
    log "building ${COMMANDS[*]} v$K8S_VERSION from the Go module proxy (first run only; minutes)"
    build
    break
  fi
done
echo "$OUT"
