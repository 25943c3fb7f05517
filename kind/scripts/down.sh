#!/usr/bin/env bash
# Deletes the kind cluster (and with it everything the demo created).
set -Eeuo pipefail
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need kind

if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
  kind delete cluster --name "$KIND_CLUSTER"
else
  log "no cluster named $KIND_CLUSTER"
fi
