#!/usr/bin/env bash
# Renders every example with kustomize and has a real API server validate the result against
# the CRDs' schemas: the Argo CD Applications, Flux Kustomizations and GitRepository, the
# ExternalSecret and SealedSecret against the tools' own CRDs (tool-crds.sh, from their Go
# modules), the RegistryCredential against ours, the rest against the built-in types. Objects
# go through server-side apply with strict field validation as a dry run, in the order the
# tools apply them (CRDs first, as Argo CD's sync waves and Flux's dependsOn order them).
#
# What persists on the cluster: the CRDs (ours and the tools'), and namespaces the dry runs
# need (regcred-system, argocd, flux-system, payments: created without labels, so no
# RegistryCredential selects them by label; deleted at the end if this script created them).
# Prints one line per check and a closing "N passed, N failed"; exit 1 on any failure.
#
# Usage: KUBECONFIG=... examples/gitops/validate.sh
# Env:   REGCRED_TOOLS_BIN  directory with kubectl and kustomize (default: tests/cluster/build-tools.sh)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
: "${KUBECONFIG:?KUBECONFIG must point at a test control plane}"
tools="${REGCRED_TOOLS_BIN:-$(bash "$root/tests/cluster/build-tools.sh")}"
kubectl() { "$tools/kubectl" "$@"; }
kustomize() { "$tools/kustomize" "$@"; }
manager=regcred-gitops-example
passed=0 failed=0
check() { # NAME COMMAND...
  local name="$1" out
  shift
  if out="$("$@" 2>&1)"; then
    passed=$((passed + 1)); printf 'ok    %s\n' "$name"
  else
    failed=$((failed + 1)); printf 'FAIL  %s\n' "$name"; printf '      %s\n' "${out//$'\n'/$'\n'      }"
  fi
}
dry_apply() { # DIR: render and dry-run server-side apply with strict field validation
  kustomize build "$here/$1" |
    kubectl apply --server-side --dry-run=server --validate=strict --field-manager="$manager" -f -
}
crds_established() { # FILE...: apply CRDs for real and wait until the API serves them
  local f names
  for f in "$@"; do
    kubectl apply --server-side --force-conflicts --field-manager="$manager" -f "$f" >/dev/null
  done
  names="$(cat "$@" | kubectl apply --server-side --dry-run=server --field-manager="$manager" -o name -f -)"
  # shellcheck disable=SC2086
  kubectl wait --for=condition=Established --timeout=60s $names >/dev/null
}

crd_dir="$(bash "$here/tool-crds.sh")"
check "tool CRDs from Go modules established ($(basename "$crd_dir"))" crds_established "$crd_dir"/*.yaml
check "RegistryCredential CRD established" crds_established "$root/crds/registrycredentials.regcred.dev.yaml"

created=()
for ns in regcred-system argocd flux-system payments; do
  # One left terminating by an earlier run refuses new objects: let it go first.
  if [[ "$(kubectl get namespace "$ns" -o 'jsonpath={.status.phase}' 2>/dev/null)" == Terminating ]]; then
    kubectl wait --for=delete --timeout=60s "namespace/$ns" >/dev/null
  fi
  if ! kubectl get namespace "$ns" >/dev/null 2>&1; then
    kubectl create namespace "$ns" >/dev/null
    created+=("$ns")
  fi
done
cleanup() { ((${#created[@]} == 0)) || kubectl delete namespace "${created[@]}" --timeout=60s >/dev/null 2>&1 || true; }
trap cleanup EXIT

# Argo CD: the Applications against argoproj.io's Application CRD.
# shellcheck source=SCRIPTDIR/tool-versions.env
. "$here/tool-versions.env"
check "argocd/: Applications valid against Argo CD $ARGOCD_VERSION's CRD" dry_apply argocd
# Flux: the Kustomizations (dependsOn, wait, spec.ignore) and the GitRepository.
check "flux/: Kustomizations and GitRepository valid against Flux's CRDs" dry_apply flux
# The platform Application's content, wave by wave; Flux applies the same directories.
check "platform/operator: the install (wave -2)" dry_apply platform/operator
check "platform/source: ExternalSecret valid against ESO's CRD (wave -1)" dry_apply platform/source
check "platform/source-sealed: SealedSecret valid against sealed-secrets' CRD" dry_apply platform/source-sealed
check "platform/credential: RegistryCredential valid against its CRD (wave 0)" dry_apply platform/credential
check "platform: the whole Application at once (CRDs present)" dry_apply platform
check "teams/payments: namespace, ServiceAccount, Deployment" dry_apply teams/payments

# Every object the Argo CD platform Application syncs carries its wave; the RegistryCredential
# and the ExternalSecret may be dry-run before their CRDs exist.
waves() {
  kustomize build "$here/platform" | python3 -c '
import sys
docs, cur = [], {}
kind = name = wave = skip = None
for doc in sys.stdin.read().split("\n---\n"):
    kind = next((l.split(": ",1)[1] for l in doc.splitlines() if l.startswith("kind: ")), "?")
    wave = next((l.split(": ",1)[1].strip("\"") for l in doc.splitlines() if "argocd.argoproj.io/sync-wave:" in l), None)
    skip = "SkipDryRunOnMissingResource=true" in doc
    if wave is None:
        sys.exit("no sync wave on a " + kind)
    if kind in ("RegistryCredential", "ExternalSecret") and not skip:
        sys.exit(kind + " lacks SkipDryRunOnMissingResource=true")
    want = {"RegistryCredential": "0", "ExternalSecret": "-1"}.get(kind, "-2")
    if wave != want:
        sys.exit("%s in wave %s, want %s" % (kind, wave, want))
'
}
check "platform: sync waves -2 install, -1 source, 0 credential; SkipDryRunOnMissingResource" waves

echo "$passed passed, $failed failed"
((failed == 0))
