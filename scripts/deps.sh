#!/usr/bin/env bash
# Install the system packages Stratus needs to build, when they are missing.
# RocksDB's Rust bindings need libclang (bindgen) and a C++ toolchain; protoc is vendored.
# The integration tests drive the cluster with the real `swift` client (python3-swiftclient),
# fetch temp URLs with curl, build tar, tar.gz and tar.bz2 archives (tar, gzip, bzip2), and
# parse every service's /metrics with the Prometheus text parser of prometheus_client.
set -euo pipefail

need=()
for pkg in libclang-dev build-essential pkg-config python3-swiftclient python3-prometheus-client curl tar gzip bzip2; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "installing system packages: ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install the Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi
