#!/usr/bin/env bash
# Runs every test: unit, property, CLI, the kubelet differential test, and the integration tests
# against a real control plane. With KUBECONFIG set, the tests use that cluster. Without it, a
# local control plane of the newest supported release is started with tests/cluster/up.sh (built
# from Go modules on first use, cached afterwards) and torn down at the end, also when a test
# fails; then the version matrix (tests/matrix/run.sh: every supported release), the upgrade
# test (tests/upgrade/run.sh) and the release test (tests/release/run.sh) run on clusters of their
# own. Extra arguments go to `cargo test` (and leave out those three).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# tool VAR WHAT CMD...: exports VAR as what CMD prints (a path). When CMD fails, CI stops; elsewhere
# the tests that need WHAT print why they skip.
tool() {
  local var="$1" what="$2" out
  shift 2
  if out="$("$@")"; then
    export "$var=$out"
  elif [[ "${CI:-}" == "true" ]]; then
    echo "$what could not be built; CI never skips the tests that need it" >&2
    exit 1
  else
    echo "$what could not be built: the tests that need it will skip (see the message above)" >&2
  fi
}

argo_health_runner() {
  local dir
  dir="$(bash tests/argocd-health/install.sh)" && printf '%s/run.sh\n' "$dir"
}

# The real tools the tests consult, built from their Go modules (or installed from Debian's
# packages) on first use and cached like the control plane:
# kubectl, kustomize and helm (packaging and GitOps tests);
tool REGCRED_TOOLS_BIN "kubectl, kustomize and helm" bash tests/cluster/build-tools.sh
# the kubelet's keyring code, the oracle of tests/kubelet_differential.rs;
tool REGCRED_KUBELET_ORACLE "the kubelet oracle" bash tests/kubelet-oracle/build.sh
# kstatus (what Flux and `kubectl wait` compute) and Argo CD's health check runner;
tool REGCRED_KSTATUS "the kstatus helper" bash tests/kstatus/build.sh
tool REGCRED_ARGO_HEALTH "the Argo CD health check runner" argo_health_runner
# Prometheus, which evaluates the chart's alerting rules against a running operator;
tool REGCRED_PROMETHEUS_BIN "Prometheus" bash tests/observability/build-prometheus.sh
# the upstream ECR credential provider and moto, a local AWS-compatible endpoint (minting tests);
tool REGCRED_EXPIRY_TOOLS_BIN "the ECR credential provider and moto" bash tests/cluster/build-expiry-tools.sh
# the Argo CD, Flux, External Secrets and sealed-secrets CRDs of the GitOps example.
tool REGCRED_GITOPS_CRDS "the GitOps tools' CRDs" bash examples/gitops/tool-crds.sh

own_clusters=false
if [[ -z "${KUBECONFIG:-}" ]]; then
  own_clusters=true
  cluster_dir="$(mktemp -d "${TMPDIR:-/tmp}/regcred-cp.XXXXXX")"
  node_dir="$cluster_dir-node"
  trap 'bash tests/cluster/node-down.sh "$node_dir" >/dev/null 2>&1 || true
        bash tests/cluster/down.sh "$cluster_dir" >/dev/null 2>&1 || true' EXIT
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
  # A real node beside it (kubelet, containerd, an authenticated registry with a private image)
  # for the tests that pull (tests/integration/node.rs). Tainted, so that only those tests' Pods
  # land on it and every other test's Pods stay unscheduled as before.
  if [[ -n "${REGCRED_CLUSTER_DIR:-}" ]] && exported="$(bash tests/cluster/node-up.sh "$node_dir" "$cluster_dir")"; then
    eval "$exported"
    "$REGCRED_TOOLS_BIN/kubectl" taint nodes --all regcred.dev/node-tests=true:NoSchedule >/dev/null
  elif [[ "${CI:-}" == "true" ]]; then
    echo "the test node did not start; CI never skips the node tests" >&2
    exit 1
  else
    echo "the test node did not start: node tests will skip (see the message above)" >&2
  fi
fi

# The GitOps example, rendered and checked against the tools' own CRD schemas on the API
# server. Before the Rust tests: it may create and delete namespaces they use.
if [[ -n "${KUBECONFIG:-}" && -n "${REGCRED_GITOPS_CRDS:-}" && -n "${REGCRED_TOOLS_BIN:-}" ]]; then
  bash examples/gitops/validate.sh
fi
cargo test --locked "$@"

if $own_clusters && (($# == 0)); then
  bash tests/cluster/node-down.sh "$node_dir" >/dev/null 2>&1 || true
  bash tests/cluster/down.sh "$cluster_dir" >/dev/null 2>&1 || true
  # Each starts clusters of its own: nothing of the one above may reach them.
  fresh=(env -u KUBECONFIG -u REGCRED_CLUSTER_DIR -u REGCRED_NODE_ENV -u REGCRED_K8S_VERSION -u REGCRED_APISERVER_FLAGS)
  # The version matrix: every supported release, a node on the newest two; its table must be
  # the one in docs/compatibility.md.
  "${fresh[@]}" bash tests/matrix/run.sh
  # The upgrade from the last release to this tree and back, with kustomize and with Helm.
  "${fresh[@]}" bash tests/upgrade/run.sh
  # The release path: scripts/release.sh against the node's registry, then the install from it as
  # the README tells (signatures verified, the chart from its OCI registry, a pull).
  "${fresh[@]}" bash tests/release/run.sh
fi
