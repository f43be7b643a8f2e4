//! The Nova v2.1 compute API under `/compute` (catalog type `compute`, name `nova`, URL
//! `/compute/v2.1`). Flavors and servers are records in meta
//! ([`stratus_client::compute`]); this API writes what the user asks for, and the compute
//! agent of the host a server is placed on makes it so.
//!
//! - [`flavors`]: list, show, create and delete (admins change them).
//! - [`create`]: `POST /servers` — the body checked and every name in it looked up while
//!   the client waits (so mistakes are 400s; [`plan`] works out the disks), the record
//!   written `BUILD`, then [`build`] places the server and makes its disks in a task.
//! - [`servers`]: list (filters, paging), show, rename, delete, metadata, addresses.
//! - [`actions`]: `POST /servers/{id}/action` — stop, start, reboot, pause, unpause,
//!   suspend, resume, the console log, reset state; which states allow which action.
//! - [`attachments`]: `os-volume_attachments`, volumes added to and taken from a server.
//! - [`misc`]: availability zones, limits, hypervisors, services, key pairs.
//! - [`render`]: servers, flavors and attachments exactly as Nova shows them at 2.1.
//! - [`params`]: the request parsing the handlers share (integers, booleans, names,
//!   metadata, paging).
//! - [`pattern`]: the `name` filter's regular expressions.
//!
//! # Who writes what of a server
//! The API writes `want` (the power state to reach), `task_state` for the action it
//! starts, `reboot_seq`/`reboot_hard`, disks asked to come (`attaching`) or to go
//! (`detaching`), name and metadata; the build task writes `host` (by the scheduler's
//! transaction) and the disks of a new server. The agent of `host` acts once `task_state`
//! is neither `scheduling` nor `block_device_mapping` and writes what is: `status`,
//! `vm_state`, `power_state`, `task_state` back to none, disk states, `fault`; asked to
//! delete, it tears the guest down and calls [`stratus_client::compute::retire`]. Every
//! write on either side is a compare-and-swap of the record, so neither loses the other's.
//!
//! # Microversions
//! Only 2.1 is served (minimum and maximum): no header, `compute 2.1` and `latest` are
//! 2.1, anything else 406, as Nova answers a version out of range. The SDK reads the
//! version document first and asks for `min(server max, its own)` = 2.1, so it never asks
//! for more. Versioned answers carry `OpenStack-API-Version: compute 2.1`,
//! `X-OpenStack-Nova-API-Version: 2.1` and `Vary`; every answer carries
//! `x-openstack-request-id` ([`crate::server`]).
//!
//! # Access
//! A valid project-scoped Keystone token is needed below `/compute/v2.1`. Members create
//! and change their project's servers, readers read them; another project's server is
//! 404. `admin` sees and changes every server (with `all_tenants` in lists) and alone
//! manages flavors and reads hypervisors and services. Errors are Nova's faults,
//! `{"itemNotFound": {"code": 404, "message": "…"}}`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};
use stratus_client::compute::{Compute, Server};
use stratus_client::identity::TokenClaims;
use stratus_client::images::ImageError;
use stratus_client::tls::Role;
use stratus_client::volume_ops::{OpError, Volumes};
use stratus_client::volumes::VolumeError;

use crate::headers::hv;
use crate::names::Query;
use crate::openstack::{host_url, json_response};
use crate::proxy::Proxy;
use crate::volume::CinderError;

pub mod actions;
pub mod attachments;
pub mod build;
pub mod create;
pub mod flavors;
pub mod misc;
pub mod params;
pub mod pattern;
pub mod plan;
pub mod render;
pub mod servers;

/// The compute service of a proxy.
pub struct Nova {
    compute: Compute,
    vols: Volumes,
    /// Reaches the agents' HTTP ports (console logs).
    http: reqwest::Client,
}

/// How long an agent gets to answer for a console log.
const AGENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Nova {
    /// The compute service over `compute` and `vols`; creates the default flavors that
    /// are missing.
    pub async fn new(compute: Compute, vols: Volumes) -> Result<Self, String> {
        compute
            .ensure_flavors()
            .await
            .map_err(|e| format!("creating the default flavors: {e}"))?;
        let mut http = reqwest::Client::builder().timeout(AGENT_TIMEOUT);
        // Agents serve mutual TLS: the proxy's identity, and only a `compute` certificate
        // from the cluster CA on the other end.
        if let Some(id) = stratus_client::tls::current() {
            let tls = stratus_client::tls::http::client_config_for(&id, Role::Compute)
                .map_err(|e| e.to_string())?;
            http = http.use_preconfigured_tls(tls);
        }
        let http = http
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Self {
            compute,
            vols,
            http,
        })
    }

    /// The compute records.
    pub fn compute(&self) -> &Compute {
        &self.compute
    }
}

/// The one microversion served (the lowest and the highest).
pub const MICROVERSION: (u32, u32) = (2, 1);

/// Largest request body.
const MAX_BODY: usize = 256 * 1024;

/// An error answer, as Nova words it: a fault named after the status.
#[derive(Debug)]
pub struct NovaError {
    pub status: StatusCode,
    pub message: String,
}

/// Result of a compute handler.
pub type NovaResult<T = Response> = Result<T, NovaError>;

impl NovaError {
    /// An error with `status` and Nova's `message`.
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

    /// The fault as Nova's JSON body.
    pub fn into_response(self) -> Response {
        let fault = json!({"code": self.status.as_u16(), "message": self.message});
        json_response(self.status, &json!({ self.fault_name(): fault }))
    }
}

/// 400.
pub fn bad(msg: impl Into<String>) -> NovaError {
    NovaError::new(StatusCode::BAD_REQUEST, msg)
}

/// 403 for policy rule `rule` (Nova's wording).
pub fn forbidden(rule: &str) -> NovaError {
    NovaError::new(
        StatusCode::FORBIDDEN,
        format!("Policy doesn't allow {rule} to be performed."),
    )
}

/// 404.
pub fn not_found(msg: impl Into<String>) -> NovaError {
    NovaError::new(StatusCode::NOT_FOUND, msg)
}

/// 409.
pub fn conflict(msg: impl Into<String>) -> NovaError {
    NovaError::new(StatusCode::CONFLICT, msg)
}

/// 404 for server `id`.
pub fn no_server(id: &str) -> NovaError {
    not_found(format!("Instance {id} could not be found."))
}

/// 404 for flavor `id`.
pub fn no_flavor(id: &str) -> NovaError {
    not_found(format!("Flavor {id} could not be found."))
}

/// 400 for a body member that does not fit (Nova's schema wording, shortened).
pub fn invalid(field: &str, v: &Value, why: &str) -> NovaError {
    bad(format!(
        "Invalid input for field/attribute {field}. Value: {v}. {why}"
    ))
}

impl From<VolumeError> for NovaError {
    fn from(e: VolumeError) -> Self {
        tracing::error!(error = %e, "compute record operation failed");
        let status = match e {
            VolumeError::Meta(_) => StatusCode::SERVICE_UNAVAILABLE,
            VolumeError::Damaged(_) | VolumeError::Contended(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        NovaError::new(status, e.to_string())
    }
}

impl From<ImageError> for NovaError {
    fn from(e: ImageError) -> Self {
        tracing::error!(error = %e, "image record read failed");
        let status = match e {
            ImageError::Meta(_) => StatusCode::SERVICE_UNAVAILABLE,
            ImageError::Damaged(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        NovaError::new(status, e.to_string())
    }
}

impl From<OpError> for NovaError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Invalid(m) | OpError::State(m) => bad(m),
            OpError::NotFound(m) => not_found(m),
            OpError::Failed(m) => {
                tracing::error!(error = %m, "volume operation failed");
                NovaError::new(StatusCode::INTERNAL_SERVER_ERROR, m)
            }
            OpError::Record(e) => e.into(),
        }
    }
}

impl From<CinderError> for NovaError {
    fn from(e: CinderError) -> Self {
        NovaError::new(e.status, e.message)
    }
}

/// One compute API request, authenticated and scoped.
pub(crate) struct Req<'a> {
    pub p: &'a Arc<Proxy>,
    pub method: &'a Method,
    /// Decoded path segments after `/compute/v2.1/` (and an optional project id).
    pub segs: Vec<String>,
    pub query: Query,
    pub caller: TokenClaims,
    /// The token's project: whose servers are listed and created.
    pub project: String,
    /// `http://host` as the client reached us.
    pub host_url: String,
    pub body: Bytes,
}

impl<'a> Req<'a> {
    /// The compute service.
    pub fn nova(&self) -> &'a Nova {
        &self.p.compute
    }

    /// The compute records.
    pub fn compute(&self) -> &'a Compute {
        &self.p.compute.compute
    }

    /// The volume records and lifecycle.
    pub fn vols(&self) -> &'a Volumes {
        &self.p.compute.vols
    }

    /// Whether the caller has the `admin` role.
    pub fn is_admin(&self) -> bool {
        self.caller.has_role("admin")
    }

    /// Whether the caller sees the servers of project `owner` (else they are 404 to it).
    pub fn sees(&self, owner: &str) -> bool {
        self.is_admin() || owner == self.project
    }

    /// 403 unless the caller may change its project's servers (`member` or `admin`).
    pub fn may_change(&self, rule: &str) -> NovaResult<()> {
        if self.is_admin() || self.caller.has_role("member") {
            Ok(())
        } else {
            Err(forbidden(rule))
        }
    }

    /// 403 unless the caller is `admin`.
    pub fn admin_only(&self, rule: &str) -> NovaResult<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(forbidden(rule))
        }
    }

    /// Server `id` as the caller sees it (another project's is 404) and its revision.
    pub async fn server(&self, id: &str) -> NovaResult<(Server, i64)> {
        match self.compute().servers.get(id).await? {
            Some((s, rev)) if self.sees(&s.project_id) => Ok((s, rev)),
            _ => Err(no_server(id)),
        }
    }

    /// Changes server `id` (as the caller sees it) by compare-and-swap with `f`, which
    /// may refuse; the server as written.
    pub async fn change_server(
        &self,
        id: &str,
        mut f: impl FnMut(&mut Server) -> NovaResult<()>,
    ) -> NovaResult<Server> {
        self.server(id).await?;
        let mut refused = None;
        let out = self
            .compute()
            .servers
            .update(id, |s| match f(s) {
                Ok(()) => {
                    s.updated_us = stratus_client::compute::now_us();
                    Some(())
                }
                Err(e) => {
                    refused = Some(e);
                    None
                }
            })
            .await?;
        match (out, refused) {
            (Some((s, ())), _) => Ok(s),
            (None, Some(e)) => Err(e),
            (None, None) => Err(no_server(id)),
        }
    }

    /// The JSON body, or 400.
    pub fn json(&self) -> NovaResult<Value> {
        if self.body.is_empty() {
            return Err(bad("Malformed request body"));
        }
        serde_json::from_slice(&self.body).map_err(|e| bad(format!("Malformed request body: {e}")))
    }

    /// The object under `key` of the JSON body (`{"server": {...}}`), or 400.
    pub fn entity(&self, key: &str) -> NovaResult<Map<String, Value>> {
        match self.json()?.get_mut(key).map(Value::take) {
            Some(Value::Object(m)) => Ok(m),
            _ => Err(bad(format!(
                "Invalid input for field/attribute {key}: '{key}' is a required property and must be an object."
            ))),
        }
    }

    /// Where links point.
    pub fn links(&self) -> render::Links {
        render::Links::new(&self.host_url)
    }

    /// The same caller as a volume API request of its project, to look volumes and
    /// snapshots up (and make volumes) with the Cinder module's rules.
    pub fn cinder(&self) -> crate::volume::Req<'a> {
        cinder_req(self.p, self.caller.clone(), &self.project, &self.host_url)
    }
}

/// A volume API request by `caller` in `project` (what [`crate::volume::import`] and the
/// volume lookups take).
pub(crate) fn cinder_req<'a>(
    p: &'a Arc<Proxy>,
    caller: TokenClaims,
    project: &str,
    host_url: &str,
) -> crate::volume::Req<'a> {
    static POST: Method = Method::POST;
    crate::volume::Req {
        p,
        method: &POST,
        segs: Vec::new(),
        query: Query::parse(None),
        caller,
        project: project.to_string(),
        host_url: host_url.to_string(),
        body: Bytes::new(),
    }
}

/// The v2.1 version entry (`detail`: with `media-types`, as the single-version document
/// has it).
fn v21_entry(host_url: &str, detail: bool) -> Value {
    let (major, minor) = MICROVERSION;
    let mut v = json!({
        "id": "v2.1",
        "status": "CURRENT",
        "version": format!("{major}.{minor}"),
        "min_version": format!("{major}.{minor}"),
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{host_url}/compute/v2.1/")}],
    });
    if detail {
        v["media-types"] = json!([{
            "base": "application/json",
            "type": "application/vnd.openstack.compute+json;version=2.1",
        }]);
    }
    v
}

/// The legacy v2.0 entry: listed first (tempest requires it) and readable, though no v2.0
/// API is served.
fn v20_entry(host_url: &str, detail: bool) -> Value {
    let mut v = json!({
        "id": "v2.0",
        "status": "SUPPORTED",
        "version": "",
        "min_version": "",
        "updated": "2011-01-21T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{host_url}/compute/v2/")}],
    });
    if detail {
        v["media-types"] = json!([{
            "base": "application/json",
            "type": "application/vnd.openstack.compute+json;version=2",
        }]);
    }
    v
}

/// The microversion a request asks for in `OpenStack-API-Version` (`compute 2.1`,
/// `compute latest`) or else `X-OpenStack-Nova-API-Version`; none is 2.1. 400 if
/// malformed, 406 if not served.
pub fn microversion(h: &HeaderMap) -> NovaResult<(u32, u32)> {
    crate::openstack::microversion(
        h,
        "compute",
        Some("x-openstack-nova-api-version"),
        MICROVERSION,
    )
    .map_err(|(status, message)| NovaError::new(status, message))
}

/// Answers a request under `/compute`.
pub async fn route(p: &Arc<Proxy>, parts: &Parts, body: Body) -> Response {
    let path = parts.uri.path();
    let versioned = path.starts_with("/compute/v2.1/") && path.len() > "/compute/v2.1/".len();
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
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&format!("compute {major}.{minor}")) {
            h.insert("openstack-api-version", v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("{major}.{minor}")) {
            h.insert("x-openstack-nova-api-version", v);
        }
        h.insert(
            "vary",
            HeaderValue::from_static("OpenStack-API-Version, X-OpenStack-Nova-API-Version"),
        );
    }
    r
}

async fn route_inner(p: &Arc<Proxy>, parts: &Parts, body: Body) -> NovaResult {
    let host_url = host_url(parts);
    let nowhere = || not_found("The resource could not be found.");
    let rest = parts
        .uri
        .path()
        .strip_prefix("/compute")
        .unwrap_or("")
        .trim_start_matches('/');
    let (version, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let read = matches!(parts.method, Method::GET | Method::HEAD);
    let not_allowed = || {
        NovaError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "The method is not allowed for this resource.",
        )
    };
    match (version, rest.trim_matches('/').is_empty()) {
        ("", true) if read => {
            let list =
                json!({"versions": [v20_entry(&host_url, false), v21_entry(&host_url, false)]});
            return Ok(json_response(StatusCode::OK, &list));
        }
        ("v2", true) if read => {
            return Ok(json_response(
                StatusCode::OK,
                &json!({"version": v20_entry(&host_url, true)}),
            ))
        }
        ("v2.1", true) if read => {
            return Ok(json_response(
                StatusCode::OK,
                &json!({"version": v21_entry(&host_url, true)}),
            ))
        }
        ("" | "v2" | "v2.1", true) => return Err(not_allowed()),
        ("v2.1", false) => {}
        _ => return Err(nowhere()),
    }
    let mut segs: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| crate::names::decode(s).map_err(|_| bad("Invalid UTF-8 in the path.")))
        .collect::<NovaResult<_>>()?;
    let token = hv(&parts.headers, "x-auth-token").ok_or_else(unauthorized)?;
    let caller = p.auth.keystone(token).map_err(|_| unauthorized())?;
    let project = caller
        .project_id()
        .ok_or_else(|| {
            NovaError::new(
                StatusCode::FORBIDDEN,
                "The compute API needs a project-scoped token.",
            )
        })?
        .to_string();
    // v2.1 takes an optional project id before the collection (`/v2.1/{project_id}/…`).
    if segs.first() == Some(&project) {
        segs.remove(0);
    }
    microversion(&parts.headers)?;
    let body = if matches!(parts.method, Method::POST | Method::PUT) {
        axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
            NovaError::new(
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
    dispatch(&req).await
}

/// Method and path → handler.
async fn dispatch(r: &Req<'_>) -> NovaResult {
    let segs: Vec<&str> = r.segs.iter().map(String::as_str).collect();
    let m = match r.method.as_str() {
        "HEAD" => "GET",
        m => m,
    };
    match (m, &segs[..]) {
        ("GET", ["flavors"]) => flavors::list(r, false).await,
        ("GET", ["flavors", "detail"]) => flavors::list(r, true).await,
        ("POST", ["flavors"]) => flavors::create(r).await,
        ("GET", ["flavors", id]) => flavors::show(r, id).await,
        ("DELETE", ["flavors", id]) => flavors::delete(r, id).await,
        ("GET", ["flavors", id, "os-extra_specs"]) => flavors::extra_specs(r, id).await,
        ("GET", ["flavors", id, "os-flavor-access"]) => flavors::access(r, id).await,
        (_, ["flavors", _, "os-extra_specs", ..]) => Err(bad(
            "Flavor extra specs are not supported: flavors have none.",
        )),
        ("POST", ["servers"]) => create::create(r).await,
        ("GET", ["servers"]) => servers::list(r, false).await,
        ("GET", ["servers", "detail"]) => servers::list(r, true).await,
        ("GET", ["servers", id]) => servers::show(r, id).await,
        ("PUT", ["servers", id]) => servers::update(r, id).await,
        ("DELETE", ["servers", id]) => servers::delete(r, id).await,
        ("POST", ["servers", id, "action"]) => actions::route(r, id).await,
        ("GET", ["servers", id, "ips"]) => servers::ips(r, id, None).await,
        ("GET", ["servers", id, "ips", net]) => servers::ips(r, id, Some(net)).await,
        (_, ["servers", id, "metadata", rest @ ..]) if rest.len() <= 1 => {
            servers::metadata(r, id, rest.first().copied()).await
        }
        ("GET", ["servers", id, "os-volume_attachments"]) => attachments::list(r, id).await,
        ("POST", ["servers", id, "os-volume_attachments"]) => attachments::attach(r, id).await,
        ("GET", ["servers", id, "os-volume_attachments", vol]) => {
            attachments::show(r, id, vol).await
        }
        ("DELETE", ["servers", id, "os-volume_attachments", vol]) => {
            attachments::detach(r, id, vol).await
        }
        ("GET", ["os-availability-zone"]) => misc::zones(r, false).await,
        ("GET", ["os-availability-zone", "detail"]) => misc::zones(r, true).await,
        ("GET", ["limits"]) => misc::limits(r).await,
        ("GET", ["os-hypervisors"]) => misc::hypervisors(r, false).await,
        ("GET", ["os-hypervisors", "detail"]) => misc::hypervisors(r, true).await,
        ("GET", ["os-hypervisors", "statistics"]) => misc::hypervisor_statistics(r).await,
        ("GET", ["os-hypervisors", id]) => misc::hypervisor_show(r, id).await,
        ("GET", ["os-services"]) => misc::services(r).await,
        ("GET", ["os-keypairs"]) => misc::keypairs(r).await,
        ("GET", ["os-keypairs", name]) => Err(not_found(format!(
            "Keypair {name} not found for user {}",
            r.caller.user_id
        ))),
        ("POST", ["os-keypairs"]) => Err(NovaError::new(
            StatusCode::NOT_IMPLEMENTED,
            "Key pairs are not supported yet.",
        )),
        (
            _,
            ["flavors" | "servers" | "os-keypairs"]
            | ["flavors" | "servers", _]
            | ["servers", _, "action" | "os-volume_attachments"]
            | ["servers", _, "os-volume_attachments", _],
        ) => Err(NovaError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "The method is not allowed for this resource.",
        )),
        _ => Err(not_found("The resource could not be found.")),
    }
}

/// 401 (with `WWW-Authenticate` added by [`route`]).
fn unauthorized() -> NovaError {
    NovaError::new(
        StatusCode::UNAUTHORIZED,
        "The request you have made requires authentication.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asking(headers: &[(&str, &str)]) -> NovaResult<(u32, u32)> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        microversion(&h)
    }

    #[test]
    fn only_2_1_is_served() {
        let mv = "openstack-api-version";
        assert_eq!(asking(&[]).unwrap(), (2, 1));
        assert_eq!(asking(&[(mv, "compute 2.1")]).unwrap(), (2, 1));
        assert_eq!(asking(&[(mv, "compute latest")]).unwrap(), (2, 1));
        assert_eq!(asking(&[(mv, "volume 3.0, compute 2.1")]).unwrap(), (2, 1));
        assert_eq!(asking(&[(mv, "volume 3.71")]).unwrap(), (2, 1));
        assert_eq!(
            asking(&[("x-openstack-nova-api-version", "2.1")]).unwrap(),
            (2, 1)
        );
        let status = |h: &[(&str, &str)]| asking(h).unwrap_err().status.as_u16();
        assert_eq!(status(&[(mv, "compute 2.61")]), 406);
        assert_eq!(status(&[(mv, "compute 2.0")]), 406);
        assert_eq!(status(&[("x-openstack-nova-api-version", "2.37")]), 406);
        assert_eq!(status(&[(mv, "compute 2")]), 400);
        assert_eq!(status(&[(mv, "compute two.one")]), 400);
        // The new header wins over the legacy one.
        assert_eq!(
            asking(&[
                (mv, "compute 2.1"),
                ("x-openstack-nova-api-version", "2.61")
            ])
            .unwrap(),
            (2, 1)
        );
    }

    #[test]
    fn version_documents_have_what_tempest_checks() {
        let v21 = v21_entry("http://h", true);
        for k in [
            "id",
            "status",
            "links",
            "media-types",
            "version",
            "min_version",
        ] {
            assert!(v21.get(k).is_some(), "{k} missing from {v21}");
        }
        assert_eq!(v21["links"][0]["href"], "http://h/compute/v2.1/");
        assert_eq!(v21["version"], "2.1");
        let v20 = v20_entry("http://h", false);
        assert_eq!(v20["id"], "v2.0");
        assert_eq!(v20["version"], "");
        assert!(v20.get("media-types").is_none());
        assert_eq!(v20["links"][0]["href"], "http://h/compute/v2/");
    }

    #[test]
    fn faults_are_named_after_their_status() {
        assert_eq!(no_server("x").fault_name(), "itemNotFound");
        assert_eq!(bad("x").fault_name(), "badRequest");
        assert_eq!(conflict("x").fault_name(), "conflictingRequest");
        assert_eq!(forbidden("r").fault_name(), "forbidden");
        let e = NovaError::new(StatusCode::INTERNAL_SERVER_ERROR, "x");
        assert_eq!(e.fault_name(), "computeFault");
        assert_eq!(no_flavor("7").message, "Flavor 7 could not be found.");
    }
}
