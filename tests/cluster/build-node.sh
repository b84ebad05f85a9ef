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

PIECES=(kubelet containerd registry local)
declare -A PIECE_VERSION=(
  [kubelet]="$K8S_VERSION" [containerd]="$CONTAINERD_VERSION"
  [registry]="$DISTRIBUTION_VERSION" [local]="$LOCAL_HASH"
)
declare -A PIECE_BINS=(
  [kubelet]="kubelet kube-scheduler" [containerd]="containerd containerd-shim-runc-v2 ctr"
  [registry]="registry" [local]="ocimage pause"
)
NODE_BIN_DIR="$REGCRED_CACHE/bin/node-kubelet-$K8S_VERSION-containerd-$CONTAINERD_VERSION-registry-$DISTRIBUTION_VERSION-local-$LOCAL_HASH"

if [[ "${1:-}" == --image-tool ]]; then
  PIECES=(local)
  NODE_BIN_DIR="$REGCRED_CACHE/bin/node-local-$LOCAL_HASH"
  REGCRED_NODE_NO_APT=1
  apt_needed() { false; }
else
  apt_needed() { true; }
fi

wanted() { [[ " ${PIECES[*]} " == *" $1 "* ]]; }
piece_dir() { printf '%s\n' "$REGCRED_CACHE/bin/node-$1-${PIECE_VERSION[$1]}"; }
have() {
  local b
  for b in ${PIECE_BINS[$1]}; do [[ -x "$(piece_dir "$1")/$b" ]] || return 1; done
}

# Debian packages: what node-up.sh needs from each.
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

all_cached() {
  local p b
  for p in "${PIECES[@]}"; do
    for b in ${PIECE_BINS[$p]}; do [[ -x "$NODE_BIN_DIR/$b" ]] || return 1; done
  done
  ! apt_needed || [[ -z "$(apt_missing)" ]]
}

# Fast path: no lock, no go, no apt.
if all_cached; then
  log "node binaries cached: $NODE_BIN_DIR"
  printf '%s\n' "$NODE_BIN_DIR"
  exit 0
fi

for tool in go python3 flock sha256sum; do
  command -v "$tool" >/dev/null || { log "FAILED: build-node: '$tool' not found on PATH"; exit 1; }
done

WORK_ROOT="$REGCRED_CACHE/work"
mkdir -p "$WORK_ROOT" "$NODE_BIN_DIR"

exec 9>"$REGCRED_CACHE/build-node.lock"
flock 9
if all_cached; then
  log "node binaries cached (built by a concurrent run): $NODE_BIN_DIR"
  printf '%s\n' "$NODE_BIN_DIR"
  exit 0
fi

for p in "${PIECES[@]}"; do rm -f "$(piece_dir "$p")"/.*.tmp.*; done
cleanup_tmp() {
  local p
  for p in "${PIECES[@]}"; do rm -f "$(piece_dir "$p")"/.*.tmp."$$"; done
}
trap cleanup_tmp EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- Debian packages ------------------------------------------------------------
install_apt() {
  # Another apt-get (a parallel job, unattended-upgrades) may hold the dpkg lock: wait for it.
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "${APT_PACKAGES[@]}"
}
missing=()
apt_needed && mapfile -t missing < <(apt_missing)
if ((${#missing[@]})); then
  if [[ -n "${REGCRED_NODE_NO_APT:-}" ]]; then
    log "FAILED: build-node: missing Debian packages: ${missing[*]} (REGCRED_NODE_NO_APT is set)"
    exit 1
  fi
  timed apt "$WORK_ROOT/node-apt.log" install_apt
  mapfile -t missing < <(apt_missing)
  if ((${#missing[@]})); then
    log "FAILED: build-node: still missing after apt-get install: ${missing[*]}"
    exit 1
  fi
fi

# --- the repo's own programs: image tool and pause ---------------------------------
build_local() {
  local out="$OUT_DIR"
  cd "$NODE_SRC/ocimage"
  GOWORK=off CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "-s -w" \
    -o "$out/.ocimage.tmp.$$" .
  cd "$NODE_SRC/pause"
  GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/.pause.tmp.$$" .
  mv -f "$out/.ocimage.tmp.$$" "$out/ocimage"
  mv -f "$out/.pause.tmp.$$" "$out/pause"
}
if ! have local; then
  OUT_DIR="$(piece_dir local)"
  mkdir -p "$OUT_DIR"
  timed ocimage+pause "$WORK_ROOT/node-local-$LOCAL_HASH-build.log" build_local
fi

# --- registry (distribution v3) --------------------------------------------------------
if wanted registry && ! have registry; then
  OUT_DIR="$(piece_dir registry)"
  mkdir -p "$OUT_DIR"
  dir="$WORK_ROOT/registry-$DISTRIBUTION_VERSION"
  timed registry-modules "$WORK_ROOT/registry-$DISTRIBUTION_VERSION-modules.log" \
    gen_module "$dir" regcred-operator.test/node/registry \
    github.com/distribution/distribution/v3 "$DISTRIBUTION_VERSION" "$DISTRIBUTION_VERSION" \
    github.com/distribution/distribution/v3/cmd/registry
  timed registry "$WORK_ROOT/registry-$DISTRIBUTION_VERSION-build.log" \
    build_bin "$dir" registry github.com/distribution/distribution/v3/cmd/registry \
    "-s -w -X github.com/distribution/distribution/v3/version.version=$DISTRIBUTION_VERSION" --version
fi

# --- containerd v2 ------------------------------------------------------------------------
# Without cgo the btrfs, devmapper and zfs snapshotters cannot build; overlayfs and native can.
build_containerd() {
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
if wanted containerd && ! have containerd; then
  OUT_DIR="$(piece_dir containerd)"
  mkdir -p "$OUT_DIR"
  dir="$WORK_ROOT/containerd-$CONTAINERD_VERSION"
  timed containerd-modules "$WORK_ROOT/containerd-$CONTAINERD_VERSION-modules.log" \
    gen_module "$dir" regcred-operator.test/node/containerd \
    github.com/containerd/containerd/v2 "$CONTAINERD_VERSION" "$CONTAINERD_VERSION" \
    github.com/containerd/containerd/v2/cmd/containerd \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
    github.com/containerd/containerd/v2/cmd/ctr
  timed containerd "$WORK_ROOT/containerd-$CONTAINERD_VERSION-build.log" \
    build_containerd "$dir"
fi

# --- kubelet, kube-scheduler: k8s.io/kubernetes with its staging modules pinned, as in build.sh
if wanted kubelet && ! have kubelet; then
  OUT_DIR="$(piece_dir kubelet)"
  mkdir -p "$OUT_DIR"
  dir="$WORK_ROOT/kubelet-$K8S_VERSION"
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
fi

for p in "${PIECES[@]}"; do
  have "$p" || { log "FAILED: build-node: $p missing from $(piece_dir "$p") after build"; exit 1; }
  [[ "$(piece_dir "$p")" == "$NODE_BIN_DIR" ]] && continue
  for b in ${PIECE_BINS[$p]}; do ln -sfn "$(piece_dir "$p")/$b" "$NODE_BIN_DIR/$b"; done
done
all_cached || { log "FAILED: build-node: binaries missing from $NODE_BIN_DIR after build"; exit 1; }
log "node binaries built into $NODE_BIN_DIR (${TIMINGS[*]:-all cached})"
printf '%s\n' "$NODE_BIN_DIR"
