#!/usr/bin/env bash
# Build the packaging and client tools from their Go modules into a version-keyed cache
# outside the clone, like build.sh does for the control plane:
#   kubectl    k8s.io/kubernetes/cmd/kubectl at K8S_VERSION (same client as the control plane)
#   kustomize  sigs.k8s.io/kustomize/kustomize/v5 at KUSTOMIZE_VERSION
#   helm       helm.sh/helm/v3/cmd/helm at HELM_VERSION
# Versions: versions.env. Each tool has its own directory keyed by its version
# (bin/tools-<tool>-<version>/), so bumping one rebuilds only that one; a directory keyed by
# all three holds symlinks to them and is what this script prints. A cached run does no Go
# work at all (milliseconds); a cold one takes minutes.
#
# Usage: tests/cluster/build-tools.sh        (prints the tools directory on stdout)
#        PATH="$(tests/cluster/build-tools.sh):$PATH"
# Env:   REGCRED_CACHE (default ~/.cache/regcred-operator)
set -euo pipefail

# shellcheck source=SCRIPTDIR/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
# shellcheck source=SCRIPTDIR/gobuild.sh
. "$CLUSTER_SCRIPTS_DIR/gobuild.sh"

TOOLS=(kubectl kustomize helm)
declare -A TOOL_VERSION=([kubectl]="$K8S_VERSION" [kustomize]="$KUSTOMIZE_VERSION" [helm]="$HELM_VERSION")
TOOLS_DIR="$REGCRED_CACHE/bin/tools-kubectl-$K8S_VERSION-kustomize-$KUSTOMIZE_VERSION-helm-$HELM_VERSION"

tool_dir() { printf '%s\n' "$REGCRED_CACHE/bin/tools-$1-${TOOL_VERSION[$1]}"; }
have() { [[ -x "$(tool_dir "$1")/$1" ]]; }

all_cached() {
  local t
  for t in "${TOOLS[@]}"; do [[ -x "$TOOLS_DIR/$t" ]] || return 1; done
}

# Fast path: no lock, no go invocation.
if all_cached; then
  log "tools cached: $TOOLS_DIR"
  printf '%s\n' "$TOOLS_DIR"
  exit 0
fi

for tool in go python3 flock; do
  command -v "$tool" >/dev/null || { log "FAILED: build-tools: '$tool' not found on PATH"; exit 1; }
done

WORK_ROOT="$REGCRED_CACHE/work"
mkdir -p "$WORK_ROOT" "$TOOLS_DIR"

# Its own lock: the control plane's build (build.sh) need not wait for these.
exec 9>"$REGCRED_CACHE/build-tools.lock"
flock 9
if all_cached; then
  log "tools cached (built by a concurrent run): $TOOLS_DIR"
  printf '%s\n' "$TOOLS_DIR"
  exit 0
fi

# Temp outputs (.NAME.tmp.PID) sit next to their final name; leftovers of a killed build
# go now (we hold the lock), ours on exit.
for t in "${TOOLS[@]}"; do rm -f "$(tool_dir "$t")"/.*.tmp.*; done
cleanup_tmp() {
  local t
  for t in "${TOOLS[@]}"; do rm -f "$(tool_dir "$t")"/.*.tmp."$$"; done
}
trap cleanup_tmp EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# build_helm DIR: helm's Makefile stamps its version and the Kubernetes version that
# `helm template` and `helm lint` assume (.Capabilities.KubeVersion) from its client-go.
build_helm() {
  local dir="$1" client_go major minor flags
  cd "$dir"
  # client-go v0.N.x belongs to Kubernetes 1.N.
  client_go="$(GOWORK=off go list -m -f '{{.Version}}' k8s.io/client-go)"
  major=1
  minor="${client_go#v0.}"
  minor="${minor%%.*}"
  flags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  flags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    flags+=" -X $pkg.k8sVersionMajor=$major -X $pkg.k8sVersionMinor=$minor"
  done
  build_bin "$dir" helm helm.sh/helm/v3/cmd/helm "$flags" version
}

if ! have kubectl; then
  OUT_DIR="$(tool_dir kubectl)"
  mkdir -p "$OUT_DIR"
  dir="$WORK_ROOT/kubectl-$K8S_VERSION"
  timed kubectl-modules "$WORK_ROOT/kubectl-$K8S_VERSION-modules.log" \
    gen_module "$dir" regcred-operator.test/tools/kubectl \
    k8s.io/kubernetes "$K8S_VERSION" "$(k8s_staging_version)" k8s.io/kubernetes/cmd/kubectl
  timed kubectl "$WORK_ROOT/kubectl-$K8S_VERSION-build.log" \
    build_bin "$dir" kubectl k8s.io/kubernetes/cmd/kubectl "$(k8s_ldflags)" version --client
fi

if ! have kustomize; then
  OUT_DIR="$(tool_dir kustomize)"
  mkdir -p "$OUT_DIR"
  dir="$WORK_ROOT/kustomize-$KUSTOMIZE_VERSION"
  timed kustomize-modules "$WORK_ROOT/kustomize-$KUSTOMIZE_VERSION-modules.log" \
    gen_module "$dir" regcred-operator.test/tools/kustomize \
    sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION" "$KUSTOMIZE_VERSION" \
    sigs.k8s.io/kustomize/kustomize/v5
  # kustomize reads its own version from the build info of its module: no -X needed.
  timed kustomize "$WORK_ROOT/kustomize-$KUSTOMIZE_VERSION-build.log" \
    build_bin "$dir" kustomize sigs.k8s.io/kustomize/kustomize/v5 "-s -w" version
fi

if ! have helm; then
  OUT_DIR="$(tool_dir helm)"
  mkdir -p "$OUT_DIR"
  dir="$WORK_ROOT/helm-$HELM_VERSION"
  timed helm-modules "$WORK_ROOT/helm-$HELM_VERSION-modules.log" \
    gen_module "$dir" regcred-operator.test/tools/helm \
    helm.sh/helm/v3 "$HELM_VERSION" "$HELM_VERSION" helm.sh/helm/v3/cmd/helm
  timed helm "$WORK_ROOT/helm-$HELM_VERSION-build.log" build_helm "$dir"
fi

for t in "${TOOLS[@]}"; do
  have "$t" || { log "FAILED: build-tools: $t missing from $(tool_dir "$t") after build"; exit 1; }
  ln -sfn "$(tool_dir "$t")/$t" "$TOOLS_DIR/$t"
done
all_cached || { log "FAILED: build-tools: tools missing from $TOOLS_DIR after build"; exit 1; }
log "tools built into $TOOLS_DIR (${TIMINGS[*]:-all cached})"
printf '%s\n' "$TOOLS_DIR"
