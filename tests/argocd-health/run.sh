#!/usr/bin/env bash
# CLI around run.lua: Argo CD's health of objects, computed by a health check script.
#
# Usage: tests/argocd-health/run.sh [--script FILE] [--want STATUS] [--lua INTERPRETER] [FILE|-]...
#   --script  the health Lua (default config/argocd/health.lua, RegistryCredential's check)
#   --want    exit 1 unless every object's status is STATUS (Healthy, Progressing, Degraded, ...)
#   --lua     lua5.4 (default) or lua5.1 (Argo CD's gopher-lua is Lua 5.1)
# Input: JSON, one or more values per file (stdin when no FILE or "-"), each an object or a List.
# Output: one JSON line per object: {"kind","namespace","name","status","message"}.
# Exit: 0 ok; 1 --want did not hold; 2 bad input, or the script failed (Argo CD: Unknown).
# Needs tests/argocd-health/install.sh to have run (lua5.4, lua5.1, lua-dkjson from Debian).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
script="$here/../../config/argocd/health.lua"
want=""
lua="${REGCRED_ARGO_LUA:-lua5.4}"
while (($#)); do
  case "$1" in
    --script) script="$2"; shift 2 ;;
    --want) want="$2"; shift 2 ;;
    --lua) lua="$2"; shift 2 ;;
    --) shift; break ;;
    -?*) echo "usage: run.sh [--script FILE] [--want STATUS] [--lua INTERPRETER] [FILE|-]..." >&2; exit 2 ;;
    *) break ;;
  esac
done
(($#)) || set -- -
command -v "$lua" >/dev/null || { echo "argocd-health: $lua not found: run tests/argocd-health/install.sh" >&2; exit 2; }
exec "$lua" "$here/run.lua" "$script" "$want" "$@"
