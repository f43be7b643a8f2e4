//! gRPC services of a meta node.
//!
//! - [`meta_service`]: the client API (KV, txn, watch, status, membership).
//! - [`propose`]: group commit of client writes in front of Raft.
//! - [`access`]: what each role may call and which keys it may read and write.
//! - [`convert`]: protobuf ↔ [`crate::kv`] conversions and error mapping.
//!
//! Raft between nodes does not use gRPC: see [`crate::peer`].

pub mod access;
pub mod convert;
pub mod meta_service;
pub mod propose;

pub use stratus_client::meta::LEADER_HEADER;
