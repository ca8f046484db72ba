#!/bin/bash
# Runs the container image for real with podman, the way docs/deployment.md
# tells users to:
#   - the image: non-root user, no build tools, every library present,
#     a HEALTHCHECK and the metrics port in its config;
#   - a daemon container with the socket directory on a named volume and its
#     metrics port published on 127.0.0.1;
#   - a writer container (same uid as the daemon) puts 1 MiB of random bytes
#     into a named buffer and holds it; a reader container of another uid,
#     let in by the daemon's gid as a supplementary group, cats it back and
#     the bytes must be the same; without that group it must be refused;
#   - `podman healthcheck run` passes; /metrics answers from the host and
#     counts the buffer; killing the writer's container frees the buffer.
# Everything it starts is removed on exit.
#
# Usage: tests/deploy/check_image.sh
# Builds the image first (cached) unless SHMBROKER_IMAGE_READY=1, which CTest
# sets because build_image.sh ran as the fixture setup. Env: see podman_lib.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/podman_lib.sh"

setup_podman
run_id=shmb-it-$$
daemon=$run_id-daemon
writer=$run_id-writer
volume=$run_id-sock
data=$podman_scratch/data

cleanup() {
  local rc=$?
  if [[ $rc -ne 0 ]] && podman container exists "$daemon" 2>/dev/null; then
    echo "--- daemon log:"; podman logs "$daemon" 2>&1 | grep -v 'systemd connection' | tail -n 30 || true
  fi
  podman rm -f -t 0 "$writer" "$daemon" >/dev/null 2>&1 || true
  podman volume rm -f "$volume" >/dev/null 2>&1 || true
  rm -rf "$podman_scratch"
  exit $rc
}
trap cleanup EXIT

if [[ ${SHMBROKER_IMAGE_READY:-0} == 1 ]]; then
  podman image exists "$SHMBROKER_IMAGE" || die "SHMBROKER_IMAGE_READY=1 but $SHMBROKER_IMAGE does not exist"
else
  ensure_base_image
  build_image
fi
t0=$SECONDS

# Workers run the same image with the CLI as entrypoint. They get no health
# check: theirs would probe the daemon, not themselves.
cli() { podman run --rm --no-healthcheck -v "$volume:/run/shmbroker" --entrypoint shmbroker "$@"; }

log "the image's configuration"
cfg=$(podman image inspect --format '{{.Config.User}}|{{json .Config.Entrypoint}}|{{json .Config.ExposedPorts}}|{{json .Config.Healthcheck.Test}}' "$SHMBROKER_IMAGE")
echo "  $cfg"
IFS='|' read -r user entrypoint ports health <<<"$cfg"
[[ $user == 10001:10001 ]] || die "image user is '$user', want 10001:10001 (non-root, numeric for runAsNonRoot)"
[[ $entrypoint == *'"/usr/local/bin/shmbrokerd"'* ]] || die "entrypoint is $entrypoint"
[[ $ports == *'"9464/tcp"'* ]] || die "port 9464 not exposed: $ports"
[[ $health == *shmbroker*health* ]] ||
  die "no HEALTHCHECK running 'shmbroker health' (built without --format docker?): $health"
podman run --rm --no-healthcheck --entrypoint /bin/sh "$SHMBROKER_IMAGE" -c '
  set -e
  [ "$(id -u)" != 0 ] || { echo "runs as root"; exit 1; }
  if ldd /usr/local/bin/shmbrokerd /usr/local/bin/shmbroker | grep "not found"; then exit 1; fi
  for t in g++ c++ cc cmake ninja protoc; do
    if command -v "$t"; then echo "build tool $t in the runtime image"; exit 1; fi
  done
  [ -z "$(ls /usr/local/include 2>/dev/null)" ] || { echo "headers in the runtime image"; exit 1; }' ||
  die "runtime image content check"
log "image size: $(image_size)"

log "daemon container (socket dir on volume $volume, metrics on 127.0.0.1:<random>)"
podman volume create "$volume" >/dev/null
# The health-check timer needs systemd, which these machines do not run:
# podman logs that as an error and goes on; `healthcheck run` below works.
podman run -d --name "$daemon" -v "$volume:/run/shmbroker" -p 127.0.0.1::9464 \
  "$SHMBROKER_IMAGE" --capacity=256MiB 2> >(grep -v 'systemd connection' >&2) >/dev/null
for _ in $(seq 100); do
  podman exec "$daemon" shmbroker health >/dev/null 2>&1 && break
  podman container inspect -f '{{.State.Running}}' "$daemon" | grep -q true || die "daemon container exited"
  sleep 0.2
done
podman exec "$daemon" shmbroker health || die "daemon not SERVING after 20 s"
podman exec "$daemon" ls -lna /run/shmbroker
# The named volume came from the image: the daemon's, 0750; sockets 0660.
[[ $(podman exec "$daemon" stat -c '%u:%g %a' /run/shmbroker /run/shmbroker/broker.sock | tr '\n' ' ') == \
   "10001:10001 750 10001:10001 660 " ]] || die "socket directory or socket has the wrong owner or mode"

log "podman healthcheck run"
out=$(podman healthcheck run "$daemon" 2>&1) || die "health check failed: $out"
echo "  ${out:-healthy}"

log "writer container puts 1 MiB and holds it (uid 10001, the daemon's)"
mkdir -p "$data"
chmod 0755 "$podman_scratch" "$data"   # readable by the container's uid
head -c 1048576 /dev/urandom >"$data/in.bin"
chmod 0644 "$data/in.bin"
podman run -d --name "$writer" --no-healthcheck -v "$volume:/run/shmbroker" -v "$data:/data:ro" \
  --entrypoint shmbroker "$SHMBROKER_IMAGE" \
  put it-buffer --file=/data/in.bin --share=uid:20000:ro --seal --hold=600s >/dev/null

# The reader waits for the seal: the buffer is listed from its Allocate on,
# before put has copied the file in.
log "reader container (uid 20000, group 10001 added) gets it back once sealed"
cli --user 20000:20000 --group-add 10001 "$SHMBROKER_IMAGE" get it-buffer --wait=60s --sealed \
  >"$data/out.bin" || { podman logs "$writer"; die "reader: get failed"; }
cmp "$data/in.bin" "$data/out.bin" || die "reader read other bytes than the writer wrote"
echo "  1048576 bytes, identical"
podman exec "$daemon" shmbroker ls | tee "$podman_scratch/ls.txt"
grep -q '^it-buffer .* 10001 ' "$podman_scratch/ls.txt" || die "it-buffer not listed as owned by uid 10001"

log "a container of uid 20000 without group 10001 is refused"
if out=$(cli --user 20000:20000 "$SHMBROKER_IMAGE" health 2>&1); then
  die "uid 20000 without the daemon's group reached the socket: $out"
fi
echo "  $out"
[[ $out == *"Permission denied"* ]] || die "refused for another reason than the socket's permissions"

log "metrics from the host"
port=$(podman port "$daemon" 9464/tcp | head -n 1 | sed 's/.*://')
[[ -n $port ]] || die "no published port for 9464"
metrics=$(curl -fsS --max-time 10 "http://127.0.0.1:$port/metrics") || die "curl http://127.0.0.1:$port/metrics"
grep -E '^shmbroker_(allocated_bytes|capacity_bytes|buffers|client_connections)[ {]' <<<"$metrics" | sed 's/^/  /'
grep -qx 'shmbroker_allocated_bytes 1048576' <<<"$metrics" || die "allocated_bytes is not the writer's 1 MiB"
grep -qx 'shmbroker_capacity_bytes 268435456' <<<"$metrics" || die "capacity_bytes is not --capacity=256MiB"

log "killing the writer's container frees the buffer"
podman kill -s KILL "$writer" >/dev/null
for _ in $(seq 100); do
  [[ -z $(podman exec "$daemon" shmbroker ls --json | grep it-buffer) ]] && break
  sleep 0.2
done
if podman exec "$daemon" shmbroker ls | grep -q '^it-buffer '; then die "it-buffer outlived its holder"; fi
curl -fsS --max-time 10 "http://127.0.0.1:$port/metrics" | grep -x 'shmbroker_allocated_bytes 0' >/dev/null ||
  die "allocated_bytes did not go back to 0"

log "check_image: PASS in $((SECONDS - t0)) s (after the build); image $(image_size)"
