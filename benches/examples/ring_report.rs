//! Prints what the ring benchmark's rebalances do (not how fast): partition-replicas moved
//! against the minimum, balance and dispersion, for 2^18 partitions × 3 replicas over 100
//! devices in 5 zones, then 5 devices more. `cargo run --release -p stratus-benches --example ring_report`

use std::time::Instant;

use stratus_core::ring::{NewDevice, RingBuilder};

fn main() {
    let mut b = RingBuilder::new(18, 3, 1, [9; 16], 1).unwrap();
    let add = |b: &mut RingBuilder, zone: u32, node: u32, dev: u32| {
        b.add_device(NewDevice {
            region: 1,
            zone,
            node: format!("10.0.{zone}.{node}:6200"),
            name: format!("d{dev}"),
            weight: 100.0,
        })
        .unwrap();
    };
    for zone in 1..=5 {
        for node in 0..4 {
            for dev in 0..5 {
                add(&mut b, zone, node, dev);
            }
        }
    }
    let t = Instant::now();
    let r = b.rebalance(1_800_000_000).unwrap();
    println!(
        "first build: {:?}; reassigned {} of {}, balance {:.3}%, dispersion {:.2}%",
        t.elapsed(),
        r.reassigned,
        r.slots,
        r.balance,
        r.dispersion
    );
    for zone in 1..=5 {
        add(&mut b, zone, 9, 0);
    }
    let t = Instant::now();
    let r = b.rebalance(1_800_000_000 + 7200).unwrap();
    let fair = r.slots as f64 * 5.0 / 105.0;
    println!(
        "add 5 devices: {:?}; moved {} (their fair share {:.0}: {:.2}x the minimum), balance {:.3}%, dispersion {:.2}%",
        t.elapsed(),
        r.moved,
        fair,
        r.moved as f64 / fair,
        r.balance,
        r.dispersion
    );
}
