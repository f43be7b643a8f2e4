//! Who a storage node is, and which node each of its devices belongs to.
//!
//! A node is known to the rings by one address, `HOST:PORT`, and each of its disks by an
//! id. Whether a ring entry is one of this node's devices ([`is_mine`]: what the
//! replicator's handoff cleanup and the expirer's container updates decide by) is
//! answered by the disk id where the ring names one, and by address and device name
//! otherwise. A node that mistook its own address (listening on `0.0.0.0`) would take
//! every local copy for a misplaced one and push it away and delete it. Two rules prevent
//! that:
//! - a node listening on an unspecified address (`0.0.0.0`, `[::]`) must be told its ring
//!   address with `--advertise`;
//! - each device keeps `<device>/identity.json`: a random id made when the device is first
//!   used, and the address of the node that serves it. A node refuses to start on a device
//!   that says it belongs to another address, and says which, so a disk moved between
//!   nodes, or a node started under a new address, is a decision and never an accident.
//!
//! The rings name each device's disk id too (`stratus ring set-disk`; `stratus dev up`
//! names them from the start). A node refuses to start when a ring names another disk for
//! one of its devices, or names one of its disks at another place: disks swapped between
//! slots are found before any replicator acts on them. A new, empty disk put in a device's
//! slot takes the id the rings name there, so replacing a dead disk needs no ring edit.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use stratus_core::ring::{Device as RingDevice, Ring};

use crate::device::Device;

/// The file a device keeps its identity in.
pub const IDENTITY_FILE: &str = "identity.json";

/// What `identity.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceIdentity {
    /// Format version.
    pub v: u32,
    /// Random, made once, never changed (hex).
    pub id: String,
    /// The ring address of the node that serves this device.
    pub node: String,
}

/// The ring address of a node listening on `listen`: `advertise` if given, else the
/// listen address, which must then be one other nodes can reach.
pub fn address(listen: &SocketAddr, advertise: Option<&str>) -> Result<String, String> {
    if let Some(a) = advertise {
        let parsed: SocketAddr = a
            .parse()
            .map_err(|e| format!("--advertise {a} is not HOST:PORT: {e}"))?;
        if parsed.ip().is_unspecified() {
            return Err(format!(
                "--advertise {a} is not an address other nodes can reach"
            ));
        }
        return Ok(a.to_string());
    }
    if listen.ip().is_unspecified() {
        return Err(format!(
            "listening on {listen}, which names no node: give --advertise HOST:PORT, the \
             address the rings name this node by"
        ));
    }
    Ok(listen.to_string())
}

/// Whether ring entry `d` is device `dev` of the node at `me`: the entry names this
/// device's disk, or this node's address and this device's name. Either is enough: a
/// device never takes its own slot for a peer's (which would push a copy to itself and
/// then delete it as a handoff), and an entry that names its disk stays its own even
/// when the address in the ring is not the one the node serves on now.
pub fn is_mine(d: &RingDevice, me: &str, dev: &Device) -> bool {
    (d.node == me && d.name == dev.name)
        || (!d.disk.is_empty() && dev.disk.get().is_some_and(|id| *id == d.disk))
}

/// The disk id the rings name for device `name` of `node`, if any names one.
pub fn ring_disk<'a>(rings: &'a [(&str, &Ring)], node: &str, name: &str) -> Option<&'a str> {
    rings
        .iter()
        .flat_map(|(_, r)| r.devices())
        .find(|d| d.node == node && d.name == name && !d.disk.is_empty())
        .map(|d| d.disk.as_str())
}

/// Refuses rings that disagree with this node's disks (`local`: device name and disk id):
/// an entry for one of its devices naming another disk, or an entry naming one of its
/// disks at another node or device.
pub fn check_rings(
    rings: &[(&str, &Ring)],
    node: &str,
    local: &[(String, String)],
) -> Result<(), String> {
    for (ring, r) in rings {
        for d in r.devices().iter().filter(|d| !d.disk.is_empty()) {
            for (name, disk) in local {
                if d.node == node && d.name == *name && d.disk != *disk {
                    return Err(format!(
                        "the {ring} ring says device {name} of {node} is disk {}, but the disk \
                         there is {disk}. Were disks swapped? Put disk {} back in {name}; if \
                         this disk really replaces it, run `stratus ring set-disk {ring} {} {disk}` \
                         (for each ring)",
                        d.disk, d.disk, d.id
                    ));
                }
                if d.disk == *disk && (d.node != node || d.name != *name) {
                    return Err(format!(
                        "the {ring} ring places disk {disk} at {}/{}, but it is here as \
                         {node}/{name}. Were disks swapped? Put it back there, or move it in \
                         the rings",
                        d.node, d.name
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Reads `dev`'s identity, making it (owned by `node`) if the device has none yet;
/// refuses a device that belongs to another node address. A new identity takes `expected`
/// (the disk id the rings name for this slot) when there is one.
pub fn check(dev: &Device, node: &str, expected: Option<&str>) -> Result<DeviceIdentity, String> {
    let path = dev.root.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(raw) => {
            let id: DeviceIdentity = serde_json::from_slice(&raw)
                .map_err(|e| format!("{} is damaged: {e}", path.display()))?;
            if id.node != node {
                return Err(format!(
                    "device {} (id {}) belongs to the node at {}, and this node is {node}. \
                     If this node is that one, start it as {} (--listen or --advertise); if \
                     the disk really moved here, set \"node\" in {} to {node}",
                    dev.name,
                    id.id,
                    id.node,
                    id.node,
                    path.display()
                ));
            }
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = DeviceIdentity {
                v: 1,
                id: expected.map_or_else(
                    || format!("{:032x}", rand::random::<u128>()),
                    str::to_string,
                ),
                node: node.to_string(),
            };
            let tmp = path.with_extension("tmp");
            let body = serde_json::to_vec_pretty(&id).expect("plain struct serializes");
            std::fs::write(&tmp, body)
                .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|_| std::fs::rename(&tmp, &path))
                .and_then(|_| crate::device::fsync_dir(&dev.root))
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            tracing::info!(device = %dev.name, id = %id.id, node, "device identity made");
            Ok(id)
        }
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_needs_an_advertised_one() {
        let any: SocketAddr = "0.0.0.0:6200".parse().unwrap();
        assert!(address(&any, None).unwrap_err().contains("--advertise"));
        assert_eq!(
            address(&any, Some("10.0.0.5:6200")).unwrap(),
            "10.0.0.5:6200"
        );
        assert!(address(&any, Some("0.0.0.0:6200")).is_err());
        assert!(address(&any, Some("nonsense")).is_err());
        let one: SocketAddr = "127.0.0.1:6200".parse().unwrap();
        assert_eq!(address(&one, None).unwrap(), "127.0.0.1:6200");
    }

    fn entry(node: &str, name: &str, disk: &str) -> RingDevice {
        RingDevice {
            id: 0,
            region: 1,
            zone: 1,
            node: node.into(),
            name: name.into(),
            weight: 1.0,
            disk: disk.into(),
        }
    }

    /// A ring entry is a device's by its disk id, or by address and name; never is a
    /// device's own slot taken for a peer's.
    #[test]
    fn a_ring_entry_is_mine_by_disk_id_or_by_address_and_name() {
        let d = tempfile::tempdir().unwrap();
        let dev = Device::open("d1", d.path(), 0).unwrap();
        let me = "127.0.0.1:6201";
        // Before the identity is known: address and name only.
        assert!(is_mine(&entry(me, "d1", ""), me, &dev));
        assert!(!is_mine(&entry(me, "d2", ""), me, &dev));
        assert!(!is_mine(&entry("127.0.0.1:6202", "d1", "abc"), me, &dev));
        dev.disk.set("abc".into()).unwrap();
        // The ring names this disk at an address the node no longer serves on: still its.
        assert!(is_mine(&entry("10.9.9.9:6200", "d7", "abc"), me, &dev));
        // Its slot, whatever disk the entry names, stays its own (start-up refuses the
        // mismatch; a later ring edit must not make the device push to itself and delete).
        assert!(is_mine(&entry(me, "d1", "other"), me, &dev));
        assert!(!is_mine(&entry("127.0.0.1:6202", "d1", "other"), me, &dev));
        assert!(!is_mine(&entry(me, "d2", "other"), me, &dev));
    }

    #[test]
    fn a_device_belongs_to_the_node_that_first_served_it() {
        let d = tempfile::tempdir().unwrap();
        let dev = Device::open("d1", d.path(), 0).unwrap();
        let first = check(&dev, "127.0.0.1:6201", None).unwrap();
        assert_eq!(
            check(&dev, "127.0.0.1:6201", Some("feed")).unwrap(),
            first,
            "stable: an existing identity is never replaced"
        );
        let e = check(&dev, "127.0.0.1:6202", None).unwrap_err();
        assert!(e.contains("belongs to the node at 127.0.0.1:6201"), "{e}");
        assert!(e.contains(&first.id), "{e}");
    }

    /// A fresh disk in a slot takes the id the rings name there; rings that name another
    /// disk for a device, or this disk elsewhere, are refused with what to do.
    #[test]
    fn rings_name_disks_and_disagreement_is_refused() {
        use stratus_core::ring::{NewDevice, RingBuilder};
        let mut b = RingBuilder::new(4, 1, 0, [1; 16], 1).unwrap();
        let mut add = |node: &str, name: &str, disk: &str| {
            let id = b
                .add_device(NewDevice {
                    region: 1,
                    zone: 1,
                    node: node.into(),
                    name: name.into(),
                    weight: 1.0,
                })
                .unwrap();
            b.set_disk(id, disk).unwrap();
        };
        add("127.0.0.1:6201", "d1", "aaaa");
        add("127.0.0.1:6201", "d2", "bbbb");
        add("127.0.0.1:6202", "d1", "cccc");
        b.rebalance(0).unwrap();
        let ring = b.ring().unwrap();
        let rings = [("object", &ring)];
        let me = "127.0.0.1:6201";
        assert_eq!(ring_disk(&rings, me, "d2"), Some("bbbb"));
        assert_eq!(ring_disk(&rings, me, "d9"), None);

        let d = tempfile::tempdir().unwrap();
        let dev = Device::open("d2", d.path(), 0).unwrap();
        assert_eq!(check(&dev, me, Some("bbbb")).unwrap().id, "bbbb");

        let local = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        check_rings(&rings, me, &local(&[("d1", "aaaa"), ("d2", "bbbb")])).unwrap();
        // d1 and d2 swapped.
        let e = check_rings(&rings, me, &local(&[("d1", "bbbb"), ("d2", "aaaa")])).unwrap_err();
        assert!(
            e.contains("device d1 of 127.0.0.1:6201 is disk aaaa"),
            "{e}"
        );
        assert!(e.contains("set-disk object 0 bbbb"), "{e}");
        // Node 2's disk mounted here as a new device.
        let e = check_rings(&rings, me, &local(&[("d3", "cccc")])).unwrap_err();
        assert!(e.contains("places disk cccc at 127.0.0.1:6202/d1"), "{e}");
    }
}
