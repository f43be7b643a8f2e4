//! Who a storage node is, and which node each of its devices belongs to.
//!
//! A node is known to the rings by one address, `HOST:PORT`. Everything that decides
//! whether a partition is "mine" (the replicator's handoff cleanup, the expirer's container
//! updates) compares ring entries with that address, so a node that mistakes its own
//! address (listening on `0.0.0.0`) would take every local copy for a misplaced one and
//! push it away and delete it. Two rules prevent that:
//! - a node listening on an unspecified address (`0.0.0.0`, `[::]`) must be told its ring
//!   address with `--advertise`;
//! - each device keeps `<device>/identity.json`: a random id made when the device is first
//!   used, and the address of the node that serves it. A node refuses to start on a device
//!   that says it belongs to another address, and says which, so a disk moved between
//!   nodes, or a node started under a new address, is a decision and never an accident.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

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

/// Reads `dev`'s identity, making it (owned by `node`) if the device has none yet;
/// refuses a device that belongs to another node address.
pub fn check(dev: &Device, node: &str) -> Result<DeviceIdentity, String> {
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
                id: format!("{:032x}", rand::random::<u128>()),
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

    #[test]
    fn a_device_belongs_to_the_node_that_first_served_it() {
        let d = tempfile::tempdir().unwrap();
        let dev = Device::open("d1", d.path(), 0).unwrap();
        let first = check(&dev, "127.0.0.1:6201").unwrap();
        assert_eq!(check(&dev, "127.0.0.1:6201").unwrap(), first, "stable");
        let e = check(&dev, "127.0.0.1:6202").unwrap_err();
        assert!(e.contains("belongs to the node at 127.0.0.1:6201"), "{e}");
        assert!(e.contains(&first.id), "{e}");
    }
}
