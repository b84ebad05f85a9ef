#!/usr/bin/env bash
# Benchmark: convergence, rotation, API writes, CPU and memory at 1,000 and 10,000 namespaces
# (5 ServiceAccounts and 10 unrelated Secrets each), against the raw limit of the same writes
# measured in the same run, on a dedicated local control plane (or the cluster in KUBECONFIG).
# Writes docs/benchmark/results.{md,json} and SVG charts, and with perf on the machine a CPU profile of the
# rollout at the largest size: docs/benchmark/flamegraph.svg and profile.txt; with heaptrack, the heap at
# its peak in that rollout: docs/benchmark/heap.md and heap-flamegraph.svg. Extra arguments go to the
# benchmark (e.g. --sizes 100,1000); REGCRED_BENCH_OUT sets where the results go.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out="${REGCRED_BENCH_OUT:-docs/benchmark}"
# The same operator on the system allocator, for the memory comparison by allocator (glibc as it
# is and tuned, jemalloc and mimalloc preloaded); then the shipped build.
cargo build --release --locked --no-default-features --bin regcred-operator
cp target/release/regcred-operator target/release/regcred-operator-system-allocator
cargo build --release --locked --bin regcred-operator --example bench
for library in libjemalloc2:libjemalloc.so.2 libmimalloc2.0:libmimalloc.so.2; do
  if [[ ! -e "/usr/lib/$(uname -m)-linux-gnu/${library#*:}" ]] && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    apt-get install -y -qq "${library%%:*}" >/dev/null || echo "bench: could not install ${library%%:*}" >&2
  fi
done
profile=()
if command -v perf >/dev/null 2>&1; then
  command -v inferno-flamegraph >/dev/null 2>&1 || cargo install --locked inferno >/dev/null
  profile=(--profile "${TMPDIR:-/tmp}/regcred-bench.perf.data")
fi
heap=()
if [[ -e /usr/lib/heaptrack/libheaptrack_preload.so ]] && command -v heaptrack_print >/dev/null 2>&1; then
  command -v inferno-flamegraph >/dev/null 2>&1 || cargo install --locked inferno >/dev/null
  heap=(--heap-trace "${TMPDIR:-/tmp}/regcred-bench.heaptrack.raw")
  rm -f "${heap[1]}"
fi
if [[ -z "${KUBECONFIG:-}" ]]; then
  cluster_dir="$(mktemp -d "${TMPDIR:-/tmp}/regcred-bench.XXXXXX")"
  trap 'bash tests/cluster/down.sh "$cluster_dir" >/dev/null 2>&1 || true' EXIT
  export REGCRED_CP_WATCH_PID=$$
  eval "$(bash tests/cluster/up.sh "$cluster_dir")"
  export REGCRED_CLUSTER_DIR="$cluster_dir"
fi
target/release/examples/bench --operator target/release/regcred-operator \
  --system-allocator-operator target/release/regcred-operator-system-allocator --out "$out" "${profile[@]}" \
  "${heap[@]}" "$@"
if [[ ${#heap[@]} -gt 0 && -s "${heap[1]}" ]]; then
  # The heap at its peak, by allocation stack: by the operator's own functions, and a flame graph.
  /usr/lib/heaptrack/libexec/heaptrack_interpret < "${heap[1]}" | gzip > "${heap[1]}.gz"
  heaptrack_print -f "${heap[1]}.gz" --print-peaks=0 --print-allocators=0 --print-temporary=0 \
    --flamegraph-cost-type peak -F "${heap[1]}.stacks" >/dev/null
  target/release/examples/bench --heap-summary "${heap[1]}.stacks" --out "$out"
  inferno-flamegraph --minwidth 2 --colors mem --countname bytes \
    --title "regcred-operator, heap at its peak (the system-allocator build, default ServiceAccounts)" \
    < "${heap[1]}.stacks" > "$out/heap-flamegraph.svg"
  rm -f "${heap[1]}" "${heap[1]}.gz" "${heap[1]}.stacks"
fi
if [[ ${#profile[@]} -gt 0 && -s "${profile[1]}" ]]; then
  perf script -i "${profile[1]}" 2>/dev/null | inferno-collapse-perf > "$out/profile.folded"
  # Frames narrower than 2 px are left out: the full graph of a 10,000-namespace run is tens of MB.
  inferno-flamegraph --minwidth 2 --title "regcred-operator, a rollout at the largest size (default ServiceAccounts)" \
    < "$out/profile.folded" > "$out/flamegraph.svg"
  {
    echo "# Self time (flat), shared object and symbol, above 0.7%"
    perf report -i "${profile[1]}" --stdio --no-children -g none --sort dso,symbol --percent-limit 0.7 \
      2>/dev/null | grep -v '^#' | grep -v '^$' | cut -c1-160 || true
    echo
    echo "# Inclusive time (children): the operator, kube and the HTTP stack, above 1%"
    perf report -i "${profile[1]}" --stdio --children -g none --sort symbol --percent-limit 1 2>/dev/null \
      | grep -E 'regcred_operator::|kube_runtime::|kube_client::|serde_json::|hyper::|rustls::' \
      | cut -c1-170 | sed -n 1,40p || true
  } > "$out/profile.txt"
  rm -f "$out/profile.folded"
fi
