#!/usr/bin/env bash
# Build what the test node (node-up.sh) runs, from Go modules, into version-keyed caches
# outside the clone, like build.sh does for the control plane:
#   kubelet, kube-scheduler          k8s.io/kubernetes/cmd/... at K8S_VERSION (same generated
#                                    replace list as the control plane; the scheduler places
#                                    Deployment Pods, e.g. the operator's two replicas)
#   containerd, containerd-shim-runc-v2, ctr
#                                    github.com/containerd/containerd/v2 at CONTAINERD_VERSION
#   registry                         github.com/distribution/distribution/v3 at DISTRIBUTION_VERSION
#   ocimage, pause                   tests/node/ocimage and tests/node/pause (this repo), keyed
#                                    by a hash of their sources
# and installs from Debian what it takes from there (runc, CNI plugins, busybox-static for the
# test image's payload, apache2-utils for htpasswd) when missing. Versions: versions.env.
# Each piece has its own directory (bin/node-<piece>-<version>/), so bumping one rebuilds only
# that one; a directory keyed by all of them holds symlinks and is what this script prints.
# A cached run does no Go work and no apt work (milliseconds); a cold one takes minutes.
#
# Usage: tests/cluster/build-node.sh        (prints the node's bin directory on stdout)
#        tests/cluster/build-node.sh --image-tool   (only ocimage and pause, no apt; prints
#                                                    their directory: scripts/build-image.sh)
# Env:   REGCRED_CACHE (default ~/.cache/regcred-operator)
#        REGCRED_NODE_NO_APT=1   never run apt-get (fail instead when a package is missing)
set -euo pipefail

# shellcheck source=SCRIPTDIR/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
# shellcheck source=SCRIPTDIR/gobuild.sh
. "$CLUSTER_SCRIPTS_DIR/gobuild.sh"

NODE_SRC="$(cd "$CLUSTER_SCRIPTS_DIR/../node" && pwd)"
# The repo's own Go programs are keyed by their sources (go.mod, go.sum and *.go).
LOCAL_HASH="$(cd "$NODE_SRC" && cat ocimage/go.mod ocimage/go.sum ocimage/*.go pause/go.mod pause/*.go |
  sha256sum | cut -c1-12)"

declare -A PIECE_VERSION=(
  [kubelet]="$K8S_VERSION" [containerd]="$CONTAINERD_VERSION"
  [registry]="$DISTRIBUTION_VERSION" [local]="$LOCAL_HASH"
)
declare -A PIECE_BINS=(
  [kubelet]="kubelet kube-scheduler" [containerd]="containerd containerd-shim-runc-v2 ctr"
  [registry]="registry" [local]="ocimage pause"
)

# --- the repo's own programs: image tool and pause ---------------------------------
# Neither has a --version to log, and pause would run until killed: nothing to run.
local_bins() {
  build_bin --check true "$NODE_SRC/ocimage" ocimage . "-s -w"
  build_bin --check true "$NODE_SRC/pause" pause . "-s -w"
}
build_local() {
  timed ocimage+pause "$WORK_ROOT/node-local-$LOCAL_HASH-build.log" local_bins
}

if [[ "${1:-}" == --image-tool ]]; then
  go_tool_cached node-local "$LOCAL_HASH" "${PIECE_BINS[local]}" build_local
  exit 0
fi

# --- Debian packages: what node-up.sh needs from each --------------------------------
APT_PACKAGES=(runc containernetworking-plugins busybox-static apache2-utils iproute2)
apt_missing() {
  local missing=()
  [[ -x /usr/sbin/runc || -x /usr/bin/runc ]] || missing+=(runc)
  local p
  for p in bridge host-local loopback; do
    [[ -x "/usr/lib/cni/$p" ]] || { missing+=(containernetworking-plugins); break; }
  done
  [[ -x /bin/busybox || -x /usr/bin/busybox ]] && busybox_is_static || missing+=(busybox-static)
  command -v htpasswd >/dev/null || missing+=(apache2-utils)
  command -v ip >/dev/null || missing+=(iproute2)
  ((${#missing[@]} == 0)) || printf '%s\n' "${missing[@]}"
}
# The test image carries the host's busybox: it must not need a libc.
busybox_is_static() {
  local bb
  bb="$(command -v busybox)" || return 1
  ! LC_ALL=C ldd "$bb" 2>&1 | grep -q '=>'
}

apt_get_install() {
  # Another apt-get (a parallel job, unattended-upgrades) may hold the dpkg lock: wait for it.
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "${APT_PACKAGES[@]}"
}
# Under build-node.lock: apt-get update does not wait for a parallel one's lock on the lists.
install_apt() {
  local missing=()
  mapfile -t missing < <(apt_missing)
  ((${#missing[@]})) || return 0
  timed apt "$WORK_ROOT/node-apt.log" apt_get_install
  mapfile -t missing < <(apt_missing)
  if ((${#missing[@]})); then
    log "FAILED: build-node: still missing after apt-get install: ${missing[*]}"
    exit 1
  fi
}
mapfile -t missing < <(apt_missing)
if ((${#missing[@]})); then
  if [[ -n "${REGCRED_NODE_NO_APT:-}" ]]; then
    log "FAILED: build-node: missing Debian packages: ${missing[*]} (REGCRED_NODE_NO_APT is set)"
    exit 1
  fi
  mkdir -p "$WORK_ROOT"
  with_lock "$REGCRED_CACHE/build-node.lock" install_apt
fi

# --- registry (distribution v3) --------------------------------------------------------
build_registry() {
  local dir="$WORK_ROOT/registry-$DISTRIBUTION_VERSION"
  timed registry-modules "$WORK_ROOT/registry-$DISTRIBUTION_VERSION-modules.log" \
    gen_module "$dir" regcred-operator.test/node/registry \
    github.com/distribution/distribution/v3 "$DISTRIBUTION_VERSION" "$DISTRIBUTION_VERSION" \
    github.com/distribution/distribution/v3/cmd/registry
  timed registry "$WORK_ROOT/registry-$DISTRIBUTION_VERSION-build.log" \
    build_bin "$dir" registry github.com/distribution/distribution/v3/cmd/registry \
    "-s -w -X github.com/distribution/distribution/v3/version.version=$DISTRIBUTION_VERSION" --version
}

# --- containerd v2 ------------------------------------------------------------------------
# Without cgo the btrfs, devmapper and zfs snapshotters cannot build; overlayfs and native can.
containerd_bins() {
  local dir="$1" mod=github.com/containerd/containerd/v2 cmd
  local flags="-s -w -X $mod/version.Version=$CONTAINERD_VERSION -X $mod/version.Package=$mod"
  export GOFLAGS="-tags=no_btrfs,no_devmapper,no_zfs"
  for cmd in containerd containerd-shim-runc-v2 ctr; do
    if [[ "$cmd" == containerd-shim-runc-v2 ]]; then
      build_bin "$dir" "$cmd" "$mod/cmd/$cmd" "$flags" -v
    else
      build_bin "$dir" "$cmd" "$mod/cmd/$cmd" "$flags" --version
    fi
  done
}
build_containerd() {
  local dir="$WORK_ROOT/containerd-$CONTAINERD_VERSION"
  timed containerd-modules "$WORK_ROOT/containerd-$CONTAINERD_VERSION-modules.log" \
    gen_module "$dir" regcred-operator.test/node/containerd \
    github.com/containerd/containerd/v2 "$CONTAINERD_VERSION" "$CONTAINERD_VERSION" \
    github.com/containerd/containerd/v2/cmd/containerd \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
    github.com/containerd/containerd/v2/cmd/ctr
  timed containerd "$WORK_ROOT/containerd-$CONTAINERD_VERSION-build.log" \
    containerd_bins "$dir"
}

# --- kubelet, kube-scheduler: k8s.io/kubernetes with its staging modules pinned, as in build.sh
build_kubelet() {
  local dir="$WORK_ROOT/kubelet-$K8S_VERSION" name
  timed kubelet-modules "$WORK_ROOT/kubelet-$K8S_VERSION-modules.log" \
    gen_module "$dir" regcred-operator.test/node/kubelet \
    k8s.io/kubernetes "$K8S_VERSION" "$(k8s_staging_version)" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler
  for name in kubelet kube-scheduler; do
    if [[ ! -x "$OUT_DIR/$name" ]]; then
      timed "$name" "$WORK_ROOT/kubelet-$K8S_VERSION-$name-build.log" \
        build_bin "$dir" "$name" "k8s.io/kubernetes/cmd/$name" "$(k8s_ldflags)" --version
    fi
  done
}

link_node() {
  local p
  for p in local registry containerd kubelet; do
    go_tool_link "node-$p" "${PIECE_VERSION[$p]}" "${PIECE_BINS[$p]}" "build_$p"
  done
}

go_tool_cached node \
  "kubelet-$K8S_VERSION-containerd-$CONTAINERD_VERSION-registry-$DISTRIBUTION_VERSION-local-$LOCAL_HASH" \
  "${PIECE_BINS[*]}" link_node
