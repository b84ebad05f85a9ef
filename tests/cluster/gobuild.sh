# shellcheck shell=bash disable=SC2034  # variables are used by the sourcing scripts
# Go build helpers shared by the scripts that build test tools from Go modules: build.sh
# (control plane), build-tools.sh (kubectl, kustomize, helm), build-node.sh (the test node),
# tests/kubelet-oracle/build.sh and tests/kstatus/build.sh. Sourced after lib.sh, never run.
# Each tool goes through go_tool_cached, which owns the cache directory, its lock and the
# atomic build; the scripts say only what to build.

# Generated modules and build logs; outside the clone, shared by every clone on the machine.
WORK_ROOT="$REGCRED_CACHE/work"
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
  command -v python3 >/dev/null || { echo "python3 not found on PATH"; return 1; }
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

# build_bin [--check FN] DIR NAME PACKAGE LDFLAGS [VERSION-ARGS...]
# Build PACKAGE of the module in DIR into OUT_DIR/NAME; VERSION-ARGS (default --version) are
# run on the result for the log. With --check, `FN BINARY` runs instead and must succeed
# before the binary counts as built (a smoke test; `true` for programs that have no
# --version, or would not return). The build is the same for a generated module and for
# one in the clone: -mod=readonly so it never edits the clone's go.mod, -buildvcs=false so
# the clone's git state neither stamps the binary nor can fail the build.
build_bin() {
  local check=""
  if [[ "$1" == --check ]]; then
    check="$2"
    shift 2
  fi
  local dir="$1" name="$2" pkg="$3" ldflags="$4"
  shift 4
  local version_args=("$@")
  ((${#version_args[@]})) || version_args=(--version)
  # Next to the final name (same filesystem: mv is atomic), so an interrupted build never
  # leaves a file that looks cached. ($$ is the script's pid even in run_step's subshell:
  # go_tool_cached's EXIT trap removes this name.)
  local tmp="$OUT_DIR/.$name.tmp.$$"
  cd "$dir"
  GOWORK=off CGO_ENABLED=0 go build -mod=readonly -buildvcs=false -trimpath \
    -ldflags "$ldflags" -o "$tmp" "$pkg"
  if [[ -n "$check" ]]; then
    "$check" "$tmp"
  else
    "$tmp" "${version_args[@]}" 2>&1 | head -n 3 || true
  fi
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

# with_lock FILE CMD...: run CMD in a subshell that holds an exclusive flock on FILE, so
# that parallel runs (test jobs, CI steps) build or install a thing once: the others wait,
# then find it done. errexit is set again because a command substitution does not inherit it.
with_lock() {
  local file="$1"
  shift
  (
    set -euo pipefail
    exec 9>"$file"
    flock 9
    "$@"
  )
}

# all_executable DIR NAME...
all_executable() {
  local dir="$1" name
  shift
  for name in "$@"; do [[ -x "$dir/$name" ]] || return 1; done
}

# go_tool_cached NAME KEY BINS BUILD [ARG...]
# Print the directory $REGCRED_CACHE/bin/NAME-KEY once each of BINS (space-separated file
# names) is executable there; if one is not, first run `BUILD ARG...` with OUT_DIR set to
# that directory (its steps through `timed`, binaries through build_bin or go_tool_link).
# KEY holds every version or source digest the binaries depend on: a bump lands in a new
# directory, so a cached run can skip the lock and go altogether. The build holds
# NAME-KEY.lock and looks again first: a parallel run may have built them meanwhile.
# Exits non-zero, with the failing step's log tail on stderr, when the build fails. Call it
# as a plain command or in $(...), never in a condition: that switches off errexit in BUILD.
go_tool_cached() {
  local name="$1" key="$2" bins="$3"
  shift 3
  local dir="$REGCRED_CACHE/bin/$name-$key" list tool
  read -r -a list <<<"$bins"
  if all_executable "$dir" "${list[@]}"; then
    log "cached: $dir (${list[*]})"
    printf '%s\n' "$dir"
    return 0
  fi
  for tool in go flock; do
    command -v "$tool" >/dev/null || { log "FAILED: $name: '$tool' not found on PATH"; return 1; }
  done
  mkdir -p "$dir" "$WORK_ROOT"
  with_lock "$dir.lock" go_tool_build "$name" "$dir" "$bins" "$@"
}

# go_tool_build NAME DIR BINS BUILD [ARG...]: go_tool_cached's part under the lock.
go_tool_build() {
  local name="$1" dir="$2" list
  read -r -a list <<<"$3"
  shift 3
  if all_executable "$dir" "${list[@]}"; then
    log "cached (built by a concurrent run): $dir (${list[*]})"
    printf '%s\n' "$dir"
    return 0
  fi
  # Leftovers of a killed build go now (the lock is ours), this build's on exit.
  rm -f "$dir"/.*.tmp.*
  # shellcheck disable=SC2064  # expanded now: the directory of this call
  trap "rm -f $(printf '%q' "$dir")/.*.tmp.$$" EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  TIMINGS=()
  OUT_DIR="$dir"
  "$@"
  all_executable "$dir" "${list[@]}" ||
    { log "FAILED: $name: ${list[*]} not all in $dir after the build"; exit 1; }
  log "$name: built into $dir${TIMINGS[*]:+ (${TIMINGS[*]})}"
  printf '%s\n' "$dir"
}

# go_tool_link NAME KEY BINS BUILD [ARG...]: go_tool_cached, then a symlink in OUT_DIR to
# each of BINS. For a directory that gathers tools cached apart (each keyed by its own
# version, so bumping one rebuilds only that one) under a key naming all their versions.
go_tool_link() {
  local bins="$3" piece b list
  read -r -a list <<<"$bins"
  piece="$(go_tool_cached "$@")"
  for b in "${list[@]}"; do ln -sfn "$piece/$b" "$OUT_DIR/$b"; done
}
