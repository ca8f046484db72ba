#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a passing test suite:
# installs what is missing, builds, runs every test (unit, integration with
# the real daemon and real processes, install/consumer, deployment: the
# container image built and run with podman, the Kubernetes manifests
# validated and played), then builds again
# with AddressSanitizer + UndefinedBehaviorSanitizer and runs the tests
# there too (the daemon the integration tests start is the sanitized one),
# runs the concurrency and unit tests under ThreadSanitizer, and
# last fuzzes for a short smoke (tests/fuzz, docs/testing.md).
# Run as root: some tests switch to a second uid.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
ctest --test-dir build --output-on-failure --timeout 300 -j2

echo "== again under ASan + UBSan"
# The sanitizer builds are unity builds (CMAKE_UNITY_BUILD: a target's
# sources compiled eight to a translation unit), which nearly halves their
# cold compile (docs/testing.md, "Unity builds"). The first build is not: it
# compiles every file alone, so a missing #include still fails CI.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSHMBROKER_SANITIZE=address,undefined -DSHMBROKER_BUILD_BENCH=OFF \
  -DCMAKE_UNITY_BUILD=ON >/dev/null
cmake --build build-asan
# The install test builds an unsanitized consumer, which cannot load a
# sanitized library; it says nothing about memory safety. Neither do the
# container image, Kubernetes and Debian package tests (labels image, k8s,
# package): they check manifests, the image's own unsanitized binaries and
# packages (which would hold sanitized ones here), and take minutes.
# FdLimitTest stays out of this pass: it runs the daemon out of file
# descriptors on purpose, and UBSan's vptr check cannot work in such a
# process. On a miss in its cache it asks whether the vtable is readable
# by writing it into a pipe2(), which fails with EMFILE, and it then reports
# any object it checks as "invalid vptr" ("<memory cannot be printed>") and
# exits: a gRPC reactor, a shared_ptr's control block, whatever comes
# first. A short program that exhausts its fds and then touches a live
# object reproduces it (docs/testing.md). The first pass runs the test.
ctest --test-dir build-asan --output-on-failure --timeout 300 -j2 \
  -LE 'install|image|k8s|package' -E '^FdLimitTest\.'

# ThreadSanitizer over the tests that run threads: core's, the fd channel
# with every daemon thread against it (100 rounds of 4 client threads), the
# client library's fd channel (4 threads, 2,000 calls each), and the unit
# tests of server/ and client/, which link gRPC (the client's hold table,
# and its resumer and lease keeper against a stand-in fd channel). Every
# executable links the TSan-only absl::Mutex (tests/tsan), which gRPC's
# locks use too; TSan ignores what the uninstrumented libraries ask of its
# runtime (ignore_noninstrumented_modules; docs/testing.md,
# "ThreadSanitizer"). Any report fails the run (TSan exits 66).
# PausePointTest forks children that read their variable once per process:
# ctest runs each test alone, so here they run alone too.
echo "== ThreadSanitizer"
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSHMBROKER_SANITIZE=thread -DSHMBROKER_TSAN_SHIM=ON \
  -DSHMBROKER_BUILD_BENCH=OFF -DCMAKE_UNITY_BUILD=ON >/dev/null
cmake --build build-tsan --target core_concurrency_test \
  fd_channel_concurrency_test client_fd_channel_concurrency_test \
  server_test client_unit_test
export TSAN_OPTIONS=ignore_noninstrumented_modules=1
build-tsan/tests/core/core_concurrency_test
SHMBROKER_FD_CHANNEL_ROUNDS=100 \
  build-tsan/tests/server/fd_channel_concurrency_test
SHMBROKER_CLIENT_FD_CHANNEL_CALLS=2000 \
  build-tsan/tests/client/client_fd_channel_concurrency_test
build-tsan/tests/server/server_test
build-tsan/tests/client/client_unit_test --gtest_filter='-PausePointTest.*'
for test in $(build-tsan/tests/client/client_unit_test \
    --gtest_list_tests --gtest_filter='PausePointTest.*' | sed -n 's/^  //p'); do
  build-tsan/tests/client/client_unit_test --gtest_filter="PausePointTest.$test"
done
unset TSAN_OPTIONS

# Fuzzing smoke: builds the libFuzzer targets with clang-14 (ASan + UBSan,
# build-fuzz/), replays every input under tests/fuzz/regressions, then
# fuzzes each target for 10 s from its seed corpus. 1.5 to 2.5 minutes
# from a clean build-fuzz/ without ccache on two cores (the slower with
# another build on the machine), about 40 s once built. A long run is
# `tests/fuzz/run.sh 1800` (docs/testing.md).
echo "== fuzzing smoke"
tests/fuzz/run.sh 10
