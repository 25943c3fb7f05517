#!/usr/bin/env bash
# Constant bounded load through the gateway (127.0.0.1:8080) while `kubectl rollout restart` rolls the
# demo app; prints the status-code counts and exits non-zero if any request was not answered 2xx, on the
# gateway path or on the sidecar path (the client Deployment's app calling web through its Envoy sidecar).
# SETUP=ready-only runs the same check against setup (b) of docs/demo.md (kind/overlays/ready-only: no
# readiness gate, `preStop: sleep 5`, terminating endpoints left out) and applies kind/base again after.
set -Eeuo pipefail
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need kubectl node

URL="${URL:-http://127.0.0.1:8080/}"
RPS="${RPS:-100}"
CONCURRENCY="${CONCURRENCY:-16}"
# Hard upper bound for the load, whatever happens to the rollout.
MAX_SECONDS="${MAX_SECONDS:-240}"
SETUP="${SETUP:-readygate}"
case "$SETUP" in
  readygate | ready-only) ;;
  *)
    log "SETUP must be readygate or ready-only, not '$SETUP'"
    exit 2
    ;;
esac

# Brings readygate and the demo app to the given kustomization and waits until both are rolled out.
apply_setup() {
  log "applying $1"
  kctl apply -k "$1" >/dev/null
  wait_rollout readygate readygate 180s
  wait_rollout demo web 180s
}

workdir="$(mktemp -d)"
load_pid=""
# shellcheck disable=SC2317  # called by the EXIT trap, which shellcheck 0.9 does not see
cleanup() {
  if [ -n "$load_pid" ] && kill -0 "$load_pid" 2>/dev/null; then
    kill -TERM "$load_pid" 2>/dev/null || true
    wait "$load_pid" 2>/dev/null || true
  fi
  rm -rf "$workdir"
  if [ "$SETUP" = ready-only ]; then
    apply_setup "$KIND_DIR/base" || log "could not restore kind/base; run make -C kind up"
  fi
}
trap cleanup EXIT

if [ "$SETUP" = ready-only ]; then
  apply_setup "$KIND_DIR/overlays/ready-only"
fi

# The sidecar path (kind/base/client.yaml): every client pod's app calls web through its Envoy sidecar
# 20 times a second and logs cumulative counts (client.tally) every 5 s. Prints the sum of the newest
# tally of every client pod as "ok non2xx failed".
client_tally() {
  local pod
  # shellcheck disable=SC2016  # the ${...} are a JavaScript template literal's, not the shell's
  for pod in $(kctl -n gateway get pods -l app.kubernetes.io/name=client -o name); do
    kctl -n gateway logs "$pod" -c app --tail=20 2>/dev/null | grep '"client.tally"' | tail -n 1 || true
  done | node -e '
    let ok = 0, non2xx = 0, failed = 0;
    for (const line of require("node:fs").readFileSync(0, "utf8").split("\n").filter(Boolean)) {
      const tally = JSON.parse(line);
      ok += tally.ok; non2xx += tally.non2xx; failed += tally.failed;
    }
    console.log(`${ok} ${non2xx} ${failed}`);'
}
read -r sidecar_ok_before sidecar_non2xx_before sidecar_failed_before <<<"$(client_tally)"

log "setup $SETUP; load: $RPS rps, at most $CONCURRENCY in flight, at most ${MAX_SECONDS}s, to $URL"
node "$KIND_DIR/scripts/load.mjs" --url "$URL" --rps "$RPS" --concurrency "$CONCURRENCY" \
  --max-seconds "$MAX_SECONDS" --setup "$SETUP" --out "$workdir/result.json" &
load_pid=$!

sleep 3
started=$(date +%s)
log "kubectl rollout restart deployment/web"
kctl -n demo rollout restart deployment/web
wait_rollout demo web 180s
log "rollout complete after $(($(date +%s) - started))s; waiting for old pods to finish terminating"

# Terminating pods still count: their drain is exactly what is being checked.
for _ in $(seq 1 120); do
  terminating=$(kctl -n demo get pods -l app.kubernetes.io/name=web \
    -o jsonpath='{range .items[*]}{.metadata.deletionTimestamp}{"\n"}{end}' | grep -c . || true)
  [ "$terminating" -eq 0 ] && break
  sleep 1
done
log "old pods gone after $(($(date +%s) - started))s"
sleep 3

kill -TERM "$load_pid"
status=0
wait "$load_pid" || status=$?
load_pid=""
cat "$workdir/result.json"

# The sidecar path over the same window: the tallies are cumulative and written every 5 s.
sleep 6
read -r sidecar_ok sidecar_non2xx sidecar_failed <<<"$(client_tally)"
sidecar_ok=$((sidecar_ok - sidecar_ok_before))
sidecar_bad=$((sidecar_non2xx - sidecar_non2xx_before + sidecar_failed - sidecar_failed_before))
log "sidecar path (gateway/client → web.demo:8080): $sidecar_ok 2xx, $sidecar_bad non-2xx or failed"
if [ "$sidecar_ok" -le 0 ]; then
  log "no request went through the client's sidecar during the check: is deployment/client running?"
  [ "$status" -ne 0 ] || status=1
elif [ "$sidecar_bad" -ne 0 ]; then
  [ "$status" -ne 0 ] || status=1
fi
exit "$status"
