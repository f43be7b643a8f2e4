//! Pure shared code for Stratus: identifiers and the limits every service enforces.
//!
//! # Layout
//! - [`id`]: request ids that make retried writes idempotent.
//! - [`limits`]: size limits of the metadata store, shared by server and client.
//!
//! Nothing here does I/O; rings, path hashing and timestamps join this crate with their issues.

pub mod id;
pub mod limits;
pub mod ring;
