#!/usr/bin/env bash
# Started detached by up.sh when REGCRED_CP_WATCH_PID is set: waits for that
# process (a test binary) to exit, then tears the control plane down, so a test
# run that dies without cleanup (SIGKILL, abort, a static never dropped) does
# not leave etcd and kube-apiserver running.
#
# Usage: tests/cluster/watchdog.sh DIR PID
set -euo pipefail

dir="$1"
pid="$2"
while kill -0 "$pid" 2>/dev/null; do
  sleep 1
done
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/down.sh" "$dir"
