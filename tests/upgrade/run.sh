#!/usr/bin/env bash
# The upgrade test: the operator of the last release (tests/upgrade/last-release, built from its
# own sources) runs as two Pods on real nodes with a live credential, copies, user entries on
# the ServiceAccounts and a Pod that pulled through the copy; then it is upgraded to this tree as
# docs/operations.md says (the CRD first), and downgraded back, once with kustomize and once with
# Helm (each on a cluster of its own, the newest release). Watched the whole time through the API
# server's watch streams (tests/upgrade/watch.py): no copy deleted or emptied, no ServiceAccount
# without the copy or the user's own entry, the credential's status kept and never a failure; and no write storm
# (writes on what existed before are counted and bounded). After each step a new namespace gets its
# copy, so the operator that now runs works.
#
# Usage: tests/upgrade/run.sh [kustomize|helm]...     (root; default: both)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO="$PWD"

say() { printf '[upgrade %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

release="$(grep -v '^#' tests/upgrade/last-release | head -n1)"
[[ "$release" =~ ^[0-9a-f]{40}$ ]] || die "tests/upgrade/last-release names no commit"
git cat-file -e "$release^{commit}" 2>/dev/null ||
  die "commit $release (tests/upgrade/last-release) is not in this clone: a shallow clone? git fetch --unshallow"
rounds=("$@")
((${#rounds[@]})) || rounds=(kustomize helm)

tools_bin="$(bash tests/cluster/build-tools.sh)"
kubectl() { "$tools_bin/kubectl" "$@"; }
helm() { "$tools_bin/helm" "$@"; }
work="$(mktemp -d "${TMPDIR:-/tmp}/regcred-upgrade.XXXXXX")"
export KUBECACHEDIR="$work/kubectl-cache"
export REGCRED_CP_WATCH_PID=$$
cp_dir="" node_dir="" watcher=""
stop_cluster() {
  [[ -z "$watcher" ]] || kill "$watcher" 2>/dev/null || true
  [[ -n "$cp_dir" ]] || return 0
  bash tests/cluster/node-down.sh "$node_dir" >/dev/null 2>&1 || true
  bash tests/cluster/down.sh "$cp_dir" >/dev/null 2>&1 || true
  cp_dir=""
}
cleanup() {
  stop_cluster
  rm -rf -- "$work"
}
trap cleanup EXIT

# --- the two operators: the last release from its own sources, and this tree ------------------
# The release's sources come from git (a fresh clone has the history); its static binary is
# cached by commit. Both builds share one cargo target dir: the dependencies they have in common
# compile once.
target_dir="$REPO/${REGCRED_IMAGE_TARGET_DIR:-target/image-build}"
old_binary="${REGCRED_CACHE:-$HOME/.cache/regcred-operator}/bin/release-${release:0:12}/regcred-operator"
if [[ ! -x "$old_binary" ]]; then
  t0=$SECONDS
  old_src="$work/last-release"
  mkdir -p "$old_src" "$(dirname "$old_binary")"
  git archive "$release" | tar -x -C "$old_src"
  # The binary this tree's build left there must not pass for the release's.
  find "$target_dir" -path '*/release/regcred-operator' -type f -delete 2>/dev/null || true
  (cd "$old_src" && REGCRED_IMAGE_TARGET_DIR="$target_dir" bash scripts/build-image.sh --out "$work/old-image" >/dev/null)
  built="$(find "$target_dir" -path '*/release/regcred-operator' -type f | head -n1)"
  [[ -x "$built" ]] || die "the last release's build left no binary in $target_dir"
  cp "$built" "$old_binary.tmp" && mv "$old_binary.tmp" "$old_binary"
  say "last release ${release:0:12} built in $((SECONDS - t0))s"
fi
old_src="$work/last-release-manifests"
mkdir -p "$old_src"
git archive "$release" config crds charts | tar -x -C "$old_src"
t0=$SECONDS
REGCRED_IMAGE_TARGET_DIR="$target_dir" bash scripts/build-image.sh --out "$work/new-image" >/dev/null
new_binary="$work/this-tree"
cp "$(find "$target_dir" -path '*/release/regcred-operator' -type f | head -n1)" "$new_binary"
say "this tree built in $((SECONDS - t0))s"

# shellcheck source=SCRIPTDIR/../node/overlay.sh
. tests/node/overlay.sh
# shellcheck source=SCRIPTDIR/../node/pull.sh
. tests/node/pull.sh
ns=regcred-system
selected=(upgrade-a upgrade-b upgrade-c)

# render NAME RESOURCE IMAGE: RESOURCE (a directory or file) with the test node's overlay.
render() {
  local dir="$work/overlay-$1" rel
  mkdir -p "$dir"
  rel="$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$2" "$dir")"
  node_overlay "$dir" "$rel" "$3"
  "$tools_bin/kustomize" build --load-restrictor=LoadRestrictionsNone "$dir"
}

rollout() {
  kubectl -n "$ns" rollout status deployment/regcred-operator --timeout=180s >&2 ||
    { kubectl -n "$ns" get pods -o wide >&2; kubectl -n "$ns" get events >&2; die "$1: rollout"; }
}

# copy_reaches NAMESPACE: a new selected namespace gets the copy and the ServiceAccount entry.
copy_reaches() {
  kubectl create namespace "$1" >/dev/null
  kubectl label namespace "$1" regcred-upgrade=yes >/dev/null
  for _ in $(seq 300); do
    [[ "$(kubectl -n "$1" get serviceaccount default -o 'jsonpath={.imagePullSecrets[*].name}' 2>/dev/null)" == *regcred* ]] &&
      kubectl -n "$1" get secret regcred >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "the new namespace $1 got no copy"
}

# deploy STEP WHICH: the operator of WHICH (old: the last release, new: this tree) installed,
# upgraded or rolled back as docs/operations.md says.
deploy() {
  local step="$1" which="$2" src image
  if [[ "$which" == old ]]; then src="$old_src" image="$old_image"; else src="$REPO" image="$new_image"; fi
  case "$step" in
    # The CRD is in the build: one apply does both, the CRD first in kustomize's order.
    kustomize) render "kustomize-$which" "$src/config/default" "$image" | kubectl apply --server-side -f - >/dev/null ;;
    helm-install)
      helm_node_overlay "$work" "$tools_bin/kustomize" "$image"
      helm install regcred-operator "$src/charts/regcred-operator" --namespace "$ns" \
        --post-renderer test-node-overlay >/dev/null
      ;;
    helm-upgrade)
      helm show crds "$src/charts/regcred-operator" | kubectl apply --server-side --force-conflicts -f - >/dev/null
      helm_node_overlay "$work" "$tools_bin/kustomize" "$image"
      helm upgrade regcred-operator "$src/charts/regcred-operator" --namespace "$ns" \
        --post-renderer test-node-overlay >/dev/null
      ;;
    helm-rollback) helm rollback regcred-operator 1 --namespace "$ns" >/dev/null ;;
  esac
  rollout "$step $which"
  # Rolled out; the replaced Pods may still be terminating.
  local images
  for _ in $(seq 150); do
    images="$(kubectl -n "$ns" get pods -l app.kubernetes.io/name=regcred-operator \
      -o 'jsonpath={range .items[*]}{.spec.containers[0].image}{"\n"}{end}' | sort -u)"
    [[ "$images" == "$image" ]] && return 0
    sleep 0.4
  done
  die "$step $which: the operator's Pods run $images, not $image"
}

# live_state: the credential, its copies in the selected namespaces beside a user's own entry on
# each ServiceAccount, and a Pod that pulled the private image through the copy.
live_state() {
  local n
  kubectl -n "$ns" create secret generic e2e-pull --type=kubernetes.io/dockerconfigjson \
    --from-file=.dockerconfigjson="$REGCRED_NODE_DOCKERCONFIGJSON" >/dev/null
  for n in "${selected[@]}"; do
    kubectl create namespace "$n" >/dev/null
    kubectl label namespace "$n" regcred-upgrade=yes >/dev/null
    for _ in $(seq 150); do kubectl -n "$n" get serviceaccount default >/dev/null 2>&1 && break; sleep 0.2; done
    kubectl -n "$n" patch serviceaccount default -p '{"imagePullSecrets": [{"name": "user-own"}]}' >/dev/null
  done
  apply_node_credential upgrade "$ns" regcred-upgrade
  kubectl wait registrycredential/upgrade --for=condition=Ready --timeout=60s >/dev/null
  local entries
  for n in "${selected[@]}"; do
    entries="$(kubectl -n "$n" get serviceaccount default -o 'jsonpath={.imagePullSecrets[*].name}')"
    [[ "$entries" == "user-own regcred" ]] || die "$n: the ServiceAccount lists $entries"
  done
  pod_pulls "${selected[0]}" ||
    die "the Pod did not pull through the last release's copy"
}

# round TOOL: a cluster of its own; the last release installed, upgraded, downgraded with TOOL.
round() {
  local tool="$1" t0=$SECONDS summary
  cp_dir="$work/$tool-cp" node_dir="$work/$tool-node"
  local exported
  exported="$(bash tests/cluster/up.sh "$cp_dir")" || die "$tool: the control plane did not start"
  eval "$exported"
  # Three nodes for two replicas: with hostNetwork (tests/node/overlay.sh) each node holds one
  # replica (port 8080), and the rolling update starts its extra Pod before stopping one.
  exported="$(REGCRED_NODE_COUNT=3 bash tests/cluster/node-up.sh "$node_dir" "$cp_dir")" ||
    die "$tool: the nodes did not start"
  eval "$exported"
  # shellcheck source=/dev/null
  . "$REGCRED_NODE_ENV"
  old_image="$REGCRED_REGISTRY/regcred/regcred-operator:last-release"
  new_image="$REGCRED_REGISTRY/regcred/regcred-operator:this-tree"
  bash scripts/build-image.sh --binary "$old_binary" --out "$work/old-image" --push "$old_image" >/dev/null
  bash scripts/build-image.sh --binary "$new_binary" --out "$work/new-image" --push "$new_image" >/dev/null
  kubectl create namespace "$ns" >/dev/null
  kubectl label namespace "$ns" pod-security.kubernetes.io/enforce=privileged >/dev/null
  kubectl -n "$ns" create secret generic regcred-operator-pull --type=kubernetes.io/dockerconfigjson \
    --from-file=.dockerconfigjson="$REGCRED_NODE_DOCKERCONFIGJSON" >/dev/null

  if [[ "$tool" == kustomize ]]; then deploy kustomize old; else deploy helm-install old; fi
  live_state
  say "$tool: the last release runs, with copies in ${selected[*]} and a Pod that pulled through one"

  python3 tests/upgrade/watch.py "$tools_bin/kubectl" regcred upgrade user-own "$work/watching-$tool" \
    "${selected[@]}" >"$work/watch-$tool.json" &
  watcher=$!
  # Every watched object listed before anything changes.
  for _ in $(seq 300); do [[ -e "$work/watching-$tool" ]] && break; sleep 0.1; done
  [[ -e "$work/watching-$tool" ]] || die "$tool: the watches did not list the copies, accounts and credential"
  if [[ "$tool" == kustomize ]]; then deploy kustomize new; else deploy helm-upgrade new; fi
  copy_reaches "after-upgrade-$tool"
  say "$tool: upgraded to this tree ($((SECONDS - t0))s in); a new namespace got its copy"
  if [[ "$tool" == kustomize ]]; then deploy kustomize old; else deploy helm-rollback old; fi
  copy_reaches "after-downgrade-$tool"
  say "$tool: downgraded to the last release; a new namespace got its copy"
  kubectl wait registrycredential/upgrade --for=condition=Ready --timeout=60s >/dev/null
  sleep 5
  kill -TERM "$watcher"
  # What a reopened watch could have missed in its gap shows in the end state.
  local n
  for n in "${selected[@]}"; do
    kubectl -n "$n" get secret regcred >/dev/null || die "$tool: $n lost its copy"
    [[ "$(kubectl -n "$n" get serviceaccount default -o 'jsonpath={.imagePullSecrets[*].name}')" == "user-own regcred" ]] ||
      die "$tool: $n's ServiceAccount lost an entry"
  done
  wait "$watcher" || true
  watcher=""
  summary="$(cat "$work/watch-$tool.json")"
  say "$tool: watched: $summary"
  python3 - "$summary" <<'PY' || die "$tool: see the watch above"
import json, sys
summary = json.loads(sys.argv[1])
for violation in summary["violations"]:
    print("violation:", violation, file=sys.stderr)
# Copies and ServiceAccounts are not rewritten by an upgrade or a downgrade (the output is
# canonical: docs/operations.md); the credential's status moves with each new leader, a handful
# of times.
storm = [f"{key}: {count} writes" for key, count in summary["writes"].items()
         if count > (10 if key.startswith("RegistryCredential") else 0)]
for line in storm:
    print("more writes than an upgrade may make:", line, file=sys.stderr)
sys.exit(1 if summary["violations"] or storm else 0)
PY
  say "$tool: PASS in $((SECONDS - t0))s"
  stop_cluster
}

for tool in "${rounds[@]}"; do
  round "$tool"
done
say "PASS"
