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
}
