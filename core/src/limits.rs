//! Limits of the metadata store. The server enforces them; clients may check early.

/// Largest key, in bytes.
pub const MAX_KEY_BYTES: usize = 4 * 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Most operations (compares + success ops + failure ops) in one transaction.
pub const MAX_TXN_OPS: usize = 128;
/// Most keys a single range answer returns when the request sets no limit.
pub const DEFAULT_RANGE_LIMIT: usize = 10_000;
