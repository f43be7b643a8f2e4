//! `OPTIONS` on accounts, containers and objects, as Swift's proxy answers it: without an
//! `Origin` header, `200` with the `Allow`ed methods, whoever asks (no token needed); with
//! one, a CORS preflight judged by the container's `X-Container-Meta-Access-Control-*`
//! metadata: `401` unless the origin is allowed (`Allow-Origin`: `*` or a space-separated
//! list of origins) and `Access-Control-Request-Method` is one of the methods, else `200`
//! with the `Access-Control-Allow-*` headers.
//!
//! Only preflights are answered: the `Access-Control-Allow-Origin` and `-Expose-Headers`
//! Swift adds to ordinary answers for a request with an `Origin` are not (yet) sent.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::SwiftResult;
use crate::headers::{hv, meta_value};
use crate::proxy::Proxy;

/// The methods of an account, a container and an object, as `Allow` lists them.
const ACCOUNT: &str = "DELETE, GET, HEAD, OPTIONS, POST, PUT";
const CONTAINER: &str = "DELETE, GET, HEAD, OPTIONS, POST, PUT";
const OBJECT: &str = "COPY, DELETE, GET, HEAD, OPTIONS, POST, PUT";

/// Answers `OPTIONS` on `account` (with `container`, and `object` if any).
pub async fn options(
    p: &Proxy,
    h: &HeaderMap,
    account: &str,
    container: Option<&str>,
    object: bool,
) -> SwiftResult<Response> {
    let allow = match (container, object) {
        (None, _) => ACCOUNT,
        (Some(_), false) => CONTAINER,
        (Some(_), true) => OBJECT,
    };
    let mut r = StatusCode::OK.into_response();
    r.headers_mut()
        .insert("allow", HeaderValue::from_static(allow));
    let (Some(origin), Some(container)) = (hv(h, "origin"), container) else {
        // Not a preflight, or one for an account (Swift answers those as plain OPTIONS).
        return Ok(r);
    };
    let info = p.db_info(account, container).await?;
    let allowed_origins = meta_value(&info.meta, "x-container-meta-access-control-allow-origin");
    let method_ok =
        hv(h, "access-control-request-method").is_some_and(|m| allow.split(", ").any(|a| a == m));
    if !origin_allowed(allowed_origins, origin) || !method_ok {
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(r);
    }
    let mut set = |k: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().insert(k, v);
        }
    };
    let mut vary = Vec::new();
    if allowed_origins.map(str::trim) == Some("*") {
        set("access-control-allow-origin", "*");
    } else {
        set("access-control-allow-origin", origin);
        vary.push("Origin");
    }
    if let Some(age) = meta_value(&info.meta, "x-container-meta-access-control-max-age") {
        set("access-control-max-age", age);
    }
    set("access-control-allow-methods", allow);
    let asked: Vec<&str> = hv(h, "access-control-request-headers")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if !asked.is_empty() {
        // Swift allows whatever headers are asked for (the list is unbounded).
        set("access-control-allow-headers", &asked.join(", "));
        vary.push("Access-Control-Request-Headers");
    }
    if !vary.is_empty() {
        set("vary", &vary.join(", "));
    }
    Ok(r)
}

/// Whether `origin` is among a container's allowed origins (`*` allows any).
fn origin_allowed(allowed: Option<&str>, origin: &str) -> bool {
    allowed.is_some_and(|a| a.split_whitespace().any(|o| o == "*" || o == origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_matched_exactly_or_by_a_star() {
        assert!(origin_allowed(Some("*"), "http://a"));
        assert!(origin_allowed(Some("http://b http://a"), "http://a"));
        assert!(!origin_allowed(Some("http://b"), "http://a"));
        assert!(!origin_allowed(Some("http://a.x"), "http://a"));
        assert!(!origin_allowed(None, "http://a"));
    }
}
