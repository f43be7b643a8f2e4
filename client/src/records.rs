//! The typed records storage nodes keep in meta and the CLI reads back: registrations,
//! replication progress and worker settings. Each is JSON with a format version `v`
//! (records written before the field existed read as version 1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The format version this build writes.
pub const RECORD_VERSION: u32 = 1;

/// The version of a record written before records carried one.
pub(crate) fn v1() -> u32 {
    1
}

/// Meta prefix of storage node registrations.
pub const REGISTRATION_PREFIX: &str = "/nodes/storage/";

/// Meta key under which a storage node registers itself.
pub fn registration_key(addr: &str) -> String {
    format!("{REGISTRATION_PREFIX}{addr}")
}

/// A storage node's registration: its address, devices and free space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// Format version.
    #[serde(default = "v1")]
    pub v: u32,
    /// The node's gRPC address.
    pub addr: String,
    /// Its devices, by name.
    pub devices: Vec<DeviceReport>,
    /// Unix seconds of this report.
    pub updated: u64,
}

/// One device of a registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceReport {
    /// The device's name (its folder name).
    pub name: String,
    /// The disk's id (its `identity.json`), which the rings name it by; empty from nodes
    /// that predate disk ids.
    #[serde(default)]
    pub disk: String,
    /// Bytes in all.
    pub capacity: u64,
    /// Bytes free.
    pub free: u64,
    /// Whether the device answered.
    pub ok: bool,
}

/// Meta prefix of every node's replication progress.
pub const PROGRESS_PREFIX: &str = "/replication/";

/// Meta key of a node's replication progress.
pub fn progress_key(addr: &str) -> String {
    format!("{PROGRESS_PREFIX}{addr}")
}

/// A node's replication progress, per ring, as stored in meta.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Format version.
    #[serde(default = "v1")]
    pub v: u32,
    /// Progress by ring name.
    pub rings: BTreeMap<String, RingProgress>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            v: RECORD_VERSION,
            rings: BTreeMap::new(),
        }
    }
}

/// Where a node's last replication pass over one ring got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RingProgress {
    /// The ring version the pass started with.
    pub version: u64,
    /// Partitions still held as handoffs when the pass ended (data not yet moved home).
    pub handoff_parts: u64,
    /// Partitions (with data) the node holds.
    pub parts: u64,
}

/// Meta key of one worker's settings on node `addr` (`worker` empty: the prefix of all).
pub fn settings_key(addr: &str, worker: &str) -> String {
    format!("/settings/storage/{addr}/{worker}")
}

/// One worker's settings as kept in meta: setting name → value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerSettings {
    /// Format version.
    #[serde(default = "v1")]
    pub v: u32,
    /// Setting name → value.
    pub settings: BTreeMap<String, f64>,
}

impl WorkerSettings {
    /// Reads a stored record; a bare map (written before records had a version) is read too.
    pub fn from_json(b: &[u8]) -> Option<Self> {
        serde_json::from_slice::<WorkerSettings>(b)
            .ok()
            .or_else(|| {
                serde_json::from_slice::<BTreeMap<String, f64>>(b)
                    .ok()
                    .map(|settings| WorkerSettings { v: 1, settings })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_without_a_version_read_as_version_1() {
        let p: Progress = serde_json::from_str(r#"{"rings":{}}"#).unwrap();
        assert_eq!(p.v, 1);
        let r: Registration =
            serde_json::from_str(r#"{"addr":"a:1","devices":[],"updated":5}"#).unwrap();
        assert_eq!((r.v, r.updated), (1, 5));
        let w = WorkerSettings::from_json(br#"{"bytes_per_sec":3.0}"#).unwrap();
        assert_eq!((w.v, w.settings["bytes_per_sec"]), (1, 3.0));
        let w2 = WorkerSettings::from_json(&serde_json::to_vec(&w).unwrap()).unwrap();
        assert_eq!(w, w2);
        let u: crate::users::User = serde_json::from_str(
            r#"{"account":"a","user":"u","salt":"00","key_hash":"11","roles":[],"created":1}"#,
        )
        .unwrap();
        assert_eq!(u.v, 1);
    }
}
