//! What the OpenStack APIs of the proxy (Glance, Cinder, Nova) share: JSON and empty
//! answers, the address the client reached us by (links and catalogs are built from it,
//! since every API shares the proxy's port), and microversion negotiation.

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
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

/// `http://host[:port]` (`https://` on a TLS port) as the client reached us.
pub fn host_url(parts: &Parts) -> String {
    let scheme = parts
        .extensions
        .get::<axum::http::uri::Scheme>()
        .map_or("http", |s| s.as_str());
    format!(
        "{scheme}://{}",
        hv(&parts.headers, "host").unwrap_or("127.0.0.1")
    )
}

/// The microversion a request asks of `service` (`volume`, `compute`) in
/// `OpenStack-API-Version` (`compute 2.1`, `compute latest`), else in the service's legacy
/// header (`X-OpenStack-Nova-API-Version`) if it has one; none asked is `served`. An API
/// that serves exactly one microversion answers 400 (with the message) for a malformed one
/// and 406 for any other.
pub fn microversion(
    h: &HeaderMap,
    service: &str,
    legacy: Option<&str>,
    served: (u32, u32),
) -> Result<(u32, u32), (StatusCode, String)> {
    let asked = h
        .get_all("openstack-api-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|item| {
            let mut it = item.split_whitespace();
            it.next()?
                .eq_ignore_ascii_case(service)
                .then(|| it.next().unwrap_or("").to_string())
        })
        .next()
        .or_else(|| {
            legacy
                .and_then(|name| hv(h, name))
                .map(|v| v.trim().to_string())
        });
    let Some(asked) = asked else {
        return Ok(served);
    };
    if asked.eq_ignore_ascii_case("latest") {
        return Ok(served);
    }
    let invalid = || {
        (
            StatusCode::BAD_REQUEST,
            format!(
                "API Version String {asked} is of invalid format. Must be of format MajorNum.MinorNum."
            ),
        )
    };
    let (major, minor) = asked.split_once('.').ok_or_else(invalid)?;
    let num = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
            .ok_or_else(invalid)
    };
    let v = (num(major)?, num(minor)?);
    if v != served {
        let (major, minor) = served;
        return Err((
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "Version {asked} is not supported by the API. Minimum is {major}.{minor} and maximum is {major}.{minor}."
            ),
        ));
    }
    Ok(v)
}

/// The fault's name in an error body for `status` (the `Fault._fault_names` Nova and
/// Cinder share: `{"itemNotFound": {"code": 404, "message": …}}`).
pub fn fault_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "badMethod",
        409 => "conflictingRequest",
        413 | 429 => "overLimit",
        415 => "badMediaType",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
    }
}
