//! Prints what the ring benchmark's rebalances do (not how fast): partition-replicas moved
//! against the minimum, balance and dispersion, for 2^18 partitions × 3 replicas over 100
//! devices in 5 zones, then 5 devices more. `cargo run --release -p stratus-benches --example ring_report`

use std::time::Instant;

use stratus_benches::{add_five_devices, hundred_device_builder, T0};

fn main() {
    let mut b = hundred_device_builder();
    let t = Instant::now();
    let r = b.rebalance(T0).unwrap();
    println!(
        "first build: {:?}; reassigned {} of {}, balance {:.3}%, dispersion {:.2}%",
        t.elapsed(),
        r.reassigned,
        r.slots,
        r.balance,
        r.dispersion
    );
    add_five_devices(&mut b);
    let t = Instant::now();
    let r = b.rebalance(T0 + 7200).unwrap();
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
