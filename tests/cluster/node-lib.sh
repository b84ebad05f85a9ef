# shellcheck shell=bash disable=SC2034  # variables are used by the sourcing scripts
# Helpers shared by node-up.sh and node-down.sh (sourced after lib.sh, never run).
#
# A node directory DIR holds:
#   registry/              the registry's config, htpasswd, data, log (DIR/registry.log)
#   images/                OCI layouts of the test images
#   node-<i>/              one kubelet + containerd: configs, state, logs, pids
#   env                    what tests read (see node-up.sh)
# and, outside DIR, only what kubelet/containerd/CNI hard-code; node-down.sh removes it:
#   /sys/fs/cgroup/<hierarchy>/<NODE_CGROUP_ROOT>      each node's cgroup root (cgroupRoot)
#   network interface <bridge>                         each node's CNI bridge
#   /var/log/containers/*.log symlinks into DIR        kubelet's container log links
#   /var/lib/cni/results/* naming DIR's netns paths    CNI result cache (libcni)
#   /run/containerd/s/<socket>, /run/containerd/fifo   shim sockets, fifos
#   /var/lib/kubelet/device-plugins                    the device manager's socket (shared
#                                                      by every kubelet: removed by the last)
#   /run/regcred-test-nodes/<id>                       registration of a running node dir

NODE_REGISTRATIONS=/run/regcred-test-nodes
CONTAINERD_RUN=/run/containerd
DEVICE_PLUGINS=/var/lib/kubelet/device-plugins
CONTAINER_LOG_LINKS=/var/log/containers
CNI_RESULTS=/var/lib/cni/results

# node_id DIR: a short id unique to a node directory (names the bridge, cgroups, network).
node_id() { printf '%s' "$1" | sha256sum | cut -c1-8; }

# cgroup_hierarchies: the mount points of every cgroup hierarchy (v1 controllers, the
# v1 "name=systemd" one, and the v2 unified one on hybrid hosts).
cgroup_hierarchies() {
  awk '$9 == "cgroup" || $9 == "cgroup2" { print $5 }' /proc/self/mountinfo | sort -u
}

# mounts_under DIR: mount points at or below DIR, deepest first.
mounts_under() {
  local dir="$1"
  awk -v d="$dir" '{ mp = $5; gsub(/\\040/, " ", mp); if (mp == d || index(mp, d "/") == 1) print mp }' \
    /proc/self/mountinfo | awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2- | uniq
}

# unmount_under DIR: unmount everything mounted below DIR (netns, overlay rootfs, tmpfs
# volumes, kubelet's bind mount of its root dir). Lazy unmount for what stays busy.
unmount_under() {
  local dir="$1" mp pass
  for pass in 1 2 3; do
    while IFS= read -r mp; do
      [[ -n "$mp" ]] || continue
      umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
    done < <(mounts_under "$dir")
    [[ -z "$(mounts_under "$dir")" ]] && return 0
    sleep 0.2
  done
  [[ -z "$(mounts_under "$dir")" ]]
}

# kill_cgroup_tree ROOT: SIGKILL every process in the cgroups below ROOT in every hierarchy,
# then remove those cgroups depth-first (a cgroup can go once it is empty).
kill_cgroup_tree() {
  local root="$1" h pid d i
  for h in $(cgroup_hierarchies); do
    [[ -d "$h/$root" ]] || continue
    while IFS= read -r pid; do
      if [[ "$pid" =~ ^[0-9]+$ ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
    done < <(find "$h/$root" -name cgroup.procs -exec cat {} + 2>/dev/null)
  done
  for i in 1 2 3 4 5 6 7 8 9 10; do
    local left=0
    for h in $(cgroup_hierarchies); do
      [[ -d "$h/$root" ]] || continue
      while IFS= read -r d; do
        rmdir "$d" 2>/dev/null || left=1
      done < <(find "$h/$root" -depth -type d 2>/dev/null)
    done
    ((left == 0)) && return 0
    sleep 0.3
  done
  return 1
}

# pids_with_arg STRING: pids whose command line contains STRING as a whole argument or
# inside one (used with a path unique to one node dir, e.g. its containerd socket).
pids_with_arg() {
  local s="$1" f pid
  for f in /proc/[0-9]*/cmdline; do
    pid="${f#/proc/}"
    pid="${pid%/cmdline}"
    [[ "$pid" == "$$" || "$pid" == "$BASHPID" ]] && continue
    if { tr '\0' '\n' <"$f"; } 2>/dev/null | grep -qF -- "$s"; then
      printf '%s\n' "$pid"
    fi
  done
}

# node_api DIR_OF_CLUSTER ARGS...: curl the API server as admin (from the cluster's env).
node_api() {
  local cp="$1"
  shift
  curl --silent --show-error --max-time 10 \
    --cacert "$cp/pki/ca.crt" --cert "$cp/pki/admin.crt" --key "$cp/pki/admin.key" "$@"
}
