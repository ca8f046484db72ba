#!/bin/bash
# Builds the shmbroker container image from the repository's Dockerfile with
# podman: first the Debian base image with debootstrap if podman's store does
# not have it yet, then `podman build`. CTest runs this once, as the setup of
# the `shmbroker_image` fixture that check_image.sh and check_k8s.sh play use.
# Both caches (the base image and podman's layers) live in podman's store, so
# a second run only rebuilds what changed.
# Usage: tests/deploy/build_image.sh   (env: see podman_lib.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/podman_lib.sh"

setup_podman
trap 'rm -rf "$podman_scratch"' EXIT
t0=$SECONDS
ensure_base_image
build_image
log "build_image: PASS in $((SECONDS - t0)) s"
