//! Large objects: dynamic (DLO, `X-Object-Manifest: container/prefix`) and static (SLO,
//! `PUT ?multipart-manifest=put` with a JSON list of segments), as Swift's `dlo` and `slo`
//! middlewares serve them.
//!
//! - A **DLO** is a manifest object whose GET/HEAD concatenates, in name order, every object
//!   of `container` whose name starts with `prefix`, read at request time. Its ETag is the
//!   quoted MD5 of the segments' ETags concatenated.
//! - An **SLO** manifest is checked when it is written: every segment must exist with the
//!   ETag and size given (when given), at least 1 byte, ≤ 1,000 segments, each optionally a
//!   byte `range` of its object, and a segment may itself be an SLO (nested). It is stored
//!   as JSON (`name`, `bytes`, `hash`, `content_type`, `last_modified`, `range`, `sub_slo`)
//!   with `X-Static-Large-Object: True` and its total size and ETag as system metadata.
//!   Its ETag is the quoted MD5 of the segments' ETags (`etag:range;` for a ranged one).
//!
//! GET streams the segments one after another (read in [`crate::ops::segments`]); a
//! `Range` is mapped onto the segments it covers. `?multipart-manifest=get` returns the
//! manifest itself; `?multipart-manifest=delete` deletes an SLO's segments (nested ones
//! too) and then it. Segments are read with the requester's rights: reading a manifest
//! grants nothing on the containers its segments live in.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use md5::{Digest, Md5};
use serde::Deserialize;

use crate::acl::Identity;
use crate::error::{bad_request, conflict, status_line, SwiftError, SwiftResult};
use crate::headers::{self, conditions, hv, Condition};
use crate::names::Query;
use crate::ops::fetch::{self, fetch};
use crate::ops::link::{self, is_symlink};
use crate::ops::manifest::{
    decode_data, entry_path, is_slo, parse_entries, segment_range, Entry, DLO_HEADER,
    MAX_MANIFEST_SIZE, SLO_ETAG, SLO_FLAG, SLO_SIZE,
};
use crate::ops::object::{self, body_error, ByteStream, ObjPath, STORED_HEADERS};
use crate::ops::object_versioning::store_object;
use crate::ops::quota;
use crate::ops::report::{render, Report};
use crate::ops::segments::{first_piece, read_body, resolve, segments_of, stream_pieces, Large};
use crate::ops::slo_check::{check_all, Wanted};
use crate::ops::store::client_put_header;
use crate::ops::symlink::{follow, located, Followed, Reader};
use crate::proxy::Proxy;

/// Most segments in one SLO manifest (Swift's `max_manifest_segments`).
pub const MAX_SEGMENTS: usize = 1000;

pub use crate::ops::slo_check::MIN_SEGMENT_SIZE;

/// The SLO ETag of entries.
fn slo_etag(entries: &[Entry]) -> String {
    let mut md5 = Md5::new();
    for e in entries {
        match &e.range {
            Some(r) => md5.update(format!("{}:{r};", e.hash)),
            None => md5.update(&e.hash),
        }
    }
    hex::encode(md5.finalize())
}

/// Answers a GET/HEAD of large object `l` at `path`.
async fn respond(
    p: &Arc<Proxy>,
    who: &Identity,
    path: &ObjPath,
    l: Large,
    head: bool,
    h: &HeaderMap,
) -> SwiftResult<Response> {
    let (manifest, etag, size) = (&l.manifest, l.etag.as_str(), l.size);
    // A DLO HEAD lists its segments for the size and ETag, but reads none.
    let segments = l.segments.filter(|_| !head);
    let ts = manifest.meta_ts.max(manifest.ts);
    let quoted = format!("\"{etag}\"");
    let mut r = Response::new(Body::empty());
    fetch::object_headers(&mut r, manifest);
    if let Ok(v) = HeaderValue::from_str(&quoted) {
        r.headers_mut().insert("etag", v);
    }
    // As Swift's SLO: the manifest's own ETag, which a static link to the SLO names.
    if crate::ops::manifest::is_slo(manifest) {
        if let Ok(v) = HeaderValue::from_str(&manifest.etag) {
            r.headers_mut().insert("x-manifest-etag", v);
        }
    }
    if conditions(h, etag, ts)? == Condition::NotModified {
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r.headers_mut().remove("content-type");
        return Ok(r);
    }
    // Several ranges of an SLO are read as their span (only the segments it reaches) and
    // cut into a `multipart/byteranges` body, as for a plain object; a DLO takes one range
    // only and answers several with the whole object, as Swift's DLOs do.
    let specs = match segments {
        Some(_) if crate::ops::manifest::is_slo(manifest) => headers::range_specs(h),
        Some(_) => headers::range_spec(h).into_iter().collect(),
        None => Vec::new(),
    };
    let mut parts = None;
    let range = match specs.as_slice() {
        [] => None,
        [one] => Some(one.resolve(size)?),
        _ => match headers::resolve_ranges(&specs, size)? {
            Some(ps) if ps.len() == 1 => Some(ps[0]),
            Some(ps) => {
                let m = headers::Multipart::new(ps, &manifest.content_type, size);
                let span = m.span();
                parts = Some(m);
                Some(span)
            }
            None => None,
        },
    };
    let (lo, hi) = range.map_or((0, size), |b| (b.start, b.end));
    let len = parts.as_ref().map_or(hi - lo, |m| m.body_len());
    r.headers_mut()
        .insert("content-length", HeaderValue::from(len));
    if let Some(m) = &parts {
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&m.content_type()) {
            r.headers_mut().insert("content-type", v);
        }
    } else if let Some(b) = range {
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", b.start, b.end - 1)) {
            r.headers_mut().insert("content-range", v);
        }
    }
    let Some(segments) = segments else {
        return Ok(r);
    };
    // Only the segments (and nested manifests) the range reaches are ever fetched.
    let mut src = segments.within(p, who, &path.account, h, lo, hi);
    let Some(first) = first_piece(p, &mut src).await? else {
        return Ok(r);
    };
    let mut body = stream_pieces(p.clone(), first, src);
    if let Some(m) = parts {
        body = fetch::multipart_body(body, lo, m);
    }
    *r.body_mut() = Body::from_stream(body.map(|x| x.map_err(|e| std::io::Error::other(e.body))));
    Ok(r)
}

/// GET or HEAD of an object: symlinks are followed (unless `?symlink=get` asks for the
/// link itself), large objects are assembled from their segments. An answer reached
/// through a link names its target in `Content-Location`, errors included.
pub async fn get(
    p: &Arc<Proxy>,
    reader: &Reader,
    path: &ObjPath,
    q: &Query,
    h: &HeaderMap,
    head: bool,
) -> SwiftResult<Response> {
    let as_stored = q.get("multipart-manifest") == Some("get");
    let raw = as_stored && !head && q.get("format") == Some("raw");
    let link_itself = q.get("symlink") == Some("get");
    let none = HeaderMap::new();
    let fetch_h = if raw { &none } else { h };
    // A plain object's GET streams at once; a manifest is read whole first.
    let f = if link_itself {
        Followed {
            path: path.clone(),
            found: fetch(p, path, fetch_h, head).await?,
            location: None,
            who: reader.segments_who(),
        }
    } else {
        follow(p, reader, path, fetch_h, head).await?
    };
    let location = f.location.clone();
    match serve(p, f, h, head, as_stored, raw).await {
        Ok(mut r) => {
            if let Some(v) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
                r.headers_mut().insert("content-location", v);
            }
            Ok(r)
        }
        Err(e) => Err(located(e, &location)),
    }
}

/// The answer to a GET or HEAD of what `f` found: a link as itself (with its target as
/// `X-Symlink-*` headers), a manifest as stored (`multipart-manifest=get`), or the object
/// it stands for.
async fn serve(
    p: &Arc<Proxy>,
    f: Followed,
    h: &HeaderMap,
    head: bool,
    as_stored: bool,
    raw: bool,
) -> SwiftResult<Response> {
    let Followed {
        path, found, who, ..
    } = f;
    if is_symlink(&found.meta) {
        let links = link::client_headers(&found.meta);
        let mut r = fetch::respond(found, h)?;
        for (k, v) in links {
            if let Ok(v) = HeaderValue::from_str(&v) {
                r.headers_mut().insert(k, v);
            }
        }
        return Ok(r);
    }
    if raw {
        if !is_slo(&found.meta) {
            return fetch::respond(found, h);
        }
        return raw_manifest(found).await;
    }
    if as_stored {
        let mut r = fetch::respond(found, h)?;
        if r.headers().contains_key(SLO_FLAG) {
            r.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
        }
        return Ok(r);
    }
    match resolve(p, &who, &path, found, h, head).await? {
        Ok(l) => respond(p, &who, &path, l, head, h).await,
        Err(found) => fetch::respond(found, h),
    }
}

/// `?multipart-manifest=get&format=raw`: the manifest as a client would PUT it again
/// (`path`, `etag`, `size_bytes`, `range`; data segments as stored), with the stored
/// object's content type, and the ETag and length of that body.
async fn raw_manifest(found: fetch::Found) -> SwiftResult<Response> {
    let meta = found.meta.clone();
    let entries = parse_entries(&read_body(found, MAX_MANIFEST_SIZE).await?)
        .map_err(|_| conflict("stored manifest is not valid JSON"))?;
    let raw: Vec<serde_json::Value> = entries
        .into_iter()
        .map(|e| match e.data {
            Some(d) => serde_json::json!({ "data": d }),
            None => {
                let mut v = serde_json::json!({
                    "etag": e.hash, "path": e.name, "size_bytes": e.bytes,
                });
                if let Some(r) = e.range {
                    v["range"] = r.into();
                }
                v
            }
        })
        .collect();
    let body = serde_json::to_vec(&raw).expect("values serialize");
    let mut r = Response::new(Body::from(body.clone()));
    fetch::object_headers(&mut r, &meta);
    let hs = r.headers_mut();
    hs.insert("content-length", HeaderValue::from(body.len()));
    if let Ok(v) = HeaderValue::from_str(&hex::encode(Md5::digest(&body))) {
        hs.insert("etag", v);
    }
    Ok(r)
}

/// One manifest entry as a client sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Given {
    path: Option<serde_json::Value>,
    #[serde(default)]
    etag: Option<serde_json::Value>,
    #[serde(default)]
    size_bytes: Option<serde_json::Value>,
    #[serde(default)]
    range: Option<serde_json::Value>,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

/// Parses a manifest body, listing every malformed entry as Swift does (400).
fn parse_manifest(account: &str, body: &[u8]) -> SwiftResult<Vec<Wanted>> {
    let items: Vec<serde_json::Value> =
        serde_json::from_slice(body).map_err(|_| bad_request("Manifest must be valid JSON.\n"))?;
    // Inline data segments do not count against the limit (as in Swift).
    if items.iter().filter(|v| v.get("data").is_none()).count() > MAX_SEGMENTS {
        return Err(SwiftError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Number of segments must be <= {MAX_SEGMENTS}\n"),
        ));
    }
    if items.is_empty() {
        return Err(bad_request("Manifest must have at least one segment.\n"));
    }
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let g: Given = match serde_json::from_value(item) {
            Ok(g) => g,
            Err(_) => {
                errors.push(format!(
                    "Index {i}: extraneous keys or not a JSON object (allowed: path, etag, size_bytes, range; or data alone)"
                ));
                continue;
            }
        };
        if let Some(d) = &g.data {
            if g.path.is_some() || g.etag.is_some() || g.size_bytes.is_some() || g.range.is_some() {
                errors.push(format!(
                    "Index {i}: a data segment has no other keys (path, etag, size_bytes, range)"
                ));
                continue;
            }
            match d.as_str().and_then(decode_data) {
                None => errors.push(format!("Index {i}: data must be valid base64")),
                Some(raw) if raw.is_empty() => errors.push(format!(
                    "Index {i}: too small; each segment must be at least 1 byte."
                )),
                Some(raw) => out.push(Wanted {
                    name: String::new(),
                    shown: String::new(),
                    path: ObjPath {
                        account: account.to_string(),
                        container: String::new(),
                        object: String::new(),
                    },
                    etag: None,
                    size: None,
                    range: None,
                    data: Some(raw),
                }),
            }
            continue;
        }
        let name = g.path.as_ref().and_then(|v| v.as_str()).unwrap_or("");
        let Some(path) = entry_path(account, name) else {
            errors.push(format!(
                "Index {i}: \"path\" must be a string of the form \"container/object\""
            ));
            continue;
        };
        let etag = match g.etag {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.trim_matches('"').to_string()),
            Some(_) => {
                errors.push(format!("Index {i}: \"etag\" must be a string or null"));
                continue;
            }
        };
        let size = match g.size_bytes {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => match v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            {
                Some(n) => Some(n),
                None => {
                    errors.push(format!("Index {i}: \"size_bytes\" must be an integer"));
                    continue;
                }
            },
        };
        let range = match g.range {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(r)) if segment_range(&r, u64::MAX).is_some() => Some(r),
            Some(_) => {
                errors.push(format!("Index {i}: invalid range"));
                continue;
            }
        };
        out.push(Wanted {
            name: format!("/{}/{}", path.container, path.object),
            // Reports name a segment as the manifest did, quoted (as Swift's do).
            shown: link::quote(name),
            path,
            etag,
            size,
            range,
            data: None,
        });
    }
    if errors.is_empty() && out.iter().all(|w| w.data.is_some()) {
        errors.push("Inline data segments require at least one object-backed segment.".into());
    }
    if !errors.is_empty() {
        return Err(bad_request(errors.join("\n") + "\n"));
    }
    Ok(out)
}

/// The body of Swift's plain 400 (its `RESPONSE_REASONS`), as a heartbeat report gives it.
const BAD_REQUEST_TEXT: &str = "Bad Request\nThe server could not comply with the request \
since it is either malformed or otherwise incorrect.";

/// The same for Swift's plain 422.
const UNPROCESSABLE_TEXT: &str =
    "Unprocessable Entity\nUnable to process the contained instructions";

/// How often a `heartbeat=on` manifest PUT sends a space while it checks segments
/// (Swift's `yield_frequency`, in seconds).
pub const YIELD_FREQUENCY: u64 = 10;

/// PUT of an SLO manifest (`?multipart-manifest=put`): every segment is checked (it exists,
/// its size and ETag match what the manifest says), then the manifest is stored in Swift's
/// stored form. With `heartbeat=on` (for manifests whose segments take long to check) the
/// answer is `202 Accepted` at once, a space every [`YIELD_FREQUENCY`] seconds while the
/// segments are checked, then a blank line and the outcome as a report (Swift's
/// `Response Status`, `Etag`, `Last Modified`, `Errors`), as Swift's `slo` does.
pub async fn put_slo(
    p: &Arc<Proxy>,
    who: &Identity,
    path: &ObjPath,
    h: &HeaderMap,
    body: Body,
    heartbeat: bool,
) -> SwiftResult<Response> {
    p.require_container(&path.account, &path.container).await?;
    crate::object::check_if_none_match(p, path, h).await?;
    let mut raw = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(piece) = stream.next().await {
        raw.extend_from_slice(&piece.map_err(body_error)?);
        if raw.len() > MAX_MANIFEST_SIZE {
            return Err(SwiftError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Manifest File > {MAX_MANIFEST_SIZE} bytes"),
            ));
        }
    }
    let wanted = parse_manifest(&path.account, &raw)?;
    // As Swift: a manifest naming itself would make its object a loop.
    let loops: Vec<String> = wanted
        .iter()
        .enumerate()
        .filter(|(_, w)| {
            w.data.is_none() && w.path.container == path.container && w.path.object == path.object
        })
        .map(|(i, _)| format!("Index {i}: manifest must not include itself as a segment"))
        .collect();
    if !loops.is_empty() {
        return Err(bad_request(loops.join("\n") + "\n"));
    }
    if !heartbeat {
        return match store_manifest(p, who, path, h, wanted).await {
            Manifest::Stored(r) => Ok(r),
            Manifest::Problems(errors) => {
                let (text, ctype) = crate::ops::report::body(Vec::new(), &errors, h, "upload");
                Err(bad_request(text).with_header("content-type", ctype.into()))
            }
            Manifest::Failed(e) => Err(e),
        };
    }
    let (p, who, path, h) = (p.clone(), who.clone(), path.clone(), h.clone());
    let ctype = crate::ops::report::body(Vec::new(), &[], &h, "upload").1;
    let outcome = tokio::spawn(async move {
        let report = match store_manifest(&p, &who, &path, &h, wanted).await {
            Manifest::Stored(r) => {
                let hdr = |n: &str| hv(r.headers(), n).unwrap_or_default().to_string();
                let fields = vec![
                    ("Response Status", status_line(r.status()).into()),
                    ("Response Body", "".into()),
                    ("Etag", hdr("etag").into()),
                    ("Last Modified", hdr("last-modified").into()),
                ];
                crate::ops::report::body(fields, &[], &h, "upload")
            }
            Manifest::Problems(errors) => {
                let fields = vec![
                    (
                        "Response Status",
                        status_line(StatusCode::BAD_REQUEST).into(),
                    ),
                    ("Response Body", BAD_REQUEST_TEXT.into()),
                ];
                crate::ops::report::body(fields, &errors, &h, "upload")
            }
            Manifest::Failed(e) => {
                // Swift's own refusals here carry no body, so its report gives the status's
                // standard text.
                let text = match e.status {
                    StatusCode::UNPROCESSABLE_ENTITY => UNPROCESSABLE_TEXT.to_string(),
                    _ if e.body.is_empty() => e.status.canonical_reason().unwrap_or("").to_string(),
                    _ => e.body.clone(),
                };
                let fields = vec![
                    ("Response Status", status_line(e.status).into()),
                    ("Response Body", text.into()),
                ];
                crate::ops::report::body(fields, &[], &h, "upload")
            }
        };
        format!("\r\n\r\n{}", report.0)
    });
    // A space at once (the answer starts), one per period while the work goes on, then
    // the report.
    let beats = futures::stream::unfold(Some(outcome), |state| async move {
        let mut outcome = state?;
        tokio::select! {
            r = &mut outcome => {
                let text = r.unwrap_or_else(|_| "\r\n\r\nResponse Status: 500 Internal Error\n".into());
                Some((Ok::<_, std::io::Error>(Bytes::from(text)), None))
            }
            _ = tokio::time::sleep(Duration::from_secs(YIELD_FREQUENCY)) => {
                Some((Ok(Bytes::from_static(b" ")), Some(outcome)))
            }
        }
    });
    let first = futures::stream::once(async { Ok(Bytes::from_static(b" ")) });
    let mut r = (StatusCode::ACCEPTED, Body::from_stream(first.chain(beats))).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static(ctype));
    Ok(r)
}

/// How storing a checked manifest ended.
enum Manifest {
    /// Stored: the 201.
    Stored(Response),
    /// Segments that are not what the manifest says: each name and why.
    Problems(Vec<(String, String)>),
    /// Any other refusal.
    Failed(SwiftError),
}

/// Checks `wanted`'s segments with `who`'s rights and stores the manifest at `path`.
async fn store_manifest(
    p: &Proxy,
    who: &Identity,
    path: &ObjPath,
    h: &HeaderMap,
    wanted: Vec<Wanted>,
) -> Manifest {
    let entries = match check_all(p, who, &wanted, h).await {
        Ok(entries) => entries,
        Err(errors) => return Manifest::Problems(errors),
    };
    match store_entries(p, path, h, entries).await {
        Ok(r) => Manifest::Stored(r),
        Err(e) => Manifest::Failed(e),
    }
}

/// Stores checked manifest `entries` at `path` (a 201 with the SLO's ETag).
async fn store_entries(
    p: &Proxy,
    path: &ObjPath,
    h: &HeaderMap,
    entries: Vec<Entry>,
) -> SwiftResult<Response> {
    let etag = slo_etag(&entries);
    let size: u64 = entries.iter().map(|e| e.bytes).sum();
    if let Some(want) = hv(h, "etag") {
        if want.trim_matches('"') != etag {
            return Err(SwiftError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Unprocessable Entity: manifest ETag does not match its segments",
            ));
        }
    }
    let stored_json = serde_json::to_vec(&entries).expect("entries serialize");
    quota::check_put(p, path, stored_json.len() as u64).await?;
    let mut items = headers::metadata(h, "object", STORED_HEADERS)?;
    items.retain(|(k, _)| k != DLO_HEADER);
    items.push((SLO_FLAG.into(), "True".into()));
    items.push((SLO_ETAG.into(), etag.clone()));
    items.push((SLO_SIZE.into(), size.to_string()));
    let header = client_put_header(h, items, Some(stored_json.len() as u64))?;
    let body: ByteStream = Box::pin(futures::stream::once(async move {
        Ok(Bytes::from(stored_json))
    }));
    let mut r = store_object(p, path, header, body, None).await?.created();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        r.headers_mut().insert("etag", v);
    }
    Ok(r)
}

/// `DELETE ?multipart-manifest=delete`: an SLO's segments, then the manifest, reported as a
/// bulk delete is.
pub async fn delete_slo(
    p: &Proxy,
    who: &Identity,
    path: &ObjPath,
    h: &HeaderMap,
) -> SwiftResult<Response> {
    let found = fetch(p, path, &HeaderMap::new(), false).await?;
    if !is_slo(&found.meta) {
        return Err(bad_request("Not an SLO manifest"));
    }
    let entries = parse_entries(&read_body(found, MAX_MANIFEST_SIZE).await?)
        .map_err(|_| conflict("stored manifest is not valid JSON"))?;
    let mut targets = segments_of(p, &path.account, entries, 0).await?;
    targets.push(path.clone());
    let mut seen = std::collections::HashSet::new();
    targets.retain(|t| seen.insert((t.container.clone(), t.object.clone())));
    let mut report = Report::default();
    for t in targets {
        let name = format!("/{}/{}", t.container, t.object);
        if let Err(e) = p
            .access(who, false, &t.account, Some(&t.container), true, h)
            .await
        {
            report.error(name, e.status);
            continue;
        }
        match object::delete(p, &t).await {
            Ok(_) => report.deleted += 1,
            Err(e) if e.status == StatusCode::NOT_FOUND => report.not_found += 1,
            Err(e) => report.error(name, e.status),
        }
    }
    Ok(render(report, h, StatusCode::OK))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::manifest::encode_data;

    #[test]
    fn manifest_errors_are_listed_by_index() {
        let e = parse_manifest("a", b"not json").unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.body.as_str()),
            (400, "Manifest must be valid JSON.\n")
        );
        let body = br#"[{"path": "c/o", "etag": null, "size_bytes": null},
                        {"path": "nocontainer"},
                        {"path": "c/o", "size_bytes": "x"},
                        {"path": "c/o", "bogus": 1}]"#;
        let e = parse_manifest("a", body).unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        assert!(e.body.contains("Index 1:"), "{}", e.body);
        assert!(e.body.contains("Index 2:"), "{}", e.body);
        assert!(e.body.contains("Index 3:"), "{}", e.body);
        assert!(!e.body.contains("Index 0:"), "{}", e.body);
        let many = format!("[{}]", vec![r#"{"path":"c/o"}"#; 1001].join(","));
        assert_eq!(
            parse_manifest("a", many.as_bytes())
                .unwrap_err()
                .status
                .as_u16(),
            413
        );
    }

    #[test]
    fn slo_etag_follows_swift() {
        let e = |hash: &str, range: Option<&str>| Entry {
            name: "/c/o".into(),
            bytes: 1,
            hash: hash.into(),
            content_type: String::new(),
            last_modified: String::new(),
            range: range.map(str::to_string),
            sub_slo: false,
            data: None,
            raw: None,
        };
        let want = hex::encode(Md5::digest(b"aaabbb:0-9;"));
        assert_eq!(slo_etag(&[e("aaa", None), e("bbb", Some("0-9"))]), want);
    }

    /// Inline data segments as Swift takes them: base64 (padding optional), at least one
    /// byte, nothing else in the entry, and never a manifest of data alone; stored as
    /// `{"data": ...}` alone and read back with their decoded size.
    #[test]
    fn data_segments_are_checked_and_stored_as_swift_stores_them() {
        let ok = br#"[{"data": "QVBSRQ"}, {"path": "c/o"}]"#;
        let w = parse_manifest("AUTH_a", ok).unwrap();
        assert_eq!(w[0].data.as_deref(), Some(&b"APRE"[..]));
        assert!(w[1].data.is_none());
        for (body, says) in [
            (
                &br#"[{"data": "!!"}, {"path": "c/o"}]"#[..],
                "Index 0: data must be valid base64",
            ),
            (br#"[{"data": ""}, {"path": "c/o"}]"#, "Index 0: too small"),
            (
                br#"[{"data": "QQ==", "path": "c/o"}]"#,
                "Index 0: a data segment",
            ),
            (
                br#"[{"data": "QQ=="}]"#,
                "require at least one object-backed",
            ),
        ] {
            let e = parse_manifest("AUTH_a", body).unwrap_err();
            assert!(
                e.body.contains(says),
                "{}: {}",
                String::from_utf8_lossy(body),
                e.body
            );
        }
        let entry = Entry {
            bytes: 4,
            hash: hex::encode(Md5::digest(b"APRE")),
            data: Some(encode_data(b"APRE")),
            ..Default::default()
        };
        let stored = serde_json::to_string(std::slice::from_ref(&entry)).unwrap();
        assert_eq!(stored, r#"[{"data":"QVBSRQ=="}]"#);
        let back = parse_entries(stored.as_bytes()).unwrap();
        assert_eq!(
            (back[0].bytes, back[0].data.as_deref()),
            (4, Some("QVBSRQ=="))
        );
        // In the ETag, inline data counts as the MD5 of its bytes.
        let want = hex::encode(Md5::digest(hex::encode(Md5::digest(b"APRE"))));
        assert_eq!(slo_etag(&[entry]), want);
    }
}
