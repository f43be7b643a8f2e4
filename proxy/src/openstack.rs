//! What the OpenStack APIs of the proxy (Glance, Cinder) share: JSON and empty answers, and
//! the address the client reached us by (links and catalogs are built from it, since every
//! API shares the proxy's port).

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;

use crate::headers::hv;

/// A JSON answer.
pub fn json_response(status: StatusCode, v: &serde_json::Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// An empty answer.
pub fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

/// `http://host[:port]` as the client reached us.
pub fn host_url(parts: &Parts) -> String {
    format!(
        "http://{}",
        hv(&parts.headers, "host").unwrap_or("127.0.0.1")
    )
}
