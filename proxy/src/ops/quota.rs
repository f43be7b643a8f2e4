//! Quotas, as Swift's `container_quotas` and `account_quotas` middlewares enforce them.
//!
//! - A container's owner sets `X-Container-Meta-Quota-Bytes` and `-Quota-Count`.
//! - An account's `X-Account-Meta-Quota-Bytes` is set (or removed) by a reseller only; the
//!   account's owner cannot lift it.
//!
//! A write that would take the container or account past its quota gets 413. Usage is read
//! fresh (not from the proxy's cache) whenever a quota is set, so a quota holds as soon as
//! the usage it counts is recorded. Account usage is reported by the storage nodes'
//! account reporters, so it trails container usage by one reporting pass.
//!
//! Every handler that writes (object PUT and COPY, SLO PUT, archive extraction, account
//! and container metadata) applies these checks, so they stand with the cluster operations.

use axum::http::{HeaderMap, StatusCode};
use futures::StreamExt;

use crate::acl::Identity;
use crate::auth::forbidden;
use crate::error::{bad_request, SwiftError, SwiftResult};
use crate::headers::{hv, meta_value};
use crate::ops::listing::info;
use crate::ops::object::{ByteStream, ObjPath};
use crate::proxy::Proxy;

/// The account quota header.
const ACCOUNT_QUOTA: &str = "x-account-meta-quota-bytes";

fn exceeded() -> SwiftError {
    SwiftError::new(StatusCode::PAYLOAD_TOO_LARGE, "Upload exceeds quota.")
}

fn limit(v: Option<&str>) -> Option<u64> {
    v.and_then(|v| v.trim().parse().ok())
}

/// An account POST may touch the quota only from a reseller (403), with an integer (400).
pub fn check_account_post(who: &Identity, h: &HeaderMap) -> SwiftResult<()> {
    let value = hv(h, ACCOUNT_QUOTA);
    let touched = value.is_some() || h.contains_key("x-remove-account-meta-quota-bytes");
    if !touched {
        return Ok(());
    }
    if !matches!(who, Identity::User { reseller: true, .. }) {
        return Err(forbidden());
    }
    match value {
        Some(v) if !v.is_empty() && v.trim().parse::<u64>().is_err() => {
            Err(bad_request("Invalid bytes quota."))
        }
        _ => Ok(()),
    }
}

/// A container write's quota headers must be integers (400).
pub fn validate_container_meta(key: &str, value: &str) -> SwiftResult<()> {
    let what = match key {
        "x-container-meta-quota-bytes" => "bytes",
        "x-container-meta-quota-count" => "count",
        _ => return Ok(()),
    };
    if !value.is_empty() && value.trim().parse::<u64>().is_err() {
        return Err(bad_request(format!("Invalid {what} quota.")));
    }
    Ok(())
}

/// Refuses (413) a write of `len` more bytes into `path`'s container if it would exceed
/// the container's or the account's quota. Returns how many bytes the write may still
/// take (`None`: no byte quota), for a body whose length is not known up front
/// ([`cap`]).
pub async fn check_put(p: &Proxy, path: &ObjPath, len: u64) -> SwiftResult<Option<u64>> {
    let cached = p.container_info(&path.account, &path.container).await?;
    let max_bytes = limit(meta_value(&cached.meta, "x-container-meta-quota-bytes"));
    let max_count = limit(meta_value(&cached.meta, "x-container-meta-quota-count"));
    let mut left: Option<u64> = None;
    let mut tighten = |l: u64| left = Some(left.map_or(l, |x| x.min(l)));
    if max_bytes.is_some() || max_count.is_some() {
        let now = info(p, &path.account, &path.container).await?;
        if max_count.is_some_and(|m| now.object_count.saturating_add(1) > m) {
            return Err(exceeded());
        }
        // A versioned container's versions count against its quota (Swift's quota sees
        // the bytes its versioning middleware reports).
        let mut bytes = now.bytes;
        if let Some(v) = crate::ops::object_versioning::Versioning::of(&cached) {
            bytes = bytes.saturating_add(info(p, &path.account, &v.container).await?.bytes);
        }
        if let Some(m) = max_bytes {
            tighten(m.saturating_sub(bytes));
        }
    }
    let acct = p.db_info(&path.account, "").await?;
    if let Some(m) = limit(meta_value(&acct.meta, ACCOUNT_QUOTA)) {
        let now = info(p, &path.account, "").await?;
        tighten(m.saturating_sub(now.bytes));
    }
    if left.is_some_and(|l| len > l) {
        return Err(exceeded());
    }
    Ok(left)
}

/// Fails `body` with 413 as soon as it passes `left` bytes (a chunked upload, an archive
/// member): the write is abandoned before any replica commits it, so nothing is kept.
pub fn cap(body: ByteStream, left: Option<u64>) -> ByteStream {
    let Some(left) = left else {
        return body;
    };
    let mut seen = 0u64;
    Box::pin(body.map(move |piece| {
        let piece = piece?;
        seen = seen.saturating_add(piece.len() as u64);
        if seen > left {
            return Err(exceeded());
        }
        Ok(piece)
    }))
}
