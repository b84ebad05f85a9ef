# shellcheck shell=bash
# The end-to-end pull the node scripts share (operator-pod.sh, tests/upgrade, tests/release): a
# RegistryCredential for the node's registry and a Pod that pulls its private image with no pull
# secret of its own. Needs a `kubectl` function and node-up.sh's env (REGCRED_REGISTRY,
# REGCRED_NODE_NAME, REGCRED_NODE_IMAGE).

# apply_node_credential NAME SOURCE_NAMESPACE LABEL: a RegistryCredential NAME copying the
# Secret e2e-pull of SOURCE_NAMESPACE as `regcred` into the namespaces labelled LABEL=yes.
apply_node_credential() {
  kubectl apply -f - >/dev/null <<YAML
apiVersion: regcred.dev/v1alpha1
kind: RegistryCredential
metadata: {name: $1}
spec:
  source: {secretRef: {namespace: $2, name: e2e-pull}}
  registries: ["$REGCRED_REGISTRY"]
  secretName: regcred
  namespaceSelector: {matchLabels: {$3: "yes"}}
YAML
}

# pod_pulls NAMESPACE: a Pod `pulls` on the first node, the private image, no imagePullSecrets
# of its own; succeeds once it runs (the image pulled), fails after 60 s.
pod_pulls() {
  kubectl create -f - >/dev/null <<JSON
{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pulls", "namespace": "$1"},
 "spec": {"nodeName": "$REGCRED_NODE_NAME", "hostNetwork": true, "terminationGracePeriodSeconds": 1,
  "containers": [{"name": "app", "image": "$REGCRED_NODE_IMAGE", "imagePullPolicy": "Always"}]}}
JSON
  kubectl -n "$1" wait pod/pulls --for=jsonpath='{.status.phase}'=Running --timeout=60s >/dev/null ||
    { kubectl -n "$1" get events >&2; return 1; }
}
