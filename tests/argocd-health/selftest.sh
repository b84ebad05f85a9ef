#!/usr/bin/env bash
# Checks config/argocd/health.lua on the hand-made status objects in tests/kstatus/testdata/
# (expected.tsv, column 3) under Lua 5.4 and Lua 5.1 (Argo CD's gopher-lua is 5.1), that the
# runner's sandbox refuses the string library as Argo CD does, and that argocd-cm.yaml is
# generated from health.lua. Prints one line per check and a closing "N passed, N failed".
#
# Usage: tests/argocd-health/selftest.sh      (runs install.sh first: idempotent)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/install.sh" >/dev/null
data="$here/../kstatus/testdata"
passed=0 failed=0
check() { # NAME CONDITION-EXIT-STATUS DETAIL
  if [[ "$2" == 0 ]]; then passed=$((passed + 1)); printf 'ok    %s %s\n' "$1" "$3"
  else failed=$((failed + 1)); printf 'FAIL  %s %s\n' "$1" "$3"; fi
}
for lua in lua5.4 lua5.1; do
  while IFS=$'\t' read -r file _ want _; do
    [[ -z "$file" || "$file" == \#* ]] && continue
    got="$(bash "$here/run.sh" --lua "$lua" "$data/$file" | python3 -c 'import json,sys; print(",".join(json.loads(l)["status"] for l in sys.stdin))')"
    detail="got $got"
    rc=0
    if [[ "$got" != "$want" ]]; then rc=1; detail+=", want $want"; fi
    check "argo $lua $file" "$rc" "$detail"
  done <"$data/expected.tsv"
  # Argo CD opens no string library: a script using one must fail here as it would there.
  tmp="$(mktemp)"
  printf 'return {status = ("Healthy"):sub(1)}\n' >"$tmp"
  set +e; bash "$here/run.sh" --lua "$lua" --script "$tmp" "$data/04-synced.json" >/dev/null 2>&1; rc=$?; set -e
  [[ $rc == 2 ]] && r=0 || r=1; check "argo $lua sandbox" "$r" "string methods refused (exit $rc)"
  printf 'return {status = string.format("%%s", "Healthy")}\n' >"$tmp"
  set +e; bash "$here/run.sh" --lua "$lua" --script "$tmp" "$data/04-synced.json" >/dev/null 2>&1; rc=$?; set -e
  [[ $rc == 2 ]] && r=0 || r=1; check "argo $lua sandbox" "$r" "string library absent (exit $rc)"
  printf 'return {status = "Fine"}\n' >"$tmp"
  got="$(bash "$here/run.sh" --lua "$lua" --script "$tmp" "$data/04-synced.json")"
  [[ "$got" == *'"status":"Unknown"'* ]] && r=0 || r=1; check "argo $lua invalid code" "$r" "$got"
  rm -f "$tmp"
done
# The CLI contract: stdin, --want.
bash "$here/run.sh" --want Healthy <"$data/04-synced.json" >/dev/null && r=0 || r=1
check "argo CLI" "$r" "stdin, --want Healthy"
set +e; bash "$here/run.sh" --want Healthy "$data/06-source-not-found-stalled.json" >/dev/null 2>&1; rc=$?; set -e
[[ $rc == 1 ]] && r=0 || r=1; check "argo CLI" "$r" "--want mismatch exits 1 (exit $rc)"
bash "$here/gen-argocd-cm.sh" --check && r=0 || r=1
check "argocd-cm.yaml" "$r" "carries health.lua verbatim"
echo "$passed passed, $failed failed"
((failed == 0))
