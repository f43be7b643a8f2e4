//! gRPC definitions for Stratus, generated from `proto/*.proto` by tonic/prost.
//!
//! - [`meta`]: the client API of the metadata cluster, a revisioned key-value store in the
//!   style of etcd, plus membership admin and status.
//! - [`storage`]: the storage node API (objects, container and account databases).

/// The meta client API.
pub mod meta {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("stratus.meta.v1");
}

/// The storage node API.
pub mod storage {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("stratus.storage.v1");

    /// How a container's `Db.Put` that names another storage policy than the existing
    /// container's is refused (`FAILED_PRECONDITION` with this at the start of its message).
    pub const POLICY_CONFLICT: &str = "storage policy conflict";

    /// The container info item holding its storage policy's index (absent: 0); storage
    /// nodes set it when a container is created.
    pub const POLICY_META: &str = "x-backend-storage-policy-index";
}
