//! `stratus-meta`: the Raft-replicated metadata cluster of Stratus.
//!
//! A small, generic replicated state machine — a revisioned key-value store with
//! transactions and prefix watches, like etcd — on which rings, catalog and scheduling state
//! are built as typed modules.
//!
//! # Layout
//! - [`kv`]: the data model and the pure transaction logic (with an in-memory store for tests).
//! - [`store`]: RocksDB log store, state machine and snapshot files (openraft storage-v2).
//! - [`network`]: openraft's `RaftNetwork` over [`peer`], the framed TCP transport between
//!   nodes (on the node's one port, beside gRPC).
//! - [`grpc`]: the Raft service between nodes and the client-facing `Meta` service.
//! - [`server`]: [`server::MetaServer`], one node built from a [`server::Config`].
//!
//! The client side (`MetaClient`, rings, users) lives in `stratus-client`, which links
//! neither RocksDB nor openraft.

// tonic::Status (176 bytes) is the error type of every gRPC handler and client call.
#![allow(clippy::result_large_err)]

pub mod grpc;
pub mod kv;
pub mod metrics;
pub mod network;
pub mod peer;
pub mod server;
pub mod store;

/// Node ids are small integers chosen by the operator.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft type configuration of the meta cluster.
    pub TypeConfig:
        D = kv::Proposal,
        R = Vec<kv::Response>,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
);

/// The Raft handle of a meta node.
pub type Raft = openraft::Raft<TypeConfig>;

/// Errors starting or running a meta node.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("RocksDB: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("raft: {0}")]
    Raft(String),
    #[error("config: {0}")]
    Config(String),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The state cannot be brought back to a consistent point by itself.
    #[error("{0}")]
    Recovery(String),
}

/// Ends the process at a crash point (see the `failpoints` feature): no unwinding, no
/// destructors, no flushing, as a power cut or `kill -9` would.
pub fn crash(at: &str) -> ! {
    eprintln!("crash point {at}: aborting");
    std::process::abort()
}
