# shellcheck shell=bash
# The test-only kustomize overlay that runs the operator's Deployment on the test node (sourced by
# operator-pod.sh and tests/upgrade/run.sh). Each override is there because of the test node, not
# of the operator:
#   image            the pushed reference; imagePullSecrets regcred-operator-pull: the registry
#                    wants credentials for every repository, the operator's own image included
#   hostNetwork      Pods on the node's isolated bridge can neither reach the API server nor be
#                    probed by the kubelet (all addresses are loopback); hence also the
#                    namespace's Pod Security level "privileged" instead of "restricted"
#   KUBERNETES_SERVICE_HOST/_PORT   the API server's address: no kube-proxy
#   REGCRED_HTTP_ADDR=$(POD_IP):8080   with hostNetwork two replicas would both bind
#                    0.0.0.0:8080; each node has its own IP, so each binds its own
# Needs REGCRED_NODE_APISERVER_HOST and _PORT (node-up.sh's env).

NODE_OVERLAY_SCRIPT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/overlay.sh"

# node_overlay DIR RESOURCE [IMAGE]: writes DIR/kustomization.yaml, the overlay over RESOURCE (a
# path relative to DIR: kustomize takes no absolute paths) with the operator's image IMAGE
# (NAME:TAG; none: the image RESOURCE names is kept, e.g. a released chart's by digest).
node_overlay() {
  local dir="$1" rel="$2" image="${3:-}" images=""
  [[ -z "$image" ]] ||
    printf -v images 'images:\n  - name: ghcr.io/regcred/regcred-operator\n    newName: %s\n    newTag: %s\n' \
      "${image%:*}" "${image##*:}"
  cat >"$dir/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $rel
${images}patches:
  # hostNetwork is outside the "restricted" Pod Security level the namespace enforces.
  - target: {kind: Namespace, name: regcred-system}
    patch: |-
      - op: add
        path: /metadata/labels/pod-security.kubernetes.io~1enforce
        value: privileged
  - target: {kind: Deployment, name: regcred-operator}
    patch: |-
      - op: add
        path: /spec/template/spec/hostNetwork
        value: true
      - op: add
        path: /spec/template/spec/imagePullSecrets
        value: [{name: regcred-operator-pull}]
      - op: add
        path: /spec/template/spec/containers/0/env/-
        value: {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
      - op: add
        path: /spec/template/spec/containers/0/env/-
        value: {name: REGCRED_HTTP_ADDR, value: "\$(POD_IP):8080"}
      - op: add
        path: /spec/template/spec/containers/0/env/-
        value: {name: KUBERNETES_SERVICE_HOST, value: "$REGCRED_NODE_APISERVER_HOST"}
      - op: add
        path: /spec/template/spec/containers/0/env/-
        value: {name: KUBERNETES_SERVICE_PORT, value: "$REGCRED_NODE_APISERVER_PORT"}
EOF
}

# helm_node_overlay WORK KUSTOMIZE [IMAGE]: the same overlay for Helm, as a post-renderer plugin
# named test-node-overlay (Helm 4 runs plugins from HELM_PLUGINS, exported here), in WORK.
helm_node_overlay() {
  local work="$1" kustomize="$2" image="${3:-}" plugins="$1/helm-plugins"
  mkdir -p "$plugins/test-node-overlay" "$work/overlay-helm"
  cat >"$plugins/test-node-overlay/plugin.yaml" <<EOF
apiVersion: v1
type: postrenderer/v1
name: test-node-overlay
version: 0.1.0
runtime: subprocess
runtimeConfig:
  platformCommand:
    - command: $work/post-render.sh
EOF
  cat >"$work/post-render.sh" <<EOF
#!/usr/bin/env bash
set -euo pipefail
cat >"$work/overlay-helm/rendered.yaml"
export REGCRED_NODE_APISERVER_HOST=$REGCRED_NODE_APISERVER_HOST REGCRED_NODE_APISERVER_PORT=$REGCRED_NODE_APISERVER_PORT
. "$NODE_OVERLAY_SCRIPT"
node_overlay "$work/overlay-helm" rendered.yaml "$image"
exec "$kustomize" build "$work/overlay-helm"
EOF
  chmod +x "$work/post-render.sh"
  export HELM_PLUGINS="$plugins"
}

# node_operator_namespace NAMESPACE: the operator's namespace with the pull secret the overlay
# gives its Pods (regcred-operator-pull: the node's registry wants credentials for every image).
# Needs a `kubectl` function and REGCRED_NODE_DOCKERCONFIGJSON.
node_operator_namespace() {
  kubectl create namespace "$1" >/dev/null
  kubectl -n "$1" create secret generic regcred-operator-pull --type=kubernetes.io/dockerconfigjson \
    --from-file=.dockerconfigjson="$REGCRED_NODE_DOCKERCONFIGJSON" >/dev/null
}
