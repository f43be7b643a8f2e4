//! The Keystone v3 API under `/identity` (DevStack's layout): version discovery, tokens
//! and the service catalog ([`tokens`]), and domains, projects, users, groups, roles and
//! role assignments ([`resources`]), stored in meta through
//! [`stratus_client::identity::IdentityStore`].
//!
//! Bodies follow the Keystone API reference; errors are Keystone's
//! `{"error": {"code", "title", "message"}}`. The policy is Keystone's default one, in
//! short: `admin` (on any project) manages identity; anyone reads themselves, their own
//! project and domain, and manages their own tokens and password.

use axum::body::{Body, Bytes};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use stratus_client::identity::{IdentityError, IdentityStore, TokenClaims, ADMIN_ROLE};

use crate::headers::hv;
use crate::names::{decode, Query};
use crate::proxy::Proxy;

pub mod catalog;
pub mod discovery;
mod render;
mod resources;
mod tokens;

/// Keystone token lifetime by default (Keystone's `[token] expiration`).
pub const DEFAULT_TOKEN_TTL: u64 = 3600;

/// Largest request body the identity API reads.
const MAX_BODY: usize = 64 * 1024;

/// The Keystone API of a proxy.
pub struct Keystone {
    store: IdentityStore,
    ttl: u64,
}

impl Keystone {
    /// Makes sure the default domain and roles exist.
    pub async fn new(store: IdentityStore, ttl: u64) -> Result<Self, IdentityError> {
        store.bootstrap().await?;
        Ok(Self { store, ttl })
    }
}

/// An error answer, as Keystone words it.
#[derive(Debug)]
pub struct KsError {
    pub status: StatusCode,
    pub message: String,
}

/// Result of an identity handler.
pub type KsResult<T = Response> = Result<T, KsError>;

impl KsError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// 400 with `msg`.
pub fn bad(msg: impl Into<String>) -> KsError {
    KsError::new(StatusCode::BAD_REQUEST, msg)
}

/// 401, worded the same whatever was wrong (no hint which part).
pub fn unauthorized() -> KsError {
    KsError::new(
        StatusCode::UNAUTHORIZED,
        "The request you have made requires authentication.",
    )
}

/// 403 for `action` (Keystone's policy wording).
pub fn forbidden(action: &str) -> KsError {
    KsError::new(
        StatusCode::FORBIDDEN,
        format!("You are not authorized to perform the requested action: {action}."),
    )
}

/// 404 for a `kind` with `id`.
pub fn not_found(kind: &str, id: &str) -> KsError {
    KsError::new(
        StatusCode::NOT_FOUND,
        format!("Could not find {kind}: {id}."),
    )
}

impl From<IdentityError> for KsError {
    fn from(e: IdentityError) -> Self {
        let status = match &e {
            IdentityError::NotFound { .. } => StatusCode::NOT_FOUND,
            IdentityError::Duplicate { .. } => StatusCode::CONFLICT,
            IdentityError::Invalid(_) => StatusCode::BAD_REQUEST,
            IdentityError::Forbidden(_) => StatusCode::FORBIDDEN,
            IdentityError::Damaged(_) => StatusCode::INTERNAL_SERVER_ERROR,
            IdentityError::Meta(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "identity request failed");
        }
        KsError::new(status, e.to_string())
    }
}

impl IntoResponse for KsError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "code": self.status.as_u16(),
            "title": self.status.canonical_reason().unwrap_or(""),
            "message": self.message,
        }});
        let mut r = json_response(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static("Keystone uri=\"/identity\""),
            );
        }
        r
    }
}

/// A JSON answer.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let text = body.to_string();
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// An empty answer with `status` (204, or 200 for HEAD).
pub fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

/// One identity request, parsed.
pub(crate) struct Req<'a> {
    pub p: &'a Proxy,
    pub method: &'a Method,
    /// Decoded path segments after `/identity/v3/`.
    pub segs: Vec<String>,
    pub query: Query,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    /// `http://host` as the client reached us.
    pub host_url: String,
    /// The caller's valid token, if it sent one.
    pub caller: Option<TokenClaims>,
}

impl Req<'_> {
    pub fn store(&self) -> &IdentityStore {
        &self.p.keystone.store
    }

    pub fn ttl(&self) -> u64 {
        self.p.keystone.ttl
    }

    /// `http://host/identity/v3`
    pub fn v3(&self) -> String {
        format!("{}/identity/v3", self.host_url)
    }

    /// The caller, or 401.
    pub fn who(&self) -> KsResult<&TokenClaims> {
        self.caller.as_ref().ok_or_else(unauthorized)
    }

    /// 403 unless the caller holds `admin`.
    pub fn admin(&self, action: &str) -> KsResult<&TokenClaims> {
        let c = self.who()?;
        if c.has_role(ADMIN_ROLE) {
            Ok(c)
        } else {
            Err(forbidden(action))
        }
    }

    /// Whether the caller holds `admin`.
    pub fn is_admin(&self) -> bool {
        self.caller.as_ref().is_some_and(|c| c.has_role(ADMIN_ROLE))
    }

    /// The JSON body, or 400.
    pub fn json(&self) -> KsResult<Value> {
        if self.body.is_empty() {
            return Err(bad("Expecting a JSON body: the request body is empty."));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            bad(format!(
                "Malformed request body: {e}. The server could not comply with the request since it is either malformed or otherwise incorrect. The client is assumed to be in error."
            ))
        })
    }

    /// The object under `key` in the JSON body (`{"project": {...}}`), or 400.
    pub fn entity(&self, key: &str) -> KsResult<serde_json::Map<String, Value>> {
        match self.json()?.get_mut(key).map(Value::take) {
            Some(Value::Object(m)) => Ok(m),
            _ => Err(bad(format!(
                "Invalid input for field '{key}': expecting an object under '{key}'."
            ))),
        }
    }
}

/// Answers a request under `/identity`.
pub async fn route(p: &Proxy, parts: &Parts, body: Body) -> Response {
    match route_inner(p, parts, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn route_inner(p: &Proxy, parts: &Parts, body: Body) -> KsResult {
    let host_url = crate::openstack::host_url(parts);
    let path = parts.uri.path();
    let rest = path
        .strip_prefix("/identity")
        .ok_or_else(|| not_found("path", path))?;
    let rest = rest.trim_start_matches('/');
    if rest.is_empty() {
        return discovery::versions(&host_url, parts.method == Method::HEAD);
    }
    let Some(v3) = rest.strip_prefix("v3") else {
        return Err(not_found("version", rest));
    };
    if !(v3.is_empty() || v3.starts_with('/')) {
        return Err(not_found("version", rest));
    }
    let segs: Vec<String> = v3
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| decode(s).map_err(|_| bad("Invalid UTF-8 in the path.")))
        .collect::<KsResult<_>>()?;
    if segs.is_empty() {
        return discovery::v3(&host_url);
    }
    let body = if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
        axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
            KsError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request is too large: at most {MAX_BODY} bytes."),
            )
        })?
    } else {
        Bytes::new()
    };
    let caller = match hv(&parts.headers, "x-auth-token") {
        None => None,
        Some(t) => Some(p.auth.keystone(t).map_err(|_| unauthorized())?),
    };
    let req = Req {
        p,
        method: &parts.method,
        segs,
        query: Query::parse(parts.uri.query()),
        headers: &parts.headers,
        body,
        host_url,
        caller,
    };
    if req.segs[0] == "auth" {
        return tokens::route(&req).await;
    }
    // Everything else needs a token.
    req.who()?;
    resources::route(&req).await
}
