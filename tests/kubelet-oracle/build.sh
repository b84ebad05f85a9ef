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
OUT_DIR="$REGCRED_CACHE/bin/kubelet-oracle-$K8S_VERSION-$SOURCE_HASH"
BIN="$OUT_DIR/kubelet-oracle"

# Fast path: no lock, no go invocation.
if [[ -x "$BIN" ]]; then
  log "cached: $BIN"
  printf '%s\n' "$BIN"
  exit 0
fi

for tool in go python3 flock sha256sum; do
  command -v "$tool" >/dev/null || { log "FAILED: kubelet-oracle: '$tool' not found on PATH"; exit 1; }
done

WORK_ROOT="$REGCRED_CACHE/work"
mkdir -p "$OUT_DIR" "$WORK_ROOT"

# Its own lock: the control plane's and the tools' builds need not wait for this one (they
# share the Go module and build caches, which Go itself keeps consistent).
exec 9>"$REGCRED_CACHE/kubelet-oracle.lock"
flock 9
if [[ -x "$BIN" ]]; then
  log "cached (built by a concurrent run): $BIN"
  printf '%s\n' "$BIN"
  exit 0
fi
rm -f "$OUT_DIR"/.*.tmp.*
trap 'rm -f "$OUT_DIR"/.*.tmp."$$"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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

MOD_DIR="$WORK_ROOT/kubelet-oracle-$K8S_VERSION"
timed kubelet-oracle-module "$WORK_ROOT/kubelet-oracle-$K8S_VERSION-modules.log" oracle_module "$MOD_DIR"
timed kubelet-oracle "$WORK_ROOT/kubelet-oracle-$K8S_VERSION-build.log" \
  build_bin "$MOD_DIR" kubelet-oracle . "-s -w"

[[ -x "$BIN" ]] || { log "FAILED: kubelet-oracle: $BIN missing after build"; exit 1; }
log "built $BIN (${TIMINGS[*]})"
printf '%s\n' "$BIN"
