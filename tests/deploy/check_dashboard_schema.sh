#!/bin/bash
# Checks deploy/grafana/shmbroker-dashboard.json against Grafana's own
# dashboard model (npm @grafana/schema's `Dashboard` type as a JSON Schema;
# dashboard-schema/validate.js), then makes sure broken copies fail it, so
# that a check that passes everything cannot go unnoticed. The queries
# themselves are checked against real data by check_dashboard.py.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/podman_lib.sh"   # log, die, require_tools
source "$here/npm_lib.sh"      # npm_modules
dashboard=$deploy_root/deploy/grafana/shmbroker-dashboard.json
validator=$here/dashboard-schema

npm_modules "$validator"
export DASHBOARD_SCHEMA_MODULES=$npm_modules_dir
node "$validator/validate.js" "$dashboard" || die "the dashboard breaks Grafana's schema"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmbroker-dashboard.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# Each edit breaks one thing Grafana's model fixes.
broken=(
  'd["panels"][0]["gridPos"]["w"] = "wide"'         # a number
  'd["panels"][1]["type"] = 7'                      # a string
  'del d["panels"][2]["gridPos"]["h"]'              # required
  'd["templating"]["list"][0]["current"] = {"x": 1}' # text and value required
  'd["graphTooltip"] = 9'                           # enum 0, 1, 2
)
for edit in "${broken[@]}"; do
  python3 - "$dashboard" "$tmp/broken.json" "$edit" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
exec(sys.argv[3])
json.dump(d, open(sys.argv[2], "w"))
PY
  if node "$validator/validate.js" "$tmp/broken.json" >/dev/null 2>&1; then
    die "a dashboard with \`$edit\` passed the schema check"
  fi
done
log "check_dashboard_schema: PASS (valid; ${#broken[@]} broken copies rejected)"
