#!/usr/bin/env bash
# Stop a test node started by node-up.sh and remove its directory and everything it left
# outside it (see node-lib.sh for the list). Idempotent: fine if DIR is missing, half-started,
# or its processes are gone; fine before or after down.sh of its control plane.
#
# Usage: tests/cluster/node-down.sh DIR
# Env:   REGCRED_NODE_KEEP_DIR=1  keep DIR (logs) after stopping (node-up.sh's failure path)
set -euo pipefail

# shellcheck source=SCRIPTDIR/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
# shellcheck source=SCRIPTDIR/node-lib.sh
. "$CLUSTER_SCRIPTS_DIR/node-lib.sh"

if [[ $# -ne 1 || -z "$1" ]]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
if [[ ! -d "$1" ]]; then
  log "$1 does not exist: nothing to stop"
  exit 0
fi
DIR="$(cd "$1" && pwd)"
if [[ ! -e "$DIR/.regcred-node" ]]; then
  if [[ -n "$(ls -A -- "$DIR")" ]]; then
    log "FAILED: node-down: $DIR was not made by node-up.sh (no .regcred-node marker); not touching it"
    exit 1
  fi
  rmdir -- "$DIR"
  exit 0
fi
CP="$(<"$DIR/.regcred-node")"
ID="$(node_id "$DIR")"
T0=$SECONDS
rm -f -- "$DIR/.down-problems"

# Nothing below needs the registry or the scheduler.
stop_pieces "$DIR" node-watchdog kube-scheduler kube-controller-manager registry

# problem TEXT: recorded for the summary (from the per-node subshells too).
problem() { printf '%s\n' "$*" >>"$DIR/.down-problems"; }

# teardown_node N: one kubelet + containerd and what they left outside DIR.
teardown_node() {
  local N="$1"
  local sock="$N/containerd/containerd.sock" ctr tasks t cgroot shims pid br l
  # The kubelet first: it would restart what we kill below.
  stop_pieces "$N" kubelet
  # Every Pod's containers, while containerd still runs: kill, then delete the tasks, so the
  # shims exit and unmount the rootfs.
  if pid_of "$N" containerd >/dev/null && [[ -S "$sock" ]]; then
    ctr=("$(cat "$DIR/bin-dir" 2>/dev/null)/ctr" -a "$sock" -n k8s.io)
    if [[ -x "${ctr[0]}" ]]; then
      mapfile -t tasks < <("${ctr[@]}" tasks ls -q 2>/dev/null || true)
      for t in "${tasks[@]}"; do
        if [[ -n "$t" ]]; then timeout 5 "${ctr[@]}" tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; fi
      done
      for t in "${tasks[@]}"; do
        if [[ -n "$t" ]]; then timeout 10 "${ctr[@]}" tasks delete -f "$t" >/dev/null 2>&1 || true; fi
      done
    fi
  fi
  stop_pieces "$N" containerd
  # Whatever survived: processes in this node's cgroups (containers), then its shims (they
  # run in their own sessions; found by this node's socket path in their arguments).
  if [[ -s "$N/cgroup-root" ]]; then
    cgroot="$(<"$N/cgroup-root")"
    kill_cgroup_tree "$cgroot" || problem "cgroups /sys/fs/cgroup/*/$cgroot not all removed"
  fi
  mapfile -t shims < <(pids_with_arg "$sock")
  for pid in "${shims[@]}"; do
    [[ -n "$pid" ]] || continue
    log "killing leftover process $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-80))"
    kill -KILL "$pid" 2>/dev/null || true
  done
  # Kernel state outside DIR.
  if [[ -s "$N/bridge" ]]; then
    br="$(<"$N/bridge")"
    if ip link show "$br" >/dev/null 2>&1; then
      ip link delete "$br" 2>/dev/null || problem "bridge $br not deleted"
    fi
  fi
  # Files outside DIR: kubelet's log links pointing into this node, CNI results of its network.
  if [[ -d "$CONTAINER_LOG_LINKS" ]]; then
    for l in "$CONTAINER_LOG_LINKS"/*; do
      [[ -L "$l" ]] || continue
      case "$(readlink -- "$l")" in "$N"/*) rm -f -- "$l" ;; esac
    done
    rmdir "$CONTAINER_LOG_LINKS" 2>/dev/null || true
  fi
  # (containerd's own cni-loopback network is cached there too: match by this node's netns paths.)
  if [[ -d "$CNI_RESULTS" ]]; then
    grep -lsF -- "\"$N/" "$CNI_RESULTS"/* | while IFS= read -r f; do rm -f -- "$f"; done
    rmdir "$CNI_RESULTS" /var/lib/cni 2>/dev/null || true
  fi
}

# The nodes in parallel (each takes a few seconds, mostly waiting for processes to exit).
for N in "$DIR"/node-*/; do
  [[ -d "$N" ]] && teardown_node "${N%/}" &
done
wait

# Mounts below DIR (netns, rootfs, Pod volumes, kubelet's root bind mount) before removing it.
if ! unmount_under "$DIR"; then
  problem "still mounted: $(mounts_under "$DIR" | tr '\n' ' ')"
fi

# Shared hard-coded paths: containerd's shim sockets and fifos (dead ones only), and the
# device manager's socket dir, which every kubelet on the machine shares: the last node goes.
rm -f -- "$NODE_REGISTRATIONS/$ID"
others=0
for r in "$NODE_REGISTRATIONS"/*; do
  [[ -f "$r" ]] || continue
  if [[ -d "$(<"$r")" ]]; then others=$((others + 1)); else rm -f -- "$r"; fi
done
rmdir "$NODE_REGISTRATIONS" 2>/dev/null || true
if [[ -d "$CONTAINERD_RUN/s" ]]; then
  listening="$(awk 'NR > 1 && $8 != "" { print $8 }' /proc/net/unix | sort -u)"
  for s in "$CONTAINERD_RUN/s"/*; do
    [[ -S "$s" ]] || continue
    grep -qxF -- "$s" <<<"$listening" || rm -f -- "$s"
  done
fi
if ((others == 0)); then
  # With no node of ours left, containerd's shared run dir goes unless a system containerd uses it.
  # (Only shim sockets, fifos and the runc state of `ctr run` are ever written there.)
  if [[ -d "$CONTAINERD_RUN" && ! -S "$CONTAINERD_RUN/containerd.sock" ]]; then
    rm -rf --one-file-system -- "$CONTAINERD_RUN"
  fi
  if [[ -d "$DEVICE_PLUGINS" ]]; then
    rm -f -- "$DEVICE_PLUGINS/kubelet.sock" "$DEVICE_PLUGINS/kubelet_internal_checkpoint"
    rmdir "$DEVICE_PLUGINS" /var/lib/kubelet 2>/dev/null || true
  fi
fi

# The Node objects, if the control plane is still up (best effort: it may be gone already).
if [[ -n "$CP" && -f "$CP/env" && -f "$CP/pki/admin.key" ]]; then
  # shellcheck source=/dev/null disable=SC2153  # APISERVER_URL comes from the cluster's env.
  apiserver_url="$(. "$CP/env" && printf '%s' "$APISERVER_URL")"
  for N in "$DIR"/node-*/; do
    [[ -f "$N/kubelet/config.yaml" ]] || continue
    name="$(awk '$1 == "address:" { print $2 }' "$N/kubelet/config.yaml")"
    node_api "$CP" --max-time 3 -o /dev/null -X DELETE "$apiserver_url/api/v1/nodes/$name" 2>/dev/null || true
  done
fi

if [[ -s "$DIR/.down-problems" ]]; then
  while IFS= read -r p; do log "WARNING: node-down: $p"; done <"$DIR/.down-problems"
  rm -f -- "$DIR/.down-problems"
fi
if [[ -n "${REGCRED_NODE_KEEP_DIR:-}" ]]; then
  log "stopped node $DIR in $((SECONDS - T0))s (directory kept)"
  exit 0
fi
if [[ -n "$(mounts_under "$DIR")" ]]; then
  log "FAILED: node-down: mounts remain under $DIR; not removing it"
  exit 1
fi
rm -rf --one-file-system -- "$DIR"
log "stopped and removed node $DIR in $((SECONDS - T0))s"
