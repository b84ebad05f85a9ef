#!/usr/bin/env bash
# Check the hosted workflows (.github/workflows, thin wrappers of .ci/run and scripts/release.sh):
#   - actionlint: syntax, expressions and their contexts, untrusted input in scripts, runner
#     labels, the inputs of the actions used (the local one included), and shellcheck on every
#     `run:` script when shellcheck is on PATH;
#   - every `uses:` under .github pinned by a full commit SHA, its version in a comment.
# Both checks are first shown to reject a broken workflow, so that a pass is not a vacuous one.
#
# Usage: .ci/lint-workflows.sh ACTIONLINT   (the binary tests/cluster/build-release-tools.sh builds)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
actionlint="${1:?usage: .ci/lint-workflows.sh ACTIONLINT}"
say() { printf '[workflows] %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

# Prints each `uses:` line of the files given that is neither a local action nor pinned by SHA.
unpinned() {
  grep -nHE '^[[:space:]-]*uses:' "$@" |
    grep -vE 'uses:[[:space:]]+(\./[^[:space:]]+|[^@[:space:]]+@[0-9a-f]{40}[[:space:]]+# v[0-9][^[:space:]]*)[[:space:]]*$' ||
    true
}

broken="$(mktemp "${TMPDIR:-/tmp}/regcred-workflow.XXXXXX.yml")"
trap 'rm -f -- "$broken"' EXIT
cat >"$broken" <<'YAML'
on: pull_request
jobs:
  build:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@v6
      - run: echo "${{ github.event.pull_request.title }}"
      - run: echo "${{ secret.TOKEN }}"
      - run: cd $GITHUB_WORKSPACE
YAML
out="$("$actionlint" -no-color -oneline "$broken" 2>&1)" && fail "actionlint accepted a broken workflow"
expected=('"github.event.pull_request.title" is potentially untrusted' 'undefined variable "secret"')
if command -v shellcheck >/dev/null; then
  expected+=('SC2086')
else
  say "shellcheck is not on PATH: actionlint checks no run: script"
fi
for e in "${expected[@]}"; do
  grep -qF -- "$e" <<<"$out" || fail "actionlint did not report '$e' in a broken workflow; it said: $out"
done
[[ -n "$(unpinned "$broken")" ]] || fail "the pin check missed actions/checkout@v6"

"$actionlint" .github/workflows/*.yml
bad="$(unpinned -r .github)"
[[ -z "$bad" ]] || fail "actions not pinned by commit SHA with a '# vX.Y.Z' comment:"$'\n'"$bad"
say "ok: $(find .github/workflows -name '*.yml' | wc -l) workflows, actionlint $("$actionlint" -version | head -1)$(command -v shellcheck >/dev/null && echo ' with shellcheck')"
