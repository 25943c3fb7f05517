#!/usr/bin/env bash
# Builds the two container images the real-node e2e runs (docs/e2e.md) without Docker or a registry and
# prints the directory holding them as OCI archives (pause.tar, app.tar) for `ctr images import`:
# - readygate.test/pause:e2e: test/real-node/pause/pause.c, gcc -static (the pod sandbox);
# - readygate.test/app:e2e:   test/real-node/app (Go, CGO off: static), on an empty base.
# Cached outside the repo under a hash of the sources, so a warm run only prints the path.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/cache-dir.sh
source "$ROOT/scripts/cache-dir.sh"

log() { printf 'real-node-images: %s\n' "$*" >&2; }

for tool in go gcc jq sha256sum tar; do
  command -v "$tool" >/dev/null || { log "$tool is required"; exit 1; }
done

SOURCES=(test/real-node/pause/pause.c test/real-node/app/go.mod test/real-node/app/main.go scripts/real-node-images.sh)
KEY=$( (cd "$ROOT" && cat "${SOURCES[@]}"; go version; gcc --version | head -1) | sha256sum | cut -c1-16)
OUT="$CACHE_ROOT/real-node-images/$KEY"
if [ -s "$OUT/pause.tar" ] && [ -s "$OUT/app.tar" ]; then
  echo "$OUT"
  exit 0
fi
lock_cache_dir "$OUT"
if [ -s "$OUT/pause.tar" ] && [ -s "$OUT/app.tar" ]; then
  echo "$OUT"
  exit 0
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
started=$(date +%s)

# One-layer OCI image layout archive: $1 rootfs dir, $2 image name, $3 entrypoint, $4 output file.
oci_archive() {
  local rootfs="$1" name="$2" entrypoint="$3" out="$4" layout
  layout="$WORK/layout-$(basename "$4" .tar)"
  mkdir -p "$layout/blobs/sha256"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$rootfs" -cf "$layout/layer.tar" .
  local layer_digest layer_size config config_digest manifest manifest_digest
  layer_digest=$(sha256sum "$layout/layer.tar" | cut -d' ' -f1)
  layer_size=$(stat -c %s "$layout/layer.tar")
  mv "$layout/layer.tar" "$layout/blobs/sha256/$layer_digest"
  config=$(jq -cn --arg d "sha256:$layer_digest" --arg e "$entrypoint" \
    '{architecture: "amd64", os: "linux", config: {Entrypoint: [$e], Env: ["PATH=/usr/local/bin:/usr/bin:/bin"]},
      rootfs: {type: "layers", diff_ids: [$d]}}')
  printf '%s' "$config" >"$layout/config.json"
  config_digest=$(sha256sum "$layout/config.json" | cut -d' ' -f1)
  mv "$layout/config.json" "$layout/blobs/sha256/$config_digest"
  manifest=$(jq -cn --arg cd "sha256:$config_digest" --argjson cs "${#config}" \
    --arg ld "sha256:$layer_digest" --argjson ls "$layer_size" \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
      layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $ld, size: $ls}]}')
  printf '%s' "$manifest" >"$layout/manifest.json"
  manifest_digest=$(sha256sum "$layout/manifest.json" | cut -d' ' -f1)
  jq -cn --arg d "sha256:$manifest_digest" --argjson s "${#manifest}" --arg n "$name" \
    '{schemaVersion: 2, manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $d,
      size: $s, platform: {architecture: "amd64", os: "linux"},
      annotations: {"io.containerd.image.name": $n, "org.opencontainers.image.ref.name": ($n | split(":") | last)}}]}' \
    >"$layout/index.json"
  mv "$layout/manifest.json" "$layout/blobs/sha256/$manifest_digest"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$layout" -cf "$out.tmp" .
  mv "$out.tmp" "$out"
}

log "building the pause and app images (first run for these sources)"
mkdir -p "$WORK/pause/rootfs" "$WORK/app/rootfs/usr" "$WORK/app/rootfs/tmp"
gcc -Os -static -o "$WORK/pause/rootfs/pause" "$ROOT/test/real-node/pause/pause.c"
strip "$WORK/pause/rootfs/pause" 2>/dev/null || true
(cd "$ROOT/test/real-node/app" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags '-s -w' -o "$WORK/app/rootfs/app" .)
# The host's /usr may be mounted here read-only (a pod that runs `readygate drain-wait` with the host's
# Node.js): merged-/usr links make its dynamic loader and libraries resolve as on the host.
ln -s usr/lib "$WORK/app/rootfs/lib"
ln -s usr/lib64 "$WORK/app/rootfs/lib64"
ln -s usr/bin "$WORK/app/rootfs/bin"
chmod 1777 "$WORK/app/rootfs/tmp"
oci_archive "$WORK/pause/rootfs" readygate.test/pause:e2e /pause "$OUT/pause.tar"
oci_archive "$WORK/app/rootfs" readygate.test/app:e2e /app "$OUT/app.tar"
log "built in $(( $(date +%s) - started ))s"
echo "$OUT"
