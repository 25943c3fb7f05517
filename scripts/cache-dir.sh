# shellcheck shell=bash
# Sourced by the scripts that install test binaries: where their cache lives, and one lock per cache
# directory, so that parallel test workers calling the same script install once.
# shellcheck disable=SC2034 # used by the scripts that source this file
CACHE_ROOT="${READYGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/readygate}"

# Creates $1 and holds an exclusive lock on it (file descriptor 9) until the calling script exits.
lock_cache_dir() {
  mkdir -p "$1"
  exec 9>"$1/.lock"
  if ! flock -n 9; then
    # Another test worker is installing into the same cache: say why nothing seems to happen.
    printf '%s: waiting for another run installing into %s\n' "${PROGRESS_NAME:-readygate}" "$1" >&2
    flock 9
  fi
}
