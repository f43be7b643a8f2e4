//! Object requests in versioned containers (Swift's `object_versioning`; what is stored is
//! described in [`crate::ops::object_versioning`]).
//!
//! - GET and HEAD read through the container's versions link; the answer names the
//!   version (`X-Object-Version-Id`, `null` for an unversioned object) and shows where it
//!   came from as `<object>?version-id=<id>` (`Content-Location`, and `X-Symlink-Target`
//!   with `?symlink=get`).
//! - POST updates the link and the version it points to (so no new version is made).
//! - DELETE, with versioning enabled, leaves a delete marker.
//! - `?version-id=<id>` addresses one version: GET, HEAD and COPY read it (a delete marker
//!   is 404), DELETE removes it, a zero-byte PUT makes it current again; POST is 400.
//!   `version-id=null` is the container's own, unversioned object.
//!
//! Unlike the other handlers this one wraps others ([`crate::large`] reads, [`crate::object`]
//! POST and COPY): versioning is a layer over them, as Swift's middleware is.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;

use crate::acl::Identity;
use crate::error::{bad_request, not_found, SwiftError, SwiftResult};
use crate::headers;
use crate::names::{decode_param, Query};
use crate::ops::object::{delete_at, has_body, meta_items, ObjPath, STORED_HEADERS};
use crate::ops::object_versioning::{
    self as ov, is_marker, marker_not_found, parse_version_id, version_path, Versioning,
};
use crate::ops::symlink::Reader;
use crate::ops::versions;
use crate::proxy::Proxy;
use crate::{large, object};

/// GET or HEAD of an object (no `version-id`).
pub async fn get(
    p: &Arc<Proxy>,
    reader: &Reader,
    path: &ObjPath,
    q: &Query,
    h: &HeaderMap,
    head: bool,
) -> SwiftResult<Response> {
    let v = ov::state(p, &path.account, &path.container).await?;
    let r = large::get(p, reader, path, q, h, head).await;
    let Some(v) = v else {
        return r;
    };
    match r {
        Ok(mut r) => {
            show_version(r.headers_mut(), path, &v);
            Ok(r)
        }
        Err(mut e) => {
            let mut hs = HeaderMap::new();
            for (k, val) in &e.headers {
                if let Ok(val) = HeaderValue::from_str(val) {
                    hs.insert(*k, val);
                }
            }
            show_version(&mut hs, path, &v);
            for k in ["x-object-version-id", "content-location"] {
                if let Some(val) = hs.get(k).and_then(|x| x.to_str().ok()) {
                    let val = val.to_string();
                    e.headers.retain(|(n, _)| *n != k);
                    e.headers.push((k, val));
                }
            }
            Err(e)
        }
    }
}

/// The version an answer read: `X-Object-Version-Id` and the client's view of where it
/// came from.
fn show_version(hs: &mut HeaderMap, path: &ObjPath, v: &Versioning) {
    let mut id = "null".to_string();
    let loc = hs
        .get("content-location")
        .and_then(|x| x.to_str().ok())
        .and_then(|l| ov::read_location(path, v, l));
    if let Some((vid, loc)) = loc {
        if let Ok(x) = HeaderValue::from_str(&loc) {
            hs.insert("content-location", x);
        }
        id = vid;
    }
    let target = hs
        .get("x-symlink-target")
        .and_then(|x| x.to_str().ok())
        .and_then(|t| ov::link_target(path, v, t));
    if let Some((vid, t)) = target {
        if let Ok(x) = HeaderValue::from_str(&t) {
            hs.insert("x-symlink-target", x);
        }
        id = vid;
    }
    if let Ok(x) = HeaderValue::from_str(&id) {
        hs.insert("x-object-version-id", x);
    }
}

/// POST of an object: to a versions link, it also updates the version the link points to
/// (without expiry: that is the link's alone), and answers as that does.
pub async fn post(p: &Proxy, path: &ObjPath, h: &HeaderMap) -> SwiftResult<Response> {
    let r = object::post(p, path, h).await;
    let Err(e) = r else {
        return r;
    };
    if e.status != StatusCode::TEMPORARY_REDIRECT {
        return Err(e);
    }
    let Some(v) = ov::state(p, &path.account, &path.container).await? else {
        return Err(e);
    };
    let location = e
        .headers
        .iter()
        .find(|(k, _)| *k == "location")
        .and_then(|(_, l)| decode_param(l).ok());
    let target = location.as_deref().and_then(|l| {
        let rest = l.strip_prefix("/v1/")?;
        let (a, rest) = rest.split_once('/')?;
        let (c, o) = rest.split_once('/')?;
        (a == path.account && c == v.container).then(|| ObjPath {
            account: a.to_string(),
            container: c.to_string(),
            object: o.to_string(),
        })
    });
    let Some(target) = target else {
        return Err(e);
    };
    let mut h = h.clone();
    h.remove("x-delete-at");
    h.remove("x-delete-after");
    object::post(p, &target, &h).await
}

/// DELETE of an object (no `version-id`): a delete marker with versioning enabled, else
/// as the legacy versioning (if any) has it.
pub async fn delete(p: &Proxy, path: &ObjPath) -> SwiftResult<Response> {
    ov::delete_object(p, path).await
}

/// A request with `?version-id=<version>`.
#[allow(clippy::too_many_arguments)]
pub async fn with_version(
    p: &Arc<Proxy>,
    who: &Identity,
    reader: &Reader,
    path: &ObjPath,
    q: &Query,
    h: &HeaderMap,
    m: &Method,
    body: Body,
    version: &str,
) -> SwiftResult<Response> {
    if *m == Method::POST {
        return Err(bad_request("POST to a specific version is not allowed"));
    }
    let v = ov::state(p, &path.account, &path.container).await?;
    let vpath = version_path(path, v.as_ref(), version)?;
    let head = *m == Method::HEAD;
    // A version is the account's, not the container's: its container's ACLs grant the
    // current object only (a temp URL grants its object's versions too, as Swift's does).
    if let (Some(v), Some(_), Reader::Token { who, .. }) = (&v, &vpath, reader) {
        let read = matches!(m.as_str(), "GET" | "HEAD" | "COPY");
        p.access(who, read, &path.account, Some(&v.container), true, h)
            .await?;
    }
    let as_stored = q.get("multipart-manifest") == Some("get");
    let link_itself = q.get("symlink") == Some("get");
    match (m.as_str(), vpath, v) {
        ("DELETE", None, _) => {
            object::check_if_delete_at(p, path, h).await?;
            versions::delete(p, path).await
        }
        ("DELETE", Some(vp), Some(v)) if q.get("multipart-manifest") == Some("delete") => {
            // An SLO version with its segments, reported as Swift's SLO reports it.
            let ts = parse_version_id(version)
                .ok_or_else(|| bad_request("Invalid version parameter"))?;
            let r = large::delete_slo(p, who, &vp, h).await?;
            ov::unlink(p, path, &v, ts).await?;
            Ok(r)
        }
        ("DELETE", Some(_), Some(v)) => {
            let ts = parse_version_id(version)
                .ok_or_else(|| bad_request("Invalid version parameter"))?;
            ov::delete_version(p, path, &v, ts).await
        }
        ("PUT", None, _) => Err(bad_request("Invalid version parameter")),
        ("PUT", Some(_), Some(v)) => {
            require_empty(h, body).await?;
            let ts = parse_version_id(version)
                .ok_or_else(|| bad_request("Invalid version parameter"))?;
            let meta = meta_items(headers::metadata(h, "object", STORED_HEADERS)?);
            ov::restore(p, path, &v, ts, meta, delete_at(h)?).await
        }
        ("GET" | "HEAD", None, _) => {
            let mut r = large::get(p, reader, path, q, h, head).await?;
            let through_link = r
                .headers()
                .get("content-location")
                .and_then(|l| l.to_str().ok())
                .and_then(|l| decode_param(l).ok())
                .is_some_and(|l| l.contains("\0versions\0"));
            if through_link {
                // The current object is a version, not the unversioned one asked for.
                return Err(not_found());
            }
            r.headers_mut()
                .insert("x-object-version-id", HeaderValue::from_static("null"));
            Ok(r)
        }
        ("GET" | "HEAD", Some(vp), Some(_)) => {
            let mut r = large::get(p, reader, &vp, q, h, head).await?;
            if is_marker(&r) {
                return Err(marker_not_found(version));
            }
            if let Ok(x) = HeaderValue::from_str(version) {
                r.headers_mut().insert("x-object-version-id", x);
            }
            Ok(r)
        }
        ("COPY", vp, _) => {
            let src = vp.unwrap_or_else(|| path.clone());
            object::copy_verb(p, who, &src, h, as_stored, link_itself).await
        }
        _ => Err(SwiftError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed",
        )),
    }
}

/// 400 unless a restoring PUT's body is empty.
async fn require_empty(h: &HeaderMap, body: Body) -> SwiftResult<()> {
    if has_body(h, body).await? {
        return Err(bad_request(
            "PUT version-id requests require a zero byte body",
        ));
    }
    Ok(())
}
