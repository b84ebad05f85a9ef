#!/usr/bin/env bash
# Build etcd, kube-apiserver and kube-controller-manager from their Go modules
# into a version-keyed cache outside the clone. A cached run does no Go work at
# all (well under a second); a cold run takes minutes.
#
# Usage: tests/cluster/build.sh        (prints the binary directory on stdout)
# Env:   REGCRED_CACHE (default ~/.cache/regcred-operator)
set -euo pipefail

# shellcheck source=SCRIPTDIR/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

BINARIES=(etcd kube-apiserver kube-controller-manager)

have() { [[ -x "$BIN_DIR/$1" ]]; }

all_cached() {
  local b
  for b in "${BINARIES[@]}"; do have "$b" || return 1; done
}

# Fast path: no lock, no go invocation.
if all_cached; then
  log "cached: $BIN_DIR"
  printf '%s\n' "$BIN_DIR"
  exit 0
fi

for tool in go python3 flock; do
  command -v "$tool" >/dev/null || { log "FAILED: build: '$tool' not found on PATH"; exit 1; }
done

WORK_ROOT="$REGCRED_CACHE/work"
mkdir -p "$BIN_DIR" "$WORK_ROOT"

# Serialise concurrent builds (e.g. parallel test jobs), then look again:
# another process may have finished the build while we waited.
exec 9>"$REGCRED_CACHE/build.lock"
flock 9
if all_cached; then
  log "cached (built by a concurrent run): $BIN_DIR"
  printf '%s\n' "$BIN_DIR"
  exit 0
fi

# Temp outputs (.NAME.tmp.PID) live next to their final name (same
# filesystem: mv is atomic), so an interrupted build never leaves a file that
# looks cached. Leftovers of a killed build go now (we hold the lock), ours on exit.
rm -f "$BIN_DIR"/.*.tmp.*
trap 'rm -f "$BIN_DIR"/.*.tmp."$$"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_step PIECE LOGFILE CMD...: run CMD with its output in LOGFILE; on failure
# name the piece and show the log tail. errexit is re-armed in a subshell that
# is not in a condition, so a failing command inside CMD's function stops it.
run_step() {
  local piece="$1" logfile="$2" rc=0
  shift 2
  set +e
  (set -e; "$@") >>"$logfile" 2>&1
  rc=$?
  set -e
  if ((rc != 0)); then
    fail "$piece" "$logfile" "exit status $rc (full log: $logfile)"
  fi
}

# gen_module DIR MODPATH MODULE VERSION PIN_VERSION TOOL...
# Write DIR/go.mod requiring MODULE@VERSION with a `tool` line per TOOL. The
# upstream go.mod (as served by the proxy) replaces some of its requirements
# with local directories (Kubernetes: ./staging/src/k8s.io/*, etcd: ../api ...),
# which a dependent module cannot use; each of those is pinned to PIN_VERSION
# instead. The list is generated from the served .mod, never hand-written: it
# changes between releases. Upstream godebug settings are carried over too.
gen_module() {
  local dir="$1" modpath="$2" module="$3" version="$4" pin="$5"
  shift 5
  local json gomod edits=() line tool
  # On failure the JSON carries the reason ("Error"): show it in the log.
  if ! json="$(cd "$WORK_ROOT" && GOWORK=off go mod download -json "$module@$version")"; then
    printf '%s\n' "$json"
    return 1
  fi
  gomod="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])' <<<"$json")"
  echo "upstream go.mod: $gomod"
  # Emits go mod edit flags: -go=, -godebug=, -replace= (requirements that
  # upstream replaces with a local directory only; guards like
  # FORBIDDEN_DEPENDENCY are not requirements and are left out).
  while IFS= read -r line; do
    edits+=("$line")
  done < <(go mod edit -json "$gomod" | python3 -c '
import json, sys
pin = sys.argv[1]
m = json.load(sys.stdin)
required = {r["Path"] for r in m.get("Require") or []}
if m.get("Go"):
    print("-go=" + m["Go"])
for g in m.get("GoDebug") or m.get("Godebug") or []:
    print("-godebug=%s=%s" % (g["Key"], g["Value"]))
for r in m.get("Replace") or []:
    old, new = r["Old"]["Path"], r["New"]["Path"]
    if new.startswith(".") and "Version" not in r["New"] and old in required:
        print("-replace=%s=%s@%s" % (old, old, pin))
' "$pin")
  rm -rf "$dir"
  mkdir -p "$dir"
  cd "$dir"
  GOWORK=off go mod init "$modpath"
  edits+=("-require=$module@$version")
  for tool in "$@"; do edits+=("-tool=$tool"); done
  GOWORK=off go mod edit "${edits[@]}"
  cat go.mod
  GOWORK=off go mod tidy
}

# build_bin DIR NAME PACKAGE LDFLAGS
build_bin() {
  local dir="$1" name="$2" pkg="$3" ldflags="$4"
  # ($$ is the script's pid even in run_step's subshell: the EXIT trap's glob.)
  local tmp="$BIN_DIR/.$name.tmp.$$"
  cd "$dir"
  GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp" "$pkg"
  "$tmp" --version 2>&1 | head -n 3 || true
  mv -f "$tmp" "$BIN_DIR/$name"
}

TIMINGS=()
# timed PIECE LOGFILE CMD...
timed() {
  local piece="$1" logfile="$2" t0=$SECONDS
  shift 2
  : >"$logfile"
  log "$piece: building (log: $logfile)"
  run_step "$piece" "$logfile" "$@"
  TIMINGS+=("$piece: $((SECONDS - t0))s")
  log "$piece: done in $((SECONDS - t0))s"
}

# --- etcd: its own module, apart from Kubernetes' dependency graph ----------
if ! have etcd; then
  ETCD_DIR="$WORK_ROOT/etcd-$ETCD_VERSION"
  timed etcd-modules "$WORK_ROOT/etcd-$ETCD_VERSION-modules.log" \
    gen_module "$ETCD_DIR" regcred-operator.test/cluster/etcd \
    go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$ETCD_VERSION" go.etcd.io/etcd/server/v3
  timed etcd "$WORK_ROOT/etcd-$ETCD_VERSION-build.log" \
    build_bin "$ETCD_DIR" etcd go.etcd.io/etcd/server/v3 "-s -w"
fi

# --- Kubernetes: k8s.io/kubernetes with its staging modules pinned ----------
if ! have kube-apiserver || ! have kube-controller-manager; then
  K8S_DIR="$WORK_ROOT/k8s-$K8S_VERSION"
  # v1.36.3 -> staging modules v0.36.3
  K8S_STAGING_VERSION="v0.${K8S_VERSION#v1.}"
  k8s_minor="${K8S_VERSION#v1.}"
  k8s_minor="${k8s_minor%%.*}"
  # Truthful /version (and client User-Agent), as upstream's hack/lib/version.sh sets.
  K8S_LDFLAGS="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    K8S_LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1"
    K8S_LDFLAGS+=" -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=clean"
  done
  timed k8s-modules "$WORK_ROOT/k8s-$K8S_VERSION-modules.log" \
    gen_module "$K8S_DIR" regcred-operator.test/cluster/k8s \
    k8s.io/kubernetes "$K8S_VERSION" "$K8S_STAGING_VERSION" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
  for name in kube-apiserver kube-controller-manager; do
    if ! have "$name"; then
      timed "$name" "$WORK_ROOT/k8s-$K8S_VERSION-$name-build.log" \
        build_bin "$K8S_DIR" "$name" "k8s.io/kubernetes/cmd/$name" "$K8S_LDFLAGS"
    fi
  done
fi

all_cached || { log "FAILED: build: binaries missing from $BIN_DIR after build"; exit 1; }
log "built into $BIN_DIR (${TIMINGS[*]})"
printf '%s\n' "$BIN_DIR"
