//! gRPC services of a meta node.
//!
//! - [`raft_service`]: AppendEntries / Vote / InstallSnapshot between nodes.
//! - [`meta_service`]: the client API (KV, txn, watch, status, membership).
//! - [`convert`]: protobuf ↔ [`crate::kv`] conversions and error mapping.

pub mod convert;
pub mod meta_service;
pub mod propose;
pub mod raft_service;

pub use stratus_client::meta::LEADER_HEADER;
