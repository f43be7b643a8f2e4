//! Consistent-hash rings: where every account, container and object lives.
//!
//! A ring maps a path to a *partition* (the top `part_power` bits of a keyed hash of the
//! path) and each partition to `replicas` devices. The [`RingBuilder`] owns the editable
//! state (devices, weights, the current assignment and when each partition last moved) and
//! computes new assignments with [`RingBuilder::rebalance`]; a [`Ring`] is the immutable,
//! published result that proxies and storage nodes use for lookups.
//!
//! # Layout
//! - [`builder`]: devices and the builder's persistent state.
//! - [`rebalance`]: the placement algorithm (targets, dispersion, minimal movement).
//! - [`lookup`]: [`Ring`], primaries and handoffs.
//! - [`format`]: the versioned, checksummed binary form of a [`Ring`].
//!
//! # Invariants
//! - In a published ring every partition has exactly `replicas` distinct devices.
//! - The same builder state, time and seed give the same ring, on every machine.
//! - Everything here is pure: no I/O, no clocks (callers pass `now`).

pub mod builder;
pub mod format;
pub mod lookup;
pub mod rebalance;

pub use builder::{Device, NewDevice, RingBuilder};
pub use lookup::{Handoffs, Ring};
pub use rebalance::{DispersionReport, RebalanceReport};

use siphasher::sip::SipHasher24;

/// Identifier of a device within one ring; never reused by that ring.
pub type DevId = u32;

/// Marks an unassigned partition-replica slot inside a builder.
pub const NO_DEVICE: DevId = DevId::MAX;

/// Largest replica count a ring accepts.
pub const MAX_REPLICAS: u8 = 16;

/// Largest partition power a ring accepts (as in Swift).
pub const MAX_PART_POWER: u8 = 32;

/// Most partition-replicas a rebalance will lay out (2^27: ~1 GiB of builder state). Swift
/// accepts power 32 as well, but a ring that large cannot be built in memory here; the
/// builder refuses it with [`RingError::TooLarge`] rather than running out of memory.
pub const MAX_SLOTS: u64 = 1 << 27;

/// The per-cluster secret that keys path hashing, so partition placement cannot be
/// predicted (and hot-spotted) by clients that only know object names.
pub type HashKey = [u8; 16];

/// Why a ring operation was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RingError {
    #[error("partition power must be in 1..={MAX_PART_POWER}, got {0}")]
    BadPartPower(u32),
    #[error("replica count must be in 1..={MAX_REPLICAS}, got {0}")]
    BadReplicas(u32),
    #[error("weight must be a finite number >= 0, got {0}")]
    BadWeight(f64),
    #[error("node address must be HOST:PORT, got {0:?}")]
    BadNode(String),
    #[error("device name must be 1..=64 characters of [A-Za-z0-9._-], got {0:?}")]
    BadDeviceName(String),
    #[error("no device with id {0} in this ring")]
    UnknownDevice(DevId),
    #[error("{0}")]
    BadDisk(String),
    #[error("device {name} on {node} is already in this ring as id {id}")]
    DuplicateDevice {
        id: DevId,
        node: String,
        name: String,
    },
    #[error(
        "cannot place {replicas} replicas: only {devices} device(s) have weight > 0 \
         (each replica of a partition needs its own device)"
    )]
    TooFewDevices { replicas: u32, devices: u32 },
    #[error("total weight is zero: give at least one device a weight > 0")]
    ZeroWeight,
    #[error(
        "2^{part_power} partitions x {replicas} replicas = {slots} partition-replicas is more \
         than one ring can hold here (at most {MAX_SLOTS}); use a smaller partition power"
    )]
    TooLarge {
        part_power: u8,
        replicas: u8,
        slots: u64,
    },
    #[error("the ring has never been rebalanced, so it has no partitions to publish")]
    NotBuilt,
    #[error("path must look like /account[/container[/object]], got {0:?}")]
    BadPath(String),
    #[error("ring data is corrupt: {0}")]
    Corrupt(String),
    #[error("ring format version {0} is not supported by this build")]
    UnsupportedVersion(u16),
}

/// Hashes a path into a partition of a ring with power `part_power`.
///
/// SipHash-2-4 keyed with the cluster secret: fast (tens of millions per second per core),
/// uniform, and not invertible without the key.
pub fn partition_of(key: &HashKey, part_power: u8, path: &[u8]) -> u32 {
    let k0 = u64::from_le_bytes(key[..8].try_into().expect("8 bytes"));
    let k1 = u64::from_le_bytes(key[8..].try_into().expect("8 bytes"));
    let h = SipHasher24::new_with_keys(k0, k1).hash(path);
    (h >> (64 - u32::from(part_power))) as u32
}

/// The canonical path hashed for an account, a container or an object:
/// `/account`, `/account/container`, `/account/container/object`.
pub fn object_path(account: &str, container: Option<&str>, object: Option<&str>) -> String {
    let mut p = format!("/{account}");
    if let Some(c) = container {
        p.push('/');
        p.push_str(c);
        if let Some(o) = object {
            p.push('/');
            p.push_str(o);
        }
    }
    p
}

/// Checks a user-typed `/account[/container[/object]]` path (object names may contain `/`).
pub fn parse_path(path: &str) -> Result<(String, Option<String>, Option<String>), RingError> {
    let bad = || RingError::BadPath(path.to_string());
    let rest = path.strip_prefix('/').ok_or_else(bad)?;
    let mut it = rest.splitn(3, '/');
    let account = it.next().filter(|a| !a.is_empty()).ok_or_else(bad)?;
    let container = it.next();
    let object = it.next();
    if container == Some("") || object == Some("") {
        return Err(bad());
    }
    Ok((
        account.to_string(),
        container.map(str::to_string),
        object.map(str::to_string),
    ))
}

/// A 64-bit mixer (SplitMix64 finaliser) for deterministic, seeded tie-breaks.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_use_the_top_bits_and_depend_on_the_key() {
        let k1 = [1u8; 16];
        let k2 = [2u8; 16];
        let p = partition_of(&k1, 10, b"/AUTH_a/c/o");
        assert!(p < 1024);
        assert_eq!(p, partition_of(&k1, 10, b"/AUTH_a/c/o"));
        // One more bit of power splits each partition in two: the old partition is a prefix.
        assert_eq!(partition_of(&k1, 11, b"/AUTH_a/c/o") >> 1, p);
        assert_eq!(
            partition_of(&k1, 32, b"/x") >> 22,
            partition_of(&k1, 10, b"/x")
        );
        let differs = (0..64)
            .filter(|i| {
                let path = format!("/a/c/{i}");
                partition_of(&k1, 16, path.as_bytes()) != partition_of(&k2, 16, path.as_bytes())
            })
            .count();
        assert!(differs > 60, "the secret must change placement");
    }

    #[test]
    fn paths_parse_and_print() {
        assert_eq!(object_path("a", Some("c"), Some("o/p")), "/a/c/o/p");
        assert_eq!(object_path("a", None, Some("o")), "/a");
        assert_eq!(
            parse_path("/a/c/o/p").unwrap(),
            ("a".into(), Some("c".into()), Some("o/p".into()))
        );
        assert_eq!(parse_path("/a").unwrap(), ("a".into(), None, None));
        for bad in ["", "a/c", "/", "//c", "/a//o", "/a/c/"] {
            assert!(parse_path(bad).is_err(), "{bad:?}");
        }
    }
}
