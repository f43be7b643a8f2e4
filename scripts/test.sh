#!/usr/bin/env bash
# Run the whole Stratus test suite: formatting, lints, the layout rule, unit tests,
# openraft's storage conformance suite and the integration tests that start real processes
# on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh

echo "== cargo fmt --check" >&2
cargo fmt --all --check

# The stateless proxy, the CLI and the compute agent reach the cluster through
# stratus-client only: none may link RocksDB or openraft (only meta and storage-node do).
echo "== layout: proxy, cli and compute agent link neither RocksDB nor openraft" >&2
for pkg in stratus-proxy stratus-cli stratus-compute-agent; do
  linked=$(cargo tree --locked -p "$pkg" -e normal,build --prefix none \
    | awk '{print $1}' | grep -E '^(rocksdb|librocksdb-sys|openraft)$' | sort -u || true)
  if [ -n "$linked" ]; then
    echo "$pkg links $(echo "$linked" | tr '\n' ' ')— it must reach meta and storage nodes through stratus-client" >&2
    exit 1
  fi
done

echo "== cargo clippy (warnings are errors)" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings

# The criterion benchmarks are not tests, but they must keep compiling.
echo "== benches compile" >&2
cargo check -p stratus-benches --benches --examples --locked

# The integration tests (the stratus-tests crate) start every service binary (meta,
# storage, proxy) through `stratus dev up`: build all of them first.
# Storage and meta nodes are built with their crash points (the `failpoints` feature, never in a
# release) for the crash tests; both commands name it, so neither rebuilds the other's.
echo "== build" >&2
cargo build --workspace --exclude stratus-benches --bins --locked --features stratus-storage-node/failpoints,stratus-meta/failpoints
# Integration tests each run a cluster of real processes; two at a time suits 2 cores.
echo "== tests" >&2
cargo test --workspace --exclude stratus-benches --locked --features stratus-storage-node/failpoints,stratus-meta/failpoints -- --test-threads=2

# Swift's own functional tests (release 2.30.1) against a dev cluster of the binaries just
# built: each module must pass at least its floor in tests/swift-functional-floors.txt.
echo "== Swift 2.30.1 functional tests" >&2
bash scripts/swift-functional.sh --floors tests/swift-functional-floors.txt
