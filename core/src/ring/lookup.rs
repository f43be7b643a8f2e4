//! [`Ring`]: the published, immutable ring that answers "where does this path live".

use std::collections::BTreeSet;

use super::{partition_of, DevId, Device, HashKey, RingError};

const NONE: u32 = u32::MAX;

/// A published ring version. Cheap to share (`Arc<Ring>`); lookups never allocate except
/// for the handoff iterator's small bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct Ring {
    pub(crate) version: u64,
    pub(crate) part_power: u8,
    pub(crate) replicas: u8,
    pub(crate) hash_key: HashKey,
    pub(crate) created_at: u64,
    /// Devices in id order.
    pub(crate) devices: Vec<Device>,
    /// Device id → index into `devices` (`NONE` for ids not in this ring).
    index: Vec<u32>,
    /// Part-major device ids: `assignment[part * replicas + r]`.
    pub(crate) assignment: Vec<DevId>,
    regions: usize,
    zones: usize,
    nodes: usize,
}

impl Ring {
    /// Assembles and validates a ring: every slot names a device of the ring and no
    /// partition has two copies on one device.
    pub(crate) fn new(
        version: u64,
        part_power: u8,
        replicas: u8,
        hash_key: HashKey,
        created_at: u64,
        mut devices: Vec<Device>,
        assignment: Vec<DevId>,
    ) -> Result<Ring, RingError> {
        let corrupt = |m: String| Err(RingError::Corrupt(m));
        if part_power == 0 || part_power > super::MAX_PART_POWER {
            return corrupt(format!("partition power {part_power}"));
        }
        if replicas == 0 || replicas > super::MAX_REPLICAS {
            return corrupt(format!("replica count {replicas}"));
        }
        let r = usize::from(replicas);
        if assignment.len() != (1usize << part_power) * r {
            return corrupt(format!(
                "{} slots for 2^{part_power} partitions x {replicas} replicas",
                assignment.len()
            ));
        }
        devices.sort_by_key(|d| d.id);
        let max_id = devices.last().map_or(0, |d| d.id as usize + 1);
        let mut index = vec![NONE; max_id];
        for (i, d) in devices.iter().enumerate() {
            if index[d.id as usize] != NONE {
                return corrupt(format!("device id {} appears twice", d.id));
            }
            index[d.id as usize] = i as u32;
        }
        for (p, slots) in assignment.chunks(r).enumerate() {
            for (i, &id) in slots.iter().enumerate() {
                if index.get(id as usize).is_none_or(|&x| x == NONE) {
                    return corrupt(format!("partition {p} names unknown device {id}"));
                }
                if slots[..i].contains(&id) {
                    return corrupt(format!("partition {p} has two replicas on device {id}"));
                }
            }
        }
        let regions: BTreeSet<u32> = devices.iter().map(|d| d.region).collect();
        let zones: BTreeSet<(u32, u32)> = devices.iter().map(|d| (d.region, d.zone)).collect();
        let nodes: BTreeSet<&str> = devices.iter().map(|d| d.node.as_str()).collect();
        let (regions, zones, nodes) = (regions.len(), zones.len(), nodes.len());
        Ok(Ring {
            version,
            part_power,
            replicas,
            hash_key,
            created_at,
            devices,
            index,
            assignment,
            regions,
            zones,
            nodes,
        })
    }

    /// Ring version (one per rebalance).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Unix seconds when this version was built.
    pub fn created_at(&self) -> u64 {
        self.created_at
    }

    /// Partition power.
    pub fn part_power(&self) -> u8 {
        self.part_power
    }

    /// Number of partitions.
    pub fn partitions(&self) -> usize {
        1usize << self.part_power
    }

    /// Copies of each partition.
    pub fn replicas(&self) -> u8 {
        self.replicas
    }

    /// The cluster secret that keys path hashing.
    pub fn hash_key(&self) -> &HashKey {
        &self.hash_key
    }

    /// Devices in id order.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// A device by id.
    pub fn device(&self, id: DevId) -> Option<&Device> {
        match self.index.get(id as usize) {
            Some(&i) if i != NONE => Some(&self.devices[i as usize]),
            _ => None,
        }
    }

    /// The partition of a path (`/account[/container[/object]]`, see [`super::object_path`]).
    pub fn partition(&self, path: &str) -> u32 {
        partition_of(&self.hash_key, self.part_power, path.as_bytes())
    }

    /// Device ids holding partition `part`, in replica order.
    ///
    /// # Panics
    /// If `part` is not below [`Ring::partitions`].
    pub fn primary_ids(&self, part: u32) -> &[DevId] {
        let r = usize::from(self.replicas);
        let p = part as usize;
        &self.assignment[p * r..(p + 1) * r]
    }

    /// Devices holding partition `part`, in replica order.
    pub fn primaries(&self, part: u32) -> impl Iterator<Item = &Device> + '_ {
        self.primary_ids(part)
            .iter()
            .map(|&id| &self.devices[self.index[id as usize] as usize])
    }

    /// Where to put or look for partition `part` when primaries fail: every other device
    /// exactly once, preferring devices in regions the partition does not use yet, then new
    /// zones, then new nodes, then any device. The order comes from walking other
    /// partitions' assignments from a hashed start, so it is deterministic and a small ring
    /// change only changes a little of it (Swift's `get_more_nodes`).
    pub fn handoffs(&self, part: u32) -> Handoffs<'_> {
        let mut h = Handoffs {
            ring: self,
            used_devs: BTreeSet::new(),
            used_regions: BTreeSet::new(),
            used_zones: BTreeSet::new(),
            used_nodes: BTreeSet::new(),
            stage: Stage::Regions,
            start: 0,
            inc: 1,
            step: 0,
            replica: 0,
            rest: 0,
        };
        for d in self.primaries(part) {
            h.mark(d);
        }
        let parts = self.partitions();
        h.inc = (parts / 65536).max(1);
        let mixed = super::mix(
            u64::from(part) ^ u64::from_le_bytes(self.hash_key[..8].try_into().expect("8")),
        );
        h.start = (mixed as usize) % parts;
        h.stage = h.first_open_stage(Stage::Regions);
        h
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Regions,
    Zones,
    Nodes,
    Devices,
    /// Devices no partition walk reached (e.g. weight 0), in id order.
    Rest,
    Done,
}

/// Iterator over a partition's handoff devices; see [`Ring::handoffs`].
pub struct Handoffs<'a> {
    ring: &'a Ring,
    used_devs: BTreeSet<DevId>,
    used_regions: BTreeSet<u32>,
    used_zones: BTreeSet<(u32, u32)>,
    used_nodes: BTreeSet<&'a str>,
    stage: Stage,
    start: usize,
    inc: usize,
    /// Position in the walk of the current stage.
    step: usize,
    replica: usize,
    /// Position in `devices` during [`Stage::Rest`].
    rest: usize,
}

impl<'a> Handoffs<'a> {
    fn mark(&mut self, d: &'a Device) {
        self.used_devs.insert(d.id);
        self.used_regions.insert(d.region);
        self.used_zones.insert((d.region, d.zone));
        self.used_nodes.insert(d.node.as_str());
    }

    /// The first stage from `s` on that still has something new to offer.
    fn first_open_stage(&self, mut s: Stage) -> Stage {
        loop {
            let full = match s {
                Stage::Regions => self.used_regions.len() >= self.ring.regions,
                Stage::Zones => self.used_zones.len() >= self.ring.zones,
                Stage::Nodes => self.used_nodes.len() >= self.ring.nodes,
                Stage::Devices | Stage::Rest => self.used_devs.len() >= self.ring.devices.len(),
                Stage::Done => return s,
            };
            if !full {
                return s;
            }
            s = next_stage(s);
        }
    }

    fn wanted(&self, d: &Device) -> bool {
        if self.used_devs.contains(&d.id) {
            return false;
        }
        match self.stage {
            Stage::Regions => !self.used_regions.contains(&d.region),
            Stage::Zones => !self.used_zones.contains(&(d.region, d.zone)),
            Stage::Nodes => !self.used_nodes.contains(d.node.as_str()),
            _ => true,
        }
    }
}

fn next_stage(s: Stage) -> Stage {
    match s {
        Stage::Regions => Stage::Zones,
        Stage::Zones => Stage::Nodes,
        Stage::Nodes => Stage::Devices,
        Stage::Devices => Stage::Rest,
        Stage::Rest | Stage::Done => Stage::Done,
    }
}

impl<'a> Iterator for Handoffs<'a> {
    type Item = &'a Device;

    fn next(&mut self) -> Option<&'a Device> {
        let ring = self.ring;
        let parts = ring.partitions();
        let r = usize::from(ring.replicas);
        let steps = parts.div_ceil(self.inc);
        loop {
            match self.stage {
                Stage::Done => return None,
                Stage::Rest => {
                    while let Some(d) = ring.devices.get(self.rest) {
                        self.rest += 1;
                        if !self.used_devs.contains(&d.id) {
                            self.mark(d);
                            return Some(d);
                        }
                    }
                    self.stage = Stage::Done;
                }
                _ => {
                    while self.step < steps {
                        let part = (self.start + self.step * self.inc) % parts;
                        while self.replica < r {
                            let id = ring.assignment[part * r + self.replica];
                            self.replica += 1;
                            let d = &ring.devices[ring.index[id as usize] as usize];
                            if self.wanted(d) {
                                self.mark(d);
                                let open = self.first_open_stage(self.stage);
                                if open != self.stage {
                                    self.stage = open;
                                    self.step = 0;
                                    self.replica = 0;
                                }
                                return Some(d);
                            }
                        }
                        self.replica = 0;
                        self.step += 1;
                    }
                    self.stage = self.first_open_stage(next_stage(self.stage));
                    self.step = 0;
                    self.replica = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{NewDevice, RingBuilder};
    use super::*;

    const T0: u64 = 1_800_000_000;

    /// Region 1 has zones 1 and 2, region 2 has zone 1; two nodes per zone, two devices each.
    fn builder() -> RingBuilder {
        let mut b = RingBuilder::new(8, 2, 1, [3; 16], 42).unwrap();
        for (region, zone) in [(1, 1), (1, 2), (2, 1)] {
            for node in 0..2 {
                for dev in 0..2 {
                    b.add_device(NewDevice {
                        region,
                        zone,
                        node: format!("10.{region}.{zone}.{node}:6200"),
                        name: format!("d{dev}"),
                        weight: 1.0,
                    })
                    .unwrap();
                }
            }
        }
        b.rebalance(T0).unwrap();
        b
    }

    #[test]
    fn handoffs_prefer_new_regions_then_zones_then_nodes() {
        let ring = builder().ring().unwrap();
        for p in 0..ring.partitions() as u32 {
            let prim: Vec<&Device> = ring.primaries(p).collect();
            let hand: Vec<&Device> = ring.handoffs(p).collect();
            // Every other device exactly once.
            let mut ids: Vec<DevId> = hand.iter().map(|d| d.id).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), hand.len());
            assert_eq!(hand.len() + prim.len(), ring.devices().len());
            assert!(hand.iter().all(|d| !prim.iter().any(|x| x.id == d.id)));
            // A device that adds no new region comes only once every region is used; the
            // same for zones and nodes.
            let mut seen: Vec<&Device> = prim.clone();
            for d in &hand {
                let new_region = !seen.iter().any(|s| s.region == d.region);
                let new_zone = !seen
                    .iter()
                    .any(|s| (s.region, s.zone) == (d.region, d.zone));
                let new_node = !seen.iter().any(|s| s.node == d.node);
                let all = |f: &dyn Fn(&Device) -> bool| ring.devices().iter().all(|x| !f(x));
                if !new_region {
                    assert!(
                        all(&|x| !seen.iter().any(|s| s.region == x.region)),
                        "p{p}: region skipped"
                    );
                }
                if !new_zone {
                    assert!(
                        all(&|x| !seen
                            .iter()
                            .any(|s| (s.region, s.zone) == (x.region, x.zone))),
                        "p{p}: zone skipped"
                    );
                }
                if !new_node {
                    assert!(
                        all(&|x| !seen.iter().any(|s| s.node == x.node)),
                        "p{p}: node skipped"
                    );
                }
                seen.push(d);
            }
            // Deterministic.
            let again: Vec<DevId> = ring.handoffs(p).map(|d| d.id).collect();
            assert_eq!(again, hand.iter().map(|d| d.id).collect::<Vec<_>>());
        }
    }

    #[test]
    fn handoffs_stay_mostly_the_same_across_a_one_device_change() {
        let mut b = builder();
        let before = b.ring().unwrap();
        // A new disk in an existing node (a device in a new zone would rightly become
        // everyone's preferred handoff).
        b.add_device(NewDevice {
            region: 2,
            zone: 1,
            node: "10.2.1.0:6200".into(),
            name: "d2".into(),
            weight: 1.0,
        })
        .unwrap();
        b.rebalance(T0 + 2 * 3600).unwrap();
        let after = b.ring().unwrap();
        let mut same = 0;
        let mut total = 0;
        for p in 0..before.partitions() as u32 {
            if before.primary_ids(p) != after.primary_ids(p) {
                continue;
            }
            total += 1;
            let a: Vec<DevId> = before.handoffs(p).take(2).map(|d| d.id).collect();
            let b: Vec<DevId> = after.handoffs(p).take(2).map(|d| d.id).collect();
            same += usize::from(a == b);
        }
        eprintln!("{same} of {total} partitions kept their first two handoffs");
        assert!(total > 0);
        assert!(
            same * 100 >= total * 75,
            "only {same} of {total} partitions kept their first handoffs"
        );
    }

    #[test]
    fn format_round_trips_and_refuses_damage() {
        let ring = builder().ring().unwrap();
        let bytes = ring.to_bytes();
        assert_eq!(Ring::from_bytes(&bytes).unwrap(), ring);
        for i in [0, 9, 20, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(
                matches!(Ring::from_bytes(&bad), Err(RingError::Corrupt(_))),
                "flip at {i}"
            );
        }
        assert!(Ring::from_bytes(&bytes[..bytes.len() - 10]).is_err());
        assert!(Ring::from_bytes(b"").is_err());
        // A future format version is named as such, not called corrupt.
        let mut future = bytes[..bytes.len() - 4].to_vec();
        future[8] = 9;
        let crc = crc32fast::hash(&future);
        future.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(
            Ring::from_bytes(&future),
            Err(RingError::UnsupportedVersion(9))
        );
    }

    #[test]
    fn lookups_agree_with_the_partition_function() {
        let ring = builder().ring().unwrap();
        let path = super::super::object_path("AUTH_test", Some("c"), Some("o"));
        let p = ring.partition(&path);
        assert_eq!(p, super::super::partition_of(&[3; 16], 8, path.as_bytes()));
        assert_eq!(ring.primaries(p).count(), 2);
    }
}
