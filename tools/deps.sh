#!/usr/bin/env bash
# Installs the Debian bookworm packages Quiver needs to build, run and test,
# skipping those already installed. Uses sudo when not root.
set -euo pipefail
PKGS=(build-essential cmake pkg-config xxd
      libopenblas-dev liblapack-dev liblmdb-dev lmdb-utils
      libprotobuf-c-dev protobuf-c-compiler libgrpc-dev libcmocka-dev
      libroaring-dev libjansson-dev libarchive-dev libssl-dev
      python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc
      python3-numpy python3-pytest grpc-proto python3-hnswlib gnuplot-nox
      python3-venv python3-pip python3-setuptools python3-wheel mypy
      clang libclang-rt-14-dev libfuzzer-14-dev strace
      libmicrohttpd-dev prometheus
      nats-server libnats-dev etcd-server etcd-client golang-etcd-server-dev
      golang-github-gogo-protobuf-dev golang-github-grpc-ecosystem-grpc-gateway-dev
      openssl    # test_etcd makes its TLS certificates with the openssl tool
      python3-jsonschema python3-kubernetes)  # test_kubernetes_manifests: the API's schemas
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
# FAISS 1.15.0 from the pinned release, built once per machine into
# ~/.cache/quiver (cmake/QuiverFaiss.cmake; a no-op when already built).
# Skipped when the caller names an installed FAISS (QUIVER_FAISS_PREFIX).
if [ -z "${QUIVER_FAISS_PREFIX:-}" ]; then
  cmake -P "$(dirname "$0")/../cmake/QuiverFaiss.cmake" >&2
fi
