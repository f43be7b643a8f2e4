//! gRPC services of a meta node.
//!
//! - [`raft_service`]: AppendEntries / Vote / InstallSnapshot between nodes.
//! - [`meta_service`]: the client API (KV, txn, watch, status, membership).
//! - [`convert`]: protobuf ↔ [`crate::kv`] conversions and error mapping.

pub mod convert;
pub mod meta_service;
pub mod raft_service;

/// gRPC metadata key carrying the leader's address on an UNAVAILABLE "not leader" answer.
pub const LEADER_HEADER: &str = "x-stratus-leader";
