#!/usr/bin/env bash
# Build the operator's container image from this repo's sources without a container engine:
# the layout the Dockerfile describes (a static binary at /usr/local/bin/regcred-operator, user
# 65532:65532 "nonroot", CA certificates, nothing else; works with a read-only root), written
# as an OCI image layout and optionally pushed to a registry.
#
# Usage: scripts/build-image.sh [--platform linux/ARCH] [--binary PATH] [--out DIR] [--push REF] [--archive FILE]
#   --platform P    linux/amd64 or linux/arm64 (default: the host's). Another architecture than the
#                   host's is cross-compiled for its musl target with the GNU cross compiler
#                   (aarch64-linux-gnu-gcc / x86_64-linux-gnu-gcc: ring builds C, and links with it)
#   --binary PATH   use this static binary instead of building one (default: $REGCRED_OPERATOR_BINARY
#                   if set). The cargo build uses a target dir of its own: target/image-build,
#                   or $REGCRED_IMAGE_TARGET_DIR.
#   --out DIR       OCI image layout to write (default target/image/regcred-operator)
#   --push REF      push to REF (e.g. "$REGCRED_REGISTRY/regcred/regcred-operator:dev"), plain
#                   HTTP (loopback test registries); credentials from REGCRED_REGISTRY_USER and
#                   REGCRED_REGISTRY_PASSWORD when set (the names node-up.sh's env uses)
#   --archive FILE  also write a tarball that `ctr -n k8s.io images import` reads
# Prints the image's manifest digest (and the pushed reference) on stdout.
#
# The binary: `cargo build --release --locked` for x86_64-unknown-linux-musl when that target is
# installed (as the Dockerfile builds), else for the host's glibc target linked statically
# (-C target-feature=+crt-static). Either runs with no libc in the image. With the glibc
# build, host names are resolved without NSS modules (none in the image): an API server given
# by IP (KUBERNETES_SERVICE_HOST, as in-cluster) is unaffected.
# The image tool (ocimage) is built from tests/node/ocimage (Go module proxy) and cached.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

binary="${REGCRED_OPERATOR_BINARY:-}"
platform=""
out="target/image/regcred-operator"
push=""
archive=""
while (($#)); do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --platform) platform="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --push) push="$2"; shift 2 ;;
    --archive) archive="$2"; shift 2 ;;
    -h | --help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: scripts/build-image.sh [--platform linux/ARCH] [--binary PATH] [--out DIR] [--push REF] [--archive FILE]" >&2; exit 2 ;;
  esac
done
say() { printf '[build-image] %s\n' "$*" >&2; }

version="$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)"
revision="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"

host="$(rustc -vV | awk '/^host:/ { print $2 }')"
declare -A GOARCH_OF=([x86_64]=amd64 [aarch64]=arm64) CPU_OF=([amd64]=x86_64 [arm64]=aarch64)
arch="${platform#linux/}"
arch="${arch:-${GOARCH_OF[${host%%-*}]:-}}"
cpu="${CPU_OF[$arch]:-}"
[[ -n "$cpu" && "${platform:-linux/$arch}" == "linux/$arch" ]] ||
  { say "FAILED: platform '${platform:-host ${host%%-*}}' is not linux/amd64 or linux/arm64"; exit 2; }
if [[ -z "$binary" && "$cpu" != "${host%%-*}" ]]; then
  # Cross: the musl target (static by default) with the GNU cross compiler for ring's C and the link.
  target="$cpu-unknown-linux-musl"
  cross="$cpu-linux-gnu-gcc"
  command -v "$cross" >/dev/null || { say "FAILED: $cross not found (Debian: gcc-${cpu//_/-}-linux-gnu)"; exit 1; }
  rustup target list --installed 2>/dev/null | grep -qxF "$target" ||
    { say "FAILED: the Rust target $target is not installed (rustup target add $target)"; exit 1; }
  upper="${target^^}"
  export "CARGO_TARGET_${upper//-/_}_LINKER=$cross" "CC_${target//-/_}=$cross"
  flags=""
elif [[ -z "$binary" ]]; then
  musl="${host%%-*}-unknown-linux-musl"
  if rustup target list --installed 2>/dev/null | grep -qxF "$musl"; then
    target="$musl"
    flags=""
  else
    target="$host"
    flags="-C target-feature=+crt-static"
  fi
fi
if [[ -z "$binary" && "$cpu" == aarch64 ]]; then
  # jemalloc (the operator's allocator) is built for 64 KiB pages: it then runs on arm64 kernels
  # of 4, 16 and 64 KiB pages alike, where one built for 4 KiB fails on the larger.
  export JEMALLOC_SYS_WITH_LG_PAGE=16
fi
if [[ -z "$binary" ]]; then
  # A target dir of its own: these flags share no artifacts with the usual build, and cargo's
  # lock on target/ would otherwise hold up every other cargo command for the whole build.
  target_dir="${REGCRED_IMAGE_TARGET_DIR:-target/image-build}"
  say "cargo build --release --locked --bin regcred-operator --target $target --target-dir $target_dir ${flags:+(RUSTFLAGS=$flags)}"
  # With --target, RUSTFLAGS reach only the target's crates, not build scripts or proc macros.
  RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }$flags" \
    cargo build --release --locked --bin regcred-operator --target "$target" --target-dir "$target_dir" >&2
  binary="$target_dir/$target/release/regcred-operator"
fi
[[ -x "$binary" ]] || { say "FAILED: $binary is not an executable"; exit 1; }
# The ELF header's machine (bytes 18-19, little-endian) must be the platform's: an image never
# claims an architecture its binary is not for.
declare -A ELF_MACHINE=([x86_64]=3e00 [aarch64]=b700)
machine="$(od -An -tx1 -j18 -N2 "$binary" | tr -d ' \n')"
[[ "$machine" == "${ELF_MACHINE[$cpu]}" ]] ||
  { say "FAILED: $binary is not a linux/$arch executable (ELF machine $machine)"; exit 1; }
# No program interpreter and no shared library: static (or static-pie). readelf reads an ELF of
# any architecture, where ldd cannot tell for a cross-compiled one.
if LC_ALL=C readelf -lW "$binary" | grep -q 'INTERP' || LC_ALL=C readelf -dW "$binary" | grep -q '(NEEDED)'; then
  say "FAILED: $binary is dynamically linked; the image has no libc"
  exit 1
fi

ocimage="$(bash tests/cluster/build-node.sh --image-tool)/ocimage"

rootfs="$(mktemp -d "${TMPDIR:-/tmp}/regcred-image.XXXXXX")"
trap 'rm -rf -- "$rootfs"' EXIT
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/tmp"
install -m 0755 "$binary" "$rootfs/usr/local/bin/regcred-operator"
strip_tool="strip"
[[ "$cpu" == "${host%%-*}" ]] || strip_tool="$cpu-linux-gnu-strip"
"$strip_tool" "$rootfs/usr/local/bin/regcred-operator" 2>/dev/null || true
# The nonroot user of distroless images, so that tools showing user names agree with the
# Dockerfile's image; CA certificates for any TLS peer not given its own CA.
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
  >"$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group" "$rootfs/etc/ssl/certs/ca-certificates.crt"
chmod 1777 "$rootfs/tmp"

mkdir -p "$(dirname "$out")"
digest="$("$ocimage" build -rootfs "$rootfs" -o "$out" -ref "regcred-operator:$version" \
  -entrypoint '["/usr/local/bin/regcred-operator"]' -cmd '["run","--log-format","json"]' \
  -user 65532:65532 -expose 8080/tcp -arch "$arch" \
  -env PATH=/usr/local/bin:/usr/bin:/bin -env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  -label "org.opencontainers.image.title=regcred-operator" \
  -label "org.opencontainers.image.version=$version" \
  -label "org.opencontainers.image.revision=$revision")"
say "OCI image layout $out ($(du -sh "$out" | cut -f1)), manifest $digest"
echo "$digest"
if [[ -n "$archive" ]]; then
  "$ocimage" archive -layout "$out" -ref "${push:-regcred-operator:$version}" -o "$archive"
  say "archive $archive"
fi
if [[ -n "$push" ]]; then
  auth=()
  [[ -n "${REGCRED_REGISTRY_USER:-}" ]] &&
    auth=(-username "$REGCRED_REGISTRY_USER" -password-env REGCRED_REGISTRY_PASSWORD)
  "$ocimage" push -layout "$out" -ref "$push" "${auth[@]}"
fi
