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

# lib.sh's BIN_DIR, bin/k8s-<K8S_VERSION>-etcd-<ETCD_VERSION>, names the cache directory,
# which up.sh reads: one name and key for both calls below.
KEY="$K8S_VERSION-etcd-$ETCD_VERSION"

# etcd: its own module, apart from Kubernetes' dependency graph.
build_etcd() {
  local dir="$WORK_ROOT/etcd-$ETCD_VERSION"
  timed etcd-modules "$WORK_ROOT/etcd-$ETCD_VERSION-modules.log" \
    gen_module "$dir" regcred-operator.test/cluster/etcd \
    go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$ETCD_VERSION" go.etcd.io/etcd/server/v3
  timed etcd "$WORK_ROOT/etcd-$ETCD_VERSION-build.log" \
    build_bin "$dir" etcd go.etcd.io/etcd/server/v3 "-s -w"
}

# Kubernetes: k8s.io/kubernetes with its staging modules pinned.
build_k8s() {
  local dir="$WORK_ROOT/k8s-$K8S_VERSION" name
  timed k8s-modules "$WORK_ROOT/k8s-$K8S_VERSION-modules.log" \
    gen_module "$dir" regcred-operator.test/cluster/k8s \
    k8s.io/kubernetes "$K8S_VERSION" "$(k8s_staging_version)" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
  for name in kube-apiserver kube-controller-manager; do
    if [[ ! -x "$OUT_DIR/$name" ]]; then
      timed "$name" "$WORK_ROOT/k8s-$K8S_VERSION-$name-build.log" \
        build_bin "$dir" "$name" "k8s.io/kubernetes/cmd/$name" "$(k8s_ldflags)"
    fi
  done
}

go_tool_cached k8s "$KEY" etcd build_etcd >/dev/null
go_tool_cached k8s "$KEY" "kube-apiserver kube-controller-manager" build_k8s
