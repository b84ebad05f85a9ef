#!/usr/bin/env bash
# Build regcred-kstatus (this directory's Go helper: the kstatus of objects, computed with
# sigs.k8s.io/cli-utils/pkg/kstatus/status) into a cache outside the clone, keyed by the
# digest of its sources (main.go, go.mod, go.sum), like tests/cluster/build-tools.sh does for
# kubectl, kustomize and helm. A cached run does no Go work (milliseconds); a cold one takes
# a few seconds once the modules are downloaded.
#
# Usage: tests/kstatus/build.sh      (prints the binary's path on stdout)
#        REGCRED_KSTATUS="$(bash tests/kstatus/build.sh)"
# Env:   REGCRED_CACHE (default ~/.cache/regcred-operator)
set -euo pipefail

SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REGCRED_CACHE="${REGCRED_CACHE:-$HOME/.cache/regcred-operator}"
log() { printf '[kstatus %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

digest="$(cd "$SRC_DIR" && cat main.go go.mod go.sum | sha256sum | cut -c1-16)"
cli_utils="$(sed -n 's/^require sigs.k8s.io\/cli-utils \(v[^ ]*\)$/\1/p; s/^[[:space:]]*sigs.k8s.io\/cli-utils \(v[^ ]*\)$/\1/p' "$SRC_DIR/go.mod" | head -n 1)"
OUT_DIR="$REGCRED_CACHE/bin/kstatus-${cli_utils:-unknown}-$digest"
BIN="$OUT_DIR/regcred-kstatus"

# Fast path: no lock, no go invocation.
if [[ -x "$BIN" ]]; then
  log "cached: $BIN"
  printf '%s\n' "$BIN"
  exit 0
fi

for tool in go flock sha256sum; do
  command -v "$tool" >/dev/null || { log "FAILED: '$tool' not found on PATH"; exit 1; }
done
mkdir -p "$OUT_DIR"
exec 9>"$REGCRED_CACHE/build-kstatus.lock"
flock 9
if [[ -x "$BIN" ]]; then
  log "cached (built by a concurrent run): $BIN"
  printf '%s\n' "$BIN"
  exit 0
fi

tmp="$OUT_DIR/.regcred-kstatus.tmp.$$"
trap 'rm -f "$tmp"' EXIT
rm -f "$OUT_DIR"/.regcred-kstatus.tmp.*
logfile="$OUT_DIR/build.log"
log "building from $SRC_DIR (cli-utils $cli_utils; log: $logfile)"
# The module is its own (GOWORK=off); go.sum pins every dependency, so -mod=readonly never
# edits the clone.
if ! (cd "$SRC_DIR" && GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0 \
  go build -trimpath -ldflags "-s -w" -o "$tmp" .) >"$logfile" 2>&1; then
  log "FAILED: go build (full log: $logfile)"
  tail -n 40 "$logfile" >&2
  exit 1
fi
# Smoke test before it counts as cached: an object with Ready=True is Current.
if ! printf '%s' '{"apiVersion":"v1","kind":"X","metadata":{"name":"x"},"status":{"conditions":[{"type":"Ready","status":"True"}]}}' |
  "$tmp" --want Current >/dev/null; then
  log "FAILED: the built helper does not compute Current for Ready=True"
  exit 1
fi
mv -f "$tmp" "$BIN"
log "built: $BIN"
printf '%s\n' "$BIN"
