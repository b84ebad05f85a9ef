#!/usr/bin/env bash
# Build the packaging and client tools from their Go modules into a version-keyed cache
# outside the clone, like build.sh does for the control plane:
#   kubectl    k8s.io/kubernetes/cmd/kubectl at K8S_NEWEST (one client for every control plane)
#   kustomize  sigs.k8s.io/kustomize/kustomize/v5 at KUSTOMIZE_VERSION
#   helm       helm.sh/helm/v4/cmd/helm at HELM_VERSION
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

declare -A TOOL_VERSION=([kubectl]="$K8S_NEWEST" [kustomize]="$KUSTOMIZE_VERSION" [helm]="$HELM_VERSION")

build_kubectl() {
  local K8S_VERSION="$K8S_NEWEST" dir="$WORK_ROOT/kubectl-$K8S_NEWEST"
  timed kubectl-modules "$WORK_ROOT/kubectl-$K8S_VERSION-modules.log" \
    gen_module "$dir" regcred-operator.test/tools/kubectl \
    k8s.io/kubernetes "$K8S_VERSION" "$(k8s_staging_version)" k8s.io/kubernetes/cmd/kubectl
  timed kubectl "$WORK_ROOT/kubectl-$K8S_VERSION-build.log" \
    build_bin "$dir" kubectl k8s.io/kubernetes/cmd/kubectl "$(k8s_ldflags)" version --client
}

build_kustomize() {
  local dir="$WORK_ROOT/kustomize-$KUSTOMIZE_VERSION"
  timed kustomize-modules "$WORK_ROOT/kustomize-$KUSTOMIZE_VERSION-modules.log" \
    gen_module "$dir" regcred-operator.test/tools/kustomize \
    sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION" "$KUSTOMIZE_VERSION" \
    sigs.k8s.io/kustomize/kustomize/v5
  # kustomize reads its own version from the build info of its module: no -X needed.
  timed kustomize "$WORK_ROOT/kustomize-$KUSTOMIZE_VERSION-build.log" \
    build_bin "$dir" kustomize sigs.k8s.io/kustomize/kustomize/v5 "-s -w" version
}

# helm_bin DIR: helm's Makefile stamps its version; the Kubernetes version that `helm template`
# and `helm lint` assume (.Capabilities.KubeVersion) Helm 4 reads from its client-go's build info.
helm_bin() {
  local dir="$1" flags
  flags="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
  flags+=" -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
  build_bin "$dir" helm helm.sh/helm/v4/cmd/helm "$flags" version
}

build_helm() {
  local dir="$WORK_ROOT/helm-$HELM_VERSION"
  timed helm-modules "$WORK_ROOT/helm-$HELM_VERSION-modules.log" \
    gen_module "$dir" regcred-operator.test/tools/helm \
    helm.sh/helm/v4 "$HELM_VERSION" "$HELM_VERSION" helm.sh/helm/v4/cmd/helm
  timed helm "$WORK_ROOT/helm-$HELM_VERSION-build.log" helm_bin "$dir"
}

link_tools() {
  local t
  for t in kubectl kustomize helm; do go_tool_link "tools-$t" "${TOOL_VERSION[$t]}" "$t" "build_$t"; done
}

go_tool_cached tools "kubectl-$K8S_NEWEST-kustomize-$KUSTOMIZE_VERSION-helm-$HELM_VERSION" \
  "kubectl kustomize helm" link_tools
