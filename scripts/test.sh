#!/usr/bin/env bash
# Run the whole Stratus test suite: unit tests, openraft's storage conformance suite and the
# integration tests that start real processes on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
# Integration tests each run a cluster of real processes; two at a time suits 2 cores.
# The criterion benchmarks (stratus-benches) are not tests; leaving them out keeps criterion
# out of the CI build. Run them with `cargo bench -p stratus-benches`.
cargo test --workspace --exclude stratus-benches --locked -- --test-threads=2
