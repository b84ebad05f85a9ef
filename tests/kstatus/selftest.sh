#!/usr/bin/env bash
# Checks regcred-kstatus against the hand-made status objects in testdata/ (expected.tsv,
# column 2). Builds the helper first (cached). Prints one line per case and a closing
# "N passed, N failed"; exits 1 on any failure.
#
# Usage: tests/kstatus/selftest.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
kstatus="${REGCRED_KSTATUS:-$(bash "$here/build.sh")}"
passed=0 failed=0
while IFS=$'\t' read -r file want _ _; do
  [[ -z "$file" || "$file" == \#* ]] && continue
  got="$("$kstatus" "$here/testdata/$file" | python3 -c 'import json,sys; print(",".join(json.loads(l)["status"] for l in sys.stdin))')"
  if [[ "$got" == "$want" ]]; then
    passed=$((passed + 1)); printf 'ok    kstatus %-40s %s\n' "$file" "$got"
  else
    failed=$((failed + 1)); printf 'FAIL  kstatus %-40s got %s, want %s\n' "$file" "$got" "$want"
  fi
done <"$here/testdata/expected.tsv"
# The CLI contract: stdin, --want, exit 2 on unreadable input.
if "$kstatus" --want Current <"$here/testdata/04-synced.json" >/dev/null &&
  ! "$kstatus" --want Current "$here/testdata/06-source-not-found-stalled.json" >/dev/null 2>&1 &&
  { echo '{"kind":' | "$kstatus" >/dev/null 2>&1; [[ $? == 2 ]]; }; then
  passed=$((passed + 1)); echo "ok    kstatus CLI: stdin, --want, exit 2 on bad input"
else
  failed=$((failed + 1)); echo "FAIL  kstatus CLI: stdin, --want, exit 2 on bad input"
fi
echo "$passed passed, $failed failed"
((failed == 0))
