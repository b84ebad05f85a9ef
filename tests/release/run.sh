#!/usr/bin/env bash
# The release path end to end, against the test node's authenticated registry instead of ghcr.io:
#   1. scripts/release.sh publishes this tree's version for linux/amd64 and linux/arm64 (an image
#      index, an SBOM referrer per image, signatures, OCI chart, release files), signing with a
#      key pair made for the test;
#   2. the release files hold together (SHA256SUMS, the install manifests name the signed digest,
#      the CRDs are the repository's) and the SBOM pulled back from the registry is the one written;
#   3. as the README tells a user: the signature is verified first (the image and the chart), then
#      `helm install ... oci://REGISTRY/charts/regcred-operator --version VERSION`; the operator's
#      Pods run the released image by digest and a Pod pulls through the copy the operator made;
#   4. the same check refuses what it must: an unsigned image, the release tag moved to another
#      image, a signature by another key.
# The README's commands differ only where the test node does: --plain-http (a loopback registry),
# `--key` for the keyless identity of the hosted release workflow, and the node overlay as a Helm
# post-renderer (tests/node/overlay.sh).
#
# Usage: tests/release/run.sh        (root; starts and stops its own cluster and two nodes)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

say() { printf '[release-test %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

tools_bin="$(bash tests/cluster/build-tools.sh)"
release_tools="$(bash tests/cluster/build-release-tools.sh)"
kubectl() { "$tools_bin/kubectl" "$@"; }
helm() { "$tools_bin/helm" "$@"; }
cosign() { "$release_tools/cosign" "$@"; }
oras() { "$release_tools/oras" "$@"; }

work="$(mktemp -d "${TMPDIR:-/tmp}/regcred-release-test.XXXXXX")"
export KUBECACHEDIR="$work/kubectl-cache"
export REGCRED_CP_WATCH_PID=$$
cleanup() {
  bash tests/cluster/node-down.sh "$work/node" >/dev/null 2>&1 || true
  bash tests/cluster/down.sh "$work/cp" >/dev/null 2>&1 || true
  rm -rf -- "$work"
}
trap cleanup EXIT

eval "$(bash tests/cluster/up.sh "$work/cp")"
eval "$(REGCRED_NODE_COUNT=2 bash tests/cluster/node-up.sh "$work/node" "$work/cp")"
# shellcheck source=/dev/null
. "$REGCRED_NODE_ENV"

# --- 1. the release ------------------------------------------------------------------------------
version="$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)"
registry="$REGCRED_REGISTRY/regcred"
export COSIGN_PASSWORD="release-test-key"
(cd "$work" && cosign generate-key-pair >/dev/null 2>&1 && mkdir other && cd other &&
  cosign generate-key-pair >/dev/null 2>&1)
t0=$SECONDS
# Both platforms, as the release workflow publishes them (arm64 cross-compiled; only amd64 runs here).
platforms=(linux/amd64 linux/arm64)
released="$(COSIGN_KEY="$work/cosign.key" bash scripts/release.sh --plain-http --out "$work/dist" \
  --platforms "$(IFS=,; echo "${platforms[*]}")" "$version" "$registry")"
image="$registry/regcred-operator"
digest="${released##*@}"
[[ "$released" == "$image@sha256:"* ]] || die "release.sh printed '$released', not $image@DIGEST"
say "released $version as $released in $((SECONDS - t0))s"

# The tools below read the registry's credentials from a docker config, as a user's `docker
# login` / `helm registry login` leave them.
export DOCKER_CONFIG="$work/docker"
mkdir -p "$DOCKER_CONFIG"
printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$REGCRED_REGISTRY" \
  "$(printf '%s:%s' "$REGCRED_REGISTRY_USER" "$REGCRED_REGISTRY_PASSWORD" | base64 -w0)" >"$DOCKER_CONFIG/config.json"
export HELM_REGISTRY_CONFIG="$DOCKER_CONFIG/config.json"

# --- 2. the release files and the SBOM -------------------------------------------------------------
(cd "$work/dist" && sha256sum --quiet --check SHA256SUMS) || die "SHA256SUMS does not match the release files"
for f in crds.yaml install.yaml install-admission-policy-v1beta1.yaml install-without-admission-policy.yaml \
  "regcred-operator-$version.tgz" RELEASE_NOTES.md; do
  [[ -s "$work/dist/$f" ]] || die "the release has no $f"
done
cmp -s "$work/dist/crds.yaml" crds/registrycredentials.regcred.dev.yaml || die "crds.yaml is not the repository's CRD"
for f in "$work"/dist/install*.yaml; do
  [[ "$(grep -c "image: $image@$digest" "$f")" == 1 ]] || die "$(basename "$f") does not run $image@$digest"
done
# The index lists one image per platform; each has one CycloneDX referrer, the file of the release.
index="$(oras manifest fetch --plain-http "$image@$digest")"
for platform in "${platforms[@]}"; do
  arch="${platform#linux/}"
  platform_digest="$(python3 -c '
import json, sys
index = json.loads(sys.argv[1])
assert index["mediaType"] == "application/vnd.oci.image.index.v1+json", index["mediaType"]
found = [m["digest"] for m in index["manifests"] if m["platform"] == {"os": "linux", "architecture": sys.argv[2]}]
print(found[0] if len(found) == 1 else "")' "$index" "$arch")"
  [[ "$platform_digest" == sha256:* ]] || die "the index $image@$digest has no single $platform image"
  oras manifest fetch-config --plain-http "$image@$platform_digest" |
    python3 -c 'import json, sys; assert json.load(sys.stdin)["architecture"] == sys.argv[1]' "$arch" ||
    die "the $platform image's config names another architecture"
  sbom="regcred-operator-$version-linux-$arch.cdx.json"
  sbom_manifest="$(oras discover --plain-http --artifact-type application/vnd.cyclonedx+json \
    --format json "$image@$platform_digest" | python3 -c '
import json, sys
found = json.load(sys.stdin).get("referrers") or []
print(found[0]["digest"] if len(found) == 1 else "")')"
  [[ "$sbom_manifest" == sha256:* ]] || die "no single CycloneDX referrer on the $platform image"
  oras pull --plain-http -o "$work/sbom-$arch" "$image@$sbom_manifest" >/dev/null
  cmp -s "$work/sbom-$arch/$sbom" "$work/dist/$sbom" ||
    die "the $platform SBOM in the registry is not the one in the release files"
  python3 - "$work/dist/$sbom" Cargo.lock "$version" <<'PYEOF' || die "the $platform SBOM does not describe the binary"
import json, sys, tomllib
sbom = json.load(open(sys.argv[1]))
lock = {(p["name"], p["version"]) for p in tomllib.load(open(sys.argv[2], "rb"))["package"]}
components = {(c["name"], c["version"]) for c in sbom["components"]}
top = sbom["metadata"]["component"]
assert (top["name"], top["version"]) == ("regcred-operator", sys.argv[3]), top
for crate in ("kube-runtime", "k8s-openapi", "tokio", "rustls"):
    assert any(name == crate for name, _ in components), "%s is not in the SBOM" % crate
stray = components - lock
assert not stray, "components not in Cargo.lock: %s" % sorted(stray)[:5]
# Dev-dependencies are not in the image.
assert not any(name == "proptest" for name, _ in components), "dev-dependencies in the SBOM"
print("SBOM %s: %d components, all in Cargo.lock" % (sys.argv[1].rsplit("/", 1)[-1], len(components)), file=sys.stderr)
PYEOF
done

# --- 3. as a user: verify, then install from the registry --------------------------------------------
verify() { cosign verify --key "$1" --insecure-ignore-tlog --allow-http-registry "$2" >/dev/null 2>"$work/verify.log"; }
verify "$work/cosign.pub" "$image:$version" || { cat "$work/verify.log" >&2; die "the released image's signature"; }
verify "$work/cosign.pub" "$registry/charts/regcred-operator:$version" ||
  { cat "$work/verify.log" >&2; die "the released chart's signature"; }
say "signatures of the image and the chart verified"

# shellcheck source=SCRIPTDIR/../node/overlay.sh
. tests/node/overlay.sh
# shellcheck source=SCRIPTDIR/../node/pull.sh
. tests/node/pull.sh
ns=regcred-system
node_operator_namespace "$ns"
helm_node_overlay "$work" "$tools_bin/kustomize"
t0=$SECONDS
helm install regcred-operator "oci://$registry/charts/regcred-operator" --version "$version" \
  --namespace "$ns" --plain-http --post-renderer test-node-overlay >/dev/null
kubectl -n "$ns" rollout status deployment/regcred-operator --timeout=120s >&2 ||
  { kubectl -n "$ns" get pods -o wide >&2; kubectl -n "$ns" get events >&2; die "rollout of the released chart"; }
say "helm install from oci://$registry/charts: both replicas Ready in $((SECONDS - t0))s"
pods=(-n "$ns" get pods -l app.kubernetes.io/name=regcred-operator)
[[ "$(kubectl "${pods[@]}" -o 'jsonpath={range .items[*]}{.spec.containers[0].image}{"\n"}{end}' | sort -u)" == "$image@$digest" ]] ||
  die "the operator's Pods do not run $image@$digest"
for id in $(kubectl "${pods[@]}" -o 'jsonpath={.items[*].status.containerStatuses[0].imageID}'); do
  [[ "$id" == *"@$digest" ]] || die "a replica runs $id, not the signed $digest"
done
kubectl -n "$ns" create secret generic e2e-pull --type=kubernetes.io/dockerconfigjson \
  --from-file=.dockerconfigjson="$REGCRED_NODE_DOCKERCONFIGJSON" >/dev/null
kubectl create namespace release-pull >/dev/null
kubectl label namespace release-pull regcred-release=yes >/dev/null
apply_node_credential release "$ns" regcred-release
# 1/1: the copy and the ServiceAccount entry are in release-pull (Ready alone could be 0/0).
kubectl wait registrycredential/release --for=jsonpath='{.status.synced}'=1/1 --timeout=60s >/dev/null ||
  die "the released operator did not sync the credential's namespace"
pod_pulls release-pull || die "no pull through the released operator's copy"
say "the released operator's copy let a Pod without pull secrets pull the private image"

# --- 4. what the check refuses ------------------------------------------------------------------------
# refused KEY REF WHAT: cosign verify fails, and for want of a matching signature (not, say, a
# registry error).
refused() {
  if verify "$1" "$2"; then die "cosign verify accepted $2 ($3)"; fi
  local why
  why="$(grep -m1 -o 'no signatures found\|no matching signatures\|accepted signatures do not match threshold' "$work/verify.log")" ||
    { cat "$work/verify.log" >&2; die "cosign verify refused $2 ($3), but not for its signatures"; }
  say "refused, $3: $why"
}
refused "$work/other/cosign.pub" "$image:$version" "the release checked against another key"
oras copy --from-plain-http --to-plain-http "$REGCRED_NODE_IMAGE" "$image:unsigned" >/dev/null
refused "$work/cosign.pub" "$image:unsigned" "an image never signed"
# Someone with push access but not the release key: their own image, signed with their key, under
# the release's tag.
oras copy --from-plain-http --to-plain-http "$REGCRED_NODE_IMAGE" "$image:forged" >/dev/null
cosign sign --yes --key "$work/other/cosign.key" --tlog-upload=false --use-signing-config=false \
  --allow-http-registry "$image@$(oras resolve --plain-http "$image:forged")" >/dev/null 2>&1 ||
  die "signing the forged image with the other key"
oras tag --plain-http "$image:forged" "$version" >/dev/null
verify "$work/other/cosign.pub" "$image:$version" || die "the forged image does not verify with its own key"
refused "$work/cosign.pub" "$image:$version" "the release tag moved to an image signed by another key"
say "PASS"
