#!/usr/bin/env bash
# Build and run every test: warnings are errors, unit tests also run under
# ASan/UBSan, then the whole suite (unit + integration against a real quiverd)
# through ctest. Data sets come from ../shared/data (QUIVER_DATA overrides);
# tests that need one skip when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
JOBS=$(nproc)
DATA=${QUIVER_DATA:-$(pwd)/../shared/data}
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Asan -DQUIVER_WERROR=ON -DQUIVER_INTEGRATION_TESTS=OFF >/dev/null
cmake --build build-asan -j "$JOBS" >/dev/null
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(pwd)/../tests/unit/lsan.supp ctest --output-on-failure -R '^unit_')
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQUIVER_WERROR=ON -DQUIVER_DATA_DIR="$DATA" >/dev/null
cmake --build build -j "$JOBS" >/dev/null
cd build && ctest --output-on-failure --timeout 1800
