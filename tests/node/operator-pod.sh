#!/usr/bin/env bash
# The operator as a Pod on the test node, by hand: its image built from this repo's sources
# (scripts/build-image.sh, no container engine) and pushed to the node's authenticated registry,
# installed with `kustomize build config/default` plus the test-only overlay below, then:
#   - both replicas Running and Ready (the kubelet calls /healthz and /readyz),
#   - one of them holds the Lease,
#   - a Pod without imagePullSecrets in a selected namespace pulls the private image through
#     the copy and ServiceAccount entry the in-cluster operator writes,
#   - deleting the leader's Pod hands the Lease to the other replica (time printed),
#   - with the chart: credential provider plugins copied from an image of their own by the init
#     container, and the upstream ECR plugin run by the operator in its Pod with a token the
#     chart's Role allows, against moto on the host: the copy holds the role's ECR password.
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
  [[ -z "${moto_pid:-}" ]] || kill "$moto_pid" 2>/dev/null || true
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
# The credential provider plugins' image: the upstream ECR plugin, and busybox for the init
# container's copy; moto on the host answers for AWS (the operator's Pod is on the host network).
expiry_tools="$(bash tests/cluster/build-expiry-tools.sh)"
plugins_image="$REGCRED_REGISTRY/regcred/credential-providers:e2e"
plugins_root="$work/plugins-rootfs"
mkdir -p "$plugins_root/bin" "$plugins_root/plugins"
install -m 0755 /bin/busybox "$plugins_root/bin/busybox"
install -m 0755 "$expiry_tools/ecr-credential-provider" "$plugins_root/plugins/ecr-credential-provider"
ocimage="$(bash tests/cluster/build-node.sh --image-tool)/ocimage"
"$ocimage" build -rootfs "$plugins_root" -o "$work/plugins-image" -ref "$plugins_image" >/dev/null
"$ocimage" push -layout "$work/plugins-image" -ref "$plugins_image" \
  -username "$REGCRED_REGISTRY_USER" -password-env REGCRED_REGISTRY_PASSWORD
moto_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$expiry_tools/moto_server" -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
moto_pid=$!
cat >"$work/providers-values.yaml" <<YAML
credentialProviders:
  enabled: true
  pluginsImage:
    repository: ${plugins_image%:*}
    tag: ${plugins_image##*:}
    command: [/bin/busybox, cp, -R, /plugins/., /credential-providers/]
  serviceAccounts: [ecr-puller]
  providers:
    - name: ecr-credential-provider
      matchImages: ["*.dkr.ecr.*.amazonaws.com"]
      defaultCacheDuration: 12h
      apiVersion: credentialprovider.kubelet.k8s.io/v1
      env:
        - {name: AWS_ENDPOINT_URL_ECR, value: "http://127.0.0.1:$moto_port"}
        - {name: AWS_ENDPOINT_URL_STS, value: "http://127.0.0.1:$moto_port"}
        - {name: AWS_EC2_METADATA_DISABLED, value: "true"}
        - {name: AWS_REGION, value: us-east-1}
      tokenAttributes:
        serviceAccountTokenAudience: sts.amazonaws.com
        requireServiceAccount: true
        cacheType: ServiceAccount
        requiredServiceAccountAnnotationKeys: [eks.amazonaws.com/ecr-role-arn]
YAML

# check_minting: a RegistryCredential minted by the ECR plugin in the operator's Pod; its copy
# holds moto's password for the role the ServiceAccount names (compared, never printed).
check_minting() {
  local t0=$SECONDS mns=e2e-minted password=""
  kubectl -n "$ns" create serviceaccount ecr-puller >/dev/null
  kubectl -n "$ns" annotate serviceaccount ecr-puller \
    eks.amazonaws.com/ecr-role-arn=arn:aws:iam::210987654321:role/puller >/dev/null
  kubectl create namespace "$mns" >/dev/null
  kubectl apply -f - >/dev/null <<YAML
apiVersion: regcred.dev/v1alpha1
kind: RegistryCredential
metadata: {name: e2e-minted}
spec:
  source:
    credentialProvider:
      name: ecr-credential-provider
      image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1
      serviceAccountRef: {namespace: $ns, name: ecr-puller}
  secretName: regcred-ecr
  namespaces: {include: [$mns]}
YAML
  for _ in $(seq 300); do
    password="$(kubectl -n "$mns" get secret regcred-ecr -o 'jsonpath={.data.\.dockerconfigjson}' 2>/dev/null |
      base64 -d 2>/dev/null | python3 -c 'import json, sys
print(json.load(sys.stdin)["auths"]["123456789012.dkr.ecr.us-east-1.amazonaws.com"]["password"])' 2>/dev/null)" || true
    [[ -n "$password" ]] && break
    sleep 0.2
  done
  if [[ "$password" != "210987654321-auth-token" ]]; then
    kubectl get registrycredential e2e-minted -o yaml >&2
    die "helm: the copy does not hold the password minted through the ServiceAccount's role"
  fi
  kubectl wait registrycredential e2e-minted --for=condition=Ready --timeout=60s >/dev/null ||
    die "helm: the minted credential is not Ready"
  say "helm: the plugin copied by the init container minted through the ServiceAccount token in the operator's Pod; copy written $((SECONDS - t0))s after apply"
}

# --api-versions: what `helm install` learns from this 1.36 cluster (the policy's v1 API).
"$tools_bin/helm" template regcred-operator charts/regcred-operator --namespace "$ns" \
  --api-versions admissionregistration.k8s.io/v1/MutatingAdmissionPolicy \
  --set image.repository="${image%:*}" --set image.tag="${image##*:}" \
  -f "$work/providers-values.yaml" >"$work/helm-chart.yaml"
render helm "$work/helm-chart.yaml"
check helm
check_minting
say "PASS"
