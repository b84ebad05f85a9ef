#!/usr/bin/env bash
# Restart kube-apiserver of a control plane started by up.sh: SIGTERM it, start
# the exact same command line (DIR/kube-apiserver.cmd, same port, same certs),
# and wait for /readyz. For tests of the operator's behaviour across an
# apiserver outage (watch restarts, retries).
#
# Usage: tests/cluster/restart-apiserver.sh DIR
set -euo pipefail

# shellcheck source=SCRIPTDIR/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

if [[ $# -ne 1 || ! -f "$1/env" || ! -f "$1/kube-apiserver.cmd" ]]; then
  echo "usage: $0 DIR   (DIR as given to up.sh, with DIR/env and DIR/kube-apiserver.cmd)" >&2
  exit 2
fi
DIR="$(cd "$1" && pwd)"
# shellcheck source=/dev/null
. "$DIR/env"

T0=$SECONDS
stop_pieces "$DIR" kube-apiserver
log "starting kube-apiserver again on $APISERVER_URL"
start_piece "$DIR" kube-apiserver
wait_until "$DIR" kube-apiserver apiserver_ready "$DIR"
log "kube-apiserver restarted in $((SECONDS - T0))s"
