#!/usr/bin/env bash
# Smoke test of the test node, by hand and without the operator: a control plane (up.sh), a
# node (node-up.sh), then
#   1. a Pod with a correct pull secret pulls the private image and runs (its log is read
#      through the API server, i.e. the kubelet's server);
#   2. the same Pod without a pull secret ends in ErrImagePull, then ImagePullBackOff, and the
#      registry's access log shows the 401;
#   3. a Deployment-less Pod without nodeName is placed by the scheduler.
# Prints the timings (build check, control plane, node, pull) and the Events seen.
#
# Usage: tests/node/smoke.sh        (needs root; builds what is missing on first use)
# Env:   REGCRED_SMOKE_KEEP=1  leave everything running and print how to stop it
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

say() { printf '[smoke %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

T_ALL=$SECONDS
t0=$SECONDS
tools_bin="$(bash tests/cluster/build-tools.sh)"
bash tests/cluster/build.sh >/dev/null
bash tests/cluster/build-node.sh >/dev/null
T_BUILD=$((SECONDS - t0))
kubectl() { "$tools_bin/kubectl" "$@"; }

work="$(mktemp -d "${TMPDIR:-/tmp}/regcred-smoke.XXXXXX")"
cp_dir="$work/cp"
# kubectl's discovery cache stays in the work dir, not in ~/.kube.
export KUBECACHEDIR="$work/kubectl-cache"
node_dir="$work/node"
cleanup() {
  if [[ -n "${REGCRED_SMOKE_KEEP:-}" ]]; then
    say "kept: tests/cluster/node-down.sh $node_dir && tests/cluster/down.sh $cp_dir"
    return
  fi
  local t=$SECONDS
  bash tests/cluster/node-down.sh "$node_dir" || true
  local tn=$((SECONDS - t))
  bash tests/cluster/down.sh "$cp_dir" >/dev/null 2>&1 || true
  rm -rf -- "$KUBECACHEDIR"
  rmdir "$work" 2>/dev/null || true
  say "teardown: node ${tn}s, control plane $((SECONDS - t - tn))s"
}
trap cleanup EXIT
[[ -n "${REGCRED_SMOKE_KEEP:-}" ]] || export REGCRED_CP_WATCH_PID=$$

t0=$SECONDS
eval "$(bash tests/cluster/up.sh "$cp_dir")"
T_CP=$((SECONDS - t0))
t0=$SECONDS
eval "$(bash tests/cluster/node-up.sh "$node_dir" "$cp_dir")"
T_NODE=$((SECONDS - t0))
# shellcheck source=/dev/null
. "$REGCRED_NODE_ENV"

kubectl get nodes -o wide >&2
ns=smoke
kubectl create namespace "$ns" >/dev/null
kubectl -n "$ns" create secret generic regcred --type=kubernetes.io/dockerconfigjson \
  --from-file=.dockerconfigjson="$REGCRED_NODE_DOCKERCONFIGJSON" >/dev/null
# The namespace's default ServiceAccount comes from the controller-manager.
for _ in $(seq 100); do kubectl -n "$ns" get serviceaccount default >/dev/null 2>&1 && break; sleep 0.1; done

# pod NAME NODE_NAME SECRET HOSTNETWORK
pod() {
  local secrets='[]' node=''
  [[ -n "$3" ]] && secrets="[{\"name\": \"$3\"}]"
  [[ -n "$2" ]] && node="\"nodeName\": \"$2\","
  cat <<EOF
{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "$1", "namespace": "$ns"},
 "spec": {$node "hostNetwork": $4, "imagePullSecrets": $secrets, "terminationGracePeriodSeconds": 1,
  "containers": [{"name": "app", "image": "$REGCRED_NODE_IMAGE", "imagePullPolicy": "Always",
   "securityContext": {"runAsUser": 1000, "runAsNonRoot": true, "readOnlyRootFilesystem": true,
    "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}}
EOF
}
# wait_for NAME JSONPATH VALUE SECONDS: poll until the field equals VALUE; prints the seconds.
wait_for() {
  local name="$1" path="$2" want="$3" limit="$4" start=$SECONDS got
  while true; do
    got="$(kubectl -n "$ns" get pod "$name" -o "jsonpath=$path" 2>/dev/null || true)"
    [[ "$got" == "$want" ]] && { echo $((SECONDS - start)); return 0; }
    ((SECONDS - start < limit)) || { say "$name: $path is '$got', not '$want' after ${limit}s"; return 1; }
    sleep 0.2
  done
}
events() {
  kubectl -n "$ns" get events --field-selector "involvedObject.name=$1" \
    -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message --sort-by=.metadata.creationTimestamp
}

# 1. with the pull secret (pod network, placed by hand) -----------------------------------
pod with-secret "$REGCRED_NODE_NAME" regcred false | kubectl create -f - >/dev/null
T_RUN="$(wait_for with-secret '{.status.phase}' Running 60)" || { events with-secret >&2; die "with-secret not Running"; }
for _ in $(seq 50); do
  logs="$(kubectl -n "$ns" logs with-secret 2>/dev/null || true)"
  [[ -n "$logs" ]] && break
  sleep 0.2
done
[[ "$logs" == "hello from the private image" ]] || die "with-secret logs: '$logs'"
say "with a pull secret: Running after ${T_RUN}s; logs: $logs; pod IP $(kubectl -n "$ns" get pod with-secret -o 'jsonpath={.status.podIP}')"
events with-secret >&2

# 2. without -----------------------------------------------------------------------------
pod without-secret "$REGCRED_NODE_NAME" '' true | kubectl create -f - >/dev/null
T_ERR="$(wait_for without-secret '{.status.containerStatuses[0].state.waiting.reason}' ErrImagePull 60)" ||
  { events without-secret >&2; die "no ErrImagePull"; }
T_BACKOFF="$(wait_for without-secret '{.status.containerStatuses[0].state.waiting.reason}' ImagePullBackOff 90)" ||
  { events without-secret >&2; die "no ImagePullBackOff"; }
say "without a pull secret: ErrImagePull after ${T_ERR}s, then ImagePullBackOff after ${T_BACKOFF}s more"
events without-secret >&2
repo="${REGCRED_NODE_IMAGE#*/}"
grep -E "\"(HEAD|GET) /v2/${repo%:*}/manifests/[^ ]* HTTP/1.1\" 401" "$REGCRED_REGISTRY_LOG" | tail -n 2 >&2 ||
  die "no 401 for the manifest in $REGCRED_REGISTRY_LOG"

# 3. the scheduler places a Pod without nodeName -------------------------------------------
pod scheduled "" regcred true | kubectl create -f - >/dev/null
T_SCHED="$(wait_for scheduled '{.status.phase}' Running 60)" || { events scheduled >&2; die "scheduled not Running"; }
say "scheduled onto $(kubectl -n "$ns" get pod scheduled -o 'jsonpath={.spec.nodeName}') and Running after ${T_SCHED}s"

kubectl delete namespace "$ns" --wait=false >/dev/null
say "PASS. build check ${T_BUILD}s, control plane ${T_CP}s, node ${T_NODE}s, pull+run ${T_RUN}s, ErrImagePull ${T_ERR}s (+${T_BACKOFF}s to ImagePullBackOff), total $((SECONDS - T_ALL))s"
