#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a running daemon: installs
# what is missing, builds, and starts shmbrokerd in the background with its
# defaults (socket: /run/shmbroker/broker.sock for root, else
# $XDG_RUNTIME_DIR/shmbroker/broker.sock; capacity: a quarter of RAM).
# Extra arguments go to shmbrokerd. Stop it with: kill $(cat build/shmbrokerd.pid)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh

if [ -f build/shmbrokerd.pid ] && kill -0 "$(cat build/shmbrokerd.pid)" 2>/dev/null; then
  echo "shmbrokerd is already running (pid $(cat build/shmbrokerd.pid))"
  exit 0
fi
build/server/shmbrokerd "$@" >build/shmbrokerd.out 2>build/shmbrokerd.log &
echo $! >build/shmbrokerd.pid
for _ in $(seq 100); do
  if grep -q "listening on" build/shmbrokerd.out 2>/dev/null; then
    cat build/shmbrokerd.out
    echo "pid $(cat build/shmbrokerd.pid); log: build/shmbrokerd.log; CLI: build/client/shmbroker"
    exit 0
  fi
  kill -0 "$(cat build/shmbrokerd.pid)" 2>/dev/null || break
  sleep 0.1
done
echo "shmbrokerd did not start:" >&2
cat build/shmbrokerd.log >&2
exit 1
