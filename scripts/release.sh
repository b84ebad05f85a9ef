#!/usr/bin/env bash
# Publish a release of regcred-operator to an OCI registry:
#   REGISTRY/regcred-operator:VERSION        the image (scripts/build-image.sh: static, non-root),
#                                            an index of one per platform with --platforms
#     + per platform its SBOM (CycloneDX JSON from Cargo.lock) attached as an OCI referrer
#     + a cosign signature
#   REGISTRY/charts/regcred-operator:VERSION the Helm chart (Helm 4, OCI), signed too; its values
#                                            name the image by REGISTRY and digest
# and the release files in OUT (default dist/VERSION): the chart archive, the CRDs, the rendered
# install manifests (config/default and each overlay, the image by digest), the SBOMs, the release notes (the
# CHANGELOG.md section of VERSION) and SHA256SUMS over all of them.
#
# Usage: scripts/release.sh [--out DIR] [--plain-http] [--platforms P,...] [--binary PATH] VERSION REGISTRY
#   VERSION       e.g. 0.2.0 (no leading v); must be the version of Cargo.toml, Chart.yaml
#                 (version and appVersion) and have a CHANGELOG.md section
#   REGISTRY      registry and path the artifacts go under, e.g. ghcr.io/regcred
#   --plain-http  HTTP instead of HTTPS (loopback test registries only)
#   --platforms   linux/amd64,linux/arm64 (default: the host's): one image each, cross-compiled
#                 where not the host's (scripts/build-image.sh --platform), under one image index
#   --binary PATH the static operator binary of the one platform (default: built)
# Env:
#   REGCRED_REGISTRY_USER, REGCRED_REGISTRY_PASSWORD  registry credentials (otherwise the
#                 docker config of the environment, e.g. after `docker login`)
#   COSIGN_KEY    a cosign private key file (its password in COSIGN_PASSWORD): signs with that
#                 key, no transparency log. Unset: keyless signing (Fulcio, Rekor) with the
#                 OIDC identity of the environment, as the hosted release workflow does.
# The tools (cosign, oras, cargo-cyclonedx, helm, kustomize) are built from their modules and
# cached by tests/cluster/build-release-tools.sh and build-tools.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() { sed -n '13p' "$0" | sed 's/^# //' >&2; exit 2; }
say() { printf '[release] %s\n' "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

out="" plain_http="" binary="" platforms=()
while (($#)); do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --plain-http) plain_http=1; shift ;;
    --binary) binary="$2"; shift 2 ;;
    --platforms) IFS=, read -r -a platforms <<<"$2"; shift 2 ;;
    -h | --help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) usage ;;
    *) break ;;
  esac
done
(($# == 2)) || usage
version="$1" registry="${2%/}"
out="${out:-dist/$version}"
((${#platforms[@]})) || platforms=("linux/$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')")
[[ -z "$binary" || ${#platforms[@]} == 1 ]] || die "--binary builds one platform only, not ${platforms[*]}"

# --- one version everywhere ----------------------------------------------------------------------
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] ||
  die "VERSION '$version' is not a semantic version like 0.2.0 (no leading v)"
cargo_version="$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)"
chart_version="$(awk '/^version:/ { print $2; exit }' charts/regcred-operator/Chart.yaml)"
app_version="$(awk -F'"' '/^appVersion:/ { print $2; exit }' charts/regcred-operator/Chart.yaml)"
for pair in "Cargo.toml version:$cargo_version" "Chart.yaml version:$chart_version" \
  "Chart.yaml appVersion:$app_version"; do
  [[ "${pair##*:}" == "$version" ]] || die "$version is not the ${pair%:*} (${pair##*:})"
done
notes="$(awk -v v="$version" '
  $0 ~ "^## \\[" v "\\]" { on = 1; next }
  on && /^## / { exit }
  on { print }' CHANGELOG.md)"
[[ -n "${notes//[[:space:]]/}" ]] || die "CHANGELOG.md has no section '## [$version]'"

tools="$(bash tests/cluster/build-tools.sh)"
release_tools="$(bash tests/cluster/build-release-tools.sh)"
cosign() { "$release_tools/cosign" "$@"; }
oras() { "$release_tools/oras" "$@"; }
helm() { "$tools/helm" "$@"; }

work="$(mktemp -d "${TMPDIR:-/tmp}/regcred-release.XXXXXX")"
trap 'rm -rf -- "$work"' EXIT
rm -rf -- "$out"
mkdir -p "$out"

# --- registry access: one docker-format config for every tool, never a password in argv -----------
export DOCKER_CONFIG="$work/docker"
mkdir -p "$DOCKER_CONFIG"
if [[ -n "${REGCRED_REGISTRY_USER:-}" ]]; then
  python3 - "$DOCKER_CONFIG/config.json" "${registry%%/*}" <<'PYEOF'
import base64, json, os, sys
auth = base64.b64encode(
    ("%s:%s" % (os.environ["REGCRED_REGISTRY_USER"], os.environ["REGCRED_REGISTRY_PASSWORD"])).encode()
).decode()
with open(os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
    json.dump({"auths": {sys.argv[2]: {"auth": auth}}}, f)
PYEOF
elif [[ -f "${HOME}/.docker/config.json" ]]; then
  cp "${HOME}/.docker/config.json" "$DOCKER_CONFIG/config.json"
fi
export HELM_REGISTRY_CONFIG="$DOCKER_CONFIG/config.json"
http_flags=() cosign_http=()
if [[ -n "$plain_http" ]]; then
  http_flags=(--plain-http)
  cosign_http=(--allow-http-registry)
fi

# sign REF@DIGEST [RECURSIVE]: with COSIGN_KEY and no transparency log, or keyless; RECURSIVE=1
# signs an index and each manifest it lists.
sign() {
  local signing=(--yes)
  [[ "${2:-0}" == 1 ]] && signing+=(--recursive)
  if [[ -n "${COSIGN_KEY:-}" ]]; then
    signing+=(--key "$COSIGN_KEY" --tlog-upload=false --use-signing-config=false)
  fi
  cosign sign "${signing[@]}" "${cosign_http[@]}" "$1" >&2 2>"$work/cosign.log" ||
    { cat "$work/cosign.log" >&2; die "cosign sign $1"; }
}

# --- images: one per platform, under one index when there are several -----------------------------
image="$registry/regcred-operator"
ocimage="$(bash tests/cluster/build-node.sh --image-tool)/ocimage"
declare -A CPU_OF=([amd64]=x86_64 [arm64]=aarch64)
host_cpu="$(uname -m)"
layouts=()
for platform in "${platforms[@]}"; do
  t0=$SECONDS
  REGCRED_OPERATOR_BINARY="$binary" bash scripts/build-image.sh --platform "$platform" \
    --out "$work/image-${platform#linux/}" >/dev/null
  layouts+=("$work/image-${platform#linux/}")
  say "image for $platform built in $((SECONDS - t0))s"
done
top="${layouts[0]}"
if ((${#layouts[@]} > 1)); then
  top="$work/image"
  "$ocimage" index -o "$top" -ref "$image:$version" "${layouts[@]}" >/dev/null
fi
push_auth=()
[[ -z "${REGCRED_REGISTRY_USER:-}" ]] ||
  push_auth=(-username "$REGCRED_REGISTRY_USER" -password-env REGCRED_REGISTRY_PASSWORD)
# By digest: the tag VERSION names it only once everything of the release is in place (below).
digest="$("$ocimage" digest -layout "$top")"
[[ "$digest" == sha256:* ]] || die "ocimage digest printed '$digest'"
"$ocimage" push -layout "$top" -ref "$image@$digest" "${push_auth[@]}" >/dev/null
say "pushed $image@$digest (${platforms[*]})"

# --- SBOMs: per platform, the crates compiled into its binary (no build or dev dependencies), each
# a referrer of its platform's image -------------------------------------------------------------------
for platform in "${platforms[@]}"; do
  arch="${platform#linux/}" cpu="${CPU_OF[${platform#linux/}]}"
  platform_digest="$("$ocimage" digest -layout "$work/image-$arch")"
  bytes="$(oras manifest fetch "${http_flags[@]}" "$image@$platform_digest" | python3 -c '
import json, sys
m = json.load(sys.stdin)
print(m["config"]["size"] + sum(layer["size"] for layer in m["layers"]))')"
  target="$cpu-unknown-linux-musl"
  [[ "$cpu" != "$host_cpu" ]] || target="$(rustc -vV | awk '/^host:/ { print $2 }')"
  sbom="$out/regcred-operator-$version-linux-$arch.cdx.json"
  # It writes one file beside each Cargo.toml of the workspace: the package's is kept, the rest go.
  sbom_name="regcred-operator-sbom-$$"
  "$release_tools/cargo-cyclonedx" cyclonedx --format json --spec-version 1.5 --target "$target" \
    --no-build-deps --override-filename "$sbom_name" -q >&2
  mv -f "$sbom_name.json" "$sbom"
  find . -path ./target -prune -o -name "$sbom_name.json" -exec rm -f {} +
  # (oras takes relative paths only; the file name becomes the layer's title.)
  (cd "$out" && oras attach "${http_flags[@]}" --artifact-type application/vnd.cyclonedx+json \
    "$image@$platform_digest" "$(basename "$sbom"):application/vnd.cyclonedx+json" >/dev/null)
  say "$platform: $image@$platform_digest, $bytes bytes compressed; SBOM of $(python3 -c '
import json, sys
print(len(json.load(open(sys.argv[1]))["components"]))' "$sbom") components attached"
done
# An index is signed with each of its images (--recursive).
sign "$image@$digest" $((${#platforms[@]} > 1))
say "image signed"

# --- chart: the image by registry and digest -------------------------------------------------------
cp -r charts/regcred-operator "$work/chart"
python3 - "$work/chart/values.yaml" "$image" "$digest" <<'PYEOF'
import re, sys
path, repository, digest = sys.argv[1:]
text = open(path).read()
text, n = re.subn(r"(?m)^  repository: .*$", "  repository: " + repository, text, count=1)
text, m = re.subn(r'(?m)^  digest: .*$', '  digest: "%s"' % digest, text, count=1)
if (n, m) != (1, 1):
    sys.exit("values.yaml: image.repository or image.digest not found")
open(path, "w").write(text)
PYEOF
helm lint --strict "$work/chart" >/dev/null
helm package "$work/chart" --destination "$out" >/dev/null
chart="$out/regcred-operator-$version.tgz"
[[ -f "$chart" ]] || die "helm package wrote no $chart"
pushed="$(helm push "$chart" "oci://$registry/charts" "${http_flags[@]}" 2>&1)" ||
  { printf '%s\n' "$pushed" >&2; die "helm push $chart"; }
chart_ref="$(awk '/^Pushed:/ { print $2 }' <<<"$pushed")"
chart_digest="$(awk '/^Digest:/ { print $2 }' <<<"$pushed")"
[[ -n "$chart_ref" && "$chart_digest" == sha256:* ]] || die "helm push $chart printed no digest: $pushed"
sign "$registry/charts/regcred-operator@$chart_digest"
say "chart $chart_ref ($chart_digest) pushed and signed"

# --- release files -------------------------------------------------------------------------------
cp crds/registrycredentials.regcred.dev.yaml "$out/crds.yaml"
# install.yaml: config/default (the admission policy's v1 API, Kubernetes 1.36+); one file per
# overlay beside it (install-admission-policy-v1beta1.yaml for 1.34 / 1.35, ...). Each with the
# image by digest.
# (config/crd takes the CRD from ../../crds: both are copied.)
cp -r config crds "$work/"
for dir in config/default config/overlays/*/; do
  base="${dir#config/}" && base="${base%/}"
  [[ -f "config/$base/kustomization.yaml" ]] || continue
  name="install${base#default}"
  name="${name/overlays\//-}"
  mkdir -p "$work/config/release-$name"
  cat >"$work/config/release-$name/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../$base]
images:
  - {name: ghcr.io/regcred/regcred-operator, newName: $image, digest: $digest}
EOF
  "$tools/kustomize" build "$work/config/release-$name" >"$out/$name.yaml"
  grep -qF "image: $image@$digest" "$out/$name.yaml" || die "$name.yaml does not name $image@$digest"
done
printf '%s\n' "$notes" >"$out/RELEASE_NOTES.md"
printf '%s@%s\n' "$image" "$digest" >"$out/image"
(cd "$out" && sha256sum -- * >SHA256SUMS)

# The tag last: a release that failed half-way leaves no VERSION tag of an unsigned image.
oras tag "${http_flags[@]}" "$image@$digest" "$version" >/dev/null
say "tagged $image:$version"

say "release $version:"
(cd "$out" && for f in *; do printf '  %-40s %8s bytes\n' "$f" "$(stat -c %s "$f")"; done) >&2
printf '%s@%s\n' "$image" "$digest"
