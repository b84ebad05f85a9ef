#!/usr/bin/env bash
# Benchmark: convergence time, API writes and memory at 100, 1,000 and 10,000 namespaces,
# against the raw limit of the same writes, on a dedicated local control plane (or the cluster
# in KUBECONFIG). Writes docs/benchmark/results.{md,json}. Extra arguments go to the benchmark
# (e.g. --sizes 100,1000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release --locked --bin regcred-operator --example bench
if [[ -z "${KUBECONFIG:-}" ]]; then
  cluster_dir="$(mktemp -d "${TMPDIR:-/tmp}/regcred-bench.XXXXXX")"
  trap 'bash tests/cluster/down.sh "$cluster_dir" >/dev/null 2>&1 || true' EXIT
  export REGCRED_CP_WATCH_PID=$$
  eval "$(bash tests/cluster/up.sh "$cluster_dir")"
  export REGCRED_CLUSTER_DIR="$cluster_dir"
fi
target/release/examples/bench --operator target/release/regcred-operator "$@"
