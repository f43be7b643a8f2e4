//! Object versioning (Swift 2.24+'s `object_versioning`, the `X-Versions-Enabled` API), as
//! Swift keeps it, so its data and listings read the same:
//!
//! - Enabling versioning on container `c` makes a hidden container `\0versions\0c` (names
//!   starting with NUL are reserved: clients cannot make or address them) and records it
//!   in `c`'s system metadata, with the enabled flag.
//! - While enabled, every write to `c/o` stores the data in the hidden container as
//!   `\0o\0<inverted timestamp>` and leaves in `c` a static symlink to it, marked as a
//!   versions link. The version id is the write's timestamp (`1700000000.12345`); the
//!   inverted one (`9999999999.99999` minus it) makes the newest version list first.
//! - A DELETE writes a delete marker (a zero-byte version of type [`DELETE_MARKER`]) and
//!   removes the link.
//! - An object written before versioning was enabled (a "null" version) is copied into the
//!   hidden container when it is first overwritten or deleted.
//!
//! Handlers reach this through [`crate::versioning`] (object requests) and
//! [`crate::container`] (container requests and `?versions` listings).

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use stratus_core::timestamp::Timestamp;
use stratus_proto::storage as pb;

use crate::cluster::RingKind;
use crate::error::{bad_request, not_found, SwiftError, SwiftResult};
use crate::headers::meta_value;
use crate::ops::database;
use crate::ops::fetch::{fetch, Found};
use crate::ops::link::{self, quote, Link};
use crate::ops::manifest::{DLO_HEADER, SLO_ETAG, SLO_FLAG, SLO_SIZE};
use crate::ops::object::{self, ObjPath};
use crate::ops::store::{store, Stored};
use crate::proxy::Proxy;

/// Content type of a delete marker.
pub use crate::ops::versions::DELETE_MARKER;
/// Container sysmeta: whether new writes are versioned (`True`/`False`).
pub const SYSMETA_ENABLED: &str = "x-container-sysmeta-versions-enabled";
/// Container sysmeta: the hidden container holding the versions (quoted).
pub const SYSMETA_CONTAINER: &str = "x-container-sysmeta-versions-container";
/// Object sysmeta marking the link a versioned write leaves in the container.
pub const SYSMETA_SYMLINK: &str = "x-object-sysmeta-versions-symlink";
/// The client's header that enables or disables versioning.
pub const CLIENT_ENABLED: &str = "x-versions-enabled";

/// Swift's reserved-name separator.
const RESERVED: char = '\0';
/// Swift's `Timestamp` precision: ten microseconds.
const TICK: u64 = 10;
/// The largest timestamp Swift represents, in ticks (`~ts` is this minus `ts`).
const MAX_TICKS: u64 = 999_999_999_999_999;

/// The hidden container of `container`'s versions: `\0versions\0<container>`.
pub fn versions_container(container: &str) -> String {
    format!("{RESERVED}versions{RESERVED}{container}")
}

/// The versioned container a hidden versions container belongs to, if it is one.
pub fn parent_of(hidden: &str) -> Option<&str> {
    hidden.strip_prefix("\0versions\0")
}

/// Whether a name is in Swift's reserved namespace (clients never see or make those).
pub fn is_reserved(name: &str) -> bool {
    name.starts_with(RESERVED)
}

/// The container whose ACLs judge access to `container`: a hidden versions container is
/// reached only through its parent, and judged by the parent's rights.
pub fn acl_container(container: &str) -> &str {
    parent_of(container).unwrap_or(container)
}

/// `~ts`: Swift's inverted timestamp (so newer versions sort first). None for a timestamp
/// Swift could not represent.
pub fn invert(ts: Timestamp) -> Option<Timestamp> {
    let ticks = ts.0 / TICK;
    MAX_TICKS.checked_sub(ticks).map(|t| Timestamp(t * TICK))
}

/// A version id as the API takes it (`1700000000.12345`, or anything Swift's `Timestamp`
/// would take that we can represent). None when it is not one.
pub fn parse_version_id(s: &str) -> Option<Timestamp> {
    let ts = Timestamp::parse(s.trim())?;
    invert(ts)?;
    // Swift keeps five decimals.
    Some(Timestamp(ts.0 / TICK * TICK))
}

/// The name of an object's version in the hidden container: `\0<object>\0<~ts>`.
pub fn version_name(object: &str, ts: Timestamp) -> String {
    let inv = invert(ts).unwrap_or_default();
    format!("{RESERVED}{object}{RESERVED}{inv}")
}

/// The prefix all of an object's versions share: `\0<object>\0`.
pub fn version_prefix(object: &str) -> String {
    format!("{RESERVED}{object}{RESERVED}")
}

/// The object name and version id (the timestamp) of a name in the hidden container.
pub fn split_version_name(name: &str) -> Option<(&str, Timestamp)> {
    let rest = name.strip_prefix(RESERVED)?;
    let (object, inv) = rest.split_once(RESERVED)?;
    if inv.contains(RESERVED) {
        return None;
    }
    let inv = Timestamp::parse(inv)?;
    Some((object, invert(inv)?))
}

/// The versioning state of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioning {
    /// The hidden container holding the versions.
    pub container: String,
    /// Whether new writes are versioned (versions stay readable either way).
    pub enabled: bool,
}

/// Python's `config_true_value`.
pub fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "on" | "t" | "y"
    )
}

impl Versioning {
    /// The versioning a container's info records, if versioning was ever enabled there.
    pub fn of(info: &pb::DbInfo) -> Option<Versioning> {
        let loc = meta_value(&info.meta, SYSMETA_CONTAINER)?;
        let container = crate::names::decode_param(loc).ok()?;
        if container.is_empty() {
            return None;
        }
        let enabled = meta_value(&info.meta, SYSMETA_ENABLED).is_some_and(truthy);
        Some(Versioning { container, enabled })
    }

    /// The hidden path of `path`'s version `ts`.
    pub fn path(&self, path: &ObjPath, ts: Timestamp) -> ObjPath {
        ObjPath {
            account: path.account.clone(),
            container: self.container.clone(),
            object: version_name(&path.object, ts),
        }
    }
}

/// The versioning of `path`'s container (None when the container is missing or was never
/// versioned).
pub async fn state(p: &Proxy, account: &str, container: &str) -> SwiftResult<Option<Versioning>> {
    match p.container_info(account, container).await {
        Ok(info) => Ok(Versioning::of(&info)),
        Err(e) if e.status == StatusCode::NOT_FOUND => Ok(None),
        Err(e) => Err(e),
    }
}

/// The object at `path` as stored (a link as itself), if there is one.
async fn raw(p: &Proxy, path: &ObjPath, head: bool) -> SwiftResult<Option<Found>> {
    match fetch(p, path, &HeaderMap::new(), head).await {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.status == StatusCode::NOT_FOUND => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether an object is the link a versioned write left.
pub fn is_versions_link(m: &pb::ObjectMeta) -> bool {
    meta_value(&m.meta, SYSMETA_SYMLINK).is_some_and(truthy)
}

/// The version a versions link at `path` points to (in `v`'s hidden container), if it is
/// one.
fn linked_version(m: &pb::ObjectMeta, path: &ObjPath, v: &Versioning) -> Option<Timestamp> {
    if !is_versions_link(m) {
        return None;
    }
    let l = Link::of(m, &path.account)?;
    if l.target.container != v.container {
        return None;
    }
    split_version_name(&l.target.object).map(|(_, ts)| ts)
}

/// Before a versioned write or delete of `path`: an object there that is not a versions
/// link (written before versioning was enabled) is copied into the hidden container under
/// its own timestamp, so it stays a version.
async fn keep_unversioned(p: &Proxy, path: &ObjPath, v: &Versioning) -> SwiftResult<()> {
    let Some(found) = raw(p, path, false).await? else {
        return Ok(());
    };
    if is_versions_link(&found.meta) {
        return Ok(());
    }
    let ts = Timestamp(found.meta.ts);
    crate::ops::versions::put_found(p, found, &v.path(path, ts)).await
}

/// Metadata of a stored object that belongs to its data, never to a link to it.
fn data_only(key: &str) -> bool {
    key.starts_with("x-object-sysmeta-symlink-")
        || key.starts_with("x-object-sysmeta-slo-")
        || key == SLO_FLAG
        || key == DLO_HEADER
        || key == SYSMETA_SYMLINK
}

/// What a link to a version records of it.
struct Target {
    etag: String,
    bytes: u64,
    content_type: String,
    slo_etag: Option<String>,
}

impl Target {
    /// What a link records of a version stored with `meta`, `etag` and `size`: an SLO's
    /// total size and SLO ETag; for a static link, its own target's ETag and size (so the
    /// chain of links checks out as Swift's does).
    fn of(meta: &[pb::MetaItem], etag: &str, size: u64, content_type: String) -> Target {
        let slo_size = meta_value(meta, SLO_SIZE).and_then(|s| s.parse().ok());
        let link_bytes = meta_value(meta, link::TARGET_BYTES).and_then(|s| s.parse().ok());
        Target {
            etag: meta_value(meta, link::TARGET_ETAG)
                .unwrap_or(etag)
                .to_string(),
            bytes: link_bytes.or(slo_size).unwrap_or(size),
            content_type,
            slo_etag: meta_value(meta, SLO_ETAG).map(str::to_string),
        }
    }
}

/// Writes at `path` the versions link to `version` (in `v`'s hidden container), carrying
/// `meta` (the request's metadata) and `delete_at`.
async fn put_link(
    p: &Proxy,
    path: &ObjPath,
    v: &Versioning,
    version: Timestamp,
    t: &Target,
    meta: &[pb::MetaItem],
    delete_at: u64,
) -> SwiftResult<Stored> {
    let name = version_name(&path.object, version);
    let mut items: Vec<pb::MetaItem> = meta
        .iter()
        .filter(|i| !data_only(&i.key))
        .cloned()
        .collect();
    let mut add = |k: &str, v: String| {
        items.push(pb::MetaItem {
            key: k.to_string(),
            value: v,
            ts: 0,
        })
    };
    add(
        link::TARGET,
        format!("{}/{}", quote(&v.container), quote(&name)),
    );
    add(link::TARGET_ETAG, t.etag.clone());
    add(link::TARGET_BYTES, t.bytes.to_string());
    if let Some(s) = &t.slo_etag {
        add(link::TARGET_SLO_ETAG, s.clone());
    }
    add(SYSMETA_SYMLINK, "true".to_string());
    let header = pb::PutHeader {
        target: None,
        ts: 0,
        content_type: bare_type(&t.content_type).to_string(),
        meta: items,
        delete_at,
        content_length: Some(0),
    };
    store(p, path, header, Box::pin(futures::stream::empty()), None).await
}

/// A content type without its parameters (Swift's `parse_content_type(...)[0]`).
fn bare_type(ct: &str) -> &str {
    ct.split(';').next().unwrap_or(ct).trim()
}

/// What a write produced.
pub struct Written {
    /// The stored data (its ETag and timestamp).
    pub stored: Stored,
    /// Its version id, when the write was versioned.
    pub version: Option<Timestamp>,
}

impl Written {
    /// 201 with the ETag, Last-Modified and (when versioned) `X-Object-Version-Id`.
    pub fn created(&self) -> Response {
        let mut r = crate::ops::store::created(&self.stored);
        if let Some(v) = self.version {
            if let Ok(v) = HeaderValue::from_str(&v.to_string()) {
                r.headers_mut().insert("x-object-version-id", v);
            }
        }
        r
    }
}

/// Stores an object written by a client (PUT, copy, SLO manifest, symlink): in a
/// container with versioning enabled the data goes into the hidden container and a link to
/// it into the container (the object there before, if unversioned, kept as a version);
/// elsewhere it is stored in place, as [`crate::ops::versions`] (the legacy API) asks.
pub async fn store_object(
    p: &Proxy,
    path: &ObjPath,
    header: pb::PutHeader,
    body: crate::ops::object::ByteStream,
    expect: Option<String>,
) -> SwiftResult<Written> {
    let v = match state(p, &path.account, &path.container).await? {
        Some(v) if v.enabled => v,
        _ => {
            crate::ops::versions::archive_current(p, path).await?;
            let stored = store(p, path, header, body, expect).await?;
            return Ok(Written {
                stored,
                version: None,
            });
        }
    };
    keep_unversioned(p, path, &v).await?;
    let version = Timestamp::now();
    let meta = header.meta.clone();
    let delete_at = header.delete_at;
    let content_type = header.content_type.clone();
    // Expiry applies to the link, never to the version's data.
    let data = pb::PutHeader {
        delete_at: 0,
        ..header
    };
    let stored = store(p, &v.path(path, version), data, body, expect)
        .await
        .map_err(|e| {
            if e.status == StatusCode::NOT_FOUND {
                versions_container_missing()
            } else {
                e
            }
        })?;
    let t = Target::of(&meta, &stored.etag, stored.size, content_type);
    put_link(p, path, &v, version, &t, &meta, delete_at).await?;
    Ok(Written {
        stored,
        version: Some(version),
    })
}

/// 500, as Swift answers a write to a container whose versions container is gone.
fn versions_container_missing() -> SwiftError {
    SwiftError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The versions container does not exist. You may want to re-enable object versioning.",
    )
}

/// DELETE of an object (no `version-id`), as its container keeps versions: a delete
/// marker with versioning enabled, else as the legacy versioning (if any) has it.
pub async fn delete_object(p: &Proxy, path: &ObjPath) -> SwiftResult<Response> {
    match state(p, &path.account, &path.container).await? {
        Some(v) if v.enabled => delete(p, path, &v).await,
        _ => crate::ops::versions::delete(p, path).await,
    }
}

/// DELETE of an object in a container with versioning enabled: a delete marker becomes
/// the newest version and the link goes; the answer (204, or 404 when there was no
/// object) names the marker's version id.
pub async fn delete(p: &Proxy, path: &ObjPath, v: &Versioning) -> SwiftResult<Response> {
    keep_unversioned(p, path, v).await?;
    let version = Timestamp::now();
    crate::ops::versions::store_delete_marker(p, &v.path(path, version)).await?;
    let id = version.to_string();
    match object::delete(p, path).await {
        Ok(mut r) => {
            if let Ok(h) = HeaderValue::from_str(&id) {
                r.headers_mut().insert("x-object-version-id", h);
            }
            Ok(r)
        }
        Err(e) if e.status == StatusCode::NOT_FOUND => Err(e
            .with_header("x-object-version-id", id)
            .with_header("x-backend-content-type", DELETE_MARKER.to_string())),
        Err(e) => Err(e),
    }
}

/// `DELETE ?version-id=<v>`: that version goes (its data, no marker); when it is the one
/// the container's link points to, the link goes too. The answer names the version and
/// what is current after it (`X-Object-Current-Version-Id`).
pub async fn delete_version(
    p: &Proxy,
    path: &ObjPath,
    v: &Versioning,
    version: Timestamp,
) -> SwiftResult<Response> {
    let after = unlink(p, path, v, version).await?;
    let r = object::delete(p, &v.path(path, version)).await;
    let id = version.to_string();
    match r {
        Ok(mut r) => {
            let h = r.headers_mut();
            if let Ok(x) = HeaderValue::from_str(&id) {
                h.insert("x-object-version-id", x);
            }
            if let Ok(x) = HeaderValue::from_str(&after) {
                h.insert("x-object-current-version-id", x);
            }
            Ok(r)
        }
        Err(e) => Err(e
            .with_header("x-object-version-id", id)
            .with_header("x-object-current-version-id", after)),
    }
}

/// Before version `version` of `path` goes: when the container's link points to it, the
/// link goes too. Returns the version current afterwards (`null`: none, or an
/// unversioned object).
pub async fn unlink(
    p: &Proxy,
    path: &ObjPath,
    v: &Versioning,
    version: Timestamp,
) -> SwiftResult<String> {
    let current = raw(p, path, true).await?;
    let linked = current
        .as_ref()
        .and_then(|f| linked_version(&f.meta, path, v));
    Ok(match linked {
        Some(ts) if ts == version => {
            match object::delete(p, path).await {
                Ok(_) => {}
                Err(e) if e.status == StatusCode::NOT_FOUND => {}
                Err(e) => return Err(e),
            }
            "null".to_string()
        }
        Some(ts) => ts.to_string(),
        None => "null".to_string(),
    })
}

/// `PUT ?version-id=<v>` (a zero-byte body): makes version `v` current again, pointing
/// the container's link at it (with the request's metadata and expiry).
pub async fn restore(
    p: &Proxy,
    path: &ObjPath,
    v: &Versioning,
    version: Timestamp,
    meta: Vec<pb::MetaItem>,
    delete_at: u64,
) -> SwiftResult<Response> {
    let vpath = v.path(path, version);
    let Some(found) = raw(p, &vpath, true).await? else {
        if p.require_container(&path.account, &v.container)
            .await
            .is_ok()
        {
            return Err(SwiftError::new(
                StatusCode::NOT_FOUND,
                "The specified version does not exist",
            ));
        }
        return Err(versions_container_missing());
    };
    let m = &found.meta;
    let t = Target::of(&m.meta, &m.etag, m.size, m.content_type.clone());
    let stored = put_link(p, path, v, version, &t, &meta, delete_at).await?;
    let w = Written {
        stored: Stored {
            etag: t.etag,
            ..stored
        },
        version: Some(version),
    };
    Ok(w.created())
}

/// The version `version` of `path` for a GET or HEAD (`None`: the request is for the
/// "null" version, the container's own object).
pub fn version_path(
    path: &ObjPath,
    v: Option<&Versioning>,
    version: &str,
) -> SwiftResult<Option<ObjPath>> {
    if version == "null" {
        return Ok(None);
    }
    let Some(v) = v else {
        return Err(bad_request(
            "version-aware operations require that the container is versioned",
        ));
    };
    let ts = parse_version_id(version).ok_or_else(|| bad_request("Invalid version parameter"))?;
    Ok(Some(v.path(path, ts)))
}

/// The version id and client-facing location of a read that followed a versions link to
/// `location` (`/v1/<account>/<container>/<object>`, quoted): Swift shows the version as
/// `/v1/<account>/<container>/<object>?version-id=<id>`.
pub fn read_location(path: &ObjPath, v: &Versioning, location: &str) -> Option<(String, String)> {
    let decoded = crate::names::decode_param(location).ok()?;
    let rest = decoded.strip_prefix("/v1/")?;
    let (account, rest) = rest.split_once('/')?;
    let (container, object) = rest.split_once('/')?;
    if account != path.account || container != v.container {
        return None;
    }
    let (_, ts) = split_version_name(object)?;
    let id = ts.to_string();
    let loc = format!(
        "/v1/{}/{}/{}?version-id={id}",
        quote(&path.account),
        quote(&path.container),
        quote(&path.object)
    );
    Some((id, loc))
}

/// The same for a link read as itself (`?symlink=get`): its `X-Symlink-Target`
/// (`container/object`, quoted) shown as `<container>/<object>?version-id=<id>`.
pub fn link_target(path: &ObjPath, v: &Versioning, target: &str) -> Option<(String, String)> {
    let decoded = crate::names::decode_param(target).ok()?;
    let (container, object) = decoded.split_once('/')?;
    if container != v.container {
        return None;
    }
    let (_, ts) = split_version_name(object)?;
    let id = ts.to_string();
    let t = format!(
        "{}/{}?version-id={id}",
        quote(&path.container),
        quote(&path.object)
    );
    Some((id, t))
}

/// 404 for a read of a delete marker, naming it.
pub fn marker_not_found(version: &str) -> SwiftError {
    not_found()
        .with_header("x-object-version-id", version.to_string())
        .with_header("content-type", DELETE_MARKER.to_string())
}

/// Whether a response is a delete marker's.
pub fn is_marker(r: &Response) -> bool {
    r.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == DELETE_MARKER)
}

/// A listed row of `container` that is a versions link: the version's name (in the hidden
/// container), size and ETag, read from what the row's content type carries
/// (`;symlink_target=...;symlink_target_etag=...;symlink_target_bytes=...`).
pub fn listed_version(content_type: &str, container: &str) -> Option<(String, u64, String)> {
    let param = |k: &str| {
        content_type
            .split(';')
            .find_map(|x| x.strip_prefix(k)?.strip_prefix('='))
    };
    let target = crate::names::decode_param(param("symlink_target")?).ok()?;
    let (c, o) = target.split_once('/')?;
    if c != versions_container(container) {
        return None;
    }
    let bytes = param("symlink_target_bytes")?.parse().ok()?;
    let etag = param("symlink_target_etag")?.to_string();
    Some((o.to_string(), bytes, etag))
}

/// Container PUT or POST with `X-Versions-Enabled`: records the flag and, when enabling,
/// makes the hidden versions container. A container using the legacy
/// `X-Versions-Location`/`X-History-Location` (or syncing elsewhere) cannot (400).
pub async fn configure(
    p: &Proxy,
    account: &str,
    container: &str,
    h: &HeaderMap,
    put: bool,
) -> SwiftResult<Response> {
    let info = crate::ops::listing::info(p, account, container).await?;
    let has = |k: &str| info.exists && meta_value(&info.meta, k).is_some_and(|v| !v.is_empty());
    if has("x-versions-location") || has("x-history-location") {
        return Err(bad_request(
            "Cannot enable object versioning on a container that is already using the legacy versioned writes feature.",
        ));
    }
    if has("x-container-sync-to") {
        return Err(bad_request(
            "Cannot enable object versioning on a container configured as source of container syncing.",
        ));
    }
    let enabled = crate::headers::hv(h, CLIENT_ENABLED).is_some_and(truthy);
    let flag = if enabled { "True" } else { "False" };
    let mut sysmeta = vec![(SYSMETA_ENABLED.to_string(), flag.to_string())];
    let hidden = versions_container(container);
    if enabled {
        // The versions are kept in the container's own storage policy, as Swift keeps them.
        let policy = match info.exists {
            true => Some(p.policy_name(crate::ops::info::policy_of(&info))),
            false => crate::headers::hv(h, "x-storage-policy").map(str::to_string),
        };
        let mut with_policy = HeaderMap::new();
        if let Some(v) = policy.and_then(|n| axum::http::HeaderValue::from_str(n.trim()).ok()) {
            with_policy.insert("x-storage-policy", v);
        }
        database::put(p, RingKind::Container, account, &hidden, &with_policy)
            .await
            .map_err(|_| {
                SwiftError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Error enabling object versioning",
                )
            })?;
        sysmeta.push((SYSMETA_CONTAINER.to_string(), quote(&hidden)));
    }
    let r = if put {
        database::put_with(p, RingKind::Container, account, container, h, sysmeta).await
    } else {
        database::post_with(p, account, container, h, sysmeta).await
    };
    if r.is_err() && enabled && !info.exists {
        // The container was not made: neither is its versions container.
        let _ = database::delete(p, account, &hidden).await;
    }
    r
}

/// Container DELETE: a container that keeps versions can go only once they are all
/// deleted (409); its hidden versions container goes with it.
pub async fn delete_container(p: &Proxy, account: &str, container: &str) -> SwiftResult<Response> {
    let v = state(p, account, container).await?;
    if let Some(v) = v {
        let hidden = crate::ops::listing::info(p, account, &v.container).await?;
        if hidden.exists && hidden.object_count > 0 {
            return Err(SwiftError::new(
                StatusCode::CONFLICT,
                "Delete all versions before deleting container.",
            ));
        }
        if hidden.exists {
            match database::delete(p, account, &v.container).await {
                Ok(_) => {}
                Err(e) if e.status == StatusCode::NOT_FOUND => {}
                Err(_) => {
                    return Err(SwiftError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Error deleting versioned container",
                    ))
                }
            }
        }
    }
    database::delete(p, account, container).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverted_timestamps_match_swift() {
        // Swift: ~Timestamp('1700000000.12345') == '8299999999.87654'
        let ts = Timestamp::parse("1700000000.12345").unwrap();
        assert_eq!(invert(ts).unwrap().to_string(), "8299999999.87654");
        assert_eq!(invert(invert(ts).unwrap()).unwrap(), ts);
        assert!(invert(Timestamp(u64::MAX)).is_none());
    }

    #[test]
    fn version_names_round_trip() {
        let ts = Timestamp::parse("1700000000.12345").unwrap();
        let n = version_name("a/b c", ts);
        assert_eq!(n, "\0a/b c\x008299999999.87654");
        assert_eq!(split_version_name(&n), Some(("a/b c", ts)));
        assert!(n.starts_with(&version_prefix("a/b c")));
        assert_eq!(split_version_name("plain"), None);
        assert_eq!(split_version_name("\0o\0notatime"), None);
        assert_eq!(split_version_name("\0o\x001\x002"), None);
        // Newer versions sort first.
        let later = Timestamp::parse("1700000001.00000").unwrap();
        assert!(version_name("o", later) < version_name("o", ts));
    }

    #[test]
    fn version_ids_parse_as_swift_timestamps() {
        assert_eq!(
            parse_version_id("1700000000.12345").map(|t| t.to_string()),
            Some("1700000000.12345".into())
        );
        assert_eq!(
            parse_version_id("5").map(|t| t.to_string()),
            Some("0000000005.00000".into())
        );
        for bad in ["", "abc", "-1", "1.2.3", "null", "1e5"] {
            assert!(parse_version_id(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn listed_versions_links() {
        let ct = "text/plain;symlink_target=%00versions%00c/%00o%009;symlink_target_etag=e;symlink_target_bytes=5";
        assert_eq!(
            listed_version(ct, "c"),
            Some(("\0o\x009".to_string(), 5, "e".to_string()))
        );
        assert_eq!(listed_version(ct, "d"), None);
        assert_eq!(listed_version("text/plain", "c"), None);
    }

    #[test]
    fn hidden_containers_and_acls() {
        assert_eq!(versions_container("c"), "\0versions\0c");
        assert_eq!(parent_of("\0versions\0c"), Some("c"));
        assert_eq!(acl_container("\0versions\0c"), "c");
        assert_eq!(acl_container("c"), "c");
        assert!(is_reserved("\0versions\0c"));
    }

    #[test]
    fn locations_show_the_version() {
        let path = ObjPath {
            account: "AUTH_t".into(),
            container: "c".into(),
            object: "o x".into(),
        };
        let v = Versioning {
            container: versions_container("c"),
            enabled: true,
        };
        let ts = Timestamp::parse("1700000000.12345").unwrap();
        let loc = format!(
            "/v1/AUTH_t/{}/{}",
            quote(&v.container),
            quote(&version_name("o x", ts))
        );
        assert_eq!(
            read_location(&path, &v, &loc),
            Some((
                "1700000000.12345".into(),
                "/v1/AUTH_t/c/o%20x?version-id=1700000000.12345".into()
            ))
        );
        assert_eq!(read_location(&path, &v, "/v1/AUTH_t/c/o"), None);
        let t = format!(
            "{}/{}",
            quote(&v.container),
            quote(&version_name("o x", ts))
        );
        assert_eq!(
            link_target(&path, &v, &t).map(|x| x.1),
            Some("c/o%20x?version-id=1700000000.12345".into())
        );
    }
}
