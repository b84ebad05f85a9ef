# shellcheck shell=bash disable=SC2034  # variables are used by the sourcing scripts
# Helpers shared by build.sh, up.sh, restart-apiserver.sh and down.sh.
# Sourced, never run. Progress goes to stderr so that up.sh's stdout stays clean.

CLUSTER_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/versions.env
. "$CLUSTER_SCRIPTS_DIR/versions.env"

# Outside the clone so that every clone/worktree on the machine shares it.
REGCRED_CACHE="${REGCRED_CACHE:-$HOME/.cache/regcred-operator}"
BIN_DIR="$REGCRED_CACHE/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
# Seconds each piece may take to become ready / to stop before SIGKILL.
READY_TIMEOUT="${REGCRED_CP_READY_TIMEOUT:-120}"
STOP_GRACE="${REGCRED_CP_STOP_GRACE:-10}"

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# tail_log FILE: show the end of a log so failures are diagnosable from CI output.
tail_log() {
  if [[ -f "$1" ]]; then
    printf -- '----- last 40 lines of %s -----\n' "$1" >&2
    tail -n 40 "$1" >&2 || true
    printf -- '----- end of %s -----\n' "$1" >&2
  fi
}

# fail PIECE LOGFILE MESSAGE
fail() {
  log "FAILED: $1: $3"
  tail_log "$2"
  exit 1
}

# pid_of DIR NAME: the recorded pid, if it still names our process.
# Guards against signalling an unrelated process that reused the pid.
pid_of() {
  local pidfile="$1/$2.pid" pid argv=()
  [[ -s "$pidfile" ]] || return 1
  pid="$(<"$pidfile")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  mapfile -d '' -t argv 2>/dev/null <"/proc/$pid/cmdline" || return 1
  # A binary has its name as argv[0]; a script run as `bash NAME.sh` as argv[1].
  [[ "$(basename -- "${argv[0]:-}")" == "$2" || "$(basename -- "${argv[1]:-}")" == "$2.sh" ]] ||
    return 1
  printf '%s\n' "$pid"
}

# start_piece DIR NAME: start the command stored one argument per line in
# DIR/NAME.cmd, detached in its own session (so it outlives this script and
# can be killed as a process group), logging to DIR/NAME.log.
start_piece() {
  local dir="$1" name="$2" cmd=() i
  mapfile -t cmd <"$dir/$name.cmd"
  rm -f "$dir/$name.pid"
  # The child writes its own pid just before exec: correct even if setsid forks.
  # shellcheck disable=SC2016  # $$ and $@ expand in the child shell.
  nohup setsid bash -c 'echo "$$" >"$0"; exec "$@"' "$dir/$name.pid" "${cmd[@]}" \
    >>"$dir/$name.log" 2>&1 </dev/null &
  # Started once the pid names the exec'd program (not the wrapper shell).
  for ((i = 0; i < 100; i++)); do
    pid_of "$dir" "$name" >/dev/null && return 0
    if [[ -s "$dir/$name.pid" ]] && ! kill -0 "$(<"$dir/$name.pid")" 2>/dev/null; then
      break # exited already (bad flag, missing file...): its log says why
    fi
    sleep 0.05
  done
  fail "$name" "$dir/$name.log" "did not start (or exited at once)"
}

# stop_pieces DIR NAME...: SIGTERM each running piece's process group at once,
# wait for all of them, SIGKILL what is left after STOP_GRACE seconds. Quiet
# no-op for pieces that are not running. (Sequence dependent pieces with
# separate calls: the apiserver needs etcd while it shuts down.)
stop_pieces() {
  local dir="$1" name pid waited=0 alive
  shift
  local pids=()
  for name in "$@"; do
    if pid="$(pid_of "$dir" "$name")"; then
      log "stopping $name (pid $pid)"
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  while ((${#pids[@]} > 0)); do
    alive=()
    for pid in "${pids[@]}"; do
      if kill -0 "$pid" 2>/dev/null || kill -0 -- "-$pid" 2>/dev/null; then alive+=("$pid"); fi
    done
    pids=("${alive[@]}")
    ((${#pids[@]} > 0)) || break
    if ((waited >= STOP_GRACE * 10)); then
      log "pids ${pids[*]} did not exit within ${STOP_GRACE}s: SIGKILL"
      for pid in "${pids[@]}"; do
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      done
      sleep 0.2
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  for name in "$@"; do rm -f "$dir/$name.pid"; done
}

# curl_admin DIR URL...: curl as the admin user (system:masters), trusting our CA.
curl_admin() {
  local dir="$1"
  shift
  curl --silent --show-error --max-time 5 \
    --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key" "$@"
}

# wait_until DIR NAME CHECK...: poll CHECK until it succeeds; fail with the log
# tail if NAME's process dies or READY_TIMEOUT passes.
wait_until() {
  local dir="$1" name="$2" start=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ! pid_of "$dir" "$name" >/dev/null; then
      fail "$name" "$dir/$name.log" "process exited before becoming ready"
    fi
    if ((SECONDS - start >= READY_TIMEOUT)); then
      fail "$name" "$dir/$name.log" "not ready after ${READY_TIMEOUT}s"
    fi
    sleep 0.2
  done
  log "$name ready after $((SECONDS - start))s"
}

# Ready checks, used by up.sh and restart-apiserver.sh.
etcd_ready() { curl --silent --fail --max-time 2 "http://127.0.0.1:$ETCD_PORT/readyz"; }
apiserver_ready() { curl_admin "$1" --fail "https://127.0.0.1:$APISERVER_PORT/readyz"; }
