#!/usr/bin/env bash
# Build and start quiverd on ./data (127.0.0.1:50051 unless QUIVER_LISTEN is
# set). Extra arguments go to quiverd (see build/quiverd --help).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
exec build/quiverd --listen "${QUIVER_LISTEN:-127.0.0.1:50051}" --data "${QUIVER_DATA_DIR:-./data}" "$@"
