#!/usr/bin/env bash
# Set a user's password at the test registry of a node started by tests/cluster/node-up.sh
# (rotation tests). The registry re-reads its htpasswd file when the file's mtime changes, so
# the new password is in force at the next request; the old one gets 401 from then on.
# Other users in the file are kept. The node's env file is NOT updated: it records the
# password node-up.sh chose.
#
# Usage: tests/node/registry-passwd.sh NODE_DIR PASSWORD [USER]   (USER: the env's user)
set -euo pipefail
if [[ $# -lt 2 || ! -f "$1/env" ]]; then
  echo "usage: $0 NODE_DIR PASSWORD [USER]" >&2
  exit 2
fi
# shellcheck source=/dev/null
. "$1/env"
user="${3:-$REGCRED_REGISTRY_USER}"
file="$REGCRED_REGISTRY_HTPASSWD"
tmp="$file.tmp.$$"
grep -v "^${user}:" "$file" >"$tmp" || true
htpasswd -Bbn "$user" "$2" | grep -v '^$' >>"$tmp"
# A fresh file (new mtime) replaces the old one at once.
mv -f "$tmp" "$file"
