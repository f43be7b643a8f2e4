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

pub mod acl;
pub mod auth;
pub mod bulk;
pub mod cluster;
pub mod container;
pub mod error;
pub mod headers;
pub mod large;
pub mod metrics;
pub mod object;
pub mod quota;
pub mod router;
pub mod tempurl;
pub mod versioning;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use stratus_client::meta::MetaClient;
use stratus_client::service::trace;
use stratus_client::users::UserStore;
use stratus_proto::storage as pb;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::acl::{AccountAcl, ContainerAcl, Decision, Identity, Want};
use crate::auth::Auth;
use crate::cluster::{Cluster, RingKind};
use crate::error::{not_found, SwiftError, SwiftResult};
use crate::headers::hv;
use crate::object::ObjPath;
use crate::router::{Endpoint, Query};

/// How long a proxy trusts the account and container info it read.
pub const INFO_CACHE: Duration = Duration::from_secs(5);

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

type InfoCache = HashMap<(String, String), (Instant, Arc<pb::DbInfo>)>;

/// The proxy: rings, auth and a small cache of account and container info.
pub struct Proxy {
    cluster: Cluster,
    auth: Auth,
    infos: Mutex<InfoCache>,
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
            infos: Mutex::new(HashMap::new()),
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

    /// An account's (`container` empty) or container's merged info, trusted for
    /// [`INFO_CACHE`] once seen (Swift's cached container and account info); this
    /// proxy's own writes to it drop the cached copy.
    pub async fn db_info(&self, account: &str, container: &str) -> SwiftResult<Arc<pb::DbInfo>> {
        let key = (account.to_string(), container.to_string());
        if let Some((t, i)) = self.infos.lock().expect("lock").get(&key) {
            if t.elapsed() < INFO_CACHE {
                return Ok(i.clone());
            }
        }
        let i = Arc::new(container::info(self, account, container).await?);
        if i.exists || container.is_empty() {
            let mut m = self.infos.lock().expect("lock");
            if m.len() > 100_000 {
                m.clear();
            }
            m.insert(key, (Instant::now(), i.clone()));
        }
        Ok(i)
    }

    /// The container's info, or 404 unless it exists.
    pub async fn container_info(
        &self,
        account: &str,
        container: &str,
    ) -> SwiftResult<Arc<pb::DbInfo>> {
        let i = self.db_info(account, container).await?;
        if i.exists {
            Ok(i)
        } else {
            Err(not_found())
        }
    }

    /// 404 unless the container exists.
    pub async fn require_container(&self, account: &str, container: &str) -> SwiftResult<()> {
        self.container_info(account, container).await.map(|_| ())
    }

    /// Drops the cached info of an account (`container` empty) or container.
    pub fn forget(&self, account: &str, container: &str) {
        self.infos
            .lock()
            .expect("lock")
            .remove(&(account.to_string(), container.to_string()));
    }
}

/// A non-empty metadata value of an object, account or container (`key` lower-case).
pub fn meta_value<'a>(items: &'a [pb::MetaItem], key: &str) -> Option<&'a str> {
    items
        .iter()
        .find(|m| m.key == key && !m.value.is_empty())
        .map(|m| m.value.as_str())
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
        "tempauth": {"account_acls": true},
        "slo": {
            "max_manifest_segments": large::MAX_SEGMENTS,
            "max_manifest_size": large::MAX_MANIFEST_SIZE,
            "min_segment_size": large::MIN_SEGMENT_SIZE,
        },
        "dlo": {"max_segments": 10000},
        "tempurl": {
            "methods": tempurl::METHODS,
            "allowed_digests": tempurl::DIGESTS,
            "incoming_remove_headers": ["x-timestamp"],
            "incoming_allow_headers": [],
            "outgoing_remove_headers": ["x-object-meta-*"],
            "outgoing_allow_headers": ["x-object-meta-public-*"],
        },
        "bulk_delete": {
            "max_deletes_per_request": bulk::MAX_DELETES,
            "max_failed_deletes": bulk::MAX_FAILED,
        },
        "bulk_upload": {
            "max_containers_per_extraction": bulk::MAX_CONTAINERS,
            "max_failed_extractions": bulk::MAX_FAILED,
        },
        "versioned_writes": {"allowed_flags": ["x-versions-location", "x-history-location"]},
        "container_quotas": {},
        "account_quotas": {},
    })
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
    let req = req.map(|body| {
        Body::from_stream(
            body.into_data_stream()
                .inspect_ok(|b| metrics::bytes_in(b.len() as u64)),
        )
    });
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = Instant::now();
    let sends_body = req.headers().contains_key("transfer-encoding")
        || hv(req.headers(), "content-length").is_some_and(|l| l.trim() != "0");
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

impl Proxy {
    /// What `who` may do with a request on `account[/container[/object]]` (401/403 if
    /// nothing): owners pass at once; anyone else is judged by the account's and the
    /// container's ACLs (see [`acl`]).
    pub async fn access(
        &self,
        who: &Identity,
        read: bool,
        account: &str,
        container: Option<&str>,
        object: bool,
        h: &HeaderMap,
    ) -> SwiftResult<Decision> {
        if matches!(who, Identity::User { owner: true, .. }) {
            return Ok(Decision::Owner);
        }
        let acct = self.db_info(account, "").await?;
        let account_acl = meta_value(&acct.meta, "x-account-access-control")
            .and_then(|v| AccountAcl::parse(v).ok());
        let container_acl = match container {
            Some(c) => {
                let info = self.db_info(account, c).await?;
                let name = if read {
                    "x-container-read"
                } else {
                    "x-container-write"
                };
                meta_value(&info.meta, name).and_then(|v| ContainerAcl::parse(v).ok())
            }
            None => None,
        };
        let want = Want {
            read,
            container: container.is_some(),
            object,
        };
        match acl::decide(
            who,
            want,
            hv(h, "referer"),
            account_acl.as_ref(),
            container_acl.as_ref(),
        ) {
            Decision::Unauthorized => Err(auth::unauthorized()),
            Decision::Forbidden => Err(auth::forbidden()),
            d => Ok(d),
        }
    }
}

/// Removes the headers only owners see from an answer to someone else.
fn for_non_owner(mut r: Response) -> Response {
    for name in acl::OWNER_HEADERS {
        r.headers_mut().remove(*name);
    }
    r
}

/// Without ownership, ACL and versioning headers on a request are ignored (Swift's rule).
fn owner_headers_dropped(h: &HeaderMap, owner: bool) -> std::borrow::Cow<'_, HeaderMap> {
    if owner {
        return std::borrow::Cow::Borrowed(h);
    }
    let mut h = h.clone();
    for name in acl::OWNER_HEADERS {
        h.remove(*name);
    }
    std::borrow::Cow::Owned(h)
}

async fn route(p: &Arc<Proxy>, req: Request) -> SwiftResult<Response> {
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    let m = &parts.method;
    let ep = router::parse(parts.uri.path())?;
    let raw_query = parts.uri.query();
    let q = Query::parse(raw_query);
    let head = *m == Method::HEAD;
    let read = *m == Method::GET || head;
    let not_allowed = || SwiftError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    match ep {
        Endpoint::Healthcheck => Ok("OK".into_response()),
        Endpoint::Info if read => Ok((
            [("content-type", "application/json; charset=utf-8")],
            info_json().to_string(),
        )
            .into_response()),
        Endpoint::Auth if *m == Method::GET => p.auth.authenticate(h).await,
        Endpoint::Info | Endpoint::Auth => Err(not_allowed()),
        Endpoint::Account { account } => {
            let who = p.auth.identify(h, &account)?;
            // Bulk requests are judged item by item, with the requester's rights (Swift's
            // `bulk` sits before auth and sends each item through it).
            if *m == Method::POST && q.has("bulk-delete") {
                return bulk::delete(p, &who, &account, h, body).await;
            }
            if *m == Method::PUT && q.has("extract-archive") {
                return bulk::extract(p, &who, &account, "", "", &q, h, body).await;
            }
            let d = p.access(&who, read, &account, None, false, h).await?;
            let owner = d == Decision::Owner;
            let h = owner_headers_dropped(h, owner);
            let h = &*h;
            let r = match m.as_str() {
                "GET" | "HEAD" => {
                    container::get(p, RingKind::Account, &account, "", raw_query, h, head).await
                }
                "POST" => {
                    quota::check_account_post(&who, h)?;
                    container::put(p, RingKind::Account, &account, "", h).await
                }
                "PUT" | "DELETE" => Err(container::account_management_refused()),
                _ => Err(not_allowed()),
            }?;
            Ok(if owner { r } else { for_non_owner(r) })
        }
        Endpoint::Container { account, container } => {
            let who = p.auth.identify(h, &account)?;
            if *m == Method::PUT && q.has("extract-archive") {
                return bulk::extract(p, &who, &account, &container, "", &q, h, body).await;
            }
            let d = p
                .access(&who, read, &account, Some(&container), false, h)
                .await?;
            let owner = d == Decision::Owner;
            let h = owner_headers_dropped(h, owner);
            let h = &*h;
            let r = match m.as_str() {
                "GET" | "HEAD" => {
                    container::get(
                        p,
                        RingKind::Container,
                        &account,
                        &container,
                        raw_query,
                        h,
                        head,
                    )
                    .await
                }
                "PUT" => container::put(p, RingKind::Container, &account, &container, h).await,
                "POST" => container::post(p, &account, &container, h).await,
                "DELETE" => container::delete(p, &account, &container).await,
                _ => Err(not_allowed()),
            }?;
            Ok(if owner { r } else { for_non_owner(r) })
        }
        Endpoint::Object {
            account,
            container,
            object,
        } => {
            let who = p.auth.identify(h, &account)?;
            let path = ObjPath {
                account,
                container,
                object,
            };
            if *m == Method::PUT && q.has("extract-archive") {
                return bulk::extract(
                    p,
                    &who,
                    &path.account,
                    &path.container,
                    &path.object,
                    &q,
                    h,
                    body,
                )
                .await;
            }
            let temp = if who == Identity::Anonymous && q.has("temp_url_sig") {
                Some(tempurl::check(p, m, &path, &q).await?)
            } else {
                // COPY reads its source here; the destination is checked by the copy.
                p.access(
                    &who,
                    read || m.as_str() == "COPY",
                    &path.account,
                    Some(&path.container),
                    true,
                    h,
                )
                .await?;
                None
            };
            let as_stored = q.get("multipart-manifest") == Some("get");
            let r = match m.as_str() {
                "GET" | "HEAD" => large::get(p, &who, &path, &q, h, head).await,
                "PUT" if q.get("multipart-manifest") == Some("put") => {
                    large::put_slo(p, &who, &path, h, body).await
                }
                "PUT" => object::put(p, &who, &path, h, body, as_stored).await,
                "POST" => object::post(p, &path, h).await,
                "DELETE" if q.get("multipart-manifest") == Some("delete") => {
                    large::delete_slo(p, &who, &path, h).await
                }
                "DELETE" => versioning::delete(p, &path).await,
                "COPY" => object::copy_verb(p, &who, &path, h, as_stored).await,
                _ => Err(not_allowed()),
            }?;
            Ok(match temp {
                Some(t) => t.finish(r, &path, &q),
                None => r,
            })
        }
    }
}
