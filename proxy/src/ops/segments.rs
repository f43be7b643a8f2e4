//! Reading a large object: a DLO's segments listed at request time, an SLO's read from its
//! manifest, each segment opened with the requester's rights and streamed one after
//! another, the next opened while the current one streams.
//!
//! An SLO's nested manifests are resolved lazily ([`SloCursor`]): only those the requested
//! range reaches are fetched, one at a time as the body streams, so a request holds at most
//! one manifest per nesting level (at most [`MAX_NESTING`] deep) and fetches at most
//! [`MAX_MANIFESTS_PER_REQUEST`] of them, whatever the tree's size.
//!
//! A segment that has gone or changed (its ETag no longer the manifest's) fails the read
//! with 409 before the first byte, or cuts the body short after. A server-side copy of a
//! large object reads it here too, assembled.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use bytes::Bytes;
use futures::StreamExt;
use md5::{Digest, Md5};
use stratus_proto::storage as pb;

use crate::acl::Identity;
use crate::error::{conflict, SwiftResult, CONFLICT_PAGE};
use crate::headers::meta_value;
use crate::names::decode;
use crate::ops::fetch::{fetch, Found};
use crate::ops::listing::list_upto;
use crate::ops::manifest::{
    entry_path, is_manifest, is_slo, parse_entries, segment_range, Entry, DLO_HEADER,
    MAX_MANIFEST_SIZE, MAX_NESTING, SLO_ETAG, SLO_SIZE,
};
use crate::ops::object::{ByteStream, ObjPath};
use crate::ops::object_versioning::{listed_version, versions_container};
use crate::ops::symlink::{follow, Reader};
use crate::proxy::Proxy;

/// Bytes `[start, end)` of one object, expected to carry `etag`.
#[derive(Debug, Clone)]
pub struct Piece {
    /// The object.
    pub path: ObjPath,
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// The ETag the manifest expects (a DLO expects none).
    pub etag: Option<String>,
    /// An SLO's inline data segment (its bytes; `path` names nothing then).
    pub data: Option<Bytes>,
    /// Who follows the segment if it is a symlink (an SLO's segments are followed, as
    /// Swift's `slo` reads them through `symlink`; a DLO's are listed as they are).
    pub reader: Option<Reader>,
}

/// The whole body of `found` (a manifest), 409 past `limit` bytes.
pub async fn read_body(found: Found, limit: usize) -> SwiftResult<Vec<u8>> {
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

/// Most segments a DLO may have (`/info` advertises it as `dlo.max_segments`).
pub const DLO_MAX_SEGMENTS: usize = 10_000;

/// Most nested manifests one request may fetch.
pub const MAX_MANIFESTS_PER_REQUEST: usize = 10_000;

/// One level of an SLO being walked: its remaining entries, the window `[lo, hi)` wanted
/// of it (in its own bytes) and the offset of the next entry.
struct Frame {
    entries: std::vec::IntoIter<Entry>,
    lo: u64,
    hi: u64,
    at: u64,
}

/// The pieces of an SLO within a byte window, resolved as they are needed.
pub struct SloCursor {
    p: Arc<Proxy>,
    who: Identity,
    account: String,
    h: HeaderMap,
    stack: Vec<Frame>,
    fetched: usize,
}

impl SloCursor {
    /// The pieces of the SLO with top-level `entries` within `[lo, hi)`.
    pub fn new(
        p: Arc<Proxy>,
        who: Identity,
        account: String,
        h: HeaderMap,
        entries: Vec<Entry>,
        lo: u64,
        hi: u64,
    ) -> Self {
        Self {
            p,
            who,
            account,
            h,
            stack: vec![Frame {
                entries: entries.into_iter(),
                lo,
                hi,
                at: 0,
            }],
            fetched: 0,
        }
    }

    /// Who follows the segments that are symlinks: the requester, in the SLO's account.
    fn reader(&self) -> Reader {
        Reader::Token {
            who: self.who.clone(),
            account: self.account.clone(),
        }
    }

    /// The next piece, fetching a nested manifest first if the window enters one.
    pub async fn next(&mut self) -> Option<SwiftResult<Piece>> {
        loop {
            let depth = self.stack.len();
            let (e, from, to) = {
                let f = self.stack.last_mut()?;
                if f.at >= f.hi {
                    self.stack.pop();
                    continue;
                }
                let Some(e) = f.entries.next() else {
                    self.stack.pop();
                    continue;
                };
                let (a, b) = (f.at, f.at.saturating_add(e.bytes));
                f.at = b;
                if b <= f.lo || a >= f.hi || e.bytes == 0 {
                    continue;
                }
                let (from, to) = (f.lo.saturating_sub(a), e.bytes.min(f.hi - a));
                (e, from, to)
            };
            if e.data.is_some() {
                // Decoded when the manifest was read (`parse_entries`).
                let Some(raw) = e.raw else {
                    return Some(Err(conflict("bad inline data in manifest")));
                };
                return Some(Ok(Piece {
                    path: ObjPath {
                        account: self.account.clone(),
                        container: String::new(),
                        object: String::new(),
                    },
                    start: from,
                    end: to,
                    etag: None,
                    data: Some(raw),
                    reader: None,
                }));
            }
            let Some(path) = entry_path(&self.account, &e.name) else {
                return Some(Err(conflict(format!("invalid segment name {}", e.name))));
            };
            if let Err(err) = self
                .p
                .access(
                    &self.who,
                    true,
                    &self.account,
                    Some(&path.container),
                    true,
                    &self.h,
                )
                .await
            {
                // As Swift's slo: a segment the requester may not read fails the large
                // object (409), whatever the reason.
                return Some(Err(conflict(format!(
                    "Object segment {} could not be read: {}",
                    e.name,
                    crate::error::status_line(err.status)
                ))));
            }
            if !e.sub_slo {
                let start = match &e.range {
                    Some(r) => match segment_range(r, u64::MAX) {
                        Some((s, _)) => s,
                        None => return Some(Err(conflict("bad range in manifest"))),
                    },
                    None => 0,
                };
                return Some(Ok(Piece {
                    path,
                    start: start + from,
                    end: start + to,
                    etag: Some(e.hash),
                    data: None,
                    reader: Some(self.reader()),
                }));
            }
            // As Swift's `max_slo_recursion_depth`: at most MAX_NESTING manifests, the
            // top one included, answered with Swift's plain 409 page.
            if depth >= MAX_NESTING {
                return Some(Err(conflict(CONFLICT_PAGE)));
            }
            self.fetched += 1;
            if self.fetched > MAX_MANIFESTS_PER_REQUEST {
                return Some(Err(conflict(format!(
                    "more than {MAX_MANIFESTS_PER_REQUEST} nested manifests in one request"
                ))));
            }
            let reader = self.reader();
            let found = match follow(&self.p, &reader, &path, &HeaderMap::new(), false).await {
                Ok(f) => f.found,
                Err(_) => {
                    return Some(Err(conflict(format!(
                        "Object segment {} is missing",
                        e.name
                    ))))
                }
            };
            let total: u64 = meta_value(&found.meta.meta, SLO_SIZE)
                .and_then(|v| v.parse().ok())
                .unwrap_or(found.meta.size);
            let start = match &e.range {
                Some(r) => match segment_range(r, total) {
                    Some((s, _)) => s,
                    None => return Some(Err(conflict("bad range in manifest"))),
                },
                None => 0,
            };
            let raw = match read_body(found, MAX_MANIFEST_SIZE).await {
                Ok(r) => r,
                Err(err) => return Some(Err(err)),
            };
            let inner = match parse_entries(&raw) {
                Ok(v) => v,
                Err(_) => return Some(Err(conflict(format!("bad nested manifest {}", e.name)))),
            };
            self.stack.push(Frame {
                entries: inner.into_iter(),
                lo: start + from,
                hi: start + to,
                at: 0,
            });
        }
    }
}

/// Where the pieces of a large object come from.
pub enum PieceSource {
    /// A DLO's segments (listed already).
    Listed(std::vec::IntoIter<Piece>),
    /// An SLO's, resolved as the body streams.
    Slo(Box<SloCursor>),
}

impl PieceSource {
    /// The next piece with bytes in it.
    pub async fn next(&mut self) -> Option<SwiftResult<Piece>> {
        loop {
            let x = match self {
                PieceSource::Listed(it) => it.next().map(Ok),
                PieceSource::Slo(c) => c.next().await,
            };
            match x {
                Some(Ok(x)) if x.end <= x.start => continue,
                other => return other,
            }
        }
    }
}

/// The part of `pieces` (laid end to end) within `[lo, hi)`.
pub fn clip(pieces: Vec<Piece>, lo: u64, hi: u64) -> Vec<Piece> {
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
pub async fn open_piece(p: &Proxy, x: &Piece) -> SwiftResult<ByteStream> {
    if let Some(d) = &x.data {
        let piece = d.slice(x.start as usize..(x.end as usize).min(d.len()));
        return Ok(Box::pin(futures::stream::once(async move { Ok(piece) })));
    }
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes={}-{}", x.start, x.end - 1)) {
        h.insert(axum::http::header::RANGE, v);
    }
    let name = format!("/{}/{}", x.path.container, x.path.object);
    let found = match &x.reader {
        Some(r) => follow(p, r, &x.path, &h, false).await.map(|f| f.found),
        None => fetch(p, &x.path, &h, false).await,
    };
    let found = found.map_err(|e| match e.status {
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

/// Streams a large object's pieces in order. While one piece streams, the next is being
/// found and opened, so a segment boundary costs no round trip. Before answering, the
/// first piece is opened ([`first_piece`]).
pub fn stream_pieces(p: Arc<Proxy>, first: ByteStream, rest: PieceSource) -> ByteStream {
    type Opening = tokio::task::JoinHandle<(PieceSource, Option<SwiftResult<ByteStream>>)>;
    fn open_next(p: &Arc<Proxy>, mut src: PieceSource) -> Opening {
        let p = p.clone();
        tokio::spawn(async move {
            let opened = match src.next().await {
                None => None,
                Some(Err(e)) => Some(Err(e)),
                Some(Ok(x)) => {
                    let r = open_piece(&p, &x).await;
                    if let Err(e) = &r {
                        tracing::error!(segment = %x.path.object, error = %e.body, "large object segment failed mid-body");
                    }
                    Some(r)
                }
            };
            (src, opened)
        })
    }
    struct State {
        p: Arc<Proxy>,
        cur: Option<ByteStream>,
        next: Option<Opening>,
    }
    let next = Some(open_next(&p, rest));
    let state = State {
        p,
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
                        return Some((Err(e), st));
                    }
                    None => st.cur = None,
                }
            }
            let opening = st.next.take()?;
            let (src, opened) = match opening.await {
                Ok(r) => r,
                Err(e) => return Some((Err(conflict(format!("segment task failed: {e}"))), st)),
            };
            match opened {
                None => return None,
                Some(Ok(s)) => {
                    st.cur = Some(s);
                    st.next = Some(open_next(&st.p, src));
                }
                Some(Err(e)) => return Some((Err(e), st)),
            }
        }
    }))
}

/// Opens the first piece of `src` (a 409 for a missing or changed segment is still an
/// answer, before any byte is sent); `None` if it has no bytes at all.
pub async fn first_piece(p: &Proxy, src: &mut PieceSource) -> SwiftResult<Option<ByteStream>> {
    match src.next().await {
        None => Ok(None),
        Some(Err(e)) => Err(e),
        Some(Ok(x)) => Ok(Some(open_piece(p, &x).await?)),
    }
}

/// A large object's segments, before a range picks some.
pub enum Segments {
    /// A DLO's, listed.
    Listed(Vec<Piece>),
    /// An SLO's top-level manifest entries.
    Slo(Vec<Entry>),
}

impl Segments {
    /// The pieces within `[lo, hi)`, found as they are needed.
    pub fn within(
        self,
        p: &Arc<Proxy>,
        who: &Identity,
        account: &str,
        h: &HeaderMap,
        lo: u64,
        hi: u64,
    ) -> PieceSource {
        match self {
            Segments::Listed(v) => PieceSource::Listed(clip(v, lo, hi).into_iter()),
            Segments::Slo(entries) => PieceSource::Slo(Box::new(SloCursor::new(
                p.clone(),
                who.clone(),
                account.to_string(),
                h.clone(),
                entries,
                lo,
                hi,
            ))),
        }
    }
}

/// A large object, resolved from its manifest.
pub struct Large {
    /// The manifest's own metadata.
    pub manifest: pb::ObjectMeta,
    /// The large object's ETag (unquoted).
    pub etag: String,
    /// The large object's size.
    pub size: u64,
    /// Its segments (not read for a HEAD of an SLO).
    pub segments: Option<Segments>,
}

/// What `found` stands for: a large object, or (given back) a plain one.
pub async fn resolve(
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
        // At most the segment count /info advertises: a request never holds more.
        let segs = match list_upto(p, &path.account, c, prefix, DLO_MAX_SEGMENTS).await {
            Ok(s) => s,
            Err(e) if e.status == StatusCode::NOT_FOUND => Vec::new(),
            Err(e) => return Err(e),
        };
        if segs.len() > DLO_MAX_SEGMENTS {
            return Err(conflict(format!(
                "Dynamic large object has more than {DLO_MAX_SEGMENTS} segments"
            )));
        }
        // Segments in a versioned container are links to their current versions: the
        // versions are read (as Swift's DLO reads its segments through the links).
        let hidden = versions_container(c);
        let segs: Vec<(String, String, u64, String)> = segs
            .into_iter()
            .map(|s| match listed_version(&s.content_type, c) {
                Some((name, bytes, etag)) => (hidden.clone(), name, bytes, etag),
                None => (c.to_string(), s.name, s.bytes, s.etag),
            })
            .collect();
        let mut md5 = Md5::new();
        for s in &segs {
            md5.update(&s.3);
        }
        let size = segs.iter().map(|s| s.2).sum();
        let pieces = segs
            .into_iter()
            .map(|(container, object, bytes, _)| Piece {
                path: ObjPath {
                    account: path.account.clone(),
                    container,
                    object,
                },
                start: 0,
                end: bytes,
                etag: None,
                data: None,
                reader: None,
            })
            .collect();
        return Ok(Ok(Large {
            manifest: found.meta,
            etag: hex::encode(md5.finalize()),
            size,
            segments: Some(Segments::Listed(pieces)),
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
    let segments = if head {
        None
    } else {
        let entries = parse_entries(&read_body(found, MAX_MANIFEST_SIZE).await?)
            .map_err(|_| conflict("stored manifest is not valid JSON"))?;
        Some(Segments::Slo(entries))
    };
    Ok(Ok(Large {
        manifest,
        etag,
        size,
        segments,
    }))
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
    let Some(segments) = l.segments else {
        return Ok(Ok((0, Box::pin(futures::stream::empty()))));
    };
    let mut src = segments.within(p, who, &path.account, h, 0, l.size);
    let Some(first) = first_piece(p, &mut src).await? else {
        return Ok(Ok((0, Box::pin(futures::stream::empty()))));
    };
    Ok(Ok((l.size, stream_pieces(p.clone(), first, src))))
}

/// Every object an SLO is made of (nested manifests and their segments included), leaves
/// first.
pub fn segments_of<'a>(
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
                if let Ok(found) = fetch(p, &path, &HeaderMap::new(), false).await {
                    if let Ok(inner) = parse_entries(&read_body(found, MAX_MANIFEST_SIZE).await?) {
                        out.extend(segments_of(p, account, inner, depth + 1).await?);
                    }
                }
            }
            out.push(path);
        }
        Ok(out)
    })
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
            data: None,
            reader: None,
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
}
