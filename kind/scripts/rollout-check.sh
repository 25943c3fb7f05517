#!/usr/bin/env bash
# Constant bounded load through the gateway (127.0.0.1:8080) while `kubectl rollout restart` rolls the
# demo app; prints the status-code counts and exits non-zero if any request was not answered 2xx.
set -Eeuo pipefail
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need kubectl node

URL="${URL:-http://127.0.0.1:8080/}"
RPS="${RPS:-100}"
CONCURRENCY="${CONCURRENCY:-16}"
# Hard upper bound for the load, whatever happens to the rollout.
MAX_SECONDS="${MAX_SECONDS:-240}"

workdir="$(mktemp -d)"
load_pid=""
# shellcheck disable=SC2317  # called by the EXIT trap, which shellcheck 0.9 does not see
cleanup() {
  if [ -n "$load_pid" ] && kill -0 "$load_pid" 2>/dev/null; then
    kill -TERM "$load_pid" 2>/dev/null || true
    wait "$load_pid" 2>/dev/null || true
  fi
  rm -rf "$workdir"
}
trap cleanup EXIT

log "load: $RPS rps, at most $CONCURRENCY in flight, at most ${MAX_SECONDS}s, to $URL"
node "$KIND_DIR/scripts/load.mjs" --url "$URL" --rps "$RPS" --concurrency "$CONCURRENCY" \
  --max-seconds "$MAX_SECONDS" --out "$workdir/result.json" &
load_pid=$!

sleep 3
started=$(date +%s)
log "kubectl rollout restart deployment/web"
kctl -n demo rollout restart deployment/web
kctl -n demo rollout status deployment/web --timeout=180s
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
exit "$status"
