//! Shared fixtures of the criterion micro-benchmarks in `benches/` and of the examples that
//! report what those benchmarks do. The crate is excluded from `scripts/test.sh`, so CI does
//! not build criterion.

use stratus_core::ring::{NewDevice, RingBuilder};

/// Unix time the ring fixtures are rebalanced at.
pub const T0: u64 = 1_800_000_000;

/// The benchmark ring's device `dev` on node `node` of `zone` (region 1, weight 100).
pub fn bench_device(zone: u32, node: u32, dev: u32) -> NewDevice {
    NewDevice {
        region: 1,
        zone,
        node: format!("10.0.{zone}.{node}:6200"),
        name: format!("d{dev}"),
        weight: 100.0,
    }
}

/// 2^18 partitions × 3 replicas over 100 devices: 5 zones × 4 nodes × 5 devices, not yet
/// rebalanced.
pub fn hundred_device_builder() -> RingBuilder {
    let mut b = RingBuilder::new(18, 3, 1, [9; 16], 1).expect("valid parameters");
    for zone in 1..=5 {
        for node in 0..4 {
            for dev in 0..5 {
                b.add_device(bench_device(zone, node, dev))
                    .expect("distinct devices");
            }
        }
    }
    b
}

/// Adds one device per zone on a new node (9): the "add 5 devices" step.
pub fn add_five_devices(b: &mut RingBuilder) {
    for zone in 1..=5 {
        b.add_device(bench_device(zone, 9, 0))
            .expect("distinct devices");
    }
}
