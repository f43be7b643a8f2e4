//! What a device's RocksDB holds, by column family, and the three keyspaces the rings
//! place on a device.
//!
//! A [`Space`] is named like the ring that places it (`object`, `object-<i>`, `container`,
//! `account`) and lives in one column family: object records in [`CF_OBJECTS`] (those of
//! storage policy `i > 0` in `objects-<i>`, see [`OBJECT_CFS`]), container databases
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

/// How many storage policies a cluster can have: policy `i` (`0 <= i < MAX_POLICIES`) keeps
/// its objects in their own ring (`object` for 0, `object-<i>` after) and, on each device,
/// in their own column family ([`OBJECT_CFS`]).
pub const MAX_POLICIES: u8 = 4;
const _: () = assert!(MAX_POLICIES as u32 == stratus_client::policies::MAX_POLICIES);

/// The column family of each policy's objects, by policy index.
pub const OBJECT_CFS: [&str; MAX_POLICIES as usize] =
    [CF_OBJECTS, "objects-1", "objects-2", "objects-3"];

/// The ring of each policy's objects, by policy index.
pub const OBJECT_RINGS: [&str; MAX_POLICIES as usize] =
    ["object", "object-1", "object-2", "object-3"];

/// A keyspace of a device, named like the ring that places it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Space {
    /// Object records (and their bodies) of one storage policy (by index).
    Object(u8),
    /// Container databases.
    Container,
    /// Account databases.
    Account,
}

impl Space {
    /// Every keyspace, in the order workers visit them.
    pub fn all() -> impl Iterator<Item = Space> {
        Space::objects().chain([Space::Container, Space::Account])
    }

    /// The object keyspaces, one per storage policy.
    pub fn objects() -> impl Iterator<Item = Space> {
        (0..MAX_POLICIES).map(Space::Object)
    }

    /// The ring's name.
    pub fn ring(self) -> &'static str {
        match self {
            Space::Object(p) => OBJECT_RINGS[usize::from(p)],
            Space::Container => "container",
            Space::Account => "account",
        }
    }

    /// From a ring name.
    pub fn from_ring(name: &str) -> Option<Space> {
        Space::all().find(|s| s.ring() == name)
    }

    /// The objects of policy `index`, if there can be such a policy.
    pub fn policy(index: u32) -> Option<Space> {
        u8::try_from(index)
            .ok()
            .filter(|i| *i < MAX_POLICIES)
            .map(Space::Object)
    }

    /// The column family holding it.
    pub fn cf(self) -> &'static str {
        match self {
            Space::Object(p) => OBJECT_CFS[usize::from(p)],
            Space::Container => CF_CONTAINERS,
            Space::Account => CF_ACCOUNTS,
        }
    }
}
