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
# shellcheck source=SCRIPTDIR/../cluster/versions.env
. tests/cluster/versions.env

say() { printf '[matrix %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

write=false
if [[ "${1:-}" == --write ]]; then write=true; shift; fi
versions=("$@")
((${#versions[@]})) || versions=("${K8S_MATRIX[@]}" "$K8S_NEWEST")

# ENTRIES: one row of the table each: release, setup (the row's second column), extra apiserver
# flags, the policy API it must then serve (REGCRED_EXPECT_ADMISSION_API: the tests fail where
# discovery says otherwise), and "node" where a real node runs beside it. 1.34 and 1.35 run twice:
# as they ship (no policy API) and with the v1beta1 API turned on (both flags are needed).
V1BETA1_FLAGS="--feature-gates=MutatingAdmissionPolicy=true --runtime-config=admissionregistration.k8s.io/v1beta1=true"
ENTRIES=(
  "v1.34.4|as shipped||none|"
  "v1.34.4|MutatingAdmissionPolicy v1beta1 on|$V1BETA1_FLAGS|v1beta1|"
  "v1.35.4|as shipped||none|"
  "v1.35.4|MutatingAdmissionPolicy v1beta1 on|$V1BETA1_FLAGS|v1beta1|"
  "v1.36.3|as shipped||v1|node"
  "v1.37.2|as shipped||v1|node"
)

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
  "doctor|doctor::own_pull_secrets_hide_the_service_accounts_and_the_pod_predates_its_copy doctor::pod_created_before_the_service_account_was_patched"
  "pull|node::a_private_image_is_pulled_with_the_copy_and_not_without_it"
)

# ENTRIES and versions.env name the same releases.
for version in "${K8S_MATRIX[@]}" "$K8S_NEWEST"; do
  [[ " ${ENTRIES[*]}" == *" $version|"* ]] || { say "FAILED: versions.env names $version, ENTRIES do not"; exit 2; }
done
for entry in "${ENTRIES[@]}"; do
  [[ " ${K8S_MATRIX[*]} $K8S_NEWEST " == *" ${entry%%|*} "* ]] ||
    { say "FAILED: ENTRIES name ${entry%%|*}, versions.env does not"; exit 2; }
done

# The entries of the releases asked for.
selected_entries=()
for version in "${versions[@]}"; do
  found=false
  for entry in "${ENTRIES[@]}"; do
    [[ "${entry%%|*}" == "$version" ]] && { selected_entries+=("$entry"); found=true; }
  done
  $found || { say "FAILED: $version is not a supported release (versions.env)"; exit 2; }
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

# run_entry ENTRY: one control plane (and node), every feature; appends to $results.
run_entry() {
  local version setup flags serves node row dir exported feature name tests outcome log t0=$SECONDS
  IFS='|' read -r version setup flags serves node <<<"$1"
  row="$version $setup"
  dir="$(mktemp -d "${TMPDIR:-/tmp}/regcred-matrix-$version.XXXXXX")"
  running=("$dir" "$dir-node")
  exported="$(REGCRED_K8S_VERSION="$version" REGCRED_APISERVER_FLAGS="$flags" \
    REGCRED_CP_WATCH_PID=$$ bash tests/cluster/up.sh "$dir")" || { say "FAILED: $row: up.sh"; return 1; }
  eval "$exported"
  export REGCRED_CLUSTER_DIR="$dir" REGCRED_EXPECT_ADMISSION_API="$serves"
  unset REGCRED_NODE_ENV
  if [[ "$node" == node ]]; then
    exported="$(REGCRED_K8S_VERSION="$version" REGCRED_CP_WATCH_PID=$$ bash tests/cluster/node-up.sh "$dir-node" "$dir")" ||
      { say "FAILED: $row: node-up.sh"; return 1; }
    eval "$exported"
    "$REGCRED_TOOLS_BIN/kubectl" taint nodes --all regcred.dev/node-tests=true:NoSchedule >/dev/null || return 1
  fi
  say "$row: control plane${REGCRED_NODE_ENV:+ and node} up in $((SECONDS - t0))s; \
$("$REGCRED_TOOLS_BIN/kubectl" version -o json 2>/dev/null | python3 -c 'import json,sys; print("server", json.load(sys.stdin)["serverVersion"]["gitVersion"])')"
  for feature in "${FEATURES[@]}"; do
    name="${feature%%|*}"
    read -r -a tests <<<"${feature#*|}"
    if [[ "$name" == admission && "$serves" == none ]] || [[ "$name" == pull && "$node" != node ]]; then
      outcome=not-run
    else
      t0=$SECONDS
      log="$out/$version-${setup// /-}-$name.log"
      if CI=true cargo test --locked --test integration -- --exact "${tests[@]}" >"$log" 2>&1 &&
        grep -q "test result: ok. ${#tests[@]} passed" "$log"; then
        outcome=passed
      else
        outcome=failed
        failed=1
        say "$row: $name FAILED (log: $log)"
        tail -n 40 "$log" >&2
      fi
      say "$row: $name $outcome in $((SECONDS - t0))s"
    fi
    printf '%s\t%s\t%s\n' "$row" "$name" "$outcome" >>"$results"
  done
  stop_version
}

for entry in "${selected_entries[@]}"; do
  run_entry "$entry" || {
    stop_version
    failed=1
    IFS='|' read -r version setup _ <<<"$entry"
    printf '%s\t%s\t%s\n' "$version $setup" start failed >>"$results"
  }
done

python3 tests/matrix/table.py "$results" "$K8S_NEWEST" "${selected_entries[@]}" >"$out/compatibility.md"
if $write && ((${#versions[@]} < ${#K8S_MATRIX[@]} + 1)); then
  say "FAILED: --write needs every release (no VERSION arguments)"
  failed=1
elif $write; then
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
