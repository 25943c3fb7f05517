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

# What a stuck rollout needs to be understood: the pods with their node and state, every container's
# state and last state (why it restarted, exit codes, the native sidecar too), `kubectl describe` (which
# ends with the pods' events: failed probes, FailedPreStopHook, image pulls, scheduling) and the
# namespace's recent events.
diagnose() {
  local namespace="$1" deployment="$2" selector
  # shellcheck disable=SC2016  # $k, $v and $pod below are go-template variables, not shell ones
  selector=$(kctl -n "$namespace" get deployment "$deployment" \
    -o go-template='{{range $k, $v := .spec.selector.matchLabels}}{{$k}}={{$v}},{{end}}' 2>/dev/null || true)
  selector="${selector%,}"
  log "diagnosis for deployment/$deployment in namespace $namespace (selector ${selector:-unknown})"
  kctl -n "$namespace" get deployment "$deployment" -o wide >&2 || true
  if [ -n "$selector" ]; then
    kctl -n "$namespace" get pods -l "$selector" -o wide >&2 || true
    log "container states (name ready restarts state last-state):"
    # shellcheck disable=SC2016
    kctl -n "$namespace" get pods -l "$selector" -o go-template='{{range .items}}{{$pod := .metadata.name}}{{range .status.initContainerStatuses}}{{$pod}} init/{{.name}} ready={{.ready}} restarts={{.restartCount}} state={{.state}} last={{.lastState}}{{"\n"}}{{end}}{{range .status.containerStatuses}}{{$pod}} {{.name}} ready={{.ready}} restarts={{.restartCount}} state={{.state}} last={{.lastState}}{{"\n"}}{{end}}{{end}}' >&2 || true
    kctl -n "$namespace" describe pods -l "$selector" >&2 || true
  fi
  log "recent events in namespace $namespace:"
  kctl -n "$namespace" get events --sort-by=.lastTimestamp 2>/dev/null | tail -n 40 >&2 || true
}

# `kubectl rollout status`, and on a timeout or failure the diagnosis above before giving up.
wait_rollout() {
  local namespace="$1" deployment="$2" timeout="${3:-180s}"
  if ! kctl -n "$namespace" rollout status "deployment/$deployment" --timeout="$timeout"; then
    diagnose "$namespace" "$deployment"
    log "deployment/$deployment in namespace $namespace did not finish its rollout within $timeout"
    return 1
  fi
}
