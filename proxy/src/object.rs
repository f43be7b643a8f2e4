//! Object requests: PUT (plain, a symlink with `X-Symlink-Target`, or a copy with
//! `X-Copy-From`), COPY and POST. GET, HEAD
//! and DELETE are answered by [`crate::large`] and [`crate::ops::versions`], which know
//! large objects and versioned containers; every replicated read and write is in
//! [`crate::ops`].

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use stratus_core::timestamp::Timestamp;
use stratus_proto::storage as pb;

use crate::acl::Identity;
use crate::error::{
    bad_request, not_found, precondition_failed, unavailable, SwiftError, SwiftResult,
};
use crate::headers::{self, http_date, hv};
use crate::names::{decode, MAX_OBJECT_NAME};
use crate::ops::fetch::fetch;
use crate::ops::link::{self, is_symlink, Link, LINK_TYPE};
use crate::ops::manifest::{is_manifest, is_manifest_meta};
use crate::ops::object::{
    body_error, delete_at, has_body, meta_items, ByteStream, ObjPath, STORED_HEADERS,
};
use crate::ops::object_versioning::store_object;
use crate::ops::quota;
use crate::ops::segments::assembled;
use crate::ops::store::{client_put_header, MAX_FILE_SIZE};
use crate::ops::symlink::{check_static, follow, Reader};
use crate::proxy::Proxy;

/// PUT (plain, or a copy with `X-Copy-From`).
pub async fn put(
    p: &Arc<Proxy>,
    who: &Identity,
    path: &ObjPath,
    h: &HeaderMap,
    body: Body,
    as_stored: bool,
    link_itself: bool,
) -> SwiftResult<Response> {
    if let Some(src) = hv(h, "x-copy-from") {
        let (c, o) = parse_copy_path(src)?;
        // `X-Copy-From-Account` reads from another account, with the requester's rights
        // there (judged anew: owning this account says nothing about that one).
        let (account, src_who) = match copy_account(h, "x-copy-from-account")? {
            Some(a) if a != path.account => {
                let w = p.auth.identify(h, &a)?;
                (a, w)
            }
            _ => (path.account.clone(), who.clone()),
        };
        p.access(&src_who, true, &account, Some(&c), true, h)
            .await?;
        let src = ObjPath {
            account,
            container: c,
            object: o,
        };
        let to = CopyTo { path, who };
        return copy(p, &src_who, &src, to, h, as_stored, link_itself).await;
    }
    p.require_container(&path.account, &path.container).await?;
    if h.contains_key("x-symlink-target") {
        return put_link(p, who, path, h, body).await;
    }
    if let Some(m) = hv(h, "x-object-manifest") {
        let valid = decode(m)
            .ok()
            .and_then(|m| m.split_once('/').map(|(c, _)| !c.is_empty()))
            .unwrap_or(false);
        if !valid {
            return Err(bad_request(
                "X-Object-Manifest must be in the format container/prefix",
            ));
        }
    }
    let content_length: Option<u64> = match hv(h, "content-length") {
        Some(v) => Some(
            v.trim()
                .parse()
                .map_err(|_| bad_request("Invalid Content-Length"))?,
        ),
        None => None,
    };
    let te = hv(h, "transfer-encoding");
    if te.is_some_and(|v| !v.trim().eq_ignore_ascii_case("chunked")) {
        // Only plain chunked framing, as Swift: `gzip,chunked` and the like are refused.
        return Err(SwiftError::new(
            StatusCode::NOT_IMPLEMENTED,
            "<html><h1>Not Implemented</h1><p>The requested method is not implemented by this server.</p></html>",
        ));
    }
    let chunked = te.is_some();
    if content_length.is_none() && !chunked {
        return Err(SwiftError::new(
            StatusCode::LENGTH_REQUIRED,
            "<html><h1>Length Required</h1><p>Length Required</p></html>",
        ));
    }
    if content_length.is_some_and(|l| l > MAX_FILE_SIZE) {
        return Err(SwiftError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Your request is too large.",
        ));
    }
    check_if_none_match(p, path, h).await?;
    let meta = headers::metadata(h, "object", STORED_HEADERS)?;
    let mut header = client_put_header(h, meta, if chunked { None } else { content_length })?;
    // As Swift: no Content-Type (or X-Detect-Content-Type: true) takes the type the
    // name's extension suggests.
    let detect = hv(h, "x-detect-content-type").is_some_and(headers::truthy);
    if detect || hv(h, "content-type").is_none_or(|v| v.trim().is_empty()) {
        header.content_type = headers::guess_type(&path.object)
            .unwrap_or("application/octet-stream")
            .to_string();
    }
    let left = quota::check_put(p, path, content_length.unwrap_or(0)).await?;
    let stream: ByteStream = Box::pin(body.into_data_stream().map(|r| r.map_err(body_error)));
    // A chunked body is checked against the quota as it arrives.
    let stream = quota::cap(stream, left);
    let expect = hv(h, "etag").map(str::to_string);
    Ok(store_object(p, path, header, stream, expect)
        .await?
        .created())
}

/// PUT with `X-Symlink-Target`: a symlink, as Swift's `symlink` makes one. The body must
/// be empty (400), the target well formed ([`link::requested`]); a static link's target
/// (`X-Symlink-Target-Etag`) must exist with that ETag and be readable by the requester
/// (409, or the reason it is not), and its size and, without a `Content-Type`, its content
/// type are kept. A dynamic link without one is `application/symlink`.
async fn put_link(
    p: &Proxy,
    who: &Identity,
    path: &ObjPath,
    h: &HeaderMap,
    body: Body,
) -> SwiftResult<Response> {
    if has_body(h, body).await? {
        return Err(bad_request("Symlink requests require a zero byte body"));
    }
    let Some(r) = link::requested(h, path)? else {
        return Err(bad_request("X-Symlink-Target required"));
    };
    let mut meta = headers::metadata(h, "object", STORED_HEADERS)?;
    meta.retain(|(k, _)| !is_manifest_meta(k));
    meta.extend(r.sysmeta());
    let mut content_type = hv(h, "content-type")
        .filter(|v| !v.trim().is_empty())
        .map(str::to_string);
    if let Some(etag) = &r.etag {
        let reader = Reader::Token {
            who: who.clone(),
            account: path.account.clone(),
        };
        let checked = check_static(p, &reader, &r, etag, h).await?;
        meta.extend(checked.sysmeta(etag));
        content_type.get_or_insert(checked.content_type);
    }
    check_if_none_match(p, path, h).await?;
    let mut header = client_put_header(h, meta, Some(0))?;
    header.content_type = content_type.unwrap_or_else(|| LINK_TYPE.to_string());
    quota::check_put(p, path, 0).await?;
    let empty = Box::pin(futures::stream::empty());
    Ok(store_object(p, path, header, empty, None).await?.created())
}

/// `container/object` of `X-Copy-From` or `Destination` (percent-encoded, leading `/` ok).
fn parse_copy_path(v: &str) -> SwiftResult<(String, String)> {
    let v = decode(v.trim().trim_start_matches('/'))?;
    match v.split_once('/') {
        Some((c, o)) if !c.is_empty() && !o.is_empty() && o.len() <= MAX_OBJECT_NAME => {
            // The same rules as a request path (`C/a/../b` is refused, as Swift does).
            crate::router::check_names(c, o)?;
            Ok((c.to_string(), o.to_string()))
        }
        _ => Err(precondition_failed(
            "X-Copy-From header must be of the form <container name>/<object name>",
        )),
    }
}

/// `If-None-Match` on a PUT: `*` refuses to overwrite (412); any other value is a 400.
pub async fn check_if_none_match(p: &Proxy, path: &ObjPath, h: &HeaderMap) -> SwiftResult<()> {
    match hv(h, "if-none-match") {
        None => Ok(()),
        Some(v) if v.trim() != "*" => Err(bad_request("If-None-Match only supports *")),
        Some(_) => match fetch(p, path, h, true).await {
            Ok(_) => Err(precondition_failed("Object exists")),
            Err(e) if e.status == StatusCode::NOT_FOUND => Ok(()),
            Err(e) => Err(e),
        },
    }
}

/// The account named by a copy header (`X-Copy-From-Account`, `Destination-Account`),
/// URL-decoded; 412 for one that cannot name an account.
fn copy_account(h: &HeaderMap, name: &str) -> SwiftResult<Option<String>> {
    let Some(v) = hv(h, name) else {
        return Ok(None);
    };
    let a = decode(v.trim())?;
    if a.is_empty() || a.contains('/') {
        return Err(precondition_failed(format!(
            "{name} must name an account (no slashes)"
        )));
    }
    Ok(Some(a))
}

/// Server-side copy of `src` to `dst`: the source streams straight into the new PUT.
///
/// A large object is copied assembled, as a plain object (its segments are read with the
/// requester's rights); with `?multipart-manifest=get` (`as_stored`), its manifest is copied.
/// A symlink is followed to what it leads to; with `?symlink=get` (`link_itself`) the link
/// is copied, pointing at its target's account if it named one or if the request names one
/// (`X-Symlink-Target-Account`), else at the same names in the destination's account.
pub async fn copy(
    p: &Arc<Proxy>,
    who: &Identity,
    src: &ObjPath,
    to: CopyTo<'_>,
    h: &HeaderMap,
    as_stored: bool,
    link_itself: bool,
) -> SwiftResult<Response> {
    let dst = to.path;
    // A Range on the copy request copies just that range of a plain object (as Swift);
    // several ranges are ignored (the copy is of the whole object).
    let mut source_h = HeaderMap::new();
    if let Some(r) = h
        .get(axum::http::header::RANGE)
        .filter(|_| crate::headers::range_spec(h).is_some())
    {
        source_h.insert(axum::http::header::RANGE, r.clone());
    }
    let (read_path, found, who) = if link_itself {
        (
            src.clone(),
            fetch(p, src, &source_h, false).await?,
            who.clone(),
        )
    } else {
        let reader = Reader::Token {
            who: who.clone(),
            account: src.account.clone(),
        };
        let f = follow(p, &reader, src, &source_h, false).await?;
        (f.path, f.found, f.who)
    };
    // The source first, then the destination, as Swift's copy middleware reads before it
    // writes: a missing or forbidden source answers for the copy whatever the destination.
    // Rights there come first: a container one may not write to is 403 whether it exists
    // or not.
    p.access(to.who, false, &dst.account, Some(&dst.container), true, h)
        .await?;
    p.require_container(&dst.account, &dst.container).await?;
    let m = found.meta.clone();
    let is_link = is_symlink(&m);
    let (size, body, assembled) = if as_stored && crate::ops::manifest::is_slo(&m) {
        // A manifest copied as it is: checked again where it lands, as Swift's copy of a
        // manifest is a manifest PUT there.
        let raw =
            crate::ops::segments::read_body(found, crate::ops::manifest::MAX_MANIFEST_SIZE).await?;
        crate::ops::slo_check::check_copied_manifest(p, to.who, &dst.account, &raw, h).await?;
        let body: ByteStream =
            Box::pin(futures::stream::once(
                async move { Ok(bytes::Bytes::from(raw)) },
            ));
        (m.size, Some(body), false)
    } else if as_stored || is_link || !is_manifest(&m) {
        let size = found.range.map_or(m.size, |r| r.end - r.start);
        (size, found.body, false)
    } else {
        match assembled(p, &who, &read_path, found, h).await? {
            Ok((size, body)) => (size, Some(body), true),
            Err(found) => (m.size, found.body, false),
        }
    };
    let fresh = hv(h, "x-fresh-metadata").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut meta: Vec<(String, String)> = m
        .meta
        .iter()
        .filter(|i| !(assembled && is_manifest_meta(&i.key)))
        // A link stays a link, fresh metadata or not.
        .filter(|i| !fresh || (is_link && i.key.starts_with("x-object-sysmeta-symlink-")))
        .map(|i| (i.key.clone(), i.value.clone()))
        .collect();
    if is_link {
        if let Some(a) = hv(h, "x-symlink-target-account") {
            let a = decode(a.trim())?;
            meta.retain(|(k, _)| k != link::TARGET_ACCOUNT);
            meta.push((link::TARGET_ACCOUNT.to_string(), link::quote(&a)));
        }
    }
    for (k, v) in headers::metadata(h, "object", STORED_HEADERS)? {
        meta.retain(|(x, _)| *x != k);
        meta.push((k, v));
    }
    let header = pb::PutHeader {
        target: None,
        ts: 0,
        content_type: hv(h, "content-type")
            .map(str::to_string)
            .unwrap_or(m.content_type.clone()),
        meta: meta_items(meta),
        delete_at: delete_at(h)?,
        content_length: Some(size),
    };
    let body = body.unwrap_or_else(|| Box::pin(futures::stream::empty()));
    quota::check_put(p, dst, size).await?;
    let mut r = store_object(p, dst, header, body, None).await?.created();
    let hs = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("{}/{}", src.container, src.object)) {
        hs.insert("x-copied-from", v);
    }
    if src.account != dst.account {
        if let Ok(v) = HeaderValue::from_str(&src.account) {
            hs.insert("x-copied-from-account", v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&http_date(m.meta_ts.max(m.ts))) {
        hs.insert("x-copied-from-last-modified", v);
    }
    Ok(r)
}

/// Where a copy goes, and who writes it there.
pub struct CopyTo<'a> {
    pub path: &'a ObjPath,
    pub who: &'a Identity,
}

/// COPY with a `Destination: container/object` header.
pub async fn copy_verb(
    p: &Arc<Proxy>,
    who: &Identity,
    src: &ObjPath,
    h: &HeaderMap,
    as_stored: bool,
    link_itself: bool,
) -> SwiftResult<Response> {
    let dest =
        hv(h, "destination").ok_or_else(|| precondition_failed("Destination header required"))?;
    let (c, o) = parse_copy_path(dest)?;
    // `Destination-Account` writes into another account, judged by the requester's rights
    // there.
    let (account, dst_who) = match copy_account(h, "destination-account")? {
        Some(a) if a != src.account => {
            let w = p.auth.identify(h, &a)?;
            (a, w)
        }
        _ => (src.account.clone(), who.clone()),
    };
    let dst = ObjPath {
        account,
        container: c,
        object: o,
    };
    let to = CopyTo {
        path: &dst,
        who: &dst_who,
    };
    copy(p, who, src, to, h, as_stored, link_itself).await
}

/// POST: replaces the object's metadata (and optionally content type and expiry). A
/// symlink takes the metadata as any object does, and the answer is Swift's 307 naming its
/// target in `Location` (a link's target cannot be changed by a POST: 400).
pub async fn post(p: &Proxy, path: &ObjPath, h: &HeaderMap) -> SwiftResult<Response> {
    if h.contains_key("x-symlink-target") {
        return Err(bad_request(
            "A PUT request is required to set a symlink target",
        ));
    }
    let place = path.place(p).await?;
    let ts = Timestamp::now().0;
    let meta = meta_items(headers::metadata(h, "object", STORED_HEADERS)?);
    let delete_at = delete_at(h)?;
    let content_type = hv(h, "content-type").map(str::to_string);
    let target = path.target(&place);
    let results = p
        .cluster
        .write_all(&place, |dev, i| {
            let mut t = target.clone();
            t.device = dev.name.clone();
            t.replica_index = i;
            let req = pb::PostRequest {
                target: Some(t),
                ts,
                content_type: content_type.clone(),
                meta: meta.clone(),
                delete_at,
            };
            async move {
                let mut c = p.cluster.peers.object(&dev.node)?;
                Ok(c.post(req).await?.into_inner())
            }
        })
        .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let missing = results
        .iter()
        .filter(|r| matches!(r, Err(s) if s.code() == tonic::Code::NotFound))
        .count();
    if ok >= place.quorum() {
        let link = results.iter().flatten().find_map(|r| {
            let m = pb::ObjectMeta {
                meta: r.sysmeta.clone(),
                ..Default::default()
            };
            Link::of(&m, &path.account)
        });
        if let Some(l) = link {
            let mut e = SwiftError::new(
                StatusCode::TEMPORARY_REDIRECT,
                "The requested POST was applied to a symlink. POST directly to the target to apply requested metadata.",
            )
            .with_header("location", l.location);
            if let Some(etag) = l.etag {
                e = e.with_header("x-symlink-target-etag", etag);
            }
            return Err(e);
        }
        return Ok(SwiftError::new(StatusCode::ACCEPTED, "").into_response());
    }
    if missing > 0 && missing + ok == results.len() {
        return Err(not_found());
    }
    Err(unavailable("object POST reached no quorum"))
}

/// `X-If-Delete-At` on a DELETE: the object must be set to expire at exactly that time
/// (the expirer's guard against deleting an object whose expiry changed). Not an integer
/// → 400; another time, or no object → 412, as Swift answers.
pub async fn check_if_delete_at(p: &Proxy, path: &ObjPath, h: &HeaderMap) -> SwiftResult<()> {
    let Some(v) = hv(h, "x-if-delete-at") else {
        return Ok(());
    };
    let at: u64 = v
        .trim()
        .parse()
        .map_err(|_| bad_request("Bad X-If-Delete-At header value"))?;
    let current = match fetch(p, path, &HeaderMap::new(), true).await {
        Ok(found) => found.meta.delete_at,
        Err(e) if e.status == StatusCode::NOT_FOUND => 0,
        Err(e) => return Err(e),
    };
    if current != at {
        return Err(precondition_failed(
            "<html><h1>Precondition Failed</h1><p>A precondition for this request was not met.</p></html>",
        ));
    }
    Ok(())
}
