#!/usr/bin/env bash
# Builds the libFuzzer targets (build-fuzz/, clang-14, ASan + UBSan) if
# needed, runs every committed regression input, then fuzzes each target
# for SECONDS_PER_TARGET (default 10: a smoke; docs/testing.md has the long
# run). Prints one line per target and exits non-zero on any crash, leak,
# timeout or out-of-memory, keeping the input under
# build-fuzz/fuzz-artifacts/<target>/.
#
# Each target starts from its seed corpus (tests/fuzz/corpus/<target>),
# copied into a scratch directory: what a run discovers is never written
# back into the repository.
#
# usage: tests/fuzz/run.sh [SECONDS_PER_TARGET]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-10}
build=build-fuzz
fuzz=tests/fuzz
targets=(fd_channel_decode parsers registry_ops books_load rpc_requests tenant_limits)
# libFuzzer's flags for every run: a unit that takes 25 s is a hang; 2 GiB
# is far above what any target needs (ASan's quarantine included).
flags=(-rss_limit_mb=2048 -timeout=25 -print_final_stats=1)

if [ ! -f "$build/build.ninja" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++-14 -DSHMBROKER_FUZZ=ON \
    -DSHMBROKER_BUILD_TESTS=OFF -DSHMBROKER_BUILD_BENCH=OFF >/dev/null
fi
# -j2: CI machines have two cores, and other builds may share them.
cmake --build "$build" -j2 --target "${targets[@]/#/fuzz_}"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=0

# Copies what libFuzzer saved for a failed run where it outlives the run.
keep_artifacts() {
  local target=$1 dir=$2 log=$3
  local keep="$build/fuzz-artifacts/$target"
  mkdir -p "$keep"
  cp "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-* "$keep"/ \
    2>/dev/null || true
  cp "$log" "$keep/"
  echo "---- $target failed; the log and inputs are in $keep/"
  grep -E 'ERROR|FUZZ_CHECK|SUMMARY|runtime error' "$log" | head -20 || true
}

for target in "${targets[@]}"; do
  binary="$build/tests/fuzz/fuzz_$target"
  work="$scratch/$target"
  mkdir -p "$work/corpus" "$work/artifacts" "$work/regression-artifacts"
  dict=()
  [ -f "$fuzz/$target.dict" ] && dict=(-dict="$fuzz/$target.dict")

  # Every regression input must pass (libFuzzer runs the files given once).
  regressions=("$fuzz/regressions/$target"/*)
  if [ -e "${regressions[0]}" ]; then
    if ! "$binary" "${flags[@]}" -artifact_prefix="$work/regression-artifacts/" \
      "${regressions[@]}" >"$work/regressions.log" 2>&1; then
      keep_artifacts "$target" "$work/regression-artifacts" "$work/regressions.log"
      failed=1
    fi
  fi

  cp "$fuzz/corpus/$target"/* "$work/corpus/"
  status=0
  "$binary" "${flags[@]}" "${dict[@]}" -max_total_time="$seconds" \
    -artifact_prefix="$work/artifacts/" "$work/corpus" \
    >"$work/fuzz.log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/fuzz.log")
  last=$(grep -E '^#[0-9]+' "$work/fuzz.log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' <<<"$last" | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' <<<"$last" | cut -d' ' -f2)
  crashes=$(find "$work/artifacts" -type f | wc -l)
  printf '%-18s %10s execs in %ss  cov %5s  ft %6s  crashes %d  regressions %d\n' \
    "$target" "${execs:-?}" "$seconds" "${cov:-?}" "${ft:-?}" "$crashes" \
    "$([ -e "${regressions[0]}" ] && echo ${#regressions[@]} || echo 0)"
  if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    keep_artifacts "$target" "$work/artifacts" "$work/fuzz.log"
    failed=1
  fi
done
exit "$failed"
