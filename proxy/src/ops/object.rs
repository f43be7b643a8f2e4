//! An object's address and the object rules every handler shares: which headers an object
//! stores, its expiry, its body as a stream, whether its metadata marks a large-object
//! manifest, and its DELETE (a tombstone on every replica).

use std::pin::Pin;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use stratus_core::time::now_secs;
use stratus_core::timestamp::Timestamp;
use stratus_proto::storage as pb;

use crate::cluster::{Placement, RingKind};
use crate::error::{bad_request, not_found, unavailable, SwiftError, SwiftResult};
use crate::headers::hv;
use crate::proxy::Proxy;

/// Stored headers besides `X-Object-Meta-*`.
pub const STORED_HEADERS: &[&str] = &[
    "content-disposition",
    "content-encoding",
    "content-language",
    "cache-control",
    "expires",
    "x-object-manifest",
];

/// An object's address.
#[derive(Clone, Debug, Default)]
pub struct ObjPath {
    /// The account.
    pub account: String,
    /// The container.
    pub container: String,
    /// The object's name within the container.
    pub object: String,
}

impl ObjPath {
    /// Where the object lives: by the ring of its container's storage policy.
    pub async fn place(&self, p: &Proxy) -> SwiftResult<Placement> {
        let policy = p.container_policy(&self.account, &self.container).await?;
        p.cluster.place(
            RingKind::Object(policy),
            &self.account,
            Some(&self.container),
            Some(&self.object),
        )
    }

    /// The storage target of the object in `p`, its device and replica yet to fill in.
    pub fn target(&self, p: &Placement) -> pb::ObjectTarget {
        pb::ObjectTarget {
            device: String::new(),
            part: p.part,
            account: self.account.clone(),
            container: self.container.clone(),
            object: self.object.clone(),
            replica_index: 0,
            policy: p.policy,
        }
    }
}

/// A body, as the proxy streams it.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, SwiftError>> + Send>>;

/// 499: the client went away mid-body.
pub fn client_disconnect() -> SwiftError {
    SwiftError::new(
        StatusCode::from_u16(499).expect("valid status"),
        "Client Disconnect",
    )
}

/// The answer to a request whose body could not be read: 408 if the client sent nothing
/// for too long (Swift's `client_timeout`), 499 if it went away.
pub fn body_error(e: impl std::fmt::Display) -> SwiftError {
    if e.to_string()
        .contains(crate::server::CLIENT_TIMEOUT_MESSAGE)
    {
        return SwiftError::new(
            StatusCode::REQUEST_TIMEOUT,
            "<html><h1>Request Timeout</h1><p>The server has waited too long for the request to be sent by the client.</p></html>",
        );
    }
    client_disconnect()
}

/// The latest expiry Swift keeps (`normalize_delete_at_timestamp`): later ones are
/// clamped to it, never wrapped into the past.
pub const MAX_DELETE_AT: u64 = 9_999_999_999;

/// A whole number of seconds; one too large for a u64 (all digits) is `u64::MAX`.
fn seconds(v: &str) -> Option<u64> {
    let v = v.trim();
    match v.parse::<u64>() {
        Ok(n) => Some(n),
        Err(_) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => Some(u64::MAX),
        Err(_) => None,
    }
}

/// Whether a request that must have none carries a body: by its `Content-Length`, else
/// by reading (a chunked body of empty pieces is none). 400 for a bad length.
pub async fn has_body(h: &HeaderMap, body: axum::body::Body) -> SwiftResult<bool> {
    if let Some(v) = hv(h, "content-length") {
        return Ok(v
            .trim()
            .parse::<u64>()
            .map_err(|_| bad_request("Invalid Content-Length"))?
            > 0);
    }
    let mut stream = body.into_data_stream();
    while let Some(piece) = stream.next().await {
        if !piece.map_err(body_error)?.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `X-Delete-At` / `X-Delete-After` of a request, as seconds since the epoch (0: none),
/// at most [`MAX_DELETE_AT`].
pub fn delete_at(h: &HeaderMap) -> SwiftResult<u64> {
    let now = now_secs();
    if let Some(v) = hv(h, "x-delete-after") {
        let n = seconds(v).ok_or_else(|| bad_request("Non-integer X-Delete-After"))?;
        return Ok(now.saturating_add(n).min(MAX_DELETE_AT));
    }
    if let Some(v) = hv(h, "x-delete-at") {
        let at = seconds(v.trim().split('.').next().unwrap_or(""))
            .ok_or_else(|| bad_request("Non-integer X-Delete-At"))?;
        if at <= now {
            return Err(bad_request("X-Delete-At in past"));
        }
        return Ok(at.min(MAX_DELETE_AT));
    }
    Ok(0)
}

/// Turns stored metadata pairs into the wire form (empty values dropped).
pub fn meta_items(items: Vec<(String, String)>) -> Vec<pb::MetaItem> {
    items
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(key, value)| pb::MetaItem { key, value, ts: 0 })
        .collect()
}

/// DELETE: a tombstone on every replica.
pub async fn delete(p: &Proxy, path: &ObjPath) -> SwiftResult<Response> {
    let place = path.place(p).await?;
    let ts = Timestamp::now().0;
    let target = path.target(&place);
    let results = p
        .cluster
        .write_all(&place, |dev, i| {
            let mut t = target.clone();
            t.device = dev.name.clone();
            t.replica_index = i;
            async move {
                let mut c = p.cluster.peers.object(&dev.node)?;
                Ok(c.delete(pb::DeleteRequest {
                    target: Some(t),
                    ts,
                })
                .await?
                .into_inner())
            }
        })
        .await;
    let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    if ok.len() < place.quorum() {
        return Err(unavailable("object DELETE reached no quorum"));
    }
    if ok.iter().filter(|r| r.existed).count() * 2 < ok.len() {
        return Err(not_found());
    }
    Ok(SwiftError::new(StatusCode::NO_CONTENT, "").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn at(name: &'static str, v: &str) -> SwiftResult<u64> {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(v).unwrap());
        delete_at(&h)
    }

    #[test]
    fn far_future_expiry_is_clamped_never_wrapped() {
        let now = now_secs();
        assert_eq!(
            at("x-delete-after", "18446744073709551615").unwrap(),
            MAX_DELETE_AT
        );
        assert_eq!(
            at("x-delete-after", "99999999999999999999999999").unwrap(),
            MAX_DELETE_AT
        );
        assert_eq!(
            at("x-delete-at", "18446744073709551615").unwrap(),
            MAX_DELETE_AT
        );
        let in_an_hour = at("x-delete-after", "3600").unwrap();
        assert!(in_an_hour >= now + 3600 && in_an_hour < now + 3700);
        assert_eq!(at("x-delete-after", "-1").unwrap_err().status.as_u16(), 400);
        assert_eq!(at("x-delete-at", "12").unwrap_err().status.as_u16(), 400);
        assert_eq!(at("x-delete-at", "soon").unwrap_err().status.as_u16(), 400);
    }
}
