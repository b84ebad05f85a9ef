#!/usr/bin/env bash
# The version matrix: on every supported Kubernetes release (tests/cluster/versions.env:
# K8S_MATRIX and K8S_NEWEST), a control plane of that release built from its Go modules (cached
# by version), and on the newest two a real node beside it; then, per feature, the integration
# tests that show it (the FEATURES table below), with the operator as a process under its own
# RBAC as in the full suite. The outcome of each is written to target/matrix/results.tsv, and the
# compatibility table made of them to target/matrix/compatibility.md, which must equal the table
# in docs/compatibility.md (so the docs say what the last run showed, never what someone typed).
#
# Usage: tests/matrix/run.sh [--write] [VERSION...]
#   --write    put the table into docs/compatibility.md instead of comparing
#   VERSION    only these releases (each must be in versions.env); the table is then not
#              compared with the docs
# Exit status: 0 when every feature passed where it is expected and the table matches.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=../cluster/versions.env
. tests/cluster/versions.env

say() { printf '[matrix %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

write=false
if [[ "${1:-}" == --write ]]; then write=true; shift; fi
versions=("$@")
((${#versions[@]})) || versions=("${K8S_MATRIX[@]}" "$K8S_NEWEST")

# What each release runs with: the apiserver flags (1.34 with the v1beta1 policy API turned on, to
# test that branch; 1.35 as it ships, to test the one without), the policy API it must then serve
# (REGCRED_EXPECT_ADMISSION_API: the tests fail where discovery says otherwise), whether a node
# runs beside it, and the row's name in the table.
declare -A FLAGS=(
  [v1.34.4]="--feature-gates=MutatingAdmissionPolicy=true --runtime-config=admissionregistration.k8s.io/v1beta1=true"
)
declare -A SERVES=([v1.34.4]=v1beta1 [v1.35.4]=none [v1.36.3]=v1 [v1.37.2]=v1)
declare -A SETUP=(
  [v1.34.4]="MutatingAdmissionPolicy feature gate and v1beta1 API on"
  [v1.35.4]="as shipped"
  [v1.36.3]="as shipped"
  [v1.37.2]="as shipped"
)
NODE_VERSIONS=" v1.36.3 v1.37.2 "

# FEATURES: column name, then the integration tests (module::name) that must pass for it.
# "admission" runs only where a policy API is served; "pull" only where a node runs.
FEATURES=(
  "install|packaging::the_documented_install_applies_on_this_clusters_version_with_the_policy_it_serves"
  "copies|controller::copies_reach_namespaces_created_before_and_after_the_credential controller::source_rotation_reaches_every_copy controller::drift_is_repaired_deleted_and_edited_copies_and_removed_entries controller::deletion_removes_exactly_what_it_created"
  "serviceaccounts|controller::a_users_own_entries_survive_add_prune_and_delete controller::star_selects_every_service_account"
  "admission|admission::new_pods_get_the_copy_appended_and_nothing_else_changes admission::the_policy_selects_exactly_what_the_controller_selects admission::a_kubelets_mirror_pod_is_admitted_untouched admission::a_policy_that_cannot_evaluate_never_blocks_a_pod"
  "eviction|recovery::pods_stuck_before_the_credential_are_evicted_and_recreated_with_the_secret"
  "kstatus|gitops::health_as_kstatus_and_argo_cd_compute_it_through_a_credentials_life"
  "leader|leadership::a_standby_takes_over_within_the_lease_duration_writing_nothing_twice"
  "pull|node::a_private_image_is_pulled_with_the_copy_and_not_without_it"
)

for version in "${versions[@]}"; do
  [[ -n "${SERVES[$version]:-}" ]] || { say "FAILED: $version is not a supported release (versions.env)"; exit 2; }
done

# The tools the tests consult, as tests/run.sh builds them (cached).
REGCRED_TOOLS_BIN="$(bash tests/cluster/build-tools.sh)"
REGCRED_KSTATUS="$(bash tests/kstatus/build.sh)"
REGCRED_ARGO_HEALTH="$(bash tests/argocd-health/install.sh)/run.sh"
export REGCRED_TOOLS_BIN REGCRED_KSTATUS REGCRED_ARGO_HEALTH
say "building the integration tests"
cargo test --locked --test integration --no-run >&2

out=target/matrix
mkdir -p "$out"
results="$out/results.tsv"
: >"$results"
failed=0

# stop_version: stops the node and control plane of the release that ran last.
running=()
stop_version() {
  ((${#running[@]})) || return 0
  bash tests/cluster/node-down.sh "${running[1]}" >/dev/null 2>&1 || true
  bash tests/cluster/down.sh "${running[0]}" >/dev/null 2>&1 || true
  running=()
}
trap stop_version EXIT

# run_version VERSION: one control plane (and node), every feature; appends to $results.
run_version() {
  local version="$1" dir exported feature name tests outcome t0=$SECONDS
  dir="$(mktemp -d "${TMPDIR:-/tmp}/regcred-matrix-$version.XXXXXX")"
  running=("$dir" "$dir-node")
  exported="$(REGCRED_K8S_VERSION="$version" REGCRED_APISERVER_FLAGS="${FLAGS[$version]:-}" \
    REGCRED_CP_WATCH_PID=$$ bash tests/cluster/up.sh "$dir")" || { say "FAILED: $version: up.sh"; return 1; }
  eval "$exported"
  export REGCRED_CLUSTER_DIR="$dir" REGCRED_EXPECT_ADMISSION_API="${SERVES[$version]}"
  unset REGCRED_NODE_ENV
  if [[ "$NODE_VERSIONS" == *" $version "* ]]; then
    exported="$(REGCRED_K8S_VERSION="$version" REGCRED_CP_WATCH_PID=$$ bash tests/cluster/node-up.sh "$dir-node" "$dir")" ||
      { say "FAILED: $version: node-up.sh"; return 1; }
    eval "$exported"
    "$REGCRED_TOOLS_BIN/kubectl" taint nodes --all regcred.dev/node-tests=true:NoSchedule >/dev/null
  fi
  say "$version: control plane${REGCRED_NODE_ENV:+ and node} up in $((SECONDS - t0))s; \
$("$REGCRED_TOOLS_BIN/kubectl" version -o json | python3 -c 'import json,sys; print("server", json.load(sys.stdin)["serverVersion"]["gitVersion"])')"
  for feature in "${FEATURES[@]}"; do
    name="${feature%%|*}"
    read -r -a tests <<<"${feature#*|}"
    if [[ "$name" == admission && "${SERVES[$version]}" == none ]] ||
      [[ "$name" == pull && -z "${REGCRED_NODE_ENV:-}" ]]; then
      outcome=not-run
    else
      t0=$SECONDS
      if CI=true cargo test --locked --test integration -- --exact "${tests[@]}" >"$out/$version-$name.log" 2>&1 &&
        grep -q "test result: ok. ${#tests[@]} passed" "$out/$version-$name.log"; then
        outcome=passed
      else
        outcome=failed
        failed=1
        say "$version: $name FAILED (log: $out/$version-$name.log)"
        tail -n 40 "$out/$version-$name.log" >&2
      fi
      say "$version: $name $outcome in $((SECONDS - t0))s"
    fi
    printf '%s\t%s\t%s\n' "$version" "$name" "$outcome" >>"$results"
  done
  stop_version
}

for version in "${versions[@]}"; do
  run_version "$version" || { stop_version; failed=1; printf '%s\t%s\t%s\n' "$version" start failed >>"$results"; }
done

python3 tests/matrix/table.py "$results" "$K8S_NEWEST" \
  "$(for v in "${versions[@]}"; do printf '%s=%s=%s;' "$v" "${SERVES[$v]}" "${SETUP[$v]}"; done)" \
  >"$out/compatibility.md"
if $write; then
  python3 tests/matrix/table.py --into docs/compatibility.md "$out/compatibility.md"
  say "docs/compatibility.md written"
elif ((${#versions[@]} < ${#K8S_MATRIX[@]} + 1)); then
  say "some releases only: docs/compatibility.md not compared"
elif ! python3 tests/matrix/table.py --compare docs/compatibility.md "$out/compatibility.md"; then
  say "FAILED: docs/compatibility.md differs from this run's table (tests/matrix/run.sh --write)"
  failed=1
fi
cat "$out/compatibility.md" >&2
exit "$failed"
