#!/usr/bin/env bash
# Installs the Debian 12 packages shmbroker needs to build, run and test,
# if any are missing. Uses sudo when not run as root.
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config ccache
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  zlib1g-dev  # crc32 for the books journal (server/books_format.h)
  libsystemd-dev  # sd_notify, the fd store (server/service_manager.h)
  libabsl-dev nlohmann-json3-dev libspdlog-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  util-linux  # setpriv, for the tests that run as a second uid
  # Fuzzing (tests/fuzz/run.sh): clang with libFuzzer and the sanitizer
  # runtimes.
  clang-14 libfuzzer-14-dev libclang-rt-14-dev
  # Observability and deployment tests: a real Prometheus and promtool, a
  # Python gRPC client, curl, systemd-analyze.
  prometheus python3 python3-grpcio curl systemd
  # The Python package (python/, tests/python): pybind11 for Debian's
  # /usr/bin/python3, numpy and torch for the zero-copy and pickling tests,
  # venv and pip for the pip-install test (no downloads).
  python3-pybind11 pybind11-dev python3-numpy python3-torch python3-venv
  python3-pip
  # Container image and Kubernetes tests: podman with runc (crun fails on
  # these hosts), buildah for podman build, catatonit for pods, debootstrap
  # for the base image (no registry can be pulled from). kubectl (1.32) comes
  # with the machine image; Debian's is too old for kustomize.
  podman buildah runc catatonit debootstrap
  # Debian packages (cmake/Packaging.cmake): dpkg-shlibdeps computes their
  # library dependencies.
  dpkg-dev
)
# Node.js and npm for the manifest and dashboard validators
# (tests/deploy/k8s-validate, tests/deploy/dashboard-schema).
# The machine image ships Node.js with its own npm; Debian's npm package
# would conflict with it, so ask for Debian's only when there is no npm.
command -v npm >/dev/null || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
