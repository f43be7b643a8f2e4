//! Versioned writes (Swift's `versioned_writes`): a container whose `X-Versions-Location`
//! or `X-History-Location` names another container keeps every overwritten object there,
//! as `<3-hex-digit name length><name>/<timestamp>`.
//!
//! - **Stack** (`X-Versions-Location`): a PUT (or COPY) over an object first copies the
//!   current version into the archive; a DELETE restores the newest archived version (and
//!   removes it from the archive), or deletes the object when there is none.
//! - **History** (`X-History-Location`): PUTs archive the same way; a DELETE copies the
//!   current version into the archive, adds a delete marker (a zero-byte object of type
//!   `application/x-deleted;swift_versions_deleted=1`) and deletes the object.
//!
//! The archive container must exist and belong to the same account (412 otherwise).
//!
//! Object PUT and COPY, SLO PUT, object DELETE and bulk delete all honour it, so it stands
//! with the cluster operations rather than beside the handlers.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use stratus_core::timestamp::Timestamp;
use stratus_proto::storage as pb;

use crate::error::{precondition_failed, SwiftError, SwiftResult};
use crate::headers::meta_value;
use crate::names::decode;
use crate::ops::fetch::{fetch, Found};
use crate::ops::listing::{list, ListQuery};
use crate::ops::object::{self, ObjPath};
use crate::ops::store::store;
use crate::proxy::Proxy;

/// Content type of a history-mode delete marker.
pub const DELETE_MARKER: &str = "application/x-deleted;swift_versions_deleted=1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Stack,
    History,
}

/// The container's versioning mode and archive container, if any.
async fn mode(p: &Proxy, path: &ObjPath) -> SwiftResult<Option<(Mode, String)>> {
    let info = p.container_info(&path.account, &path.container).await?;
    let found = if let Some(v) = meta_value(&info.meta, "x-versions-location") {
        Some((Mode::Stack, v))
    } else {
        meta_value(&info.meta, "x-history-location").map(|v| (Mode::History, v))
    };
    let Some((mode, loc)) = found else {
        return Ok(None);
    };
    Ok(Some((mode, decode(loc)?)))
}

/// 412 unless the archive container `loc` exists (a version cannot be kept).
async fn require_archive(p: &Proxy, path: &ObjPath, loc: &str) -> SwiftResult<()> {
    if p.require_container(&path.account, loc).await.is_err() {
        return Err(precondition_failed(format!(
            "The versions container {loc} does not exist"
        )));
    }
    Ok(())
}

/// The archive prefix of an object's versions.
pub fn version_prefix(object: &str) -> String {
    format!("{:03x}{object}/", object.len())
}

/// Writes a delete marker (a zero-byte object of type [`DELETE_MARKER`]) at `at`: both
/// kinds of versioning mark a deletion so.
pub async fn store_delete_marker(p: &Proxy, at: &ObjPath) -> SwiftResult<()> {
    let header = pb::PutHeader {
        target: None,
        ts: 0,
        content_type: DELETE_MARKER.to_string(),
        meta: Vec::new(),
        delete_at: 0,
        content_length: Some(0),
    };
    store(p, at, header, Box::pin(futures::stream::empty()), None).await?;
    Ok(())
}

/// Writes what `found` holds (data and metadata, as stored) to `dst`.
pub async fn put_found(p: &Proxy, found: Found, dst: &ObjPath) -> SwiftResult<()> {
    let m = found.meta;
    let header = pb::PutHeader {
        target: None,
        ts: 0,
        content_type: m.content_type.clone(),
        meta: m.meta.clone(),
        delete_at: m.delete_at,
        content_length: Some(m.size),
    };
    let body = found
        .body
        .unwrap_or_else(|| Box::pin(futures::stream::empty()));
    store(p, dst, header, body, None).await?;
    Ok(())
}

/// The current version of `path`, if any (a manifest as itself).
async fn current(p: &Proxy, path: &ObjPath) -> SwiftResult<Option<Found>> {
    match fetch(p, path, &HeaderMap::new(), false).await {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.status == StatusCode::NOT_FOUND => Ok(None),
        Err(e) => Err(e),
    }
}

/// Before a write to `path`: moves the current version into the archive, if the container
/// keeps versions and there is one.
pub async fn archive_current(p: &Proxy, path: &ObjPath) -> SwiftResult<()> {
    let Some((_, loc)) = mode(p, path).await? else {
        return Ok(());
    };
    archive(p, path, &loc).await
}

async fn archive(p: &Proxy, path: &ObjPath, loc: &str) -> SwiftResult<()> {
    require_archive(p, path, loc).await?;
    let Some(found) = current(p, path).await? else {
        return Ok(());
    };
    let dst = ObjPath {
        account: path.account.clone(),
        container: loc.to_string(),
        object: format!(
            "{}{}",
            version_prefix(&path.object),
            Timestamp(found.meta.ts)
        ),
    };
    put_found(p, found, &dst).await
}

/// DELETE of an object, honouring the container's versioning mode.
pub async fn delete(p: &Proxy, path: &ObjPath) -> SwiftResult<Response> {
    match mode(p, path).await? {
        None => object::delete(p, path).await,
        Some((Mode::History, loc)) => {
            archive(p, path, &loc).await?;
            let marker = ObjPath {
                account: path.account.clone(),
                container: loc.clone(),
                object: format!("{}{}", version_prefix(&path.object), Timestamp::now()),
            };
            store_delete_marker(p, &marker).await?;
            object::delete(p, path).await
        }
        Some((Mode::Stack, loc)) => pop(p, path, &loc).await,
    }
}

/// A stack-mode DELETE (Swift's `handle_obj_versions_delete_pop`): the newest archived
/// version replaces the object and leaves the archive. When the newest is a delete marker
/// (left by history mode), the object stays deleted: if it exists it is deleted; if not,
/// the version before the marker (unless that is a marker too) is restored; either way
/// the marker goes. Without the archive container there is nothing to restore, and the
/// object is simply deleted, as in Swift.
async fn pop(p: &Proxy, path: &ObjPath, loc: &str) -> SwiftResult<Response> {
    if p.require_container(&path.account, loc).await.is_err() {
        return object::delete(p, path).await;
    }
    let q = ListQuery {
        prefix: version_prefix(&path.object),
        limit: crate::ops::listing::LISTING_LIMIT,
        reverse: true,
        ..Default::default()
    };
    let archived = |name: String| ObjPath {
        account: path.account.clone(),
        container: loc.to_string(),
        object: name,
    };
    let mut versions = list(p, &path.account, loc, &q).await?.into_iter();
    while let Some(newest) = versions.next() {
        if newest.content_type != DELETE_MARKER {
            let old = archived(newest.name);
            // Gone since the listing: try the next one.
            let Some(found) = current(p, &old).await? else {
                continue;
            };
            put_found(p, found, path).await?;
            object::delete(p, &old).await?;
            return Ok(SwiftError::new(StatusCode::NO_CONTENT, "").into_response());
        }
        if current(p, path).await?.is_some() {
            // Back to the delete marker's state.
            return object::delete(p, path).await;
        }
        for older in versions.by_ref() {
            if older.content_type == DELETE_MARKER {
                break;
            }
            let old = archived(older.name);
            let Some(found) = current(p, &old).await? else {
                continue;
            };
            put_found(p, found, path).await?;
            object::delete(p, &old).await?;
            break;
        }
        return object::delete(p, &archived(newest.name)).await;
    }
    object::delete(p, path).await
}
