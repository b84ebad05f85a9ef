#!/usr/bin/env bash
# The operator as a Pod on the test node, by hand: its image built from this repo's sources
# (scripts/build-image.sh, no container engine) and pushed to the node's authenticated registry,
# installed with `kustomize build config/default` plus the test-only overlay below, then:
#   - both replicas Running and Ready (the kubelet calls /healthz and /readyz),
#   - one of them holds the Lease,
#   - a Pod without imagePullSecrets in a selected namespace pulls the private image through
#     the copy and ServiceAccount entry the in-cluster operator writes,
#   - deleting the leader's Pod hands the Lease to the other replica (time printed).
#
# The test-only overrides (hostNetwork, the API server address, ...) are in tests/node/overlay.sh,
# each because of the test node, not of the operator.
#
# Usage: tests/node/operator-pod.sh            (root; starts and stops its own cluster + 2 nodes)
# Env:   REGCRED_OPERATOR_BINARY=PATH  a static operator binary (skips the cargo build)
#        REGCRED_SMOKE_KEEP=1          leave everything running
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO="$PWD"

say() { printf '[operator-pod %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

tools_bin="$(bash tests/cluster/build-tools.sh)"
kubectl() { "$tools_bin/kubectl" "$@"; }

work="$(mktemp -d "${TMPDIR:-/tmp}/regcred-operator-pod.XXXXXX")"
cp_dir="$work/cp"
node_dir="$work/node"
export KUBECACHEDIR="$work/kubectl-cache"
cleanup() {
  if [[ -n "${REGCRED_SMOKE_KEEP:-}" ]]; then
    say "kept: tests/cluster/node-down.sh $node_dir && tests/cluster/down.sh $cp_dir"
    return
  fi
  bash tests/cluster/node-down.sh "$node_dir" >/dev/null 2>&1 || true
  bash tests/cluster/down.sh "$cp_dir" >/dev/null 2>&1 || true
  rm -rf -- "$work"
}
trap cleanup EXIT
[[ -n "${REGCRED_SMOKE_KEEP:-}" ]] || export REGCRED_CP_WATCH_PID=$$

eval "$(bash tests/cluster/up.sh "$cp_dir")"
eval "$(REGCRED_NODE_COUNT=2 bash tests/cluster/node-up.sh "$node_dir" "$cp_dir")"
# shellcheck source=/dev/null
. "$REGCRED_NODE_ENV"

# --- image ---------------------------------------------------------------------------------
image="$REGCRED_REGISTRY/regcred/regcred-operator:e2e"
t0=$SECONDS
bash scripts/build-image.sh --out "$work/image" --push "$image" >/dev/null
say "image $image built and pushed in $((SECONDS - t0))s"

# --- the test-only overlay, over config/default or over the Helm chart's rendering -------------
# shellcheck source=SCRIPTDIR/overlay.sh
. tests/node/overlay.sh
# shellcheck source=SCRIPTDIR/pull.sh
. tests/node/pull.sh
ns=regcred-system
node_operator_namespace "$ns"

# render NAME RESOURCE: kustomize RESOURCE (a directory or a file) with the overlay into
# $work/NAME.yaml.
render() {
  local name="$1" resource="$2" dir="$work/overlay-$1" rel
  mkdir -p "$dir"
  # kustomize takes no absolute paths in resources.
  rel="$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$resource" "$dir")"
  node_overlay "$dir" "$rel" "$image"
  "$tools_bin/kustomize" build --load-restrictor=LoadRestrictionsNone "$dir" >"$work/$name.yaml"
}

lease_holder() { kubectl -n "$ns" get lease regcred-operator -o 'jsonpath={.spec.holderIdentity}' 2>/dev/null || true; }

# check NAME: both replicas Ready, a leader, a pull through the operator's copy in a new
# namespace, then the leader's Pod deleted and the Lease taken over.
check() {
  local name="$1" t0=$SECONDS holder leader p new pns="e2e-$1"
  kubectl apply --server-side --force-conflicts -f "$work/$name.yaml" >/dev/null
  kubectl -n "$ns" rollout status deployment/regcred-operator --timeout=120s >&2 ||
    { kubectl -n "$ns" get pods -o wide >&2; kubectl -n "$ns" get events >&2; die "$name: rollout"; }
  say "$name: both replicas Ready $((SECONDS - t0))s after apply:"
  kubectl -n "$ns" get pods -o wide >&2

  for _ in $(seq 150); do [[ -n "$(lease_holder)" ]] && break; sleep 0.2; done
  holder="$(lease_holder)"
  [[ -n "$holder" ]] || die "$name: no Lease holder"
  # The identity is the Pod's name plus a suffix of the process: find the Pod it names.
  leader=""
  for p in $(kubectl -n "$ns" get pods -l app.kubernetes.io/name=regcred-operator -o 'jsonpath={.items[*].metadata.name}'); do
    [[ "$holder" == "$p" || "$holder" == "$p"-* ]] && leader="$p"
  done
  [[ -n "$leader" ]] || die "$name: Lease holder $holder names none of the operator's Pods"
  say "$name: leader $leader (Lease holder $holder)"

  # The end-to-end pull through the in-cluster operator (the CRD came with the install).
  apply_node_credential e2e "$ns" regcred-e2e
  kubectl create namespace "$pns" >/dev/null
  kubectl label namespace "$pns" regcred-e2e=yes >/dev/null
  for _ in $(seq 150); do
    [[ "$(kubectl -n "$pns" get serviceaccount default -o 'jsonpath={.imagePullSecrets[*].name}' 2>/dev/null)" == *regcred* ]] && break
    sleep 0.2
  done
  pod_pulls "$pns" || die "$name: the Pod did not pull through the operator's copy"
  say "$name: a Pod without imagePullSecrets in $pns pulled the private image through the operator's copy"

  # Leader handover.
  t0=$SECONDS
  kubectl -n "$ns" delete pod "$leader" --wait=false >/dev/null
  new=""
  for _ in $(seq 300); do
    new="$(lease_holder)"
    [[ -n "$new" && "$new" != "$holder" && "$new" != "$leader"-* ]] && break
    sleep 0.2
  done
  [[ -n "$new" && "$new" != "$holder" && "$new" != "$leader"-* ]] || die "$name: the Lease stayed with $holder"
  say "$name: leader $leader deleted; $new took the Lease after $((SECONDS - t0))s"
  kubectl -n "$ns" rollout status deployment/regcred-operator --timeout=120s >&2
}

# 1. kustomize build config/default
render kustomize "$REPO/config/default"
kubectl -n "$ns" create secret generic e2e-pull --type=kubernetes.io/dockerconfigjson \
  --from-file=.dockerconfigjson="$REGCRED_NODE_DOCKERCONFIGJSON" >/dev/null
check kustomize

# 2. the Helm chart (release regcred-operator), replacing the kustomize Deployment
kubectl -n "$ns" delete deployment regcred-operator --wait=true >/dev/null
for _ in $(seq 150); do
  [[ -z "$(kubectl -n "$ns" get pods -l app.kubernetes.io/name=regcred-operator -o name)" ]] && break
  sleep 0.2
done
# --api-versions: what `helm install` learns from this 1.36 cluster (the policy's v1 API).
"$tools_bin/helm" template regcred-operator charts/regcred-operator --namespace "$ns" \
  --api-versions admissionregistration.k8s.io/v1/MutatingAdmissionPolicy \
  --set image.repository="${image%:*}" --set image.tag="${image##*:}" >"$work/helm-chart.yaml"
render helm "$work/helm-chart.yaml"
check helm
say "PASS"
