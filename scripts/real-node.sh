#!/usr/bin/env bash
# Host side of the real-node e2e (docs/e2e.md): what a run of test/helpers/real-node.ts needs from the
# machine, and its removal. Everything a run creates is named after its run id (6 hex digits):
#   run dir /tmp/readygate-node-<id>, bridge rgn<id>, cgroup readygate-node-<id>, a /24 out of 10.213.0.0/16
#   claimed in /run/readygate-node-subnets/<n>.
# The run's processes (containerd, kubelet) are started by the test helper, which records their PIDs in
# <run dir>/pids; `down` finds everything else (shims, containers, mounts, netns) from the run dir.
#
#   real-node.sh check            why this host cannot run a real kubelet (exit 1), or nothing (exit 0)
#   real-node.sh install          apt-get installs containerd, runc and the CNI plugins when missing
#   real-node.sh up <id> <owner>  creates the run (dirs, cgroup, bridge, CNI and containerd configs) and
#                                 prints RUN_DIR=, BRIDGE=, SUBNET=, GATEWAY=, CGROUP= lines; <owner> is
#                                 the PID whose death marks the run as leftover
#   real-node.sh down <id>        stops and removes everything of run <id>; safe to repeat
#   real-node.sh sweep            `down` for every run whose owner is dead (leftovers of killed runs)
set -Euo pipefail

SUBNETS=/run/readygate-node-subnets
CNI_BIN_DIR=/usr/lib/cni
PACKAGES=(containerd runc containernetworking-plugins)
CGROUP_V1_CONTROLLERS=(blkio cpu cpuacct cpuset devices freezer memory pids systemd)

log() { printf 'real-node: %s\n' "$*" >&2; }
run_dir() { printf '/tmp/readygate-node-%s' "$1"; }
valid_id() { [[ "$1" =~ ^[0-9a-f]{6}$ ]] || { log "bad run id '$1' (6 hex digits)"; exit 2; }; }

check() {
  local problems=()
  [ "$(id -u)" = 0 ] || problems+=("not root (uid $(id -u)): a kubelet, containerd and runc need root")
  if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then
    : # cgroup v2: the kubelet's default
  elif [ -d /sys/fs/cgroup/memory ] && [ -d /sys/fs/cgroup/cpu ]; then
    : # cgroup v1 (kubelet 1.34 still runs on it; failCgroupV1 is false)
  else
    problems+=("no cgroup v1 (memory, cpu) or v2 hierarchy mounted at /sys/fs/cgroup")
  fi
  [ -e /dev/net/tun ] || [ -d /sys/class/net ] || problems+=("no network devices in /sys/class/net")
  ip link add rgncheck$$ type bridge 2>/dev/null && ip link del rgncheck$$ ||
    problems+=("cannot create a bridge (ip link add ... type bridge failed: needs CAP_NET_ADMIN)")
  for tool in ip mount umount nsenter flock; do
    command -v "$tool" >/dev/null || problems+=("$tool is missing")
  done
  if [ ${#problems[@]} -gt 0 ]; then
    printf 'this host cannot run the real-node e2e: %s\n' "${problems[@]}" >&2
    exit 1
  fi
}

install() {
  local missing=()
  command -v containerd >/dev/null && command -v ctr >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ -x "$CNI_BIN_DIR/bridge" ] && [ -x "$CNI_BIN_DIR/host-local" ] && [ -x "$CNI_BIN_DIR/loopback" ] ||
    missing+=(containernetworking-plugins)
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || { log "missing ${missing[*]} and no apt-get to install them"; exit 1; }
  log "installing ${missing[*]} with apt-get (first run on this machine)"
  local started; started=$(date +%s)
  # One install at a time: parallel runs on a fresh machine would otherwise race on dpkg's lock.
  exec 8>/run/readygate-node-apt.lock
  flock 8
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"; } >&2; then
    log "apt-get install ${PACKAGES[*]} failed"
    exit 1
  fi
  # The packages' postinst may start a system containerd where an init system exists; runs never use it.
  log "installed in $(( $(date +%s) - started ))s"
}

cgroup_paths() {
  local name="$1"
  if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
    printf '%s\n' "/sys/fs/cgroup/$name"
  else
    for c in "${CGROUP_V1_CONTROLLERS[@]}"; do
      [ -d "/sys/fs/cgroup/$c" ] && printf '%s\n' "/sys/fs/cgroup/$c/$name"
    done
  fi
}

claim_subnet() {
  local id="$1" dir="$2" n
  mkdir -p "$SUBNETS"
  for _ in $(seq 1 64); do
    n=$(( RANDOM % 250 + 1 ))
    # Taken by a live run (its claim), or by anything else on the host (a route into it).
    if ip -4 route show to match "10.213.$n.1" | grep -q "10\.213\.$n\."; then continue; fi
    if mkdir "$SUBNETS/$n" 2>/dev/null; then
      printf '%s\n' "$id" >"$SUBNETS/$n/owner"
      printf '%s\n' "$n" >"$dir/subnet-claim"
      printf '%s' "$n"
      return 0
    fi
  done
  log "no free /24 in 10.213.0.0/16 after 64 tries"
  return 1
}

up() {
  local id="$1" owner="$2" dir n bridge cgroup
  valid_id "$id"
  dir=$(run_dir "$id")
  mkdir "$dir" || { log "run $id exists already"; exit 1; }
  printf '%s\n' "$owner" >"$dir/owner.pid"
  mkdir -p "$dir"/{containerd/root,containerd/state,run,net.d,cni,kubelet,pod-logs,pids,logs}
  n=$(claim_subnet "$id" "$dir") || exit 1
  bridge="rgn$id"
  cgroup="readygate-node-$id"
  # The bridge exists before any pod, with the gateway address on it, so readygate can listen on that
  # address for pods (drain-wait) and the host reaches pod IPs over it. No isGateway/ipMasq in the CNI
  # config: the plugin then changes no sysctl and adds no iptables rule on the host.
  if ! { ip link add "$bridge" type bridge && ip addr add "10.213.$n.1/24" dev "$bridge" &&
    ip link set "$bridge" up; }; then
    log "could not create bridge $bridge"
    down "$id"
    exit 1
  fi
  while read -r path; do
    mkdir -p "$path"
    # cgroup v1 cpuset: a new group has no CPUs or memory nodes until given its parent's.
    if [[ "$path" == */cpuset/* ]]; then
      cat /sys/fs/cgroup/cpuset/cpuset.cpus >"$path/cpuset.cpus"
      cat /sys/fs/cgroup/cpuset/cpuset.mems >"$path/cpuset.mems"
    fi
  done < <(cgroup_paths "$cgroup")
  cat >"$dir/net.d/10-readygate.conflist" <<CNI
{
  "cniVersion": "1.0.0",
  "name": "readygate-node-$id",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$dir/cni",
        "ranges": [[{ "subnet": "10.213.$n.0/24", "rangeStart": "10.213.$n.10", "gateway": "10.213.$n.1" }]]
      }
    }
  ]
}
CNI
  cat >"$dir/containerd.toml" <<TOML
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
[grpc]
  address = "$dir/run/containerd.sock"
[ttrpc]
  address = "$dir/run/containerd.sock.ttrpc"
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$dir/containerd/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "readygate.test/pause:e2e"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    tolerate_missing_hugepages_controller = true
    # Root here lacks CAP_SYS_RESOURCE: a negative oom_score_adj is denied and the sandbox would fail.
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "$CNI_BIN_DIR"
      conf_dir = "$dir/net.d"
TOML
  printf 'RUN_DIR=%s\nBRIDGE=%s\nSUBNET=10.213.%s.0/24\nGATEWAY=10.213.%s.1\nCGROUP=%s\n' \
    "$dir" "$bridge" "$n" "$n" "$cgroup"
}

# Kills $1 (a PID from the pids dir) if it still runs a command mentioning the run dir (no PID reuse).
kill_recorded() {
  local pid="$1" dir="$2" signal="$3"
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$dir" && kill "-$signal" "$pid" 2>/dev/null
}

down() {
  local id="$1" dir pid path n
  valid_id "$id"
  dir=$(run_dir "$id")
  # kubelet first (it would restart what we stop), then containerd: TERM, then KILL after 5 s.
  for name in kubelet kube-scheduler containerd; do
    [ -r "$dir/pids/$name" ] || continue
    pid=$(cat "$dir/pids/$name")
    if kill_recorded "$pid" "$dir" TERM; then
      for _ in $(seq 1 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
      kill_recorded "$pid" "$dir" KILL || true
    fi
  done
  # Shims outlive containerd; each names the run's socket on its command line.
  for p in /proc/[0-9]*; do
    [ -r "$p/cmdline" ] || continue
    if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q "^/usr/bin/containerd-shim.* -address $dir/run/containerd.sock"; then
      kill -KILL "${p#/proc/}" 2>/dev/null || true
    fi
  done
  # Every container process is in the run's cgroup (pods are under the kubelet's cgroup root).
  while read -r path; do
    [ -d "$path" ] || continue
    for _ in 1 2 3 4 5; do
      local victims
      victims=$(find "$path" -name cgroup.procs -exec cat {} + 2>/dev/null)
      [ -n "$victims" ] || break
      for victim in $victims; do kill -KILL "$victim" 2>/dev/null || true; done
      sleep 0.2
    done
  done < <(cgroup_paths "readygate-node-$id")
  # Mounts (rootfs overlays, shm, netns bind mounts, the kubelet's bind mount of its root dir), deepest first.
  if [ -d "$dir" ]; then
    for _ in 1 2 3; do
      awk -v d="$dir/" 'index($5, d) == 1 || $5 == substr(d, 1, length(d) - 1) {print $5}' /proc/self/mountinfo |
        sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    done
  fi
  # The bridge's veths go with the bridge's pods' netns; delete any left, then the bridge.
  if ip link show "rgn$id" >/dev/null 2>&1; then
    for veth in $(ip -o link show master "rgn$id" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
      ip link del "$veth" 2>/dev/null || true
    done
    ip link del "rgn$id" 2>/dev/null || true
  fi
  while read -r path; do
    [ -d "$path" ] && find "$path" -depth -type d -exec rmdir {} \; 2>/dev/null
  done < <(cgroup_paths "readygate-node-$id")
  if [ -r "$dir/subnet-claim" ]; then
    n=$(cat "$dir/subnet-claim")
    rm -rf "${SUBNETS:?}/$n"
  fi
  # What the kubelet and the CNI library write outside the run dir, at paths they do not let us choose:
  # container log links, the CNI result cache (a pod killed without a CNI DEL leaves its entries), and
  # the device-plugin socket (shared by every kubelet on the host: removed with the last run).
  find /var/log/containers -maxdepth 1 -type l -lname "$dir/*" -delete 2>/dev/null || true
  for cached in /var/lib/cni/results/"readygate-node-$id"-*; do
    [ -e "$cached" ] || continue
    local container=${cached#/var/lib/cni/results/readygate-node-"$id"-}
    rm -f "$cached" /var/lib/cni/results/cni-loopback-"${container%-*}"-*
  done
  if ! compgen -G '/tmp/readygate-node-*' | grep -qv "^$dir\$"; then
    rm -f /var/lib/kubelet/device-plugins/kubelet.sock
    rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet 2>/dev/null || true
  fi
  rm -rf "$dir"
  # Anything that survived says so: a leak must be visible, not silent.
  local left=()
  [ -e "$dir" ] && left+=("$dir")
  ip link show "rgn$id" >/dev/null 2>&1 && left+=("bridge rgn$id")
  while read -r path; do [ -d "$path" ] && left+=("$path"); done < <(cgroup_paths "readygate-node-$id")
  if [ ${#left[@]} -gt 0 ]; then
    log "run $id: could not remove ${left[*]}"
    return 1
  fi
}

sweep() {
  local d id owner
  for d in /tmp/readygate-node-*; do
    [ -d "$d" ] || continue
    id=${d##*-}
    [[ "$id" =~ ^[0-9a-f]{6}$ ]] || continue
    owner=$(cat "$d/owner.pid" 2>/dev/null || echo 0)
    if [ "$owner" -gt 0 ] && kill -0 "$owner" 2>/dev/null; then continue; fi
    log "removing leftovers of dead run $id"
    down "$id" || true
  done
  # Claims whose run is gone, and bridges of runs whose dir is gone.
  for d in "$SUBNETS"/*; do
    [ -d "$d" ] || continue
    id=$(cat "$d/owner" 2>/dev/null || true)
    [ -n "$id" ] && [ -d "$(run_dir "$id")" ] && continue
    rm -rf "$d"
  done
  for b in $(ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^rgn[0-9a-f]{6}$'); do
    [ -d "$(run_dir "${b#rgn}")" ] || down "${b#rgn}" || true
  done
}

case "${1:-}" in
  check) check ;;
  install) install ;;
  up) up "${2:?run id}" "${3:?owner pid}" ;;
  down) down "${2:?run id}" ;;
  sweep) sweep ;;
  *) log "usage: real-node.sh check|install|up <id> <owner-pid>|down <id>|sweep"; exit 2 ;;
esac
