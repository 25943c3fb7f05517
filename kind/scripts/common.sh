# Shared settings for the kind demo scripts (sourced, not run).
# shellcheck shell=bash

# Overridable from the environment or `make VAR=value`.
KIND_CLUSTER="${KIND_CLUSTER:-readygate-demo}"
# The manifests name this image; change both together.
IMAGE="${IMAGE:-readygate:dev}"
KUBE_CONTEXT="kind-${KIND_CLUSTER}"

KIND_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_ROOT="$(cd "${KIND_DIR}/.." && pwd)"
export KIND_CLUSTER IMAGE KUBE_CONTEXT KIND_DIR REPO_ROOT

log() {
  printf '%s kind-demo: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2
}

need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || {
      log "$tool is required (see kind/README.md)"
      exit 1
    }
  done
}

kctl() {
  kubectl --context "$KUBE_CONTEXT" "$@"
}
