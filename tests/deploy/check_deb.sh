#!/bin/bash
# Builds the Debian packages with CPack from a build tree (cmake/Packaging.cmake)
# and checks them for real:
#   - on the host: every package is there; the packaged systemd unit passes
#     `systemd-analyze verify` next to the packaged daemon; a CMake project
#     builds against libshmbroker-dev + libshmbroker0 unpacked together;
#   - in a fresh container of the debootstrap Debian bookworm image, on top of
#     a cached layer holding exactly the packages' Depends and Recommends
#     and what those depend on (versions stripped, no further Recommends;
#     podman reuses the layer while they do not change):
#     `apt-get install /debs/*.deb` with no package lists, so that anything
#     the Depends fields miss fails here; the postinst made user shmbroker and
#     enabled the unit; the daemon runs as that user, as the unit runs it; a
#     worker user in group shmbroker puts, lists, reads back and releases a
#     buffer with the CLI, and /usr/bin/python3 allocates a buffer, writes it
#     through a numpy view at the mapping's address, which the CLI reads back
#     byte for byte, and releases it; finally every package is purged.
# Everything it starts is removed on exit; the base and dependency images
# stay in podman's store.
#
# Usage: tests/deploy/check_deb.sh BUILD_DIR   (env: see podman_lib.sh;
# SHMBROKER_DEB_DEPS_IMAGE names the dependency layer's image)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/podman_lib.sh"

build=$(cd "${1:?usage: check_deb.sh BUILD_DIR}" && pwd)
deps_image=${SHMBROKER_DEB_DEPS_IMAGE:-localhost/shmbroker-deb-deps:test}
packages=(shmbroker-daemon shmbroker-cli libshmbroker0 libshmbroker-dev python3-shmbroker)

require_tools cpack dpkg-deb dpkg-shlibdeps systemd-analyze cmake
setup_podman
container=shmb-deb-$$
cleanup() {
  local rc=$?
  podman rm -f -t 0 "$container" >/dev/null 2>&1 || true
  rm -rf "$podman_scratch"
  exit $rc
}
trap cleanup EXIT
t0=$SECONDS

log "cpack (DEB) from $build"
debs=$podman_scratch/debs
# cpack builds the tree's `preinstall` target first: a no-op on a built tree.
cpack --config "$build/CPackConfig.cmake" -B "$podman_scratch/cpack" \
  >"$podman_scratch/cpack.log" 2>&1 || { tail -n 40 "$podman_scratch/cpack.log" >&2; die "cpack failed"; }
mkdir -p "$debs"
mv "$podman_scratch"/cpack/*.deb "$debs/"
for p in "${packages[@]}"; do
  deb=$(ls "$debs/${p}"_*.deb 2>/dev/null) || die "cpack made no $p package"
  printf '  %-46s %s\n' "$(basename "$deb")" \
    "$(dpkg-deb -f "$deb" Depends | cut -c1-110)"
done
n=$(find "$debs" -name '*.deb' | wc -l)
[[ $n -eq ${#packages[@]} ]] || die "cpack made $n packages, want ${#packages[@]}: $(ls "$debs")"

log "host: the packaged unit verifies next to the packaged daemon"
root=$podman_scratch/root
mkdir -p "$root/usr/lib/systemd"
for d in /usr/lib/systemd/system /lib/systemd/system; do
  [[ -f $d/sysinit.target ]] && { cp -a "$d" "$root/usr/lib/systemd/"; break; }
done
[[ -d $root/usr/lib/systemd/system ]] || die "no systemd unit directory on the host"
dpkg-deb -x "$debs"/shmbroker-daemon_*.deb "$root"
grep -qx 'ExecStart=/usr/bin/shmbrokerd --socket=/run/shmbroker/broker.sock' \
  "$root/usr/lib/systemd/system/shmbrokerd.service" || die "packaged unit's ExecStart is not /usr/bin/shmbrokerd"
[[ -x $root/usr/bin/shmbrokerd ]] || die "shmbroker-daemon has no /usr/bin/shmbrokerd"
out=$(systemd-analyze verify --root="$root" shmbrokerd.service 2>&1) || die "systemd-analyze verify: $out"
[[ -z $out ]] || die "systemd-analyze verify printed: $out"

log "host: a CMake project builds against libshmbroker-dev"
dev=$podman_scratch/dev
dpkg-deb -x "$debs"/libshmbroker-dev_*.deb "$dev"
dpkg-deb -x "$debs"/libshmbroker0_*.deb "$dev"
if ! { cmake -S "$deploy_root/tests/install/consumer" -B "$podman_scratch/consumer" -G Ninja \
          -DCMAKE_PREFIX_PATH="$dev/usr" && cmake --build "$podman_scratch/consumer"; } \
        >"$podman_scratch/consumer.log" 2>&1; then
  tail -n 30 "$podman_scratch/consumer.log" >&2; die "consumer build against libshmbroker-dev failed"
fi
pc_dir=$(dirname "$(find "$dev" -name shmbroker.pc)")
libdir=$(PKG_CONFIG_PATH=$pc_dir pkg-config --variable=libdir shmbroker) ||
  die "pkg-config does not accept the packaged shmbroker.pc"
[[ -e $libdir/libshmbroker.so ]] || die "shmbroker.pc's libdir $libdir has no libshmbroker.so"

# The packages' dependencies, without versions or alternatives, and without
# the packages themselves: what apt would fetch for `apt-get install *.deb`.
# Installed without their own Recommends (libabsl-dev's are g++ and cmake),
# so the container holds only what the packages ask for.
deps=$(for deb in "$debs"/*.deb; do dpkg-deb -f "$deb" Pre-Depends Depends Recommends; done |
  sed 's/^[A-Za-z-]*: //' | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/[[:space:]]//g' |
  grep -v '^$' | sort -u | grep -vxF "$(printf '%s\n' "${packages[@]}")" | tr '\n' ' ') || true
deps=${deps% }
[[ -n $deps ]] || die "the packages depend on nothing (dpkg-shlibdeps did not run?)"
log "dependency layer $deps_image: $deps"
ensure_base_image
cat >"$podman_scratch/Containerfile" <<EOF
FROM $SHMBROKER_BASE_IMAGE
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $deps \
 && rm -rf /var/lib/apt/lists/*
EOF
mkdir -p "$podman_scratch/context"
podman build --layers -t "$deps_image" -f "$podman_scratch/Containerfile" "$podman_scratch/context" \
  >"$podman_scratch/build.log" 2>&1 || { tail -n 40 "$podman_scratch/build.log" >&2; die "podman build of the dependency layer failed"; }

cat >"$podman_scratch/inside.sh" <<'EOF'
set -euo pipefail
fail() { echo "FAIL (in the container): $*" >&2; exit 1; }
step() { echo "  - $*"; }
export DEBIAN_FRONTEND=noninteractive
step "apt-get install /debs/*.deb (no package lists: every dependency must already be met)"
apt-get install -y /debs/*.deb >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; fail "apt-get install"; }
getent passwd shmbroker >/dev/null || fail "postinst did not create user shmbroker"
unit=/usr/lib/systemd/system/shmbrokerd.service
[ -f "$unit" ] || fail "no $unit"
[ -L /etc/systemd/system/multi-user.target.wants/shmbrokerd.service ] || fail "postinst did not enable the unit"
module=$(/usr/bin/python3 -c 'import shmbroker._native as m; print(m.__file__)')
ls "$(dirname "$module")"/__pycache__/__init__.*.pyc >/dev/null || fail "postinst did not byte-compile the Python package"
if ldd /usr/bin/shmbrokerd /usr/bin/shmbroker "$module" | grep 'not found'; then fail "missing libraries"; fi

step "daemon as user shmbroker, socket in /run/shmbroker (0750), as the unit runs it"
install -d -o shmbroker -g shmbroker -m 0750 /run/shmbroker
setpriv --reuid=shmbroker --regid=shmbroker --init-groups \
  /usr/bin/shmbrokerd --socket=/run/shmbroker/broker.sock >/tmp/daemon.log 2>&1 &
daemon=$!
useradd --no-create-home --groups shmbroker worker
export SHMBROKER_SOCKET=/run/shmbroker/broker.sock
as_worker() { setpriv --reuid=worker --regid=worker --init-groups "$@"; }
for _ in $(seq 100); do
  as_worker shmbroker health >/dev/null 2>&1 && break
  kill -0 "$daemon" 2>/dev/null || { cat /tmp/daemon.log; fail "daemon exited"; }
  sleep 0.1
done
as_worker shmbroker health || { cat /tmp/daemon.log; fail "daemon not SERVING after 10 s"; }

step "CLI: put, ls, cat, release"
head -c 65536 /dev/urandom >/tmp/in.bin
chmod 0644 /tmp/in.bin
as_worker shmbroker put cli-buf --file=/tmp/in.bin --detach --ttl=300s >/dev/null
as_worker shmbroker ls | grep -q '^cli-buf .* 64KiB ' || { as_worker shmbroker ls; fail "ls does not show cli-buf"; }
as_worker shmbroker cat cli-buf | cmp - /tmp/in.bin || fail "cat cli-buf differs from what was put"
as_worker shmbroker release cli-buf >/dev/null
as_worker shmbroker ls --json | grep -q cli-buf && fail "cli-buf still listed after release"

step "/usr/bin/python3: allocate, numpy view, CLI reads it back, release"
as_worker /usr/bin/python3 - <<'PY'
import subprocess
import time
import numpy
import shmbroker

def names(client):
    return {b.name for b in client.ls()}

with shmbroker.Client() as client:
    buf = client.allocate(1 << 20, name="py-buf")
    view = numpy.frombuffer(buf, dtype=numpy.uint8)
    assert view.ctypes.data == buf.address, "numpy view is not the mapping"
    view[:] = numpy.arange(view.size, dtype=numpy.uint64) % 251
    out = subprocess.run(["shmbroker", "cat", "py-buf"], check=True,
                         capture_output=True).stdout
    assert out == view.tobytes(), "the CLI read other bytes than numpy wrote"
    assert "py-buf" in names(client)
    # Exported to numpy: the release waits for the Buffer and its views,
    # then goes out as a one-way frame; wait for the daemon to see it.
    assert buf.release() is False, "release() with a live view was not deferred"
    del view, buf
    deadline = time.monotonic() + 10
    while "py-buf" in names(client):
        assert time.monotonic() < deadline, "py-buf still listed 10 s after its release"
        time.sleep(0.05)
print("    python: 1 MiB through numpy, read back by the CLI, released")
PY

kill -TERM "$daemon"
wait "$daemon" || { cat /tmp/daemon.log; fail "daemon did not exit 0 on SIGTERM"; }

step "apt-get purge"
apt-get purge -y shmbroker-daemon shmbroker-cli libshmbroker0 libshmbroker-dev python3-shmbroker \
  >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; fail "apt-get purge"; }
left=$(ls /usr/lib/python3*/dist-packages/shmbroker /usr/bin/shmbroker* "$unit" 2>/dev/null || true)
[ -z "$left" ] || fail "left behind after purge: $left"
[ ! -e /etc/systemd/system/multi-user.target.wants/shmbrokerd.service ] || fail "unit still enabled after purge"
EOF

log "fresh container of $deps_image: install, daemon, CLI, Python, purge"
chmod 0755 "$podman_scratch" "$debs"
chmod 0644 "$debs"/*.deb "$podman_scratch/inside.sh"
podman run --name "$container" --rm -v "$debs:/debs:ro" -v "$podman_scratch/inside.sh:/inside.sh:ro" \
  "$deps_image" bash /inside.sh || die "the packages do not work in a fresh bookworm container"

log "check_deb: PASS in $((SECONDS - t0)) s"
