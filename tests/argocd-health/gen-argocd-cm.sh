#!/usr/bin/env bash
# Writes config/argocd/argocd-cm.yaml from config/argocd/health.lua (the one source of the
# health check), or with --check exits 1 when the ConfigMap's copy differs from it.
#
# Usage: tests/argocd-health/gen-argocd-cm.sh [--check]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
lua="$root/config/argocd/health.lua"
out="$root/config/argocd/argocd-cm.yaml"
render() {
  cat <<'HEAD'
# Argo CD health check for RegistryCredentials, generated from health.lua beside this file by
# tests/argocd-health/gen-argocd-cm.sh (edit health.lua, then run it). Merge it into the
# argocd-cm ConfigMap of your Argo CD installation, e.g. as a kustomize patch of Argo CD's
# install manifests, or:
#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file config/argocd/argocd-cm.yaml
# Argo CD reads the key resource.customizations.health.<group>_<kind>.
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
  resource.customizations.health.regcred.dev_RegistryCredential: |
HEAD
  sed -e 's/^\(.\)/    \1/' "$lua"
}
if [[ "${1:-}" == "--check" ]]; then
  if ! diff -u "$out" <(render) >&2; then
    echo "config/argocd/argocd-cm.yaml is not generated from health.lua: run tests/argocd-health/gen-argocd-cm.sh" >&2
    exit 1
  fi
  exit 0
fi
render >"$out"
echo "wrote $out" >&2
