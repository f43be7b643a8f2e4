#!/usr/bin/env bash
# Build Stratus (release) and start a local cluster on 127.0.0.1: 3 meta nodes, 4 storage
# nodes, the Swift API proxy (python3-swiftclient is installed too, for the `swift` client).
# Extra arguments go to `stratus dev up` (e.g. --dir /tmp/stratus).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --locked --bins
exec ./target/release/stratus dev up "$@"
