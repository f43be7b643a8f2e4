#!/usr/bin/env bash
# Run the whole Stratus test suite: unit tests, openraft's storage conformance suite and the
# integration tests that start real processes on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
# Integration tests each run a cluster of real processes; two at a time suits 2 cores.
# The criterion benchmarks (stratus-benches) are not tests; leaving them out keeps criterion
# out of the CI build. Run them with `cargo bench -p stratus-benches`.
# The integration tests start every service binary (meta, storage, proxy) through `stratus
# dev up`; cargo builds only the tested package's own binaries for its tests, so build all
# of them first.
cargo build --workspace --exclude stratus-benches --bins --locked
cargo test --workspace --exclude stratus-benches --locked -- --test-threads=2
