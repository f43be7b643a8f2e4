//! `stratus-client`: what every caller of a Stratus cluster needs, and nothing more. The
//! proxy and the CLI link this crate, never the meta or storage-node crates, so they link
//! neither RocksDB nor openraft.
//!
//! # Layout
//! - [`meta`]: [`MetaClient`], which follows the Raft leader and retries safely.
//! - [`rings`]: ring builder state and published rings in meta, and the ring watcher.
//! - [`identity`]: Keystone v3 identity (domains, projects, users, groups, roles,
//!   assignments), its tokens and the revocation list every proxy follows.
//! - [`images`]: Glance image records.
//! - [`compute`]: compute hosts, flavors, servers and the scheduler that places them.
//! - [`nbd`]: an NBD server exporting a [`nbd::BlockDevice`] to QEMU and other clients.
//! - [`volumes`]: Cinder volume and snapshot records (epoch, replica set, lineage).
//! - [`volume_ops`]: the volume lifecycle (create, clone, snapshot, extend, flatten,
//!   delete) shared by the Cinder API and the CLI.
//! - [`volume_io`]: the volume I/O client: one fenced writer, every write on every replica
//!   of the set, replicas leaving and catching up.
//! - [`users`]: TempAuth users and the token-signing secret kept in meta.
//! - [`peers`]: the shared cache of gRPC channels to storage nodes.
//! - [`records`]: the typed, versioned records storage nodes keep in meta.
//! - [`tls`]: mutual TLS inside the cluster: identities, roles, certificates, the TLS
//!   listener and connector, authorization by role.
//! - [`service`]: the process skeleton every service shares (logging, shutdown, config,
//!   admin port with metrics, request ids).

// tonic::Status (176 bytes) is the error type of every gRPC client call.
#![allow(clippy::result_large_err)]

pub mod compute;
pub mod identity;
pub mod images;
pub mod meta;
pub mod nbd;
pub mod peers;
pub mod policies;
pub mod records;
pub mod rings;
pub mod service;
pub mod tls;
pub mod users;
pub mod volume_io;
pub mod volume_ops;
pub mod volumes;

pub use meta::{ClientError, MetaClient};
