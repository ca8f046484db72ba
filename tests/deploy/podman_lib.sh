# Shared by the container tests (build_image.sh, check_image.sh,
# check_k8s.sh): podman set up the way it works on these machines, the
# locally made Debian base image, and the shmbroker image built from the
# repository's Dockerfile. Source it; it defines functions and variables only.
#
# Environment:
#   SHMBROKER_IMAGE       image to build and test (default localhost/shmbroker:test)
#   SHMBROKER_BASE_IMAGE  base image (default localhost/debian:bookworm)
#   DEBIAN_MIRROR         mirror for debootstrap (default: from /etc/apt)
#   CONTAINERS_CONF       if set, used as is; otherwise a runc config is made
#   TMPDIR                scratch space (debootstrap needs ~250 MB once)

deploy_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHMBROKER_IMAGE=${SHMBROKER_IMAGE:-localhost/shmbroker:test}
SHMBROKER_BASE_IMAGE=${SHMBROKER_BASE_IMAGE:-localhost/debian:bookworm}

log() { echo "[$(date +%H:%M:%S)] $*"; }
die() { echo "FAIL: $*" >&2; exit 1; }

# A missing tool is a failure, never a skip: a test that silently skips
# looks exactly like one that passed.
require_tools() {
  local t missing=()
  for t in "$@"; do command -v "$t" >/dev/null || missing+=("$t"); done
  [[ ${#missing[@]} -eq 0 ]] ||
    die "missing ${missing[*]} (scripts/install-deps.sh installs them)"
}

# crun fails on these hosts (hybrid cgroups, no CAP_SYS_RESOURCE), and so do
# the default ulimits runc would try to raise; see
# shared/notes/deploy-verification.md. The file lives as long as the caller's
# $podman_scratch directory.
setup_podman() {
  require_tools podman runc
  [[ $(id -u) -eq 0 ]] || die "run as root: rootless podman needs subuid ranges these machines lack"
  podman_scratch=$(mktemp -d "${TMPDIR:-/tmp}/shmbroker-podman.XXXXXX")
  if [[ -z "${CONTAINERS_CONF:-}" ]]; then
    cat >"$podman_scratch/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
EOF
    export CONTAINERS_CONF=$podman_scratch/containers.conf
  fi
}

# The first deb.debian.org-style mirror this machine's apt uses, so that
# debootstrap goes where apt already can.
apt_mirror() {
  if [[ -n "${DEBIAN_MIRROR:-}" ]]; then echo "$DEBIAN_MIRROR"; return; fi
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    # deb822: the URIs of the stanza whose Suites has bookworm.
    uri=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm([ \n]|$)/ && /Types:[^\n]*deb([ \n]|$)/ {
                 if (match($0, /URIs:[ \t]*[^ \t\n]+/)) {
                   s = substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", s); print s; exit } }' "$f")
    [[ -n $uri ]] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $(i+1) == "bookworm") { print $i; exit } }' "$f")
    [[ -n $uri ]] && { echo "$uri"; return; }
  done
  echo "http://deb.debian.org/debian"
}

# Makes the debootstrap tree look like debian:bookworm-slim, which is what
# the Dockerfile is written for: no docs, man pages or locales (dpkg is told
# to leave them out of later installs too), no apt lists, and the host's
# Debian sources (with -updates and -security) instead of debootstrap's
# single line.
slim_rootfs() {
  local rootfs=$1
  # Everything below deletes inside $rootfs: refuse anything that is not a
  # debootstrap tree, so that a wrong argument can never touch the host.
  [[ -n $rootfs && $rootfs != / && -x $rootfs/usr/bin/apt-get && -d $rootfs/etc/dpkg/dpkg.cfg.d ]] ||
    die "slim_rootfs: '$rootfs' is not a debootstrap tree"
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/groff/*' \
    'path-exclude /usr/share/info/*' 'path-exclude /usr/share/lintian/*' \
    'path-exclude /usr/share/linda/*' 'path-exclude /usr/share/locale/*' \
    >"$rootfs/etc/dpkg/dpkg.cfg.d/slim-excludes"
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "${rootfs:?}"/usr/share/{man,groff,info,lintian,linda,locale}/*
  chroot "$rootfs" apt-get clean
  rm -rf "${rootfs:?}"/var/lib/apt/lists/*
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/debian.sources"
    rm -f "${rootfs:?}/etc/apt/sources.list"
  fi
}

# localhost/debian:bookworm is made once with debootstrap (no registry can be
# reached) and then stays in podman's store: later runs reuse it.
ensure_base_image() {
  if podman image exists "$SHMBROKER_BASE_IMAGE"; then
    log "base image $SHMBROKER_BASE_IMAGE: cached"
    return
  fi
  [[ $SHMBROKER_BASE_IMAGE == localhost/debian:bookworm ]] ||
    die "base image $SHMBROKER_BASE_IMAGE is not in podman's store, and only localhost/debian:bookworm is made here"
  require_tools debootstrap tar
  local mirror rootfs
  mirror=$(apt_mirror)
  rootfs=$podman_scratch/rootfs
  log "making $SHMBROKER_BASE_IMAGE: debootstrap --variant=minbase bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$podman_scratch/debootstrap.log" 2>&1 || {
    tail -n 30 "$podman_scratch/debootstrap.log" >&2; die "debootstrap failed"; }
  slim_rootfs "$rootfs"
  # ./dev/* stays out: device nodes baked into the image would shadow the
  # runtime's /dev, and a non-root container could then not write /dev/shm.
  tar -C "$rootfs" --numeric-owner --exclude='./dev/*' -c . |
    podman import --quiet --change 'CMD ["/bin/bash"]' - "$SHMBROKER_BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  log "base image $SHMBROKER_BASE_IMAGE: made"
}

# Builds the image from the repository's Dockerfile (docker format: OCI has
# no HEALTHCHECK, and podman drops it). podman's layer cache
# (on by default) makes a rebuild with unchanged sources take seconds; the
# dependency layers survive source changes.
build_image() {
  local t0=$SECONDS
  log "podman build -t $SHMBROKER_IMAGE ($deploy_root)"
  podman build --format docker --layers --build-arg BASE_IMAGE="$SHMBROKER_BASE_IMAGE" \
    -t "$SHMBROKER_IMAGE" -f "$deploy_root/Dockerfile" "$deploy_root" \
    >"$podman_scratch/build.log" 2>&1 || {
    tail -n 60 "$podman_scratch/build.log" >&2; die "podman build failed"; }
  log "image built in $((SECONDS - t0)) s; size $(image_size)"
}

image_size() {
  podman image inspect --format '{{.Size}}' "$SHMBROKER_IMAGE" |
    awk '{ printf "%.1f MB (%d bytes)\n", $1 / 1e6, $1 }'
}
