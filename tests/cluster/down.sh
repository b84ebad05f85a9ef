#!/usr/bin/env bash
# Stop a control plane started by up.sh and remove its directory.
# Idempotent: fine if DIR is missing, half-started, or its processes are gone.
#
# Usage: tests/cluster/down.sh DIR
set -euo pipefail

# shellcheck source=SCRIPTDIR/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

if [[ $# -ne 1 || -z "$1" ]]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
DIR="$1"
if [[ ! -d "$DIR" ]]; then
  log "$DIR does not exist: nothing to stop"
  exit 0
fi
# Never delete a directory that up.sh did not create (a mistyped $HOME...).
if [[ ! -e "$DIR/.regcred-cluster" && -n "$(ls -A -- "$DIR")" ]]; then
  log "FAILED: down: $DIR was not made by up.sh (no .regcred-cluster marker); not touching it"
  exit 1
fi

# Watchdog and apiserver clients with the apiserver; etcd last, since the
# apiserver still writes to it while shutting down. (When the watchdog is the
# caller it exec'd this script: its pid no longer looks like a watchdog, so
# pid_of skips it.)
stop_pieces "$DIR" watchdog kube-controller-manager kube-apiserver
stop_pieces "$DIR" etcd
rm -rf -- "$DIR"
log "stopped and removed $DIR"
