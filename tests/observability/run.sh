#!/usr/bin/env bash
# The chart's alerting rules: promtool (built from the Prometheus Go module) checks them and runs
# their unit tests; every alert must have a test that shows it firing, and a runbook section in
# docs/operations.md that its runbook_url names.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

rules=charts/regcred-operator/files/prometheus-rules.yaml
tests=tests/observability/alerts.test.yaml
tools="$(bash tests/cluster/build-release-tools.sh)"
"$tools/promtool" check rules "$rules"
"$tools/promtool" test rules "$tests"

mapfile -t alerts < <(sed -n 's/^ *- alert: *\([A-Za-z]*\) *$/\1/p' "$rules")
((${#alerts[@]} >= 7)) || { echo "$rules: only ${#alerts[@]} alerts found" >&2; exit 1; }
failed=0
for alert in "${alerts[@]}"; do
  anchor="${alert,,}"
  # A test of the alert that expects it to fire lists its runbook_url among the annotations.
  if ! grep -q "alertname: $alert\$" "$tests" || ! grep -q "runbook_url: .*#$anchor\$" "$tests"; then
    echo "$alert: no test in $tests shows it firing" >&2; failed=1
  fi
  grep -q "runbook_url: .*/docs/operations.md#$anchor\$" "$rules" || { echo "$alert: runbook_url is not docs/operations.md#$anchor" >&2; failed=1; }
  grep -q "^### $alert\$" docs/operations.md || { echo "$alert: no section '### $alert' in docs/operations.md" >&2; failed=1; }
done

# The chart with every switch on (the packaging tests check what it renders).
"$(bash tests/cluster/build-tools.sh)/helm" lint --strict charts/regcred-operator --set serviceMonitor.enabled=true \
  --set podMonitor.enabled=true --set prometheusRule.enabled=true --set grafanaDashboard.enabled=true >/dev/null
exit "$failed"
