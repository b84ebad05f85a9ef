#!/usr/bin/env bash
# Build the kubelet oracle (main.go here) against k8s.io/kubernetes at the control plane's pinned
# release (tests/cluster/versions.env), with the staging modules pinned from the served go.mod
# exactly as tests/cluster/build.sh does. The binary is cached outside the clone, keyed by the
# Kubernetes version and the oracle's source; a cached run does no Go work at all.
#
# Usage: tests/kubelet-oracle/build.sh        (prints the binary's path on stdout)
# Env:   REGCRED_CACHE (default ~/.cache/regcred-operator)
set -euo pipefail

ORACLE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/../cluster/lib.sh
. "$ORACLE_DIR/../cluster/lib.sh"
# shellcheck source=SCRIPTDIR/../cluster/gobuild.sh
. "$CLUSTER_SCRIPTS_DIR/gobuild.sh"

SOURCE_HASH="$(cat "$ORACLE_DIR/main.go" "$ORACLE_DIR/build.sh" | sha256sum | cut -c1-12)"

# The module: the replace list generated from the served go.mod (gen_module), then this
# directory's program, which keeps the k8s.io/kubernetes requirement alive through tidy.
oracle_module() {
  local dir="$1"
  gen_module "$dir" regcred-operator.test/kubelet-oracle \
    k8s.io/kubernetes "$K8S_VERSION" "$(k8s_staging_version)"
  cp "$ORACLE_DIR/main.go" "$dir/main.go"
  cd "$dir"
  GOWORK=off go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
  GOWORK=off go mod tidy
  cat go.mod
}

build_oracle() {
  local dir="$WORK_ROOT/kubelet-oracle-$K8S_VERSION"
  timed kubelet-oracle-module "$WORK_ROOT/kubelet-oracle-$K8S_VERSION-modules.log" oracle_module "$dir"
  timed kubelet-oracle "$WORK_ROOT/kubelet-oracle-$K8S_VERSION-build.log" \
    build_bin "$dir" kubelet-oracle . "-s -w"
}

dir="$(go_tool_cached kubelet-oracle "$K8S_VERSION-$SOURCE_HASH" kubelet-oracle build_oracle)"
printf '%s\n' "$dir/kubelet-oracle"
