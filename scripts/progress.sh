# shellcheck shell=bash
# Sourced by the scripts that install test binaries: progress lines on stderr for steps that take minutes
# on a first run (building Kubernetes from source takes ~6 minutes), so `npm test` never sits silent.
# Callers set PROGRESS_NAME (the prefix of every line, e.g. k8s-binaries).

# Seconds between "still ..." lines; READYGATE_PROGRESS_SECONDS exists for the tests of this file.
PROGRESS_SECONDS="${READYGATE_PROGRESS_SECONDS:-30}"
PROGRESS_TICKER=""
# When set, the start and done lines are also appended to this file with a UTC timestamp.
PROGRESS_LOG="${PROGRESS_LOG:-}"
PROGRESS_WHAT=""
PROGRESS_STARTED=0

# 75 -> 1m15s, 9 -> 9s.
format_elapsed() {
  local seconds="$1"
  if [ "$seconds" -ge 60 ]; then printf '%dm%02ds' $((seconds / 60)) $((seconds % 60)); else printf '%ds' "$seconds"; fi
}

# Starts a step: one line now, then one line every PROGRESS_SECONDS until progress_done.
progress_start() {
  PROGRESS_WHAT="$1"
  PROGRESS_STARTED=$(date +%s)
  progress_line "$PROGRESS_WHAT ..."
  (
    # A background sleep and `wait`, not a foreground sleep: bash runs a trap only after the foreground
    # command ends, so stopping the ticker would otherwise take up to PROGRESS_SECONDS.
    trap - ERR EXIT
    set +e
    sleeper=""
    trap '[ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null; exit 0' TERM
    while :; do
      sleep "$PROGRESS_SECONDS" &
      sleeper=$!
      wait "$sleeper"
      printf '%s: still %s (%s elapsed)\n' "$PROGRESS_NAME" "$PROGRESS_WHAT" \
        "$(format_elapsed $(($(date +%s) - PROGRESS_STARTED)))" >&2
    done
  ) &
  PROGRESS_TICKER=$!
  trap progress_stop EXIT
}

progress_stop() {
  if [ -n "$PROGRESS_TICKER" ]; then
    kill "$PROGRESS_TICKER" 2>/dev/null || true
    wait "$PROGRESS_TICKER" 2>/dev/null || true
    PROGRESS_TICKER=""
# When set, the start and done lines are also appended to this file with a UTC timestamp.
PROGRESS_LOG="${PROGRESS_LOG:-}"
  fi
}

# Ends the step started last: stops the ticker and prints how long it took.
progress_done() {
  progress_stop
  progress_line "$PROGRESS_WHAT: done in $(format_elapsed $(($(date +%s) - PROGRESS_STARTED)))"
}

progress_line() {
  printf '%s: %s\n' "$PROGRESS_NAME" "$1" >&2
  if [ -n "$PROGRESS_LOG" ]; then
    printf '%s %s: %s\n' "$(date -u +%FT%TZ)" "$PROGRESS_NAME" "$1" >>"$PROGRESS_LOG" 2>/dev/null || true
  fi
}
