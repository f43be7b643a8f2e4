//! Pure shared code for Stratus: identifiers and the limits every service enforces.
//!
//! # Layout
//! - [`id`]: request ids that make retried writes idempotent.
//! - [`limits`]: size limits of the metadata store, shared by server and client.
//! - [`ring`]: consistent-hash rings (builder, rebalance, lookup, format).
//! - [`timestamp`]: the version every write carries (newest wins).
//! - [`token`]: signed, expiring auth tokens.
//!
//! Nothing here does I/O.

pub mod id;
pub mod limits;
pub mod ring;
pub mod tempurl;
pub mod time;
pub mod timestamp;
pub mod token;
