#!/usr/bin/env bash
# Installs what the Argo CD health-check runner needs from Debian's packages, when missing:
# lua5.4 and lua5.1 (Argo CD's interpreter, gopher-lua, implements Lua 5.1: running the check
# under both catches syntax or library use that only one accepts) and lua-dkjson (a JSON
# decoder in pure Lua, for 5.1 to 5.4). Idempotent: with everything present it does nothing
# (no apt-get). Prints the directory of the runner (run.sh) on stdout.
#
# Usage: tests/argocd-health/install.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
missing=()
command -v lua5.4 >/dev/null || missing+=(lua5.4)
command -v lua5.1 >/dev/null || missing+=(lua5.1)
[[ -f /usr/share/lua/5.4/dkjson.lua && -f /usr/share/lua/5.1/dkjson.lua ]] || missing+=(lua-dkjson)
if ((${#missing[@]})); then
  echo "[argocd-health] installing: ${missing[*]}" >&2
  sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || { echo "[argocd-health] FAILED: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
printf '%s\n' "$here"
