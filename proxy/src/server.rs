//! The HTTP service: every request gets a transaction id (on every log line and storage or
//! meta call it causes, and in the answer), counted body bytes, its metrics and one log
//! line; HEAD answers lose their body; a refusal of an unread body closes the connection.
//! What a request means is [`crate::router`]'s business.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use stratus_client::service::trace;
use stratus_client::tls::http::{serve_public, HttpOptions};
use tokio::net::TcpListener;
use tokio_rustls::rustls::ServerConfig;
use tracing::Instrument;

use crate::domain_remap::Remapped;
use crate::error::SwiftError;
use crate::headers::hv;
use crate::metrics;
use crate::proxy::{Proxy, ProxyError};
use crate::router::route;

impl Proxy {
    /// Serves HTTP on `listener` (HTTPS with `tls`) until `shutdown` resolves.
    pub async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<Arc<ServerConfig>>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ProxyError> {
        let opts = HttpOptions {
            header_timeout: self.client_timeout,
        };
        let app = axum::Router::new().fallback(handle).with_state(self);
        serve_public(listener, app, tls, opts, shutdown).await?;
        Ok(())
    }
}

/// Every request: a transaction id (on every log line and storage or meta call it causes,
/// and in the answer), counted body bytes, and its metrics.
async fn handle(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    // The permit is held while the request is handled (a streamed answer's body is sent
    // after it is released).
    let Ok(_permit) = p.inflight.clone().try_acquire_owned() else {
        metrics::request(req.method().as_str(), 503, 0.0, 0);
        return SwiftError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "<html><h1>Service Unavailable</h1><p>Too many requests in flight; retry shortly.</p></html>",
        )
        .with_header("retry-after", "1".into())
        .with_header("connection", "close".into())
        .into_response();
    };
    let trans_id: Arc<str> = Arc::from(trace::new_trans_id());
    let span = tracing::info_span!("request", trans_id = %trans_id);
    trace::scope(
        trans_id.clone(),
        handle_traced(p, req, trans_id).instrument(span),
    )
    .await
}

async fn handle_traced(p: Arc<Proxy>, req: Request, trans_id: Arc<str>) -> Response {
    let started = Instant::now();
    let sends_body = req.headers().contains_key("transfer-encoding")
        || hv(req.headers(), "content-length").is_some_and(|l| l.trim() != "0");
    // Count body bytes as they are read (only requests that have a body pay for it).
    let req = if sends_body {
        let limit = p.client_timeout;
        req.map(|body| Body::from_stream(client_body(body, limit)))
    } else {
        req
    };
    let method = req.method().clone();
    let (req, remapped) = match remap(&p, req) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let path = req.uri().path().to_string();
    // A client that asks for keep-alive by name is told it, as Swift's server does.
    let keep_alive = hv(req.headers(), "connection").is_some_and(|c| {
        c.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("keep-alive"))
    });
    let mut resp = match route(&p, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if let Some(r) = &remapped {
        r.rewrite_locations(resp.headers_mut());
    }
    if sends_body && (resp.status().is_client_error() || resp.status().is_server_error()) {
        // A refusal may come before the body was read (a quota, a denial): the rest of it
        // is still on the wire, so the connection cannot carry another request.
        resp.headers_mut()
            .insert("connection", HeaderValue::from_static("close"));
    }
    if keep_alive && !resp.headers().contains_key("connection") {
        resp.headers_mut()
            .insert("connection", HeaderValue::from_static("keep-alive"));
    }
    if method == Method::HEAD {
        // HEAD answers carry no body but keep their Content-Length.
        let len = resp.headers().get("content-length").cloned();
        *resp.body_mut() = Body::empty();
        if let Some(l) = len {
            resp.headers_mut().insert("content-length", l);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&trans_id) {
        resp.headers_mut().insert("x-trans-id", v.clone());
        resp.headers_mut().insert("x-openstack-request-id", v);
    }
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    let bytes_out = if method == Method::HEAD {
        0
    } else {
        hv(resp.headers(), "content-length")
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0)
    };
    metrics::request(method.as_str(), status, elapsed.as_secs_f64(), bytes_out);
    // One line per request, as Swift's proxy logs them.
    let ms = elapsed.as_secs_f64() * 1e3;
    tracing::info!(%method, %path, status, ms = format_args!("{ms:.2}"), "request");
    resp
}

/// `req` with its path rewritten when its `Host` is under a storage domain (see
/// [`crate::domain_remap`]), and what was rewritten.
fn remap(p: &Proxy, mut req: Request) -> Result<(Request, Option<Remapped>), SwiftError> {
    let Some(dr) = &p.domain_remap else {
        return Ok((req, None));
    };
    let Some(host) = hv(req.headers(), "host") else {
        return Ok((req, None));
    };
    let Some(r) = dr.remap(host, req.uri().path())? else {
        return Ok((req, None));
    };
    let pq = match req.uri().query() {
        Some(q) => format!("{}?{q}", r.path),
        None => r.path.clone(),
    };
    let bad = || SwiftError::new(StatusCode::BAD_REQUEST, "Bad domain in host header");
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(pq.parse().map_err(|_| bad())?);
    *req.uri_mut() = axum::http::Uri::from_parts(parts).map_err(|_| bad())?;
    Ok((req, Some(r)))
}

/// What a body read fails with when the client sends nothing for too long.
#[derive(Debug)]
pub struct ClientTimeout;

impl std::fmt::Display for ClientTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(CLIENT_TIMEOUT_MESSAGE)
    }
}

impl std::error::Error for ClientTimeout {}

/// The text of [`ClientTimeout`] (handlers tell a timeout from a disconnect by it).
pub const CLIENT_TIMEOUT_MESSAGE: &str = "client timed out sending the body";

/// A request body, counted as it is read, that fails with [`ClientTimeout`] when the
/// client sends nothing for `limit`.
fn client_body(
    body: Body,
    limit: std::time::Duration,
) -> impl futures::Stream<Item = Result<bytes::Bytes, axum::Error>> {
    futures::stream::unfold(Some(body.into_data_stream()), move |state| async move {
        let mut s = state?;
        match tokio::time::timeout(limit, s.next()).await {
            Ok(Some(Ok(b))) => {
                metrics::bytes_in(b.len() as u64);
                Some((Ok(b), Some(s)))
            }
            Ok(Some(Err(e))) => Some((Err(e), None)),
            Ok(None) => None,
            Err(_) => Some((Err(axum::Error::new(ClientTimeout)), None)),
        }
    })
}
