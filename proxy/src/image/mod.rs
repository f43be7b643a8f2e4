//! The Glance v2 image API under `/image` (catalog type `image`). Records live in meta
//! ([`stratus_client::images`]); an image's bytes are one object in the image service's
//! own account, so they are replicated, audited and repaired like any object.
//!
//! - [`api`]: create, list (filters, paging, sorting), show, JSON-patch, tags, deactivate
//!   and reactivate, delete; the schemas.
//! - [`upload`]: streaming the bytes in (hashing MD5 and SHA-512 and checking the format
//!   as they pass) and out.
//! - [`inspect`]: disk format inspection of an upload's first bytes.
//! - [`render`]: an image as Glance shows it.
//!
//! Who may do what: a valid Keystone token is needed for everything; a project member
//! creates and changes its project's images; readers read; `admin` sees and changes every
//! image and alone may make one `public`. Another project's private image is 404.

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::json;
use stratus_client::identity::TokenClaims;
use stratus_client::images::{Image, ImageError, ImageStore};

use crate::headers::hv;
use crate::names::Query;
pub use crate::openstack::{empty, json_response};
use crate::proxy::Proxy;

pub mod api;
pub mod inspect;
pub mod render;
pub mod upload;

/// The image service of a proxy.
pub struct Images {
    store: ImageStore,
}

impl Images {
    pub fn new(store: ImageStore) -> Self {
        Self { store }
    }

    /// The image records.
    pub fn store(&self) -> &ImageStore {
        &self.store
    }
}

/// An error answer, as Glance words it (plain text).
#[derive(Debug)]
pub struct ImgError {
    pub status: StatusCode,
    pub message: String,
}

/// Result of an image handler.
pub type ImgResult<T = Response> = Result<T, ImgError>;

impl ImgError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn into_response(self) -> Response {
        let reason = self.status.canonical_reason().unwrap_or("");
        let body = format!("{} {reason}\n\n{}\n", self.status.as_u16(), self.message);
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = self.status;
        r.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("text/plain; charset=UTF-8"),
        );
        r
    }
}

/// 400.
pub fn bad(msg: impl Into<String>) -> ImgError {
    ImgError::new(StatusCode::BAD_REQUEST, msg)
}

/// 403.
pub fn forbidden(msg: impl Into<String>) -> ImgError {
    ImgError::new(StatusCode::FORBIDDEN, msg)
}

/// 404 for image `id`.
pub fn no_image(id: &str) -> ImgError {
    ImgError::new(
        StatusCode::NOT_FOUND,
        format!("No image found with ID {id}"),
    )
}

/// 409.
pub fn conflict(msg: impl Into<String>) -> ImgError {
    ImgError::new(StatusCode::CONFLICT, msg)
}

impl From<ImageError> for ImgError {
    fn from(e: ImageError) -> Self {
        let status = match e {
            ImageError::Damaged(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ImageError::Meta(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        tracing::error!(error = %e, "image request failed");
        ImgError::new(status, e.to_string())
    }
}

impl From<crate::error::SwiftError> for ImgError {
    fn from(e: crate::error::SwiftError) -> Self {
        ImgError::new(e.status, e.body)
    }
}

/// One image request.
pub(crate) struct Req<'a> {
    pub p: &'a Proxy,
    pub parts: &'a Parts,
    /// Path segments after `/image/v2/`.
    pub segs: Vec<String>,
    pub query: Query,
    pub caller: TokenClaims,
}

impl Req<'_> {
    pub fn store(&self) -> &ImageStore {
        &self.p.images.store
    }

    pub fn is_admin(&self) -> bool {
        self.caller.has_role("admin")
    }

    /// The caller's project.
    pub fn project(&self) -> Option<&str> {
        self.caller.project_id()
    }

    /// Whether the caller may see `img` at all (else it is 404 to them).
    pub fn sees(&self, img: &Image) -> bool {
        visible_to(&self.caller, img)
    }

    /// Whether the caller may change `img`.
    pub fn owns(&self, img: &Image) -> bool {
        self.is_admin()
            || (img.owner.is_some()
                && img.owner.as_deref() == self.project()
                && self.caller.has_role("member"))
    }

    /// The image `id` as the caller sees it, or 404.
    pub async fn image(&self, id: &str) -> ImgResult<(Image, i64)> {
        match self.store().get(id).await? {
            Some((img, rev)) if self.sees(&img) => Ok((img, rev)),
            _ => Err(no_image(id)),
        }
    }

    /// The image `id` if the caller may change it: 404 if it cannot see it, 403 if it only
    /// sees it.
    pub async fn owned(&self, id: &str) -> ImgResult<(Image, i64)> {
        let (img, rev) = self.image(id).await?;
        if !self.owns(&img) {
            return Err(forbidden(format!(
                "You are not permitted to modify image {id}."
            )));
        }
        Ok((img, rev))
    }
}

/// Whether `caller` may see `img` at all: admin, a public or community image, or one of
/// its project's.
pub fn visible_to(caller: &TokenClaims, img: &Image) -> bool {
    caller.has_role("admin")
        || matches!(img.visibility.as_str(), "public" | "community")
        || (img.owner.is_some() && img.owner.as_deref() == caller.project_id())
}

/// The versions document: 300 at `/image` (what the SDK and tempest read first).
fn versions(host_url: &str) -> Response {
    let v = |id: &str, status: &str| {
        json!({"id": id, "status": status,
               "links": [{"rel": "self", "href": format!("{host_url}/image/v2/")}]})
    };
    let mut list = vec![v("v2.5", "CURRENT")];
    for id in ["v2.4", "v2.3", "v2.2", "v2.1", "v2.0"] {
        list.push(v(id, "SUPPORTED"));
    }
    let mut r = Response::new(Body::from(json!({"versions": list}).to_string()));
    *r.status_mut() = StatusCode::MULTIPLE_CHOICES;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// Answers a request under `/image`.
pub async fn route(p: &Proxy, parts: &Parts, body: Body) -> Response {
    match route_inner(p, parts, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn route_inner(p: &Proxy, parts: &Parts, body: Body) -> ImgResult {
    let host_url = crate::openstack::host_url(parts);
    let rest = parts
        .uri
        .path()
        .strip_prefix("/image")
        .unwrap_or("")
        .trim_start_matches('/');
    let Some(v2) = rest.strip_prefix("v2") else {
        if rest.is_empty() || rest == "versions" {
            return Ok(versions(&host_url));
        }
        return Err(ImgError::new(
            StatusCode::NOT_FOUND,
            "The resource could not be found.",
        ));
    };
    if !(v2.is_empty() || v2.starts_with('/')) {
        return Err(ImgError::new(
            StatusCode::NOT_FOUND,
            "The resource could not be found.",
        ));
    }
    let segs: Vec<String> = v2
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| crate::names::decode(s).map_err(|_| bad("Invalid UTF-8 in the path.")))
        .collect::<ImgResult<_>>()?;
    if segs.is_empty() {
        return Ok(versions(&host_url));
    }
    let unauthorized = || {
        ImgError::new(
            StatusCode::UNAUTHORIZED,
            "This server could not verify that you are authorized to access the document you requested.",
        )
    };
    let token = hv(&parts.headers, "x-auth-token").ok_or_else(unauthorized)?;
    let caller = p.auth.keystone(token).map_err(|_| unauthorized())?;
    let req = Req {
        p,
        parts,
        segs,
        query: Query::parse(parts.uri.query()),
        caller,
    };
    let segs: Vec<&str> = req.segs.iter().map(String::as_str).collect();
    let m = parts.method.as_str();
    match (m, &segs[..]) {
        ("PUT", ["images", id, "file"]) => upload::put(&req, id, body).await,
        ("GET" | "HEAD", ["images", id, "file"]) => upload::get(&req, id).await,
        _ => {
            let bytes = axum::body::to_bytes(body, api::MAX_BODY)
                .await
                .map_err(|_| {
                    ImgError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large.")
                })?;
            api::route(&req, m, &segs, bytes).await
        }
    }
}
