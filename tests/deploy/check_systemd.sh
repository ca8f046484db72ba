#!/bin/bash
# Checks deploy/systemd/shmbrokerd.service offline, without a running systemd:
#   systemd-analyze verify   (must print nothing: systemd reports bad keys and
#                             values as warnings and still exits 0)
#   systemd-analyze security --offline=yes --threshold=N  (exposure <= N/10;
#                             the unit scores 1.3, i.e. 13; default N=20)
# Both run against a temporary root holding the unit, the host's unit files
# (for the targets it depends on) and the daemon binary at the unit's
# ExecStart path, /usr/local/bin/shmbrokerd.
# Usage: tests/deploy/check_systemd.sh
# (env: SHMBROKERD, default build/server/shmbrokerd; SHMBROKER_UNIT checks
# another unit file; SHMBROKER_SECURITY_THRESHOLD overrides N)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
unit=${SHMBROKER_UNIT:-$root/deploy/systemd/shmbrokerd.service}
daemon=${SHMBROKERD:-$root/build/server/shmbrokerd}
threshold=${SHMBROKER_SECURITY_THRESHOLD:-20}

if ! command -v systemd-analyze >/dev/null; then
  echo "check_systemd: systemd-analyze not found (Debian package: systemd)" >&2
  exit 1
fi
system_units=""
for d in /usr/lib/systemd/system /lib/systemd/system; do
  [[ -f "$d/sysinit.target" ]] && { system_units=$d; break; }
done
if [[ -z "$system_units" ]]; then
  echo "check_systemd: no systemd unit directory with sysinit.target found" >&2
  exit 1
fi
[[ -x "$daemon" ]] || { echo "check_systemd: $daemon is not an executable" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmbroker-deploy-systemd.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/usr/local/bin" "$tmp/etc/systemd/system" "$tmp/usr/lib/systemd"
cp -a "$system_units" "$tmp/usr/lib/systemd/system"
cp "$daemon" "$tmp/usr/local/bin/shmbrokerd"
cp "$unit" "$tmp/etc/systemd/system/shmbrokerd.service"

echo "+ systemd-analyze verify --root=ROOT shmbrokerd.service"
out=$(systemd-analyze verify --root="$tmp" shmbrokerd.service 2>&1) || {
  echo "$out"; echo "check_systemd: FAIL: systemd-analyze verify" >&2; exit 1; }
if [[ -n "$out" ]]; then
  echo "$out"; echo "check_systemd: FAIL: systemd-analyze verify printed warnings" >&2; exit 1
fi

echo "+ systemd-analyze security --offline=yes --threshold=$threshold --root=ROOT shmbrokerd.service"
if ! out=$(systemd-analyze security --offline=yes --threshold="$threshold" --no-pager \
             --root="$tmp" shmbrokerd.service 2>&1); then
  echo "$out"; echo "check_systemd: FAIL: exposure above $threshold (in tenths: 13 is 1.3)" >&2; exit 1
fi
echo "$out" | tail -n 1
echo "check_systemd: PASS"
