//! Replication: the `Replication` gRPC service (what a device holds, and taking pushed
//! copies) and the replicator worker that uses it.
//!
//! # A pass
//! For every partition a device holds (objects, container and account databases), the
//! replicator compares its hashes with each *other* primary's. It asks every peer device
//! once per pass for all the partitions they share ([`MAX_BATCH_PARTS`] at a time,
//! answered from the peer's cache), then repairs only the partitions that differ:
//! - objects: for each suffix that differs it fetches the peer's summaries of that suffix
//!   (name hash, timestamps, deletion) and streams over [`Sync`] only what the peer lacks
//!   or holds an older version of — whole objects, metadata-only updates, tombstones;
//! - databases: it pushes the partition's databases, which the peer merges row by row.
//!
//! Each node only *pushes*; a peer holding something newer pushes it back in its own pass.
//! A partition the device holds although the ring does not place it there (a handoff: a
//! write made while a primary was down, or a partition a rebalance moved away) is pushed
//! to every primary and, once all of them have it, removed locally. This is how data
//! follows the ring after `stratus ring rebalance`.
//!
//! After each pass the node reports to meta, per ring, the ring version the pass started
//! at and how many handoff partitions it still holds; `stratus ring rebalance` waits for
//! those to reach zero instead of making operators wait `min_part_hours`.
//!
//! # Files
//! - [`service`]: the gRPC service: hashes, summaries, and storing pushed copies.
//! - [`pass`]: the replicator worker; one pass over every partition; handoff removal.
//! - [`peer`]: asking a peer device for its hashes.
//! - [`push`]: pushing objects and databases to a peer device.

pub mod pass;
pub mod peer;
pub mod push;
pub mod service;

pub use pass::{Replicator, DEFAULT_BYTES_PER_SEC};
pub use service::{ReplicationService, MAX_BATCH_PARTS};

#[cfg(test)]
mod tests;
