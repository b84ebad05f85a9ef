# shellcheck shell=bash disable=SC2034  # variables are used by the sourcing scripts
# Go build helpers shared by build.sh (control plane) and build-tools.sh (kubectl, kustomize,
# helm). Sourced after lib.sh, never run. The sourcing script sets:
#   WORK_ROOT  where generated modules and build logs go
#   OUT_DIR    where finished binaries go (temp files next to them, so mv is atomic)
# and installs an EXIT trap removing "$OUT_DIR"/.*.tmp.$$ (leftovers of an interrupted build).

TIMINGS=()

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

# build_bin DIR NAME PACKAGE LDFLAGS [VERSION-ARGS...]
# Build PACKAGE of the module in DIR into OUT_DIR/NAME; VERSION-ARGS (default --version) are
# run on the result for the log.
build_bin() {
  local dir="$1" name="$2" pkg="$3" ldflags="$4"
  shift 4
  local version_args=("$@")
  ((${#version_args[@]})) || version_args=(--version)
  # ($$ is the script's pid even in run_step's subshell: the EXIT trap's glob.)
  local tmp="$OUT_DIR/.$name.tmp.$$"
  cd "$dir"
  GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp" "$pkg"
  "$tmp" "${version_args[@]}" 2>&1 | head -n 3 || true
  mv -f "$tmp" "$OUT_DIR/$name"
}

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

# k8s_ldflags: -s -w plus a truthful /version (and client User-Agent) for binaries of
# k8s.io/kubernetes at K8S_VERSION, as upstream's hack/lib/version.sh sets.
k8s_ldflags() {
  local minor="${K8S_VERSION#v1.}" flags="-s -w" pkg
  minor="${minor%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1"
    flags+=" -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  printf '%s\n' "$flags"
}

# k8s_staging_version: v1.36.3 -> v0.36.3, the version of the staging modules
# (k8s.io/api, k8s.io/client-go, k8s.io/kubectl, ...) that belong to K8S_VERSION.
k8s_staging_version() { printf 'v0.%s\n' "${K8S_VERSION#v1.}"; }
