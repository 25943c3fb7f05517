#!/bin/bash
# Drains a gateway Envoy before it is stopped: the Envoy container's preStop hook in kind/base/gateway.yaml
# (mounted from the envoy-bootstrap ConfigMap at /etc/envoy/drain.sh). Any other Envoy is drained the same
# way before its SIGTERM (docs/envoy.md, "Draining a gateway Envoy").
#
#   1. POST /healthcheck/fail          /ready now answers 503: the readiness probe fails and the pod leaves
#                                      the Service's endpoints, even when nobody is deleting it.
#   2. POST /drain_listeners?graceful  from now on every response carries `connection: close` (HTTP/1.1) or
#                                      is followed by GOAWAY (HTTP/2) — from the first one, with
#                                      --drain-strategy immediate — so keep-alive clients reconnect, through
#                                      the Service, to another replica. The listener keeps accepting until
#                                      --drain-time-s is over: a connection kube-proxy still sends here while
#                                      it catches up is served, not refused.
#   3. wait DRAIN_SECONDS              as long as Envoy's --drain-time-s; the listener closes at its end.
#   4. wait for the last requests      until no downstream request is active, at most REQUEST_SECONDS (the
#                                      route timeout: no request outlives it).
# Then the hook returns, the kubelet sends SIGTERM and Envoy exits at once, with nothing left to cut off.
#
# The envoyproxy/envoy image has bash but neither curl nor wget: the admin calls go through bash's
# /dev/tcp. Environment: ENVOY_ADMIN (host:port, default 127.0.0.1:9901), DRAIN_SECONDS (default 10),
# REQUEST_SECONDS (default 5). Exits 0 in every case: a failing preStop hook only delays the SIGTERM.
set -u

readonly admin_address=${ENVOY_ADMIN:-127.0.0.1:9901}
readonly drain_seconds=${DRAIN_SECONDS:-10}
readonly request_seconds=${REQUEST_SECONDS:-5}

log() {
  printf 'envoy-drain: %s\n' "$*" >&2
}

# admin METHOD PATH: one request to Envoy's admin interface; prints the body, fails unless the answer is 200.
admin() {
  local status line body=''
  { exec 3<>"/dev/tcp/${admin_address%:*}/${admin_address##*:}"; } 2>/dev/null || return 1
  printf '%s %s HTTP/1.1\r\nHost: envoy-admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n' "$1" "$2" >&3
  if ! IFS= read -r -t 5 status <&3; then
    exec 3>&-
    return 1
  fi
  # Headers end at the first empty line.
  while IFS= read -r -t 5 line <&3 && [[ -n ${line%$'\r'} ]]; do :; done
  while IFS= read -r -t 5 line <&3 || [[ -n $line ]]; do body+="$line"$'\n'; done
  exec 3>&-
  [[ $status == HTTP/1.?' 200 '* ]] || return 1
  printf '%s' "$body"
}

# Requests in flight on every HTTP listener, the admin interface's own (this one) left out.
active_requests() {
  local stats line total=0
  stats=$(admin GET '/stats?filter=downstream_rq_active$') || return 1
  while IFS= read -r line; do
    [[ $line == http.admin.* ]] && continue
    [[ $line =~ :\ ([0-9]+)$ ]] && total=$((total + BASH_REMATCH[1]))
  done < <(printf '%s\n' "$stats") # not a here-string: bash may back those with a file, and / is read-only
  printf '%s\n' "$total"
}

if ! admin POST /healthcheck/fail >/dev/null; then
  log "no answer from Envoy's admin at ${admin_address}: nothing to drain"
  exit 0
fi
admin POST '/drain_listeners?graceful' >/dev/null || log 'POST /drain_listeners?graceful failed'
log "readiness failed, listeners draining; waiting ${drain_seconds}s for clients to move"
sleep "$drain_seconds"

deadline=$((SECONDS + request_seconds))
active=unknown
while ((SECONDS < deadline)); do
  if ! count=$(active_requests); then
    active=unknown
    break
  fi
  active=$count
  ((active == 0)) && break
  sleep 0.2
done
log "drained (${active} requests still active); Envoy can stop"
exit 0
