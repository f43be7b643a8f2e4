//! What a device's RocksDB holds, by column family, and the three keyspaces the rings
//! place on a device.
//!
//! A [`Space`] is named like the ring that places it (`object`, `container`, `account`)
//! and lives in one column family: object records in [`CF_OBJECTS`], container databases
//! in [`CF_CONTAINERS`], account databases in [`CF_ACCOUNTS`]. The other column families
//! are the node's own bookkeeping (pending container updates, dirty containers, the
//! expirer's queue) and are never replicated. Everything above the device — hashes,
//! databases, replication — names keyspaces through this one enum, so the mapping from a
//! ring to where its data lives is written down once.

/// Column family of object records, keyed by [`crate::diskfile::object_key`].
pub const CF_OBJECTS: &str = "objects";
/// Column family of container databases (info and object rows).
pub const CF_CONTAINERS: &str = "containers";
/// Column family of account databases (info and container rows).
pub const CF_ACCOUNTS: &str = "accounts";
/// Container updates not yet acknowledged by their container replica.
pub const CF_PENDING: &str = "pending";
/// Containers whose stats changed since they were last reported to their account.
pub const CF_DIRTY: &str = "dirty";
/// Objects with an expiry: `delete_at (be64) ++ object key` → nothing (the expirer's queue).
pub const CF_EXPIRING: &str = "expiring";

/// Volume chunk bookkeeping (epochs, chunk versions, preserved snapshot copies): see
/// [`crate::volume`]. Chunk data lives in files under `<device>/volumes/`.
pub const CF_CHUNKS: &str = "chunks";

/// A keyspace of a device, named like the ring that places it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Space {
    /// Object records (and their bodies).
    Object,
    /// Container databases.
    Container,
    /// Account databases.
    Account,
}

impl Space {
    /// All three, in the order workers visit them.
    pub const ALL: [Space; 3] = [Space::Object, Space::Container, Space::Account];

    /// The ring's name.
    pub fn ring(self) -> &'static str {
        match self {
            Space::Object => "object",
            Space::Container => "container",
            Space::Account => "account",
        }
    }

    /// From a ring name.
    pub fn from_ring(name: &str) -> Option<Space> {
        Space::ALL.into_iter().find(|s| s.ring() == name)
    }

    /// The column family holding it.
    pub fn cf(self) -> &'static str {
        match self {
            Space::Object => CF_OBJECTS,
            Space::Container => CF_CONTAINERS,
            Space::Account => CF_ACCOUNTS,
        }
    }
}
