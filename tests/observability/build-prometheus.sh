#!/usr/bin/env bash
# Build Prometheus (cmd/prometheus of github.com/prometheus/prometheus at PROMETHEUS_VERSION, the
# module promtool comes from) into the version-keyed cache, as build-release-tools.sh builds
# promtool. tests/observability/scrape.sh runs it against the operator.
#
# Usage: tests/observability/build-prometheus.sh     (prints the directory holding prometheus)
# Env:   REGCRED_CACHE (default ~/.cache/regcred-operator)
set -euo pipefail

# shellcheck source=SCRIPTDIR/../cluster/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../cluster" && pwd)/lib.sh"
# shellcheck source=SCRIPTDIR/../cluster/gobuild.sh
. "$CLUSTER_SCRIPTS_DIR/gobuild.sh"

build_prometheus() {
  local module=github.com/prometheus/prometheus dir="$WORK_ROOT/prometheus-$PROMETHEUS_VERSION"
  timed prometheus-modules "$dir-modules.log" \
    gen_module "$dir" regcred-operator.test/tools/prometheus "$module" "$PROMETHEUS_VERSION" "$PROMETHEUS_VERSION" "$module/cmd/prometheus"
  timed prometheus "$dir-build.log" build_bin "$dir" prometheus "$module/cmd/prometheus" "-s -w" --version
}

go_tool_cached prometheus "$PROMETHEUS_VERSION" prometheus build_prometheus
