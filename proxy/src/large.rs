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
//! GET streams the segments one after another, each read with the same replica fallback as
//! any object; a `Range` is mapped onto the segments it covers. A segment that has gone or
//! changed (its ETag no longer the manifest's) fails the GET with 409 before the first byte,
//! or cuts the body short after. `?multipart-manifest=get` returns the manifest itself;
//! `?multipart-manifest=delete` deletes an SLO's segments (nested ones too) and then it.
//! Segments are read with the requester's rights: reading a manifest grants nothing on
//! the containers its segments live in.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use stratus_proto::storage as pb;

use crate::acl::Identity;
use crate::bulk::{self, Report};
use crate::container;
use crate::error::status_line;
use crate::error::{bad_request, SwiftError, SwiftResult};
use crate::headers::{self, conditions, hv, iso_date, range_spec, Condition};
use crate::object::{self, ByteStream, Found, ObjPath};
use crate::router::decode;
use crate::{meta_value, Proxy};

/// Most segments in one SLO manifest (Swift's `max_manifest_segments`).
pub const MAX_SEGMENTS: usize = 1000;
/// Largest SLO manifest body (Swift's `max_manifest_size`).
pub const MAX_MANIFEST_SIZE: usize = 8 * 1024 * 1024;
/// Smallest segment (Swift's `min_segment_size`).
pub const MIN_SEGMENT_SIZE: u64 = 1;
/// Deepest nesting of SLOs within SLOs.
const MAX_NESTING: usize = 10;

const SLO_FLAG: &str = "x-static-large-object";
const SLO_ETAG: &str = "x-object-sysmeta-slo-etag";
const SLO_SIZE: &str = "x-object-sysmeta-slo-size";
const DLO_HEADER: &str = "x-object-manifest";

fn is_slo(m: &pb::ObjectMeta) -> bool {
    meta_value(&m.meta, SLO_FLAG).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Whether an object is a DLO or SLO manifest.
pub fn is_manifest(m: &pb::ObjectMeta) -> bool {
    is_slo(m) || meta_value(&m.meta, DLO_HEADER).is_some()
}

/// One stored SLO segment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub bytes: u64,
    pub hash: String,
    #[serde(default)]
    pub content_type: String,
    #[serde(default)]
    pub last_modified: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sub_slo: bool,
}

/// Bytes `[start, end)` of one object, expected to carry `etag`.
#[derive(Debug, Clone)]
struct Piece {
    path: ObjPath,
    start: u64,
    end: u64,
    etag: Option<String>,
}

fn conflict(msg: impl Into<String>) -> SwiftError {
    SwiftError::new(StatusCode::CONFLICT, msg)
}

/// `/container/object` of a manifest entry, in `account`.
fn entry_path(account: &str, name: &str) -> Option<ObjPath> {
    let (c, o) = name.trim_start_matches('/').split_once('/')?;
    (!c.is_empty() && !o.is_empty()).then(|| ObjPath {
        account: account.to_string(),
        container: c.to_string(),
        object: o.to_string(),
    })
}

/// `a-b`, `a-` or `-n` of a segment of `size` bytes, as `[start, end)`.
fn segment_range(r: &str, size: u64) -> Option<(u64, u64)> {
    let b = headers::parse_range(r)?.resolve(size).ok()?;
    Some((b.start, b.end))
}

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

async fn read_body(found: Found, limit: usize) -> SwiftResult<Vec<u8>> {
    let mut out = Vec::new();
    if let Some(mut b) = found.body {
        while let Some(piece) = b.next().await {
            out.extend_from_slice(&piece?);
            if out.len() > limit {
                return Err(conflict("manifest too large"));
            }
        }
    }
    Ok(out)
}

/// The pieces an SLO's entries stand for, nested manifests expanded.
fn expand<'a>(
    p: &'a Proxy,
    who: &'a Identity,
    account: &'a str,
    entries: Vec<Entry>,
    depth: usize,
    h: &'a HeaderMap,
) -> futures::future::BoxFuture<'a, SwiftResult<Vec<Piece>>> {
    Box::pin(async move {
        if depth > MAX_NESTING {
            return Err(conflict("Max recursion depth exceeded on large object"));
        }
        let mut out = Vec::new();
        for e in entries {
            let path = entry_path(account, &e.name)
                .ok_or_else(|| conflict(format!("invalid segment name {}", e.name)))?;
            p.access(who, true, account, Some(&path.container), true, h)
                .await?;
            if e.sub_slo {
                let found = object::fetch(p, &path, &HeaderMap::new(), false)
                    .await
                    .map_err(|_| conflict(format!("Object segment {} is missing", e.name)))?;
                let inner: Vec<Entry> =
                    serde_json::from_slice(&read_body(found, MAX_MANIFEST_SIZE).await?)
                        .map_err(|_| conflict(format!("bad nested manifest {}", e.name)))?;
                let pieces = expand(p, who, account, inner, depth + 1, h).await?;
                let (lo, hi) = match &e.range {
                    Some(r) => segment_range(r, pieces.iter().map(|x| x.end - x.start).sum())
                        .ok_or_else(|| conflict("bad range in manifest"))?,
                    None => (0, u64::MAX),
                };
                out.extend(clip(pieces, lo, hi));
                continue;
            }
            let (start, end) = match &e.range {
                Some(r) => segment_range(r, u64::MAX)
                    .map(|(s, _)| (s, s + e.bytes))
                    .ok_or_else(|| conflict("bad range in manifest"))?,
                None => (0, e.bytes),
            };
            out.push(Piece {
                path,
                start,
                end,
                etag: Some(e.hash),
            });
        }
        Ok(out)
    })
}

/// The part of `pieces` (laid end to end) within `[lo, hi)`.
fn clip(pieces: Vec<Piece>, lo: u64, hi: u64) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut at = 0u64;
    for mut x in pieces {
        let len = x.end - x.start;
        let (a, b) = (at, at + len);
        at = b;
        if b <= lo || a >= hi {
            continue;
        }
        x.start += lo.saturating_sub(a);
        x.end -= b.saturating_sub(hi);
        out.push(x);
    }
    out
}

/// Opens one piece for streaming (409 if it has gone or changed).
async fn open_piece(p: &Proxy, x: &Piece) -> SwiftResult<ByteStream> {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes={}-{}", x.start, x.end - 1)) {
        h.insert(axum::http::header::RANGE, v);
    }
    let name = format!("/{}/{}", x.path.container, x.path.object);
    let found = object::fetch(p, &x.path, &h, false)
        .await
        .map_err(|e| match e.status {
            StatusCode::NOT_FOUND | StatusCode::RANGE_NOT_SATISFIABLE => {
                conflict(format!("Object segment {name} is missing"))
            }
            _ => e,
        })?;
    if is_manifest(&found.meta) {
        return Err(conflict(format!(
            "Object segment {name} is itself a manifest"
        )));
    }
    if x.etag.as_ref().is_some_and(|e| *e != found.meta.etag) {
        return Err(conflict(format!("Object segment {name} no longer valid")));
    }
    Ok(found
        .body
        .unwrap_or_else(|| Box::pin(futures::stream::empty())))
}

/// Streams the pieces in order; the first is already open. While one piece streams, the
/// next is being opened, so a segment boundary costs no round trip.
fn stream_pieces(p: Arc<Proxy>, first: ByteStream, rest: Vec<Piece>) -> ByteStream {
    type Opening = tokio::task::JoinHandle<(Piece, SwiftResult<ByteStream>)>;
    fn open_next(p: &Arc<Proxy>, it: &mut std::vec::IntoIter<Piece>) -> Option<Opening> {
        let x = it.next()?;
        let p = p.clone();
        Some(tokio::spawn(async move {
            let r = open_piece(&p, &x).await;
            (x, r)
        }))
    }
    struct State {
        p: Arc<Proxy>,
        rest: std::vec::IntoIter<Piece>,
        cur: Option<ByteStream>,
        next: Option<Opening>,
    }
    let mut rest = rest.into_iter();
    let next = open_next(&p, &mut rest);
    let state = State {
        p,
        rest,
        cur: Some(first),
        next,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(s) = st.cur.as_mut() {
                match s.next().await {
                    Some(Ok(b)) => return Some((Ok(b), st)),
                    Some(Err(e)) => {
                        st.cur = None;
                        st.next = None;
                        st.rest = Vec::new().into_iter();
                        return Some((Err(e), st));
                    }
                    None => st.cur = None,
                }
            }
            let opening = st.next.take()?;
            let (x, opened) = match opening.await {
                Ok(r) => r,
                Err(e) => return Some((Err(conflict(format!("segment task failed: {e}"))), st)),
            };
            match opened {
                Ok(s) => {
                    st.cur = Some(s);
                    st.next = open_next(&st.p, &mut st.rest);
                }
                Err(e) => {
                    tracing::error!(segment = %x.path.object, error = %e.body, "large object segment failed mid-body");
                    st.rest = Vec::new().into_iter();
                    return Some((Err(e), st));
                }
            }
        }
    }))
}

/// Answers a GET/HEAD of a large object of `size` bytes made of `pieces`.
async fn respond(
    p: &Arc<Proxy>,
    manifest: &pb::ObjectMeta,
    etag: &str,
    size: u64,
    pieces: Option<Vec<Piece>>,
    h: &HeaderMap,
) -> SwiftResult<Response> {
    let ts = manifest.meta_ts.max(manifest.ts);
    let quoted = format!("\"{etag}\"");
    let mut r = Response::new(Body::empty());
    object::object_headers(&mut r, manifest);
    if let Ok(v) = HeaderValue::from_str(&quoted) {
        r.headers_mut().insert("etag", v);
    }
    if conditions(h, etag, ts)? == Condition::NotModified {
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r.headers_mut().remove("content-type");
        return Ok(r);
    }
    let range = match range_spec(h) {
        Some(s) if pieces.is_some() => Some(s.resolve(size)?),
        _ => None,
    };
    let (lo, hi) = range.map_or((0, size), |b| (b.start, b.end));
    r.headers_mut()
        .insert("content-length", HeaderValue::from(hi - lo));
    if let Some(b) = range {
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", b.start, b.end - 1)) {
            r.headers_mut().insert("content-range", v);
        }
    }
    let Some(pieces) = pieces else {
        return Ok(r);
    };
    let mut pieces = clip(pieces, lo, hi)
        .into_iter()
        .filter(|x| x.end > x.start)
        .collect::<Vec<_>>();
    if pieces.is_empty() {
        return Ok(r);
    }
    let rest = pieces.split_off(1);
    let first = open_piece(p, &pieces[0]).await?;
    let body = stream_pieces(p.clone(), first, rest);
    *r.body_mut() = Body::from_stream(body.map(|x| x.map_err(|e| std::io::Error::other(e.body))));
    Ok(r)
}

/// A large object, resolved from its manifest.
struct Large {
    manifest: pb::ObjectMeta,
    etag: String,
    size: u64,
    /// The segments' bytes in order (not read for a HEAD of an SLO).
    pieces: Option<Vec<Piece>>,
}

/// What `found` stands for: a large object, or (given back) a plain one.
async fn resolve(
    p: &Proxy,
    who: &Identity,
    path: &ObjPath,
    found: Found,
    h: &HeaderMap,
    head: bool,
) -> SwiftResult<Result<Large, Found>> {
    if let Some(m) = meta_value(&found.meta.meta, DLO_HEADER).map(str::to_string) {
        let m = decode(&m)?;
        let (c, prefix) = m
            .split_once('/')
            .ok_or_else(|| conflict("bad X-Object-Manifest"))?;
        p.access(who, true, &path.account, Some(c), true, h).await?;
        let segs = match container::list_all(p, &path.account, c, prefix).await {
            Ok(s) => s,
            Err(e) if e.status == StatusCode::NOT_FOUND => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut md5 = Md5::new();
        for s in &segs {
            md5.update(&s.etag);
        }
        let size = segs.iter().map(|s| s.bytes).sum();
        let pieces = segs
            .into_iter()
            .map(|s| Piece {
                path: ObjPath {
                    account: path.account.clone(),
                    container: c.to_string(),
                    object: s.name,
                },
                start: 0,
                end: s.bytes,
                etag: None,
            })
            .collect();
        return Ok(Ok(Large {
            manifest: found.meta,
            etag: hex::encode(md5.finalize()),
            size,
            pieces: Some(pieces),
        }));
    }
    if !is_slo(&found.meta) {
        return Ok(Err(found));
    }
    let manifest = found.meta.clone();
    let etag = meta_value(&manifest.meta, SLO_ETAG)
        .unwrap_or_default()
        .to_string();
    let size: u64 = meta_value(&manifest.meta, SLO_SIZE)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let pieces = if head {
        None
    } else {
        let entries: Vec<Entry> =
            serde_json::from_slice(&read_body(found, MAX_MANIFEST_SIZE).await?)
                .map_err(|_| conflict("stored manifest is not valid JSON"))?;
        Some(expand(p, who, &path.account, entries, 0, h).await?)
    };
    Ok(Ok(Large {
        manifest,
        etag,
        size,
        pieces,
    }))
}

/// GET or HEAD of an object: large objects are assembled from their segments.
pub async fn get(
    p: &Arc<Proxy>,
    who: &Identity,
    path: &ObjPath,
    q: &crate::router::Query,
    h: &HeaderMap,
    head: bool,
) -> SwiftResult<Response> {
    let as_stored = q.get("multipart-manifest") == Some("get");
    if as_stored {
        let mut r = object::get(p, path, h, head).await?;
        if r.headers().contains_key(SLO_FLAG) {
            r.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
        }
        return Ok(r);
    }
    // A plain object's GET streams at once; a manifest is read whole first.
    let found = object::fetch(p, path, h, head).await?;
    match resolve(p, who, path, found, h, head).await? {
        Ok(l) => {
            // A DLO HEAD lists its segments for the size and ETag, but reads none.
            let pieces = l.pieces.filter(|_| !head);
            respond(p, &l.manifest, &l.etag, l.size, pieces, h).await
        }
        Err(found) => object::respond(found, h),
    }
}

/// The assembled body of a large object `found` at `path`, for a server-side copy: its
/// size and bytes. `None` if `found` is a plain object (handed back).
pub async fn assembled(
    p: &Arc<Proxy>,
    who: &Identity,
    path: &ObjPath,
    found: Found,
    h: &HeaderMap,
) -> SwiftResult<Result<(u64, ByteStream), Found>> {
    let l = match resolve(p, who, path, found, h, false).await? {
        Ok(l) => l,
        Err(found) => return Ok(Err(found)),
    };
    let mut pieces: Vec<Piece> = l
        .pieces
        .unwrap_or_default()
        .into_iter()
        .filter(|x| x.end > x.start)
        .collect();
    if pieces.is_empty() {
        return Ok(Ok((0, Box::pin(futures::stream::empty()))));
    }
    let rest = pieces.split_off(1);
    let first = open_piece(p, &pieces[0]).await?;
    Ok(Ok((l.size, stream_pieces(p.clone(), first, rest))))
}

/// Whether metadata belongs to a manifest (and is not carried over to a copy of the
/// assembled object).
pub fn is_manifest_meta(key: &str) -> bool {
    key == DLO_HEADER || key == SLO_FLAG || key.starts_with("x-object-sysmeta-slo-")
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
}

/// A checked entry, before its segment is looked at.
#[derive(Debug)]
struct Wanted {
    name: String,
    path: ObjPath,
    etag: Option<String>,
    size: Option<u64>,
    range: Option<String>,
}

/// Parses a manifest body, listing every malformed entry as Swift does (400).
fn parse_manifest(account: &str, body: &[u8]) -> SwiftResult<Vec<Wanted>> {
    let items: Vec<serde_json::Value> =
        serde_json::from_slice(body).map_err(|_| bad_request("Manifest must be valid JSON.\n"))?;
    if items.len() > MAX_SEGMENTS {
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
                    "Index {i}: extraneous keys or not a JSON object (allowed: path, etag, size_bytes, range)"
                ));
                continue;
            }
        };
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
            path,
            etag,
            size,
            range,
        });
    }
    if !errors.is_empty() {
        return Err(bad_request(errors.join("\n") + "\n"));
    }
    Ok(out)
}

/// Looks at one segment: its stored entry, or why it cannot be one.
async fn check_segment(
    p: &Proxy,
    who: &Identity,
    w: &Wanted,
    h: &HeaderMap,
) -> Result<Entry, String> {
    if let Err(e) = p
        .access(who, true, &w.path.account, Some(&w.path.container), true, h)
        .await
    {
        return Err(status_line(e.status));
    }
    let found = match object::fetch(p, &w.path, &HeaderMap::new(), true).await {
        Ok(f) => f,
        Err(e) => return Err(status_line(e.status)),
    };
    let m = found.meta;
    let sub_slo = is_slo(&m);
    if meta_value(&m.meta, DLO_HEADER).is_some() {
        return Err("Dynamic large objects cannot be segments".into());
    }
    let (etag, size) = if sub_slo {
        (
            meta_value(&m.meta, SLO_ETAG)
                .unwrap_or_default()
                .to_string(),
            meta_value(&m.meta, SLO_SIZE)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        )
    } else {
        (m.etag.clone(), m.size)
    };
    let mut problems = Vec::new();
    if w.size.is_some_and(|s| s != size) {
        problems.push("Size Mismatch");
    }
    if w.etag.as_ref().is_some_and(|e| *e != etag) {
        problems.push("Etag Mismatch");
    }
    let bytes = match &w.range {
        Some(r) => match segment_range(r, size) {
            Some((a, b)) => b - a,
            None => {
                problems.push("Unsatisfiable Range");
                0
            }
        },
        None => size,
    };
    if problems.is_empty() && bytes < MIN_SEGMENT_SIZE {
        problems.push("Too small; each segment must be at least 1 byte.");
    }
    if !problems.is_empty() {
        return Err(problems.join(", "));
    }
    Ok(Entry {
        name: w.name.clone(),
        bytes,
        hash: etag,
        content_type: m.content_type.clone(),
        last_modified: iso_date(m.meta_ts.max(m.ts)),
        range: w
            .range
            .as_ref()
            .and_then(|r| segment_range(r, size).map(|(a, b)| format!("{a}-{}", b - 1))),
        sub_slo,
    })
}

/// `PUT ?multipart-manifest=put`: checks and stores an SLO manifest.
pub async fn put_slo(
    p: &Proxy,
    who: &Identity,
    path: &ObjPath,
    h: &HeaderMap,
    body: Body,
) -> SwiftResult<Response> {
    p.require_container(&path.account, &path.container).await?;
    let mut raw = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(piece) = stream.next().await {
        raw.extend_from_slice(&piece.map_err(|_| object::client_disconnect())?);
        if raw.len() > MAX_MANIFEST_SIZE {
            return Err(SwiftError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Manifest File > {MAX_MANIFEST_SIZE} bytes"),
            ));
        }
    }
    let wanted = parse_manifest(&path.account, &raw)?;
    let lookups: Vec<_> = wanted
        .iter()
        .map(|w| Box::pin(check_segment(p, who, w, h)))
        .collect();
    let checks = futures::stream::iter(lookups)
        .buffered(10)
        .collect::<Vec<_>>()
        .await;
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (w, r) in wanted.iter().zip(checks) {
        match r {
            Ok(e) => entries.push(e),
            Err(why) => errors.push(format!("{}, {why}", w.name)),
        }
    }
    if !errors.is_empty() {
        return Err(bad_request(format!("Errors:\n{}\n", errors.join("\n")))
            .with_header("content-type", "text/plain".into()));
    }
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
    crate::quota::check_put(p, path, stored_json.len() as u64).await?;
    crate::versioning::archive_current(p, path).await?;
    let mut items = headers::metadata(h, "object", object::STORED_HEADERS)?;
    items.retain(|(k, _)| k != DLO_HEADER);
    items.push((SLO_FLAG.into(), "True".into()));
    items.push((SLO_ETAG.into(), etag.clone()));
    items.push((SLO_SIZE.into(), size.to_string()));
    let header = object::client_put_header(h, items, Some(stored_json.len() as u64))?;
    let body: ByteStream = Box::pin(futures::stream::once(async move {
        Ok(Bytes::from(stored_json))
    }));
    let stored = object::store(p, path, header, body, None).await?;
    let mut r = object::created(&stored);
    if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        r.headers_mut().insert("etag", v);
    }
    Ok(r)
}

/// Every object an SLO is made of (nested manifests and their segments included), leaves
/// first.
fn segments_of<'a>(
    p: &'a Proxy,
    account: &'a str,
    entries: Vec<Entry>,
    depth: usize,
) -> futures::future::BoxFuture<'a, SwiftResult<Vec<ObjPath>>> {
    Box::pin(async move {
        if depth > MAX_NESTING {
            return Err(conflict("Max recursion depth exceeded on large object"));
        }
        let mut out = Vec::new();
        for e in entries {
            let Some(path) = entry_path(account, &e.name) else {
                continue;
            };
            if e.sub_slo {
                if let Ok(found) = object::fetch(p, &path, &HeaderMap::new(), false).await {
                    if let Ok(inner) = serde_json::from_slice::<Vec<Entry>>(
                        &read_body(found, MAX_MANIFEST_SIZE).await?,
                    ) {
                        out.extend(segments_of(p, account, inner, depth + 1).await?);
                    }
                }
            }
            out.push(path);
        }
        Ok(out)
    })
}

/// `DELETE ?multipart-manifest=delete`: an SLO's segments, then the manifest, reported as a
/// bulk delete is.
pub async fn delete_slo(
    p: &Proxy,
    who: &Identity,
    path: &ObjPath,
    h: &HeaderMap,
) -> SwiftResult<Response> {
    let found = object::fetch(p, path, &HeaderMap::new(), false).await?;
    if !is_slo(&found.meta) {
        return Err(bad_request("Not an SLO manifest"));
    }
    let entries: Vec<Entry> = serde_json::from_slice(&read_body(found, MAX_MANIFEST_SIZE).await?)
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
    Ok(bulk::render(report, h, StatusCode::OK))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(o: &str, start: u64, end: u64) -> Piece {
        Piece {
            path: ObjPath {
                account: "a".into(),
                container: "c".into(),
                object: o.into(),
            },
            start,
            end,
            etag: None,
        }
    }

    #[test]
    fn clipping_maps_a_range_onto_segments() {
        let pieces = vec![piece("1", 0, 10), piece("2", 5, 15), piece("3", 0, 10)];
        let got: Vec<_> = clip(pieces, 8, 22)
            .into_iter()
            .map(|x| (x.path.object, x.start, x.end))
            .collect();
        assert_eq!(
            got,
            [
                ("1".to_string(), 8, 10),
                ("2".into(), 5, 15),
                ("3".into(), 0, 2)
            ]
        );
    }

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
        };
        let want = hex::encode(Md5::digest(b"aaabbb:0-9;"));
        assert_eq!(slo_etag(&[e("aaa", None), e("bbb", Some("0-9"))]), want);
    }
}
