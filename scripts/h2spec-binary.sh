#!/usr/bin/env bash
# Builds h2spec (the HTTP/2 conformance tester) from the Go module proxy into a cache outside the repo
# and prints the binary's path. Reuses the cache when present.
set -euo pipefail

# The one place the h2spec version is pinned: h2spec 2.6.0, the last release (2020-08-04).
# Why a pseudo-version: h2spec tags v2.x.y but, from v2.3.0 on, its go.mod says
# `module github.com/summerwind/h2spec` without /v2, so the module proxy refuses `@v2.6.0`,
# `@v2.6.0+incompatible` and `github.com/summerwind/h2spec/v2@v2.6.0`; the newest tag it serves is
# v2.2.1+incompatible (2019, before go.mod). A pseudo-version names a commit, and the proxy serves it:
# 70ac22940108 is the release commit whose Makefile sets VERSION=2.6.0. It builds with Go 1.26 as
# published (its own go.mod and go.sum), so no wrapper module is needed.
H2SPEC_VERSION="${READYGATE_H2SPEC_VERSION:-v0.0.0-20200804131034-70ac22940108}"

# shellcheck source=scripts/cache-dir.sh
source "$(dirname "${BASH_SOURCE[0]}")/cache-dir.sh"
# shellcheck source=scripts/progress.sh
source "$(dirname "${BASH_SOURCE[0]}")/progress.sh"
PROGRESS_NAME=h2spec-binary
PREFIX="$CACHE_ROOT/h2spec/$H2SPEC_VERSION"
BIN="$PREFIX/h2spec"
LOG="$PREFIX/build.log"

log() { printf 'h2spec-binary: %s\n' "$*" >&2; }

lock_cache_dir "$PREFIX"

if [ ! -x "$BIN" ]; then
  command -v go >/dev/null || { log "go is required to build h2spec from the Go module proxy"; exit 1; }
  progress_start "building github.com/summerwind/h2spec@$H2SPEC_VERSION from the Go module proxy into $PREFIX"
  build="$PREFIX/build"
  rm -rf "$build"
  mkdir -p "$build/bin"
  # Module and build caches live in the cache directory, never in the repo or the user's GOPATH.
  # -modcacherw keeps the module cache deletable; GOTOOLCHAIN=local never downloads another Go.
  if ! (
    export GOPATH="$build/gopath" GOMODCACHE="$build/gopath/pkg/mod" GOCACHE="$build/gocache" \
      GOBIN="$build/bin" GOFLAGS=-modcacherw GOTOOLCHAIN=local CGO_ENABLED=0
    go install -trimpath \
      -ldflags "-s -w -X main.VERSION=$H2SPEC_VERSION -X main.COMMIT=${H2SPEC_VERSION##*-}" \
      "github.com/summerwind/h2spec/cmd/h2spec@$H2SPEC_VERSION"
  ) >"$LOG" 2>&1; then
    progress_stop
    log "build failed; see $LOG"
    tail -20 "$LOG" >&2
    exit 1
  fi
  mv "$build/bin/h2spec" "$BIN"
  # The binary is all that is needed from here on; the caches (~110 MB) only served this build.
  rm -rf "$build"
  progress_done
  "$BIN" --version >&2
fi
echo "$BIN"
