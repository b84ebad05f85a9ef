#!/usr/bin/env bash
# Started detached by node-up.sh when REGCRED_CP_WATCH_PID is set: waits for that process
# (a test binary, tests/run.sh) to exit, then tears the node down (node-down.sh), so a run that
# dies without cleanup does not leave kubelets, containerd, shims and the registry behind.
#
# Usage: tests/cluster/node-watchdog.sh DIR PID
set -euo pipefail

dir="$1"
pid="$2"
while kill -0 "$pid" 2>/dev/null; do
  sleep 1
done
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/node-down.sh" "$dir"
