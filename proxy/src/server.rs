//! The HTTP service: every request gets a transaction id (on every log line and storage or
//! meta call it causes, and in the answer), counted body bytes, its metrics and one log
//! line; HEAD answers lose their body; a refusal of an unread body closes the connection.
//! What a request means is [`crate::router`]'s business.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use stratus_client::service::trace;
use tokio::net::TcpListener;
use tokio_rustls::rustls::ServerConfig;
use tracing::Instrument;

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
        let app = axum::Router::new().fallback(handle).with_state(self);
        if let Some(tls) = tls {
            stratus_client::tls::http::serve(listener, app, tls, None, shutdown).await?;
            return Ok(());
        }
        axum::serve(listener, app)
            .tcp_nodelay(true)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
}

/// Every request: a transaction id (on every log line and storage or meta call it causes,
/// and in the answer), counted body bytes, and its metrics.
async fn handle(State(p): State<Arc<Proxy>>, req: Request) -> Response {
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
        req.map(|body| {
            Body::from_stream(
                body.into_data_stream()
                    .inspect_ok(|b| metrics::bytes_in(b.len() as u64)),
            )
        })
    } else {
        req
    };
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut resp = match route(&p, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if sends_body && (resp.status().is_client_error() || resp.status().is_server_error()) {
        // A refusal may come before the body was read (a quota, a denial): the rest of it
        // is still on the wire, so the connection cannot carry another request.
        resp.headers_mut()
            .insert("connection", HeaderValue::from_static("close"));
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
