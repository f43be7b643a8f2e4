//! Reading a large object: a DLO's segments listed at request time, an SLO's read from its
//! manifest (nested ones expanded), each segment opened with the requester's rights and
//! streamed one after another, the next opened while the current one streams.
//!
//! A segment that has gone or changed (its ETag no longer the manifest's) fails the read
//! with 409 before the first byte, or cuts the body short after. A server-side copy of a
//! large object reads it here too, assembled.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use futures::StreamExt;
use md5::{Digest, Md5};
use stratus_proto::storage as pb;

use crate::acl::Identity;
use crate::error::{conflict, SwiftResult};
use crate::headers::meta_value;
use crate::names::decode;
use crate::ops::fetch::{fetch, Found};
use crate::ops::listing::list_all;
use crate::ops::manifest::{
    entry_path, is_manifest, is_slo, segment_range, Entry, DLO_HEADER, MAX_MANIFEST_SIZE,
    MAX_NESTING, SLO_ETAG, SLO_SIZE,
};
use crate::ops::object::{ByteStream, ObjPath};
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
                let found = fetch(p, &path, &HeaderMap::new(), false)
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
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes={}-{}", x.start, x.end - 1)) {
        h.insert(axum::http::header::RANGE, v);
    }
    let name = format!("/{}/{}", x.path.container, x.path.object);
    let found = fetch(p, &x.path, &h, false)
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
pub fn stream_pieces(p: Arc<Proxy>, first: ByteStream, rest: Vec<Piece>) -> ByteStream {
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

/// A large object, resolved from its manifest.
pub struct Large {
    /// The manifest's own metadata.
    pub manifest: pb::ObjectMeta,
    /// The large object's ETag (unquoted).
    pub etag: String,
    /// The large object's size.
    pub size: u64,
    /// The segments' bytes in order (not read for a HEAD of an SLO).
    pub pieces: Option<Vec<Piece>>,
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
        let segs = match list_all(p, &path.account, c, prefix).await {
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
}
