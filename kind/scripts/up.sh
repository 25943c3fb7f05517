#!/usr/bin/env bash
# Creates the kind cluster (once), builds the readygate image, loads it into the nodes and applies
# kind/base; waits until readygate, the gateway and the demo app are rolled out, and prints the failing
# pods' container states and events if one is not within 180 s.
set -Eeuo pipefail
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need kind docker kubectl

if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
  log "cluster $KIND_CLUSTER exists; reusing it"
else
  log "creating cluster $KIND_CLUSTER"
  kind create cluster --name "$KIND_CLUSTER" --config "$KIND_DIR/cluster.yaml" --wait 180s
fi

log "building $IMAGE"
docker build -t "$IMAGE" "$REPO_ROOT"
log "loading $IMAGE into the nodes"
kind load docker-image "$IMAGE" --name "$KIND_CLUSTER"

# The pods mount their certificates: the Secrets exist before the Deployments do.
kctl apply -f "$KIND_DIR/base/namespaces.yaml" >/dev/null
if kctl -n readygate get secret readygate-tls >/dev/null 2>&1; then
  log "TLS secrets exist; keeping them (make -C kind certs issues new ones)"
else
  bash "$KIND_DIR/scripts/certs.sh"
fi

log "applying kind/base"
kctl apply -k "$KIND_DIR/base"
# A re-run with a rebuilt image under the same tag needs new pods to pick it up.
kctl -n readygate rollout restart deployment/readygate >/dev/null
kctl -n gateway rollout restart deployment/envoy >/dev/null
for target in readygate/readygate gateway/envoy demo/web; do
  wait_rollout "${target%%/*}" "${target##*/}" 180s
done
log "ready: curl http://127.0.0.1:8080/ goes through Envoy to demo/web"
