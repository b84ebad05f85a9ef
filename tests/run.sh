#!/usr/bin/env bash
# Runs every test: unit, property, CLI, and the integration tests against a real control plane.
# With KUBECONFIG set, the tests use that cluster. Without it, a local control plane is started
# with tests/cluster/up.sh (built from Go modules on first use, cached afterwards) and torn
# down at the end, also when a test fails. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# kubectl, kustomize and helm for the packaging tests (tests/integration/packaging.rs), built
# from their Go modules on first use and cached like the control plane.
if tools_bin="$(bash tests/cluster/build-tools.sh)"; then
  export REGCRED_TOOLS_BIN="$tools_bin"
elif [[ "${CI:-}" == "true" ]]; then
  echo "kustomize and helm could not be built; CI never skips the packaging tests" >&2
  exit 1
else
  echo "kustomize and helm could not be built: the packaging tests will skip (see the message above)" >&2
fi

if [[ -z "${KUBECONFIG:-}" ]]; then
  cluster_dir="$(mktemp -d "${TMPDIR:-/tmp}/regcred-cp.XXXXXX")"
  trap 'bash tests/cluster/down.sh "$cluster_dir" >/dev/null 2>&1 || true' EXIT
  # Should this script be killed, the watchdog still stops the control plane.
  export REGCRED_CP_WATCH_PID=$$
  if exported="$(bash tests/cluster/up.sh "$cluster_dir")"; then
    eval "$exported"
    export REGCRED_CLUSTER_DIR="$cluster_dir"
  elif [[ "${CI:-}" == "true" ]]; then
    echo "the control plane did not start; CI never skips the integration tests" >&2
    exit 1
  else
    echo "the control plane did not start: integration tests will skip (see the message above)" >&2
  fi
fi
cargo test --locked "$@"
