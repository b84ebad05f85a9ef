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

# node_overlay DIR RESOURCE IMAGE: writes DIR/kustomization.yaml, the overlay over RESOURCE (a
# path relative to DIR: kustomize takes no absolute paths) with the operator's image IMAGE.
node_overlay() {
  local dir="$1" rel="$2" image="$3"
  cat >"$dir/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $rel
images:
  - name: ghcr.io/regcred/regcred-operator
    newName: ${image%:*}
    newTag: ${image##*:}
patches:
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
