#!/usr/bin/env bash
# Build and run every test, twice: first in an ASan/UBSan build (unit tests and
# the integration tests against a sanitized quiverd), then in the release
# build. Warnings are errors. Data sets come from ../shared/data (QUIVER_DATA
# overrides); tests that need one skip when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
# the Python client, installed as the README says (Debian's python3: the packages are
# its), type-checked with mypy; tests/integration/test_python_client.py uses this .venv
export PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
/usr/bin/python3 -m venv --system-site-packages .venv
.venv/bin/pip install -q --no-build-isolation ./clients/python
mypy --config-file clients/python/pyproject.toml --python-executable .venv/bin/python \
     --cache-dir .venv/.mypy_cache -p quiver_client
JOBS=$(nproc)
DATA=${QUIVER_DATA:-$(pwd)/../shared/data}
export LSAN_OPTIONS=suppressions=$(pwd)/tests/unit/lsan.supp
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Asan -DQUIVER_WERROR=ON -DQUIVER_DATA_DIR="$DATA" >/dev/null
cmake --build build-asan -j "$JOBS" >/dev/null
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure --timeout 1800)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQUIVER_WERROR=ON -DQUIVER_DATA_DIR="$DATA" >/dev/null
cmake --build build -j "$JOBS" >/dev/null
cd build && ctest --output-on-failure --timeout 1800
# fuzzing: each libFuzzer target for a short time on its seeds and regressions
cd .. && tools/fuzz.sh "${QUIVER_FUZZ_SECONDS:-20}"
