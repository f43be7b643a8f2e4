//! The editable state of a ring: parameters, devices, the current assignment and when each
//! partition last moved. This whole struct is what meta stores as "builder state"; a
//! [`Ring`] is compiled from it after each [`RingBuilder::rebalance`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{DevId, HashKey, Ring, RingError, MAX_PART_POWER, MAX_REPLICAS, NO_DEVICE};

/// A device (one disk, one directory) that holds partitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// Stable id within the ring.
    pub id: DevId,
    /// Failure domain of the widest kind (a site).
    pub region: u32,
    /// Failure domain within a region (a rack, a power feed).
    pub zone: u32,
    /// The storage node serving it, `HOST:PORT`.
    pub node: String,
    /// The device's name on its node (its directory under the node's devices root).
    pub name: String,
    /// Relative capacity; partitions are given in proportion to weight. 0 drains the device.
    pub weight: f64,
    /// The disk's own id (the `identity.json` a storage node keeps on it), so a disk is
    /// known by what it is and not only by where it is mounted; empty when not known.
    /// (Kept apart in the builder's bytes; see [`RingBuilder::to_bytes`].)
    #[serde(skip)]
    pub disk: String,
}

/// What an operator supplies to add a device.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDevice {
    pub region: u32,
    pub zone: u32,
    pub node: String,
    pub name: String,
    pub weight: f64,
}

/// Builder-side record of a device: the device plus whether it is being removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BuilderDevice {
    pub(crate) dev: Device,
    /// Removed by the operator; its partitions leave at the next rebalance, then it is gone.
    pub(crate) removing: bool,
}

/// The editable ring: see the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RingBuilder {
    pub(crate) part_power: u8,
    pub(crate) replicas: u8,
    pub(crate) min_part_hours: u32,
    pub(crate) hash_key: HashKey,
    pub(crate) seed: u64,
    pub(crate) devices: BTreeMap<DevId, BuilderDevice>,
    pub(crate) next_dev_id: DevId,
    /// Part-major: `assignment[part * replicas + r]` is a device id or [`NO_DEVICE`].
    /// Empty until the first rebalance.
    pub(crate) assignment: Vec<DevId>,
    /// Per partition, the hour (since the Unix epoch) it last moved; 0 = never placed.
    pub(crate) last_moved: Vec<u32>,
    /// Number of rebalances so far; the version of the ring the last one produced.
    pub(crate) version: u64,
    /// Unix seconds of the last rebalance.
    pub(crate) rebalanced_at: u64,
    /// A device was edited since the last rebalance (so the next one publishes).
    pub(crate) dirty: bool,
}

impl RingBuilder {
    /// A new, empty builder. `seed` makes every rebalance reproducible.
    pub fn new(
        part_power: u32,
        replicas: u32,
        min_part_hours: u32,
        hash_key: HashKey,
        seed: u64,
    ) -> Result<Self, RingError> {
        if part_power == 0 || part_power > u32::from(MAX_PART_POWER) {
            return Err(RingError::BadPartPower(part_power));
        }
        if replicas == 0 || replicas > u32::from(MAX_REPLICAS) {
            return Err(RingError::BadReplicas(replicas));
        }
        Ok(Self {
            part_power: part_power as u8,
            replicas: replicas as u8,
            min_part_hours,
            hash_key,
            seed,
            devices: BTreeMap::new(),
            next_dev_id: 0,
            assignment: Vec::new(),
            last_moved: Vec::new(),
            version: 0,
            rebalanced_at: 0,
            dirty: false,
        })
    }

    /// Partition power: the ring has `2^part_power` partitions.
    pub fn part_power(&self) -> u8 {
        self.part_power
    }

    /// Number of partitions.
    pub fn partitions(&self) -> usize {
        1usize << self.part_power
    }

    /// Replicas of each partition.
    pub fn replicas(&self) -> u8 {
        self.replicas
    }

    /// Hours a partition stays put after it moved.
    pub fn min_part_hours(&self) -> u32 {
        self.min_part_hours
    }

    /// Changes `min_part_hours` for future rebalances.
    pub fn set_min_part_hours(&mut self, hours: u32) {
        self.min_part_hours = hours;
    }

    /// The cluster secret used for path hashing.
    pub fn hash_key(&self) -> &HashKey {
        &self.hash_key
    }

    /// Version of the ring the last rebalance produced (0: never rebalanced).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Unix seconds of the last rebalance (0: never).
    pub fn rebalanced_at(&self) -> u64 {
        self.rebalanced_at
    }

    /// Whether devices were edited since the last rebalance (the published ring lags).
    pub fn has_pending_changes(&self) -> bool {
        self.dirty
    }

    /// Devices in id order, including ones being removed.
    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.values().map(|d| &d.dev)
    }

    /// Whether device `id` was removed and is waiting for the next rebalance to drain it.
    pub fn is_removing(&self, id: DevId) -> bool {
        self.devices.get(&id).is_some_and(|d| d.removing)
    }

    /// One device by id.
    pub fn device(&self, id: DevId) -> Option<&Device> {
        self.devices.get(&id).map(|d| &d.dev)
    }

    /// Adds a device and returns its id. Takes effect at the next rebalance.
    pub fn add_device(&mut self, new: NewDevice) -> Result<DevId, RingError> {
        check_weight(new.weight)?;
        check_node(&new.node)?;
        check_device_name(&new.name)?;
        if let Some(d) = self
            .devices
            .values()
            .find(|d| !d.removing && d.dev.node == new.node && d.dev.name == new.name)
        {
            return Err(RingError::DuplicateDevice {
                id: d.dev.id,
                node: new.node,
                name: new.name,
            });
        }
        let id = self.next_dev_id;
        self.next_dev_id += 1;
        let dev = Device {
            id,
            region: new.region,
            zone: new.zone,
            node: new.node,
            name: new.name,
            weight: new.weight,
            disk: String::new(),
        };
        self.devices.insert(
            id,
            BuilderDevice {
                dev,
                removing: false,
            },
        );
        self.dirty = true;
        Ok(id)
    }

    /// Marks a device removed: the next rebalance moves all its partitions off it,
    /// ignoring `min_part_hours`, and drops it.
    pub fn remove_device(&mut self, id: DevId) -> Result<(), RingError> {
        let d = self.live_mut(id)?;
        d.removing = true;
        self.dirty = true;
        // A device that never received partitions can go at once.
        if !self.assignment.contains(&id) {
            self.devices.remove(&id);
        }
        Ok(())
    }

    /// Sets a device's weight (0 drains it, respecting `min_part_hours`).
    pub fn set_weight(&mut self, id: DevId, weight: f64) -> Result<(), RingError> {
        check_weight(weight)?;
        self.live_mut(id)?.dev.weight = weight;
        self.dirty = true;
        Ok(())
    }

    /// Moves a device to another region and zone (a re-cabled rack).
    pub fn set_zone(&mut self, id: DevId, region: u32, zone: u32) -> Result<(), RingError> {
        let d = self.live_mut(id)?;
        d.dev.region = region;
        d.dev.zone = zone;
        self.dirty = true;
        Ok(())
    }

    /// Names the disk that device `id` is: the id its storage node keeps on it. A node
    /// whose disk and ring entry disagree refuses to start. One disk cannot be two
    /// devices.
    pub fn set_disk(&mut self, id: DevId, disk: &str) -> Result<(), RingError> {
        check_disk(disk)?;
        if let Some(other) = self
            .devices
            .values()
            .find(|d| !d.removing && d.dev.id != id && d.dev.disk == disk)
        {
            return Err(RingError::BadDisk(format!(
                "disk {disk} is already device {} ({}/{})",
                other.dev.id, other.dev.node, other.dev.name
            )));
        }
        let d = self.live_mut(id)?;
        if d.dev.disk != disk {
            d.dev.disk = disk.to_string();
            self.dirty = true;
        }
        Ok(())
    }

    fn live_mut(&mut self, id: DevId) -> Result<&mut BuilderDevice, RingError> {
        self.devices
            .get_mut(&id)
            .filter(|d| !d.removing)
            .ok_or(RingError::UnknownDevice(id))
    }

    /// Partition-replicas currently assigned to each device (by id).
    pub fn parts_per_device(&self) -> BTreeMap<DevId, u64> {
        let mut counts: BTreeMap<DevId, u64> = self.devices.keys().map(|&id| (id, 0)).collect();
        for &d in &self.assignment {
            if d != NO_DEVICE {
                *counts.entry(d).or_default() += 1;
            }
        }
        counts
    }

    /// Partition-replicas a device should hold by weight alone.
    pub fn weight_wanted(&self, id: DevId) -> f64 {
        let total: f64 = self.live_devices().map(|d| d.weight).sum();
        match self.device(id) {
            Some(d) if total > 0.0 && !self.is_removing(id) => {
                d.weight / total * (self.partitions() * usize::from(self.replicas)) as f64
            }
            _ => 0.0,
        }
    }

    /// Per-device balance in percent: how far its partition count is from what its weight
    /// asks for (positive = more than its share). A device that should hold nothing (weight
    /// 0, or being removed) but still does reports what it holds as a percentage of an
    /// average device's share, rather than an unreadable infinity.
    pub fn device_balance(&self) -> BTreeMap<DevId, f64> {
        let parts = self.parts_per_device();
        let live: Vec<&Device> = self.live_devices().collect();
        let total: f64 = live.iter().map(|d| d.weight).sum();
        let slots = (self.partitions() * usize::from(self.replicas)) as f64;
        let fair_share = if live.is_empty() {
            slots
        } else {
            slots / live.len() as f64
        };
        self.devices
            .values()
            .map(|d| {
                let have = parts.get(&d.dev.id).copied().unwrap_or(0) as f64;
                let want = if d.removing || total <= 0.0 {
                    0.0
                } else {
                    d.dev.weight / total * slots
                };
                let b = if want > 0.0 {
                    100.0 * (have - want) / want
                } else if have > 0.0 {
                    100.0 * have / fair_share
                } else {
                    0.0
                };
                (d.dev.id, b)
            })
            .collect()
    }

    /// The ring's balance: the largest absolute per-device balance, in percent.
    pub fn balance(&self) -> f64 {
        if self.assignment.is_empty() {
            return 0.0;
        }
        self.device_balance()
            .values()
            .fold(0.0f64, |m, b| m.max(b.abs()))
    }

    pub(crate) fn live_devices(&self) -> impl Iterator<Item = &Device> {
        self.devices
            .values()
            .filter(|d| !d.removing)
            .map(|d| &d.dev)
    }

    /// Refuses what cannot be honoured before any work is done.
    pub(crate) fn check_buildable(&self) -> Result<(), RingError> {
        let slots = (1u64 << self.part_power) * u64::from(self.replicas);
        if slots > super::MAX_SLOTS {
            return Err(RingError::TooLarge {
                part_power: self.part_power,
                replicas: self.replicas,
                slots,
            });
        }
        let total: f64 = self.live_devices().map(|d| d.weight).sum();
        if total <= 0.0 {
            return Err(RingError::ZeroWeight);
        }
        let weighted = self.live_devices().filter(|d| d.weight > 0.0).count() as u32;
        if weighted < u32::from(self.replicas) {
            return Err(RingError::TooFewDevices {
                replicas: u32::from(self.replicas),
                devices: weighted,
            });
        }
        Ok(())
    }

    /// The ring to publish: the current assignment with the devices that hold it.
    pub fn ring(&self) -> Result<Ring, RingError> {
        if self.version == 0 || self.assignment.is_empty() {
            return Err(RingError::NotBuilt);
        }
        if self.assignment.contains(&NO_DEVICE) {
            // Cannot happen after a successful rebalance; refuse rather than publish holes.
            return Err(RingError::Corrupt(
                "a partition is missing a replica".into(),
            ));
        }
        let devices = self
            .devices
            .values()
            .filter(|d| !d.removing)
            .map(|d| d.dev.clone());
        Ring::new(
            self.version,
            self.part_power,
            self.replicas,
            self.hash_key,
            self.rebalanced_at,
            devices.collect(),
            self.assignment.clone(),
        )
    }
}

const BUILDER_MAGIC: &[u8; 8] = b"STRBLDR\0";
/// Version of the builder's persisted form (2 adds the disk ids; 1 is still read).
pub const BUILDER_FORMAT_VERSION: u16 = 2;

impl RingBuilder {
    /// The builder's persisted form: magic, format version, bincode body, the disk ids
    /// (bincode `Vec<(DevId, String)>`, format 2), CRC32.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = BUILDER_MAGIC.to_vec();
        out.extend_from_slice(&BUILDER_FORMAT_VERSION.to_le_bytes());
        bincode::serialize_into(&mut out, self).expect("serializing into a Vec cannot fail");
        let disks: Vec<(DevId, &str)> = self
            .devices()
            .filter(|d| !d.disk.is_empty())
            .map(|d| (d.id, d.disk.as_str()))
            .collect();
        bincode::serialize_into(&mut out, &disks).expect("serializing into a Vec cannot fail");
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses and verifies what [`RingBuilder::to_bytes`] wrote.
    pub fn from_bytes(buf: &[u8]) -> Result<Self, RingError> {
        if buf.len() < 14 || &buf[..8] != BUILDER_MAGIC {
            return Err(RingError::Corrupt(
                "not a Stratus ring builder (bad magic)".into(),
            ));
        }
        let (body, crc) = buf.split_at(buf.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(RingError::Corrupt("builder checksum mismatch".into()));
        }
        let version = u16::from_le_bytes([body[8], body[9]]);
        if !(1..=BUILDER_FORMAT_VERSION).contains(&version) {
            return Err(RingError::UnsupportedVersion(version));
        }
        let bad = |e: bincode::Error| RingError::Corrupt(format!("builder: {e}"));
        let mut rest = &body[10..];
        let mut b: RingBuilder = bincode::deserialize_from(&mut rest).map_err(bad)?;
        if version >= 2 {
            let disks: Vec<(DevId, String)> = bincode::deserialize_from(&mut rest).map_err(bad)?;
            for (id, disk) in disks {
                let d = b
                    .devices
                    .get_mut(&id)
                    .ok_or_else(|| RingError::Corrupt(format!("disk id for no device {id}")))?;
                d.dev.disk = disk;
            }
        }
        if !rest.is_empty() {
            return Err(RingError::Corrupt("builder: trailing bytes".into()));
        }
        if b.part_power == 0
            || b.part_power > MAX_PART_POWER
            || b.replicas == 0
            || b.replicas > MAX_REPLICAS
        {
            return Err(RingError::Corrupt("builder parameters out of range".into()));
        }
        let slots = b.partitions() * usize::from(b.replicas);
        if !(b.assignment.is_empty() || b.assignment.len() == slots)
            || b.last_moved.len()
                != if b.assignment.is_empty() {
                    0
                } else {
                    b.partitions()
                }
        {
            return Err(RingError::Corrupt(
                "builder assignment has the wrong size".into(),
            ));
        }
        Ok(b)
    }
}

/// A disk id: 1 to 64 ASCII letters, digits and `-` (what a storage node makes is 32 hex
/// digits).
fn check_disk(disk: &str) -> Result<(), RingError> {
    if disk.is_empty()
        || disk.len() > 64
        || !disk.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(RingError::BadDisk(format!(
            "disk id must be 1..=64 characters of [A-Za-z0-9-], got {disk:?}"
        )));
    }
    Ok(())
}

fn check_weight(w: f64) -> Result<(), RingError> {
    if !w.is_finite() || w < 0.0 {
        return Err(RingError::BadWeight(w));
    }
    Ok(())
}

fn check_node(node: &str) -> Result<(), RingError> {
    let bad = || RingError::BadNode(node.to_string());
    let (host, port) = node.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.len() > 253 || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(bad)?;
    Ok(())
}

fn check_device_name(name: &str) -> Result<(), RingError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(RingError::BadDeviceName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(zone: u32, node: &str, name: &str, weight: f64) -> NewDevice {
        NewDevice {
            region: 1,
            zone,
            node: node.into(),
            name: name.into(),
            weight,
        }
    }

    /// Disk ids survive the builder's bytes and the ring's; bytes without them (format 1,
    /// as older builds wrote) still read, with no disk named.
    #[test]
    fn disk_ids_round_trip_and_older_formats_still_read() {
        let mut b = RingBuilder::new(4, 2, 0, [7; 16], 1).unwrap();
        let a = b.add_device(dev(1, "h:1", "d1", 1.0)).unwrap();
        let c = b.add_device(dev(2, "h:2", "d1", 1.0)).unwrap();
        b.rebalance(0).unwrap();
        let v1_builder = {
            // A format-1 builder: the bincode body alone.
            let mut out = BUILDER_MAGIC.to_vec();
            out.extend_from_slice(&1u16.to_le_bytes());
            bincode::serialize_into(&mut out, &b).unwrap();
            let crc = crc32fast::hash(&out);
            out.extend_from_slice(&crc.to_le_bytes());
            out
        };
        let v1_ring = b.ring().unwrap().to_bytes();
        assert_eq!(u16::from_le_bytes([v1_ring[8], v1_ring[9]]), 1);
        assert_eq!(RingBuilder::from_bytes(&v1_builder).unwrap(), b);

        assert!(matches!(
            b.set_disk(a, "no/slash"),
            Err(RingError::BadDisk(_))
        ));
        b.set_disk(a, "0123abcd").unwrap();
        assert!(b.has_pending_changes(), "a named disk is published");
        let e = b.set_disk(c, "0123abcd").unwrap_err();
        assert!(e.to_string().contains("already device 0"), "{e}");
        let back = RingBuilder::from_bytes(&b.to_bytes()).unwrap();
        assert_eq!(back.device(a).unwrap().disk, "0123abcd");
        assert_eq!(back.device(c).unwrap().disk, "");
        assert!(b.rebalance(0).unwrap().changed);
        let ring = Ring::from_bytes(&b.ring().unwrap().to_bytes()).unwrap();
        let disks: Vec<&str> = ring.devices().iter().map(|d| d.disk.as_str()).collect();
        assert_eq!(disks, ["0123abcd", ""]);
        assert_eq!(Ring::from_bytes(&v1_ring).unwrap().devices()[0].disk, "");
    }

    #[test]
    fn refuses_bad_parameters_and_devices() {
        assert_eq!(
            RingBuilder::new(0, 3, 1, [0; 16], 1),
            Err(RingError::BadPartPower(0))
        );
        assert_eq!(
            RingBuilder::new(33, 3, 1, [0; 16], 1),
            Err(RingError::BadPartPower(33))
        );
        assert_eq!(
            RingBuilder::new(8, 0, 1, [0; 16], 1),
            Err(RingError::BadReplicas(0))
        );
        let mut b = RingBuilder::new(8, 3, 1, [0; 16], 1).unwrap();
        assert!(matches!(
            b.add_device(dev(1, "h:1", "d", -1.0)),
            Err(RingError::BadWeight(_))
        ));
        assert!(matches!(
            b.add_device(dev(1, "h:1", "d", f64::NAN)),
            Err(RingError::BadWeight(_))
        ));
        assert!(matches!(
            b.add_device(dev(1, "h", "d", 1.0)),
            Err(RingError::BadNode(_))
        ));
        assert!(matches!(
            b.add_device(dev(1, "h:0", "d", 1.0)),
            Err(RingError::BadNode(_))
        ));
        assert!(matches!(
            b.add_device(dev(1, "h:1", "a/b", 1.0)),
            Err(RingError::BadDeviceName(_))
        ));
        assert!(matches!(
            b.add_device(dev(1, "h:1", "..", 1.0)),
            Err(RingError::BadDeviceName(_))
        ));
        assert_eq!(b.add_device(dev(1, "h:1", "d1", 1.0)), Ok(0));
        assert!(matches!(
            b.add_device(dev(2, "h:1", "d1", 1.0)),
            Err(RingError::DuplicateDevice { id: 0, .. })
        ));
        assert_eq!(b.set_weight(7, 1.0), Err(RingError::UnknownDevice(7)));
        assert_eq!(
            b.rebalance(0).unwrap_err(),
            RingError::TooFewDevices {
                replicas: 3,
                devices: 1
            }
        );
        b.add_device(dev(1, "h:1", "d2", 0.0)).unwrap();
        b.add_device(dev(1, "h:1", "d3", 0.0)).unwrap();
        b.set_weight(0, 0.0).unwrap();
        assert_eq!(b.rebalance(0).unwrap_err(), RingError::ZeroWeight);
        assert_eq!(b.ring().unwrap_err(), RingError::NotBuilt);
        // Power 32 is accepted (as in Swift) but refused at rebalance, not run out of memory on.
        let mut huge = RingBuilder::new(32, 3, 1, [0; 16], 1).unwrap();
        for i in 0..3 {
            huge.add_device(dev(i, "h:1", &format!("d{i}"), 1.0))
                .unwrap();
        }
        assert!(matches!(
            huge.rebalance(0),
            Err(RingError::TooLarge { part_power: 32, .. })
        ));
    }

    #[test]
    fn removing_an_unplaced_device_drops_it_at_once() {
        let mut b = RingBuilder::new(4, 1, 1, [0; 16], 1).unwrap();
        let id = b.add_device(dev(1, "h:1", "d1", 1.0)).unwrap();
        b.remove_device(id).unwrap();
        assert_eq!(b.devices().count(), 0);
        assert_eq!(b.remove_device(id), Err(RingError::UnknownDevice(id)));
    }
}
