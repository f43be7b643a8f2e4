//! Property tests of the ring builder over random topologies: every partition gets
//! `replicas` distinct devices, spread over zones when there are enough, in proportion to
//! weight; rebalances move close to the minimum, honour `min_part_hours`, and are
//! reproducible; the binary format round-trips.

use proptest::prelude::*;
use stratus_core::ring::{NewDevice, Ring, RingBuilder};

const HOUR: u64 = 3600;
const T0: u64 = 1_800_000_000;

/// A topology: per device (region, zone, node index, weight).
#[derive(Debug, Clone)]
struct Topo {
    devs: Vec<(u32, u32, u32, f64)>,
}

fn new_dev(region: u32, zone: u32, node: u32, i: usize, weight: f64) -> NewDevice {
    NewDevice {
        region,
        zone,
        node: format!("10.{region}.{zone}.{node}:6200"),
        name: format!("d{i}"),
        weight,
    }
}

fn builder(t: &Topo, part_power: u32, replicas: u32, mph: u32, seed: u64) -> RingBuilder {
    let mut b = RingBuilder::new(part_power, replicas, mph, [7; 16], seed).unwrap();
    for (i, &(r, z, n, w)) in t.devs.iter().enumerate() {
        b.add_device(new_dev(r, z, n, i, w)).unwrap();
    }
    b
}

/// Any topology: 1–2 regions, 1–4 zones each, 1–3 nodes each, 1–3 devices each.
fn any_topo() -> impl Strategy<Value = Topo> {
    prop::collection::vec(
        prop::collection::vec(
            prop::collection::vec(prop::collection::vec(0.5f64..3.0, 1..=3), 1..=3),
            1..=4,
        ),
        1..=2,
    )
    .prop_map(|regions| {
        let mut devs = Vec::new();
        for (r, zones) in regions.iter().enumerate() {
            for (z, nodes) in zones.iter().enumerate() {
                for (n, ws) in nodes.iter().enumerate() {
                    for &w in ws {
                        devs.push((r as u32 + 1, z as u32 + 1, n as u32, w));
                    }
                }
            }
        }
        Topo { devs }
    })
}

/// A topology whose weights allow perfect balance: one region, at least 3 zones of equal
/// total weight, random device weights inside each zone.
fn balanced_topo() -> impl Strategy<Value = Topo> {
    prop::collection::vec(
        prop::collection::vec(prop::collection::vec(1u32..=3, 1..=3), 1..=3),
        3..=5,
    )
    .prop_map(|zones| {
        let mut devs = Vec::new();
        for (z, nodes) in zones.iter().enumerate() {
            let total: u32 = nodes.iter().flatten().sum();
            for (n, ws) in nodes.iter().enumerate() {
                for &w in ws {
                    devs.push((
                        1,
                        z as u32 + 1,
                        n as u32,
                        100.0 * f64::from(w) / f64::from(total),
                    ));
                }
            }
        }
        Topo { devs }
    })
}

fn assert_valid(ring: &Ring) {
    let r = usize::from(ring.replicas());
    for p in 0..ring.partitions() as u32 {
        let ids = ring.primary_ids(p);
        assert_eq!(ids.len(), r);
        for (i, id) in ids.iter().enumerate() {
            assert!(
                !ids[..i].contains(id),
                "partition {p} has two copies on {id}"
            );
            assert!(ring.device(*id).is_some());
        }
    }
}

fn zones_of(ring: &Ring, p: u32) -> Vec<(u32, u32)> {
    ring.primaries(p).map(|d| (d.region, d.zone)).collect()
}

/// Slots whose device changed between two rings of the same shape.
fn changed(a: &Ring, b: &Ring) -> Vec<(u32, u32, u32)> {
    let mut out = Vec::new();
    for p in 0..a.partitions() as u32 {
        for (x, y) in a.primary_ids(p).iter().zip(b.primary_ids(p)) {
            if x != y {
                out.push((p, *x, *y));
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_partition_gets_distinct_devices_spread_over_zones(
        t in any_topo(), replicas in 1u32..=3, seed in any::<u64>()
    ) {
        prop_assume!(t.devs.len() >= replicas as usize);
        let mut b = builder(&t, 8, replicas, 1, seed);
        let rep = b.rebalance(T0).unwrap();
        prop_assert_eq!(rep.reassigned, rep.slots);
        let ring = b.ring().unwrap();
        assert_valid(&ring);
        let regions: std::collections::BTreeSet<u32> = t.devs.iter().map(|d| d.0).collect();
        let zones: std::collections::BTreeSet<(u32, u32)> = t.devs.iter().map(|d| (d.0, d.1)).collect();
        if regions.len() == 1 && zones.len() >= replicas as usize {
            for p in 0..ring.partitions() as u32 {
                let mut z = zones_of(&ring, p);
                z.sort();
                z.dedup();
                prop_assert_eq!(z.len(), replicas as usize, "partition {} crowds a zone", p);
            }
            prop_assert_eq!(rep.dispersion, 0.0);
        }
        // Serialization round-trips, and the builder state too.
        let bytes = ring.to_bytes();
        prop_assert_eq!(Ring::from_bytes(&bytes).unwrap(), ring);
        let back = RingBuilder::from_bytes(&b.to_bytes()).unwrap();
        prop_assert_eq!(back, b);
    }

    #[test]
    fn balance_is_within_one_percent_when_weights_allow(t in balanced_topo(), seed in any::<u64>()) {
        let mut b = builder(&t, 14, 3, 1, seed);
        let rep = b.rebalance(T0).unwrap();
        prop_assert!(rep.balance <= 1.0, "balance {}", rep.balance);
        prop_assert_eq!(rep.dispersion, 0.0);
    }

    #[test]
    fn adding_a_device_moves_close_to_its_fair_share(
        t in balanced_topo(), seed in any::<u64>(), zone_pick in any::<prop::sample::Index>(), w in 0.5f64..2.0
    ) {
        let mut b = builder(&t, 12, 3, 1, seed);
        b.rebalance(T0).unwrap();
        let before = b.ring().unwrap();
        let zone = t.devs[zone_pick.index(t.devs.len())].1;
        let avg = t.devs.iter().map(|d| d.3).sum::<f64>() / t.devs.len() as f64;
        let id = b.add_device(new_dev(1, zone, 99, 999, avg * w)).unwrap();
        let rep = b.rebalance(T0 + 2 * HOUR).unwrap();
        let after = b.ring().unwrap();
        assert_valid(&after);
        let moves = changed(&before, &after);
        prop_assert_eq!(rep.moved as usize, moves.len());
        let gained = b.parts_per_device()[&id] as f64;
        prop_assert!(gained > 0.0);
        // Everything that moved went to the new device, give or take 5%.
        prop_assert!(moves.len() as f64 <= gained * 1.05 + 2.0,
            "moved {} partition-replicas, new device got {}", moves.len(), gained);
        // At most one copy of a partition moved.
        let mut parts: Vec<u32> = moves.iter().map(|m| m.0).collect();
        parts.sort();
        let n = parts.len();
        parts.dedup();
        prop_assert_eq!(parts.len(), n);
    }

    #[test]
    fn removing_a_device_moves_only_its_partitions(
        t in any_topo(), replicas in 1u32..=3, seed in any::<u64>(), pick in any::<prop::sample::Index>()
    ) {
        prop_assume!(t.devs.len() > replicas as usize);
        let mut b = builder(&t, 8, replicas, 24, seed);
        b.rebalance(T0).unwrap();
        let before = b.ring().unwrap();
        let gone = pick.index(t.devs.len()) as u32;
        b.remove_device(gone).unwrap();
        // Even within min_part_hours: a removed device must be drained.
        let rep = b.rebalance(T0 + HOUR).unwrap();
        let after = b.ring().unwrap();
        assert_valid(&after);
        prop_assert!(after.device(gone).is_none());
        let moves = changed(&before, &after);
        prop_assert!(moves.iter().all(|m| m.1 == gone), "moved off other devices: {:?}",
            moves.iter().filter(|m| m.1 != gone).take(5).collect::<Vec<_>>());
        let held = (0..before.partitions() as u32)
            .filter(|&p| before.primary_ids(p).contains(&gone))
            .count();
        prop_assert_eq!(moves.len(), held);
        prop_assert_eq!(rep.moved as usize, held);
    }

    #[test]
    fn min_part_hours_is_honoured(t in balanced_topo(), seed in any::<u64>(), pick in any::<prop::sample::Index>()) {
        let mph = 6;
        let mut b = builder(&t, 10, 3, mph, seed);
        b.rebalance(T0).unwrap();
        let r0 = b.ring().unwrap();
        // Within min_part_hours of the first placement nothing may move.
        b.add_device(new_dev(1, 1, 77, 777, 100.0)).unwrap();
        b.rebalance(T0 + HOUR).unwrap();
        let r1 = b.ring().unwrap();
        prop_assert!(changed(&r0, &r1).is_empty());
        // Once it has passed, partitions move...
        b.rebalance(T0 + u64::from(mph) * HOUR).unwrap();
        let r2 = b.ring().unwrap();
        let first = changed(&r1, &r2);
        prop_assert!(!first.is_empty());
        // ...and those that moved stay put for another min_part_hours, except off a removed device.
        let gone = pick.index(t.devs.len()) as u32;
        b.remove_device(gone).unwrap();
        b.add_device(new_dev(1, 2, 78, 778, 100.0)).unwrap();
        b.rebalance(T0 + u64::from(mph + 1) * HOUR).unwrap();
        let r3 = b.ring().unwrap();
        assert_valid(&r3);
        let moved_before: std::collections::BTreeSet<u32> = first.iter().map(|m| m.0).collect();
        for (p, from, _) in changed(&r2, &r3) {
            prop_assert!(!moved_before.contains(&p) || from == gone,
                "partition {} moved again within min_part_hours", p);
        }
    }

    #[test]
    fn same_inputs_give_the_same_ring(t in any_topo(), seed in any::<u64>()) {
        prop_assume!(t.devs.len() >= 2);
        let mut a = builder(&t, 8, 2, 1, seed);
        let mut b = builder(&t, 8, 2, 1, seed);
        let ra = a.rebalance(T0).unwrap();
        let rb = b.rebalance(T0).unwrap();
        prop_assert_eq!(ra, rb);
        prop_assert_eq!(a.ring().unwrap(), b.ring().unwrap());
        a.set_weight(0, 5.0).unwrap();
        b.set_weight(0, 5.0).unwrap();
        a.rebalance(T0 + 3 * HOUR).unwrap();
        b.rebalance(T0 + 3 * HOUR).unwrap();
        prop_assert_eq!(a.ring().unwrap().to_bytes(), b.ring().unwrap().to_bytes());
    }
}
