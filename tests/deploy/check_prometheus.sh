#!/bin/bash
# Checks the Prometheus artifacts in deploy/prometheus with promtool
# (Debian package: prometheus):
#   promtool check config deploy/prometheus/prometheus.yml  (also loads alerts.yml)
#   promtool check rules  deploy/prometheus/alerts.yml
#   promtool test rules   deploy/prometheus/alerts_test.yml  (every alert fires / stays quiet)
# Any warning printed by promtool counts as a failure.
# Usage: tests/deploy/check_prometheus.sh   (env: PROMTOOL overrides the binary)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
dir="$root/deploy/prometheus"
promtool=${PROMTOOL:-$(command -v promtool || true)}
if [[ -z "$promtool" ]]; then
  echo "check_prometheus: promtool not found (Debian package: prometheus)" >&2
  exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmbroker-deploy-prom.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

run() {  # run NAME CMD...: show the output; fail on a non-zero exit or a warning
  local name=$1; shift
  echo "+ $*"
  if ! "$@" >"$tmp/$name.out" 2>&1; then
    cat "$tmp/$name.out"
    echo "check_prometheus: FAIL: $*" >&2
    exit 1
  fi
  cat "$tmp/$name.out"
  if grep -qiE 'warn' "$tmp/$name.out"; then
    echo "check_prometheus: FAIL: warnings from: $*" >&2
    exit 1
  fi
}

cd "$root"
run config "$promtool" check config deploy/prometheus/prometheus.yml
run rules  "$promtool" check rules deploy/prometheus/alerts.yml
run test   "$promtool" test rules deploy/prometheus/alerts_test.yml

# The alerts the deployment guide documents are exactly the ones shipped, and
# every one of them has a unit test.
shipped=$(grep -oE '^\s*- alert: \w+' "$dir/alerts.yml" | awk '{print $3}' | sort)
tested=$(grep -oE 'alertname: \w+' "$dir/alerts_test.yml" | awk '{print $2}' | sort -u)
if [[ "$shipped" != "$tested" ]]; then
  echo "check_prometheus: FAIL: alerts without tests: $(comm -23 <(echo "$shipped") <(echo "$tested") | tr '\n' ' ')" >&2
  exit 1
fi
for alert in $shipped; do
  # a positive case (exp_labels follow) and a negative case (exp_alerts: [])
  if ! awk -v a="$alert" '
        $0 ~ "alertname: "a"$" {cur=1; next}
        /alertname:/ {cur=0}
        cur && /exp_alerts: \[\]/ {neg=1}
        cur && /exp_labels:/ {pos=1}
        END {exit !(pos && neg)}' "$dir/alerts_test.yml"; then
    echo "check_prometheus: FAIL: $alert needs a firing and a quiet test case" >&2
    exit 1
  fi
done
echo "check_prometheus: PASS ($(echo "$shipped" | wc -w) alerts, each tested firing and quiet)"
