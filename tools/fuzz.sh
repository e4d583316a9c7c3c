#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for SECONDS
# (default 60) on its committed seeds (tests/fuzz/corpus/<target>), after
# replaying the committed regression inputs (tests/fuzz/regressions/<target>).
# A crash leaves its input in build-fuzz/crash-<target>-*: commit it under
# tests/fuzz/regressions/<target>/ with the fix. Exit status non-zero on any
# crash, leak or sanitizer report.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
case "$SECS" in ''|*[!0-9]*) echo "usage: tools/fuzz.sh [SECONDS]" >&2; exit 2;; esac
tools/deps.sh
# the same FAISS the other builds use (built with gcc; its cache key would
# change with the compiler)
PREFIX=${QUIVER_FAISS_PREFIX:-$(cmake -P cmake/QuiverFaiss.cmake 2>&1 | sed -n 's/^-- FAISS [0-9.]*: //p')}
cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Asan -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DQUIVER_FUZZ=ON -DQUIVER_INTEGRATION_TESTS=OFF \
  -DQUIVER_FAISS_PREFIX="$PREFIX" >/dev/null
TARGETS=(request codec wire ixfile)
cmake --build build-fuzz -j "$(nproc)" --target "${TARGETS[@]/#/fuzz_}" >/dev/null
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export LSAN_OPTIONS=suppressions=$(pwd)/tests/unit/lsan.supp
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for t in "${TARGETS[@]}"; do
  bin=build-fuzz/fuzz_$t
  reg=tests/fuzz/regressions/$t
  mapfile -t inputs < <(find "$reg" -type f ! -name .keep 2>/dev/null)
  if [ ${#inputs[@]} -gt 0 ]; then
    echo "fuzz_$t: ${#inputs[@]} regression inputs" >&2
    "$bin" "${inputs[@]}" >/dev/null 2>build-fuzz/fuzz_$t.regressions.log ||
      { cat build-fuzz/fuzz_$t.regressions.log >&2; exit 1; }
  fi
  mkdir -p build-fuzz/corpus/$t
  echo "fuzz_$t: ${SECS} s" >&2
  "$bin" -max_total_time="$SECS" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix=build-fuzz/crash-$t- build-fuzz/corpus/$t tests/fuzz/corpus/$t \
    2>build-fuzz/fuzz_$t.log || { tail -60 build-fuzz/fuzz_$t.log >&2; exit 1; }
  grep -E "^stat::number_of_executed_units|^stat::new_units_added" build-fuzz/fuzz_$t.log | tr '\n' ' ' >&2
  echo >&2
done
echo "fuzz: all targets ran ${SECS} s without a finding" >&2
