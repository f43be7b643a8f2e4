//! The cluster operations every handler stands on: the replicated store, fetch and delete
//! of an object, reading large objects, the merged reads and quorum writes of accounts and
//! containers, the cached info and access decisions, and the rules that more than one
//! handler applies (quotas, versioned writes, multi-object reports).
//!
//! Files here import only each other (downwards: [`object`], [`manifest`] and [`link`] at
//! the bottom, [`versions`], [`object_versioning`], [`segments`] and [`symlink`] at the
//! top) and the leaf helpers; never a handler.

pub mod database;
pub mod fetch;
pub mod info;
pub mod link;
pub mod listing;
pub mod manifest;
pub mod object;
pub mod object_versioning;
pub mod quota;
pub mod report;
pub mod segments;
pub mod slo_check;
pub mod store;
pub mod symlink;
pub mod versions;
