//! Criterion micro-benchmarks live in `benches/`; this library only gives the crate a
//! target. The suite is excluded from `scripts/test.sh` so CI does not build criterion.
