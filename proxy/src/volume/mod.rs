//! The Cinder v3 volume API under `/volume/v3/{project_id}` (catalog types `block-storage`
//! and `volumev3`). Volume and snapshot records live in meta and change through the
//! lifecycle shared with the `stratus volume` commands ([`stratus_client::volume_ops`]):
//! volumes are thin and clones copy-on-write, so every create is ready at once — except a
//! volume from an image whose image volume is still being imported ([`import`]).
//!
//! - [`api`]: the routes; volumes (create, list with filters, sorting and paging, show,
//!   update, delete).
//! - [`metadata`]: the metadata of volumes and snapshots.
//! - [`actions`]: `POST /volumes/{id}/action` — extend, the legacy attach and detach
//!   steps, connection info, bootable and read-only flags, status reset.
//! - [`snapshots`]: snapshots (create, list, show, update, delete).
//! - [`import`]: a volume from a Glance image, the image imported once into a read-only
//!   image volume that every such volume is a clone of.
//! - [`render`]: volumes and snapshots as Cinder shows them at microversion 3.0.
//!
//! Only microversion 3.0 is served (`OpenStack-API-Version: volume 3.0`; `latest` is 3.0,
//! anything else 406), so bodies are exactly the 3.0 ones. Errors are Cinder's faults,
//! `{"itemNotFound": {"code": 404, "message": "…"}}`; an unknown id is 404, which the
//! clients rely on to fall back to a lookup by name.
//!
//! Who may do what: a valid Keystone token is needed for everything, and the project in
//! the path must be the token's (else 403) unless the caller is `admin`; members change
//! their project's volumes, readers read them; another project's volume or snapshot is
//! 404. An admin sees and changes every one, and lists every project's with `all_tenants`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};
use stratus_client::identity::TokenClaims;
use stratus_client::images::ImageError;
use stratus_client::volume_ops::{OpError, Volumes};
use stratus_client::volumes::{Snapshot, Volume, VolumeError};

use crate::headers::hv;
use crate::names::Query;
use crate::openstack::{host_url, json_response};
use crate::proxy::Proxy;

pub mod actions;
pub mod api;
pub mod import;
pub mod metadata;
pub mod render;
pub mod snapshots;

/// The volume service of a proxy.
pub struct Cinder {
    ops: Volumes,
}

impl Cinder {
    pub fn new(ops: Volumes) -> Self {
        Self { ops }
    }
}

/// The one microversion served (the lowest and the highest).
pub const MICROVERSION: (u32, u32) = (3, 0);

/// Largest request body.
const MAX_BODY: usize = 256 * 1024;

/// An error answer, as Cinder words it: a fault named after the status.
#[derive(Debug)]
pub struct CinderError {
    pub status: StatusCode,
    pub message: String,
}

/// Result of a volume handler.
pub type CinderResult<T = Response> = Result<T, CinderError>;

impl CinderError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// The fault's name in the body (Nova's and Cinder's `Fault._fault_names`).
    fn fault_name(&self) -> &'static str {
        crate::openstack::fault_name(self.status)
    }

    pub fn into_response(self) -> Response {
        let mut fault = json!({"code": self.status.as_u16(), "message": self.message});
        let over_limit = self.status == StatusCode::PAYLOAD_TOO_LARGE;
        if over_limit {
            fault["retryAfter"] = json!("0");
        }
        let mut r = json_response(self.status, &json!({ self.fault_name(): fault }));
        if over_limit {
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("0"));
        }
        r
    }
}

/// 400.
pub fn bad(msg: impl Into<String>) -> CinderError {
    CinderError::new(StatusCode::BAD_REQUEST, msg)
}

/// 403 for `action` (Cinder's policy wording).
pub fn forbidden(action: &str) -> CinderError {
    CinderError::new(
        StatusCode::FORBIDDEN,
        format!("Policy doesn't allow {action} to be performed."),
    )
}

/// 404.
pub fn not_found(msg: impl Into<String>) -> CinderError {
    CinderError::new(StatusCode::NOT_FOUND, msg)
}

/// 404 for volume `id`.
pub fn no_volume(id: &str) -> CinderError {
    not_found(format!("Volume {id} could not be found."))
}

/// 404 for snapshot `id`.
pub fn no_snapshot(id: &str) -> CinderError {
    not_found(format!("Snapshot {id} could not be found."))
}

impl From<OpError> for CinderError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Invalid(m) | OpError::State(m) => bad(m),
            OpError::NotFound(m) => not_found(m),
            OpError::Failed(m) => {
                tracing::error!(error = %m, "volume operation failed");
                CinderError::new(StatusCode::INTERNAL_SERVER_ERROR, m)
            }
            OpError::Record(e) => e.into(),
        }
    }
}

impl From<VolumeError> for CinderError {
    fn from(e: VolumeError) -> Self {
        tracing::error!(error = %e, "volume record operation failed");
        let status = match e {
            VolumeError::Meta(_) => StatusCode::SERVICE_UNAVAILABLE,
            VolumeError::Damaged(_) | VolumeError::Contended(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        CinderError::new(status, e.to_string())
    }
}

impl From<ImageError> for CinderError {
    fn from(e: ImageError) -> Self {
        tracing::error!(error = %e, "image record read failed");
        let status = match e {
            ImageError::Meta(_) => StatusCode::SERVICE_UNAVAILABLE,
            ImageError::Damaged(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        CinderError::new(status, e.to_string())
    }
}

/// One volume API request, authenticated and scoped.
pub(crate) struct Req<'a> {
    pub p: &'a Arc<Proxy>,
    pub method: &'a Method,
    /// Decoded path segments after `/volume/v3/{project_id}/`.
    pub segs: Vec<String>,
    pub query: Query,
    pub caller: TokenClaims,
    /// The project in the path: whose volumes are listed and created.
    pub project: String,
    /// `http://host` as the client reached us.
    pub host_url: String,
    pub body: Bytes,
}

impl Req<'_> {
    pub fn ops(&self) -> &Volumes {
        &self.p.volumes.ops
    }

    pub fn is_admin(&self) -> bool {
        self.caller.has_role("admin")
    }

    /// Whether the caller sees the records of project `owner` (else they are 404 to it).
    pub fn sees(&self, owner: &str) -> bool {
        self.is_admin() || owner == self.project
    }

    /// 403 unless the caller may change its project's volumes (`member` or `admin`).
    pub fn may_change(&self, action: &str) -> CinderResult<()> {
        if self.is_admin() || self.caller.has_role("member") {
            Ok(())
        } else {
            Err(forbidden(action))
        }
    }

    /// Volume `id` as the caller sees it (hidden ones and other projects' are 404).
    pub async fn volume(&self, id: &str) -> CinderResult<(Volume, i64)> {
        match self.ops().vols.get(id).await? {
            Some((v, rev)) if !v.hidden && self.sees(&v.project_id) => Ok((v, rev)),
            _ => Err(no_volume(id)),
        }
    }

    /// Snapshot `id` as the caller sees it.
    pub async fn snapshot(&self, id: &str) -> CinderResult<(Snapshot, i64)> {
        let found = match self.ops().snapshot(id).await {
            Ok(s) => Some(s),
            Err(OpError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        match found {
            Some((s, rev)) if self.sees(&s.project_id) => Ok((s, rev)),
            _ => Err(no_snapshot(id)),
        }
    }

    /// The JSON body, or 400.
    pub fn json(&self) -> CinderResult<Value> {
        if self.body.is_empty() {
            return Err(bad("Malformed request body: the body is empty."));
        }
        serde_json::from_slice(&self.body).map_err(|e| bad(format!("Malformed request body: {e}")))
    }

    /// The object under `key` of the JSON body (`{"volume": {...}}`), or 400.
    pub fn entity(&self, key: &str) -> CinderResult<Map<String, Value>> {
        match self.json()?.get_mut(key).map(Value::take) {
            Some(Value::Object(m)) => Ok(m),
            _ => Err(bad(format!(
                "Missing required element '{key}' in request body."
            ))),
        }
    }

    /// Where links point: `http://host/volume/v3/{project_id}` and its version-less
    /// bookmark form.
    pub fn links(&self) -> render::Links {
        render::Links {
            base: format!("{}/volume/v3/{}", self.host_url, self.project),
            bookmark: format!("{}/volume/{}", self.host_url, self.project),
        }
    }
}

/// The one version there is, as the discovery documents list it.
fn version_entry(host_url: &str) -> Value {
    let (major, minor) = MICROVERSION;
    json!({
        "id": format!("v{major}.{minor}"),
        "status": "CURRENT",
        "version": format!("{major}.{minor}"),
        "min_version": format!("{major}.{minor}"),
        "updated": "2023-01-01T00:00:00Z",
        "links": [
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
            {"rel": "self", "href": format!("{host_url}/volume/v3/")},
        ],
        "media-types": [
            {"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"},
        ],
    })
}

/// `GET /volume` (300, what tempest reads) and `GET /volume/v3/` (200, what the SDK reads
/// after stripping the project from the catalog URL): both a list of versions.
fn versions(host_url: &str, status: StatusCode) -> Response {
    json_response(status, &json!({"versions": [version_entry(host_url)]}))
}

/// The microversion a request asks for in `OpenStack-API-Version` (`volume 3.0`,
/// `volume latest`, or none: 3.0): 400 if malformed, 406 if not served.
pub fn microversion(h: &HeaderMap) -> CinderResult<(u32, u32)> {
    crate::openstack::microversion(h, "volume", None, MICROVERSION)
        .map_err(|(status, message)| CinderError::new(status, message))
}

/// Answers a request under `/volume`.
pub async fn route(p: &Arc<Proxy>, parts: &Parts, body: Body) -> Response {
    let versioned = parts.uri.path().starts_with("/volume/v3/");
    let mut r = match route_inner(p, parts, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if r.status() == StatusCode::UNAUTHORIZED {
        let uri = format!("Keystone uri=\"{}/identity\"", host_url(parts));
        if let Ok(v) = HeaderValue::from_str(&uri) {
            r.headers_mut().insert("www-authenticate", v);
        }
    }
    if versioned && r.status() != StatusCode::NOT_ACCEPTABLE {
        let (major, minor) = MICROVERSION;
        if let Ok(v) = HeaderValue::from_str(&format!("volume {major}.{minor}")) {
            r.headers_mut().insert("openstack-api-version", v);
        }
        r.headers_mut()
            .insert("vary", HeaderValue::from_static("OpenStack-API-Version"));
    }
    r
}

async fn route_inner(p: &Arc<Proxy>, parts: &Parts, body: Body) -> CinderResult {
    let host_url = host_url(parts);
    let nowhere = || not_found("The resource could not be found.");
    let rest = parts
        .uri
        .path()
        .strip_prefix("/volume")
        .unwrap_or("")
        .trim_start_matches('/');
    if rest.is_empty() {
        return Ok(versions(&host_url, StatusCode::MULTIPLE_CHOICES));
    }
    let v3 = rest.strip_prefix("v3").ok_or_else(nowhere)?;
    if !(v3.is_empty() || v3.starts_with('/')) {
        return Err(nowhere());
    }
    let mut segs: Vec<String> = v3
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| crate::names::decode(s).map_err(|_| bad("Invalid UTF-8 in the path.")))
        .collect::<CinderResult<_>>()?;
    if segs.is_empty() {
        return Ok(versions(&host_url, StatusCode::OK));
    }
    let project = segs.remove(0);
    let token = hv(&parts.headers, "x-auth-token").ok_or_else(unauthorized)?;
    let caller = p.auth.keystone(token).map_err(|_| unauthorized())?;
    if caller.project_id() != Some(project.as_str()) && !caller.has_role("admin") {
        return Err(CinderError::new(
            StatusCode::FORBIDDEN,
            format!("Project {project} in the URL is not the project of the token."),
        ));
    }
    microversion(&parts.headers)?;
    let body = if matches!(parts.method, Method::POST | Method::PUT) {
        axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
            CinderError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request is too large: at most {MAX_BODY} bytes."),
            )
        })?
    } else {
        Bytes::new()
    };
    let req = Req {
        p,
        method: &parts.method,
        segs,
        query: Query::parse(parts.uri.query()),
        caller,
        project,
        host_url,
        body,
    };
    api::route(&req).await
}

/// 401 (with `WWW-Authenticate` added by [`route`]).
fn unauthorized() -> CinderError {
    CinderError::new(
        StatusCode::UNAUTHORIZED,
        "The request you have made requires authentication.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asking(v: &[&str]) -> CinderResult<(u32, u32)> {
        let mut h = HeaderMap::new();
        for v in v {
            h.append("openstack-api-version", HeaderValue::from_str(v).unwrap());
        }
        microversion(&h)
    }

    #[test]
    fn microversions_are_negotiated_as_cinder_does() {
        assert_eq!(asking(&[]).unwrap(), (3, 0));
        assert_eq!(asking(&["volume 3.0"]).unwrap(), (3, 0));
        assert_eq!(asking(&["volume latest"]).unwrap(), (3, 0));
        assert_eq!(asking(&["compute 2.1, volume 3.0"]).unwrap(), (3, 0));
        // Another service's header says nothing about volumes.
        assert_eq!(asking(&["compute 2.61"]).unwrap(), (3, 0));
        let status = |v: &str| asking(&[v]).unwrap_err().status.as_u16();
        assert_eq!(status("volume 3.71"), 406);
        assert_eq!(status("volume 2.0"), 406);
        assert_eq!(status("volume 3"), 400);
        assert_eq!(status("volume 3.x"), 400);
        assert_eq!(status("volume -3.0"), 400);
        assert_eq!(status("volume"), 400);
    }

    #[test]
    fn faults_are_named_after_their_status() {
        let body = |e: CinderError| {
            let r = e.into_response();
            let status = r.status();
            let retry = r.headers().get("retry-after").cloned();
            (status, retry)
        };
        assert_eq!(no_volume("x").fault_name(), "itemNotFound");
        assert_eq!(bad("x").fault_name(), "badRequest");
        assert_eq!(forbidden("volume:create").fault_name(), "forbidden");
        let over = CinderError::new(StatusCode::PAYLOAD_TOO_LARGE, "too big");
        assert_eq!(over.fault_name(), "overLimit");
        let (status, retry) = body(over);
        assert_eq!(status, 413);
        assert_eq!(retry.unwrap(), "0");
        let e = CinderError::new(StatusCode::INTERNAL_SERVER_ERROR, "x");
        assert_eq!(e.fault_name(), "computeFault");
    }

    #[test]
    fn the_version_entry_has_every_key_tempest_requires() {
        let v = version_entry("http://h");
        for k in [
            "id",
            "status",
            "version",
            "min_version",
            "updated",
            "links",
            "media-types",
        ] {
            assert!(v.get(k).is_some(), "{k} missing from {v}");
        }
        assert_eq!(v["links"][1]["href"], "http://h/volume/v3/");
        assert_eq!(v["version"], "3.0");
    }
}
