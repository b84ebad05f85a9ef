#!/usr/bin/env bash
# Build the release and observability tools from their Go modules into the version-keyed cache,
# as build-tools.sh does for kubectl, kustomize and helm:
#   cosign      github.com/sigstore/cosign/v3/cmd/cosign at COSIGN_VERSION (image signatures)
#   oras        oras.land/oras/cmd/oras at ORAS_VERSION (the SBOM as an OCI referrer)
#   actionlint  github.com/rhysd/actionlint/cmd/actionlint at ACTIONLINT_VERSION
#   promtool    github.com/prometheus/prometheus/cmd/promtool at PROMETHEUS_VERSION
#   cargo-cyclonedx  the crate at CARGO_CYCLONEDX_VERSION (`cargo install --locked`; the image's SBOM)
# Versions: versions.env. Each tool is cached on its own (bin/release-<tool>-<version>/); the
# directory printed holds symlinks to all five. A cached run does no Go work at all.
#
# Usage: tests/cluster/build-release-tools.sh        (prints the tools directory on stdout)
# Env:   REGCRED_CACHE (default ~/.cache/regcred-operator)
set -euo pipefail

# shellcheck source=SCRIPTDIR/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
# shellcheck source=SCRIPTDIR/gobuild.sh
. "$CLUSTER_SCRIPTS_DIR/gobuild.sh"

declare -A TOOL_VERSION=([cosign]="$COSIGN_VERSION" [oras]="$ORAS_VERSION"
  [actionlint]="$ACTIONLINT_VERSION" [promtool]="$PROMETHEUS_VERSION")
declare -A TOOL_MODULE=([cosign]=github.com/sigstore/cosign/v3 [oras]=oras.land/oras
  [actionlint]=github.com/rhysd/actionlint [promtool]=github.com/prometheus/prometheus)

# How each tool says its version (for the build log), and what its release build stamps.
declare -A TOOL_VERSION_ARGS=([cosign]=version [oras]=version [actionlint]=-version [promtool]=--version)
declare -A TOOL_LDFLAGS=([cosign]="-X sigs.k8s.io/release-utils/version.gitVersion=$COSIGN_VERSION"
  [oras]="-X oras.land/oras/internal/version.BuildMetadata=" [actionlint]="-X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION"
  [promtool]="-X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION#v}")

# build_tool NAME: the module at its version in a generated module, `tool` line for cmd/NAME.
build_tool() {
  local name="$1" version="${TOOL_VERSION[$1]}" module="${TOOL_MODULE[$1]}"
  local dir="$WORK_ROOT/$name-$version"
  timed "$name-modules" "$WORK_ROOT/$name-$version-modules.log" \
    gen_module "$dir" "regcred-operator.test/tools/$name" "$module" "$version" "$version" "$module/cmd/$name"
  timed "$name" "$WORK_ROOT/$name-$version-build.log" \
    build_bin "$dir" "$name" "$module/cmd/$name" "-s -w ${TOOL_LDFLAGS[$name]}" "${TOOL_VERSION_ARGS[$name]}"
}

build_cargo_cyclonedx() {
  local root="$WORK_ROOT/cargo-cyclonedx-$CARGO_CYCLONEDX_VERSION"
  timed cargo-cyclonedx "$root.log" cargo install --locked --quiet cargo-cyclonedx \
    --version "$CARGO_CYCLONEDX_VERSION" --root "$root" --target-dir "$root/target"
  mv -f "$root/bin/cargo-cyclonedx" "$OUT_DIR/cargo-cyclonedx"
}

link_tools() {
  local t
  for t in cosign oras actionlint promtool; do go_tool_link "release-$t" "${TOOL_VERSION[$t]}" "$t" build_tool "$t"; done
  go_tool_link release-cargo-cyclonedx "$CARGO_CYCLONEDX_VERSION" cargo-cyclonedx build_cargo_cyclonedx
}

go_tool_cached release-tools \
  "cosign-$COSIGN_VERSION-oras-$ORAS_VERSION-actionlint-$ACTIONLINT_VERSION-promtool-$PROMETHEUS_VERSION-cyclonedx-$CARGO_CYCLONEDX_VERSION" \
  "cosign oras actionlint promtool cargo-cyclonedx" link_tools
