#!/usr/bin/env bash
# Build regcred-kstatus (this directory's Go helper: the kstatus of objects, computed with
# sigs.k8s.io/cli-utils/pkg/kstatus/status) into a cache outside the clone, keyed by the
# digest of its sources (main.go, go.mod, go.sum), like tests/cluster/build-tools.sh does for
# kubectl, kustomize and helm. A cached run does no Go work (milliseconds); a cold one takes
# a few seconds once the modules are downloaded.
#
# Usage: tests/kstatus/build.sh      (prints the binary's path on stdout)
#        REGCRED_KSTATUS="$(bash tests/kstatus/build.sh)"
# Env:   REGCRED_CACHE (default ~/.cache/regcred-operator)
set -euo pipefail

SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/../cluster/lib.sh
. "$SRC_DIR/../cluster/lib.sh"
# shellcheck source=SCRIPTDIR/../cluster/gobuild.sh
. "$CLUSTER_SCRIPTS_DIR/gobuild.sh"

digest="$(cd "$SRC_DIR" && cat main.go go.mod go.sum | sha256sum | cut -c1-16)"
cli_utils="$(sed -n 's/^require sigs.k8s.io\/cli-utils \(v[^ ]*\)$/\1/p; s/^[[:space:]]*sigs.k8s.io\/cli-utils \(v[^ ]*\)$/\1/p' "$SRC_DIR/go.mod" | head -n 1)"

# A smoke test before the helper counts as built: an object with Ready=True is Current.
computes_current() {
  printf '%s' '{"apiVersion":"v1","kind":"X","metadata":{"name":"x"},"status":{"conditions":[{"type":"Ready","status":"True"}]}}' |
    "$1" --want Current >/dev/null ||
    { echo "the built helper does not compute Current for Ready=True"; return 1; }
}
# The module is the clone's own (go.sum pins every dependency): build_bin never edits it.
build_kstatus() {
  timed kstatus "$WORK_ROOT/kstatus-${cli_utils:-unknown}-$digest-build.log" \
    build_bin --check computes_current "$SRC_DIR" regcred-kstatus . "-s -w"
}

dir="$(go_tool_cached kstatus "${cli_utils:-unknown}-$digest" regcred-kstatus build_kstatus)"
printf '%s\n' "$dir/regcred-kstatus"
