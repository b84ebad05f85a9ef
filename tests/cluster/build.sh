#!/usr/bin/env bash
# Build etcd, kube-apiserver and kube-controller-manager from their Go modules
# into a version-keyed cache outside the clone. A cached run does no Go work at
# all (well under a second); a cold run takes minutes.
#
# Usage: tests/cluster/build.sh        (prints the binary directory on stdout)
# Env:   REGCRED_CACHE (default ~/.cache/regcred-operator)
set -euo pipefail

# shellcheck source=SCRIPTDIR/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
# shellcheck source=SCRIPTDIR/gobuild.sh
. "$CLUSTER_SCRIPTS_DIR/gobuild.sh"

BINARIES=(etcd kube-apiserver kube-controller-manager)

have() { [[ -x "$BIN_DIR/$1" ]]; }

all_cached() {
  local b
  for b in "${BINARIES[@]}"; do have "$b" || return 1; done
}

# Fast path: no lock, no go invocation.
if all_cached; then
  log "cached: $BIN_DIR"
  printf '%s\n' "$BIN_DIR"
  exit 0
fi

for tool in go python3 flock; do
  command -v "$tool" >/dev/null || { log "FAILED: build: '$tool' not found on PATH"; exit 1; }
done

WORK_ROOT="$REGCRED_CACHE/work"
OUT_DIR="$BIN_DIR"
mkdir -p "$BIN_DIR" "$WORK_ROOT"

# Serialise concurrent builds (e.g. parallel test jobs), then look again:
# another process may have finished the build while we waited.
exec 9>"$REGCRED_CACHE/build.lock"
flock 9
if all_cached; then
  log "cached (built by a concurrent run): $BIN_DIR"
  printf '%s\n' "$BIN_DIR"
  exit 0
fi

# Temp outputs (.NAME.tmp.PID) live next to their final name (same
# filesystem: mv is atomic), so an interrupted build never leaves a file that
# looks cached. Leftovers of a killed build go now (we hold the lock), ours on exit.
rm -f "$BIN_DIR"/.*.tmp.*
trap 'rm -f "$BIN_DIR"/.*.tmp."$$"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- etcd: its own module, apart from Kubernetes' dependency graph ----------
if ! have etcd; then
  ETCD_DIR="$WORK_ROOT/etcd-$ETCD_VERSION"
  timed etcd-modules "$WORK_ROOT/etcd-$ETCD_VERSION-modules.log" \
    gen_module "$ETCD_DIR" regcred-operator.test/cluster/etcd \
    go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$ETCD_VERSION" go.etcd.io/etcd/server/v3
  timed etcd "$WORK_ROOT/etcd-$ETCD_VERSION-build.log" \
    build_bin "$ETCD_DIR" etcd go.etcd.io/etcd/server/v3 "-s -w"
fi

# --- Kubernetes: k8s.io/kubernetes with its staging modules pinned ----------
if ! have kube-apiserver || ! have kube-controller-manager; then
  K8S_DIR="$WORK_ROOT/k8s-$K8S_VERSION"
  K8S_STAGING_VERSION="$(k8s_staging_version)"
  K8S_LDFLAGS="$(k8s_ldflags)"
  timed k8s-modules "$WORK_ROOT/k8s-$K8S_VERSION-modules.log" \
    gen_module "$K8S_DIR" regcred-operator.test/cluster/k8s \
    k8s.io/kubernetes "$K8S_VERSION" "$K8S_STAGING_VERSION" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
  for name in kube-apiserver kube-controller-manager; do
    if ! have "$name"; then
      timed "$name" "$WORK_ROOT/k8s-$K8S_VERSION-$name-build.log" \
        build_bin "$K8S_DIR" "$name" "k8s.io/kubernetes/cmd/$name" "$K8S_LDFLAGS"
    fi
  done
fi

all_cached || { log "FAILED: build: binaries missing from $BIN_DIR after build"; exit 1; }
log "built into $BIN_DIR (${TIMINGS[*]})"
printf '%s\n' "$BIN_DIR"
