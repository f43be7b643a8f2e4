#!/usr/bin/env bash
# Run the whole Stratus test suite: unit tests, openraft's storage conformance suite and the
# integration tests that start real processes on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
# Integration tests each run a cluster of real processes; two at a time suits 2 cores.
cargo test --workspace --locked -- --test-threads=2
