//! `stratus-proxy`: the HTTP front door. It speaks the OpenStack Swift API v1 (accounts,
//! containers, objects) with TempAuth, and reaches storage nodes over gRPC, placing every
//! request by the rings it watches in meta. It keeps no state of its own: run as many as
//! you like.
//!
//! # Layout
//! - [`router`]: request path → [`router::Endpoint`], with Swift's name checks.
//! - [`auth`]: TempAuth tokens and per-account authorization.
//! - [`cluster`]: rings, placement, quorum writes with handoffs.
//! - [`object`], [`container`]: the handlers.
//! - [`headers`]: metadata constraints, ranges, conditional requests, dates.
//! - [`error`]: [`error::SwiftError`], turned into a response in one place.

// tonic::Status (176 bytes) is the error type of every storage call.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod cluster;
pub mod container;
pub mod error;
pub mod headers;
pub mod object;
pub mod router;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use stratus_meta::client::MetaClient;
use stratus_meta::users::UserStore;
use tokio::net::TcpListener;

use crate::auth::Auth;
use crate::cluster::{Cluster, RingKind};
use crate::error::{not_found, SwiftError, SwiftResult};
use crate::object::ObjPath;
use crate::router::Endpoint;

/// How long a proxy trusts that a container it saw exists.
const CONTAINER_CACHE: Duration = Duration::from_secs(5);

/// How to run a proxy.
#[derive(Debug, Clone)]
pub struct Config {
    /// Meta endpoints.
    pub meta: Vec<String>,
    /// Token lifetime in seconds.
    pub token_ttl: u64,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("meta: {0}")]
    Meta(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// The proxy: rings, auth and a small cache of containers known to exist.
pub struct Proxy {
    cluster: Cluster,
    auth: Auth,
    containers: Mutex<HashMap<(String, String), Instant>>,
}

impl Proxy {
    /// Connects to meta, loads the token secret and starts watching the rings.
    pub async fn new(cfg: Config) -> Result<Arc<Self>, ProxyError> {
        let meta = MetaClient::new(&cfg.meta).map_err(|e| ProxyError::Meta(e.to_string()))?;
        let auth = Auth::new(UserStore::new(meta.clone()), cfg.token_ttl)
            .await
            .map_err(|e| ProxyError::Meta(e.to_string()))?;
        let cluster = Cluster::new(meta).map_err(|e| ProxyError::Meta(e.to_string()))?;
        if !cluster.wait_ready(Duration::from_secs(30)).await {
            tracing::warn!("rings are not all published yet; requests get 503 until they are");
        }
        Ok(Arc::new(Self {
            cluster,
            auth,
            containers: Mutex::new(HashMap::new()),
        }))
    }

    /// Serves HTTP on `listener` until `shutdown` resolves.
    pub async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ProxyError> {
        let app = axum::Router::new().fallback(handle).with_state(self);
        axum::serve(listener, app)
            .tcp_nodelay(true)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }

    /// 404 unless the container exists (a positive answer is cached briefly).
    pub async fn require_container(&self, account: &str, container: &str) -> SwiftResult<()> {
        let key = (account.to_string(), container.to_string());
        if let Some(t) = self.containers.lock().expect("lock").get(&key) {
            if t.elapsed() < CONTAINER_CACHE {
                return Ok(());
            }
        }
        if container::exists(self, account, container).await? {
            self.remember_container(account, container);
            Ok(())
        } else {
            Err(not_found())
        }
    }

    fn remember_container(&self, account: &str, container: &str) {
        let mut m = self.containers.lock().expect("lock");
        if m.len() > 100_000 {
            m.clear();
        }
        m.insert((account.into(), container.into()), Instant::now());
    }

    fn forget_container(&self, account: &str, container: &str) {
        self.containers
            .lock()
            .expect("lock")
            .remove(&(account.to_string(), container.to_string()));
    }
}

/// `GET /info`: the constraints this cluster enforces and the features it really has.
pub fn info_json() -> serde_json::Value {
    serde_json::json!({
        "swift": {
            "version": concat!("stratus-", env!("CARGO_PKG_VERSION")),
            "max_file_size": object::MAX_FILE_SIZE,
            "max_meta_name_length": headers::MAX_META_NAME,
            "max_meta_value_length": headers::MAX_META_VALUE,
            "max_meta_count": headers::MAX_META_COUNT,
            "max_meta_overall_size": headers::MAX_META_OVERALL,
            "max_object_name_length": router::MAX_OBJECT_NAME,
            "max_account_name_length": router::MAX_ACCOUNT_NAME,
            "max_container_name_length": router::MAX_CONTAINER_NAME,
            "container_listing_limit": container::LISTING_LIMIT,
            "account_listing_limit": container::LISTING_LIMIT,
            "account_autocreate": true,
            "allow_account_management": false,
            "extra_header_count": 0,
            "policies": [{"name": "Policy-0", "default": true}],
        },
        "tempauth": {"account_acls": false},
    })
}

async fn handle(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let trans_id = format!("tx{:032x}", rand::random::<u128>());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = Instant::now();
    let mut resp = match route(&p, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
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
    tracing::debug!(%trans_id, %method, %path, status = resp.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    resp
}

async fn route(p: &Proxy, req: Request) -> SwiftResult<Response> {
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    let m = &parts.method;
    let ep = router::parse(parts.uri.path())?;
    let query = parts.uri.query();
    let head = *m == Method::HEAD;
    let not_allowed = || SwiftError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    match ep {
        Endpoint::Healthcheck => Ok("OK".into_response()),
        Endpoint::Info if *m == Method::GET || head => Ok((
            [("content-type", "application/json; charset=utf-8")],
            info_json().to_string(),
        )
            .into_response()),
        Endpoint::Auth if *m == Method::GET => p.auth.authenticate(h).await,
        Endpoint::Info | Endpoint::Auth => Err(not_allowed()),
        Endpoint::Account { account } => {
            p.auth.authorize(h, &account)?;
            match m.as_str() {
                "GET" | "HEAD" => {
                    container::get(p, RingKind::Account, &account, "", query, h, head).await
                }
                "POST" => container::put(p, RingKind::Account, &account, "", h).await,
                "PUT" | "DELETE" => Err(container::account_management_refused()),
                _ => Err(not_allowed()),
            }
        }
        Endpoint::Container { account, container } => {
            p.auth.authorize(h, &account)?;
            match m.as_str() {
                "GET" | "HEAD" => {
                    container::get(p, RingKind::Container, &account, &container, query, h, head)
                        .await
                }
                "PUT" => container::put(p, RingKind::Container, &account, &container, h).await,
                "POST" => container::post(p, &account, &container, h).await,
                "DELETE" => container::delete(p, &account, &container).await,
                _ => Err(not_allowed()),
            }
        }
        Endpoint::Object {
            account,
            container,
            object,
        } => {
            p.auth.authorize(h, &account)?;
            let path = ObjPath {
                account,
                container,
                object,
            };
            match m.as_str() {
                "GET" | "HEAD" => object::get(p, &path, h, head).await,
                "PUT" => object::put(p, &path, h, body).await,
                "POST" => object::post(p, &path, h).await,
                "DELETE" => object::delete(p, &path).await,
                "COPY" => object::copy_verb(p, &path, h).await,
                _ => Err(not_allowed()),
            }
        }
    }
}
