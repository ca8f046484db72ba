#!/usr/bin/env bash
# Installs the build into a temporary prefix, builds a consumer against it
# with find_package(shmbroker CONFIG) and with pkg-config, and runs both
# against the installed daemon.
set -euo pipefail
build=$1
source_dir=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/shmbroker-install-XXXXXX)
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" || true
  rm -rf "$work"
}
trap cleanup EXIT

prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in bin/shmbrokerd bin/shmbroker include/shmbroker/client.h \
         lib/libshmbroker.so lib/cmake/shmbroker/shmbrokerConfig.cmake \
         lib/pkgconfig/shmbroker.pc; do
  [ -e "$prefix/$f" ] || { echo "missing after install: $f"; exit 1; }
done

cmake -S "$source_dir/consumer" -B "$work/cmake-consumer" -G Ninja \
  -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cmake-consumer" >/dev/null
PKG_CONFIG_PATH=$prefix/lib/pkgconfig \
  g++ "$source_dir/consumer/main.cc" -o "$work/pc-consumer" \
  $(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs shmbroker)

"$prefix/bin/shmbrokerd" --socket="$work/run/broker.sock" --metrics_address=127.0.0.1:0 \
  >"$work/out" 2>"$work/err" &
daemon_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/out" && break; sleep 0.1; done
"$work/cmake-consumer/consumer" "$work/run/broker.sock" via-cmake | grep -qx ok
LD_LIBRARY_PATH=$prefix/lib "$work/pc-consumer" "$work/run/broker.sock" via-pkgconfig | grep -qx ok
# The installed CLI finds its library through its RUNPATH.
"$prefix/bin/shmbroker" --socket="$work/run/broker.sock" status >/dev/null
echo "install check passed"
