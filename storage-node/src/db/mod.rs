//! Container and account databases, as rows in a device's RocksDB.
//!
//! # Keys
//! ```text
//! containers CF:  I <part:be32> <account> 0x00 <container>               → DbInfo
//!                 R <part:be32> <account> 0x00 <container> 0x00 <object> → ObjectRow
//! accounts CF:    I <part:be32> <account>                                → DbInfo
//!                 R <part:be32> <account> 0x00 <container>               → ContainerRow
//! ```
//! Names never contain NUL (the proxy refuses them), so rows sort by name in UTF-8 byte
//! order, which is Swift's listing order. Deleted rows stay as tombstones (newest timestamp
//! wins) so replicas can be merged; the info record keeps running totals so HEAD is O(1).
//!
//! Every change is a read-modify-write under the device's stripe lock for the database,
//! committed as one synced batch.
//!
//! # Files
//! - [`target`]: which database a request names ([`Target`], [`Kind`]) and its keys.
//! - [`records`]: the info record and the rows, as stored; what replicas agree on.
//! - [`update`]: PUT, POST, DELETE and row updates; the rules by which a row wins.
//! - [`listing`]: listings with Swift's query parameters.
//! - [`replica`]: dumps pushed to peers and merged from them; handoffs; reclaiming.

pub mod listing;
pub mod records;
pub mod replica;
pub mod target;
pub mod update;

#[cfg(test)]
mod tests;

pub use listing::list;
pub use records::{container_row, info, info_digest, Info, MetaItem};
pub use replica::{dump_partition, merge_dump, reclaim_rows, remove_partition, DUMP_ROWS};
pub use target::{parse_container_key, space, Kind, Target};
pub use update::{
    account_update, delete, object_update, policy_of, post, put, DeleteOutcome, PutOutcome,
    POLICY_KEY,
};
