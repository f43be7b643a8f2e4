//! Pure shared code for Stratus: identifiers and the limits every service enforces.
//!
//! # Layout
//! - [`id`]: request ids that make retried writes idempotent.
//! - [`limits`]: size limits of the metadata store, shared by server and client.
//! - [`qcow2`]: qcow2 disk images read as raw (checked header, streaming conversion).
//! - [`ring`]: consistent-hash rings (builder, rebalance, lookup, format).
//! - [`timestamp`]: the version every write carries (newest wins).
//! - [`token`]: signed, expiring auth tokens.
//! - [`volume`]: block volumes as chunks (size, placement path, splitting I/O).
//! - [`xml`]: escaping text for XML documents.
//!
//! Nothing here opens files or sockets ([`qcow2`] reads and writes through what its caller
//! hands it).

pub mod id;
pub mod limits;
pub mod qcow2;
pub mod ring;
pub mod tempurl;
pub mod time;
pub mod timestamp;
pub mod token;
pub mod volume;
pub mod xml;
