//! Reading an object: every primary is asked (the newest timestamp wins, handoffs if none
//! has it), the body streams from one replica holding the newest version and falls back on
//! the others mid-body; and the answer a plain GET or HEAD gets.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use stratus_client::service::trace::Traced;
use stratus_core::ring::Device;
use stratus_core::time::now_secs;
use stratus_core::timestamp::Timestamp;
use stratus_proto::storage as pb;
use stratus_proto::storage::object_client::ObjectClient;
use tonic::{Status, Streaming};

use crate::cluster::{abandoned, gather, node_timeout, timed};
use crate::error::{not_found, unavailable, SwiftError, SwiftResult};
use crate::headers::{self, conditions, http_date, range_specs, title_case, Condition};
use crate::ops::link::is_symlink;
use crate::ops::manifest::is_manifest;
use crate::ops::object::{ByteStream, ObjPath};
use crate::proxy::Proxy;

/// An object found for a GET or HEAD.
pub struct Found {
    /// The newest version's metadata.
    pub meta: pb::ObjectMeta,
    /// The body (or the requested range of it) unless HEAD.
    pub body: Option<ByteStream>,
    /// The range served, if one was asked for and satisfiable (with several ranges: the
    /// span from the first to the last, which `body` holds).
    pub range: Option<headers::ByteRange>,
    /// Several ranges asked for: the body is read as their span and answered as
    /// `multipart/byteranges` by [`respond`].
    pub parts: Option<Box<headers::Multipart>>,
}

async fn open_get(
    p: &Proxy,
    dev: &Device,
    target: &pb::ObjectTarget,
    head_only: bool,
    hint: Option<(u64, Option<u64>)>,
) -> Result<(pb::ObjectMeta, Streaming<pb::GetMsg>), Status> {
    let mut t = target.clone();
    t.device = dev.name.clone();
    let req = pb::GetRequest {
        target: Some(t),
        head_only,
        offset: hint.map(|h| h.0),
        length: hint.and_then(|h| h.1),
    };
    start_get(p.cluster.peers.object(&dev.node)?, req).await
}

/// Sends a GET to a node and reads the metadata that starts its answer.
async fn start_get(
    mut client: ObjectClient<Traced>,
    req: pb::GetRequest,
) -> Result<(pb::ObjectMeta, Streaming<pb::GetMsg>), Status> {
    let mut s = client.get(req).await?.into_inner();
    match s.message().await? {
        Some(pb::GetMsg {
            msg: Some(pb::get_msg::Msg::Meta(m)),
        }) => Ok((m, s)),
        _ => Err(Status::internal(
            "object stream did not start with metadata",
        )),
    }
}

/// The messages of one replica's GET answer after its metadata.
type MsgStream = futures::stream::BoxStream<'static, Result<pb::GetMsg, Status>>;

/// A replica a body can be read (or resumed) from: a storage node's object service, or a
/// stand-in in tests.
trait Replica: Send + Sync {
    /// Sends `req` and reads the metadata that starts the answer.
    fn open(
        &self,
        req: pb::GetRequest,
    ) -> futures::future::BoxFuture<'static, Result<(pb::ObjectMeta, MsgStream), Status>>;
}

impl Replica for ObjectClient<Traced> {
    fn open(
        &self,
        req: pb::GetRequest,
    ) -> futures::future::BoxFuture<'static, Result<(pb::ObjectMeta, MsgStream), Status>> {
        let c = self.clone();
        Box::pin(async move {
            let (m, s) = start_get(c, req).await?;
            Ok((m, Box::pin(s) as MsgStream))
        })
    }
}

/// A body being streamed to a client from one replica, with the other replicas of the same
/// version to fall back on: if the replica fails mid-body (a block fails its checksum, the
/// node dies), the rest of the range is read from the next one, so the client still gets
/// every byte, and no byte that failed verification.
struct BodyStream {
    cur: MsgStream,
    first: Option<Bytes>,
    /// Absolute offset of the next byte to send, and the end of the range.
    pos: u64,
    end: u64,
    ts: u64,
    /// The version's digest: a replica is resumed on only if it holds this very version.
    digest: bytes::Bytes,
    target: pb::ObjectTarget,
    /// Every replica of this version, the one being read included.
    replicas: Vec<(Device, Arc<dyn Replica>)>,
    current: usize,
    /// Where each replica last failed: it is not asked for that offset again.
    failed_at: Vec<Option<u64>>,
}

impl BodyStream {
    /// The next piece of the body, switching replicas as needed.
    async fn next_piece(&mut self) -> Option<Result<Bytes, SwiftError>> {
        if let Some(b) = self.first.take() {
            self.pos += b.len() as u64;
            return Some(Ok(b));
        }
        while self.pos < self.end {
            // A replica that stalls mid-body counts as failed: the rest comes from another.
            let next = tokio::time::timeout(node_timeout(), self.cur.next())
                .await
                .unwrap_or_else(|_| {
                    Some(Err(Status::deadline_exceeded("replica stalled mid-body")))
                });
            match next {
                Some(Ok(pb::GetMsg {
                    msg: Some(pb::get_msg::Msg::Data(d)),
                })) => {
                    self.pos += d.len() as u64;
                    return Some(Ok(d));
                }
                Some(Ok(_)) => continue,
                None => tracing::error!(at = self.pos, "replica ended the body early"),
                Some(Err(e)) => {
                    tracing::error!(at = self.pos, error = %e.message(), "replica failed mid-body; resuming from another")
                }
            }
            if !self.switch().await {
                return Some(Err(unavailable(
                    "no replica could serve the rest of the body",
                )));
            }
        }
        None
    }

    /// Continues from `pos` on another replica of the same version. A replica that failed
    /// at an earlier offset is tried again: rot in one block says nothing about the others.
    async fn switch(&mut self) -> bool {
        self.failed_at[self.current] = Some(self.pos);
        for i in 0..self.replicas.len() {
            if self.failed_at[i] == Some(self.pos) {
                continue;
            }
            let (dev, replica) = &self.replicas[i];
            let mut t = self.target.clone();
            t.device = dev.name.clone();
            let req = pb::GetRequest {
                target: Some(t),
                head_only: false,
                offset: Some(self.pos),
                length: Some(self.end - self.pos),
            };
            let opened = timed(replica.open(req)).await;
            match opened {
                Ok((m, s)) if (m.ts, &m.digest) == (self.ts, &self.digest) => {
                    self.cur = s;
                    self.current = i;
                    return true;
                }
                _ => {
                    tracing::info!(node = %dev.node, "replica unusable to resume the body");
                    self.failed_at[i] = Some(self.pos);
                }
            }
        }
        false
    }

    fn into_stream(self) -> ByteStream {
        Box::pin(futures::stream::unfold(self, |mut b| async move {
            let piece = b.next_piece().await?;
            let failed = piece.is_err();
            // After an error the stream ends (the state is dropped).
            if failed {
                b.end = b.pos;
            }
            Some((piece, b))
        }))
    }
}

/// Why a fetch found no replica to read the chosen version's body from.
const NO_BODY: &str = "no replica could serve the object body";

/// What one read attempt found.
enum Attempt {
    Found(Found),
    /// Every replica of the chosen version failed or lost it before its body was read.
    NoBody,
}

/// Reads an object: primaries first (the newest version wins), then handoffs. If every
/// replica of the chosen version was overwritten before its body could be read (writes
/// racing the read), the read starts over, twice at most: a newer version is there.
pub async fn fetch(
    p: &Proxy,
    path: &ObjPath,
    h: &HeaderMap,
    head_only: bool,
) -> SwiftResult<Found> {
    for attempt in 0..3 {
        // A retry asks every primary for the body straight away: a node holds the file
        // of the version it answers with open, so whichever answer is newest can be read
        // even if writes replace it meanwhile.
        match fetch_once(p, path, h, head_only, attempt > 0).await? {
            Attempt::Found(f) => return Ok(f),
            Attempt::NoBody => continue,
        }
    }
    Err(unavailable(NO_BODY))
}

async fn fetch_once(
    p: &Proxy,
    path: &ObjPath,
    h: &HeaderMap,
    head_only: bool,
    body_from_all: bool,
) -> SwiftResult<Attempt> {
    let place = path.place(p).await?;
    let target = path.target(&place);
    let specs = if head_only {
        Vec::new()
    } else {
        range_specs(h)
    };
    let (spec, multi) = match specs.as_slice() {
        [] => (None, false),
        [one] => (Some(*one), false),
        _ => (None, true),
    };
    let hint = spec.and_then(|s| s.hint());
    // The first primary is asked for the body straight away (unless the range needs the
    // size first); the others only for metadata, to find the newest version.
    let speculate = !head_only && !multi && (spec.is_none() || hint.is_some());
    let calls = place.primaries.iter().enumerate().map(|(i, d)| {
        let body = speculate && (i == 0 || body_from_all);
        timed(open_get(p, d, &target, !body, hint))
    });
    let mut answers: Vec<(Device, pb::ObjectMeta, Option<Streaming<pb::GetMsg>>, bool)> =
        Vec::new();
    let mut missing = 0;
    let mut failed = 0;
    // The newest version among a quorum of answers is the newest acknowledged (a write
    // is acknowledged on a quorum, and two quorums share a replica); a replica still
    // silent half a second after a quorum answered is not waited for.
    let answered = |r: &Result<(pb::ObjectMeta, Streaming<pb::GetMsg>), Status>| r.is_ok();
    for (i, r) in gather(calls, place.quorum(), answered)
        .await
        .into_iter()
        .enumerate()
    {
        let r = r.unwrap_or_else(|| Err(abandoned()));
        match r {
            Ok((m, s)) if m.found => answers.push((
                place.primaries[i].clone(),
                m,
                Some(s),
                speculate && (i == 0 || body_from_all),
            )),
            Ok(_) => missing += 1,
            Err(e) => {
                tracing::info!(node = %place.primaries[i].node, error = %e.message(), "primary failed for GET");
                failed += 1;
            }
        }
    }
    if answers.is_empty() {
        for d in place.handoffs() {
            match timed(open_get(p, d, &target, head_only, None)).await {
                Ok((m, s)) if m.found => {
                    answers.push((
                        d.clone(),
                        m,
                        Some(s),
                        !head_only && !multi && spec.is_none(),
                    ));
                    break;
                }
                Ok(_) => {}
                Err(_) => {}
            }
        }
    }
    // Versions order by (timestamp, digest), as on the nodes; metadata by its timestamp.
    let Some(best) = answers
        .iter()
        .map(|a| (a.1.ts, a.1.digest.clone(), a.1.meta_ts))
        .max()
    else {
        if missing == 0 && failed > 0 {
            return Err(unavailable("no replica of the object answered"));
        }
        return Err(not_found());
    };
    let newest = answers
        .iter()
        .find(|a| (a.1.ts, &a.1.digest, a.1.meta_ts) == (best.0, &best.1, best.2))
        .expect("best exists")
        .1
        .clone();
    if newest.deleted || (newest.delete_at != 0 && newest.delete_at <= now_secs()) {
        return Err(not_found());
    }
    // A large object's manifest is read whole: the range applies to its segments; a
    // symlink's to its target.
    let manifest = is_manifest(&newest) || is_symlink(&newest);
    let reuse_ok = !(manifest && (spec.is_some() || multi));
    let spec = if manifest { None } else { spec };
    let mut range = spec
        .map(|s| s.resolve(newest.size))
        .transpose()
        .map_err(|e| with_validators(e, &newest))?;
    let mut parts = None;
    if multi && !manifest {
        match headers::resolve_ranges(&specs, newest.size)
            .map_err(|e| with_validators(e, &newest))?
        {
            Some(ps) if ps.len() == 1 => range = Some(ps[0]),
            Some(ps) => {
                let m = headers::Multipart::new(ps, &newest.content_type, newest.size);
                range = Some(m.span());
                parts = Some(Box::new(m));
            }
            None => {}
        }
    }
    if head_only {
        return Ok(Attempt::Found(Found {
            meta: newest,
            body: None,
            range: None,
            parts: None,
        }));
    }
    // Read the body from a replica holding the newest data, verifying the first chunk
    // arrives before committing to it; a corrupt or failing copy hands over to the next.
    let (start, end) = range.map_or((0, newest.size), |r| (r.start, r.end));
    let mut sources: Vec<_> = answers
        .into_iter()
        .filter(|a| (a.1.ts, &a.1.digest) == (newest.ts, &newest.digest))
        .collect();
    sources.sort_by_key(|a| !a.3); // an already-streaming body first
    let replicas: Vec<(Device, Arc<dyn Replica>)> = sources
        .iter()
        .filter_map(|a| {
            let c = p.cluster.peers.object(&a.0.node).ok()?;
            Some((a.0.clone(), Arc::new(c) as Arc<dyn Replica>))
        })
        .collect();
    for (dev, _, stream, streaming) in sources {
        let mut s = if streaming && reuse_ok && (hint.is_some() || spec.is_none()) {
            match stream {
                Some(s) => s,
                None => continue,
            }
        } else {
            match timed(open_get(
                p,
                &dev,
                &target,
                false,
                Some((start, Some(end - start))),
            ))
            .await
            {
                Ok((m, s)) if (m.ts, &m.digest) == (newest.ts, &newest.digest) => s,
                _ => continue,
            }
        };
        if start == end {
            return Ok(Attempt::Found(Found {
                meta: newest,
                body: Some(Box::pin(futures::stream::empty())),
                range,
                parts,
            }));
        }
        let first = tokio::time::timeout(node_timeout(), s.message())
            .await
            .unwrap_or_else(|_| Err(Status::deadline_exceeded("replica stalled")));
        match first {
            Ok(Some(pb::GetMsg {
                msg: Some(pb::get_msg::Msg::Data(d)),
            })) => {
                let current = replicas.iter().position(|r| r.0 == dev).unwrap_or(0);
                let failed_at = vec![None; replicas.len()];
                let body = BodyStream {
                    cur: Box::pin(s),
                    first: Some(d),
                    pos: start,
                    end,
                    ts: newest.ts,
                    digest: newest.digest.clone(),
                    target: target.clone(),
                    replicas,
                    current,
                    failed_at,
                };
                return Ok(Attempt::Found(Found {
                    meta: newest,
                    body: Some(body.into_stream()),
                    range,
                    parts,
                }));
            }
            Ok(_) => tracing::error!(node = %dev.node, "object body missing"),
            Err(e) => {
                tracing::error!(node = %dev.node, error = %e.message(), "replica failed verification; trying another")
            }
        }
    }
    Ok(Attempt::NoBody)
}

/// Sets an object's headers on an answer (system metadata stays inside).
pub fn object_headers(r: &mut Response, m: &pb::ObjectMeta) {
    let h = r.headers_mut();
    let mut put = |k: &str, v: &str| {
        if let (Ok(k), Ok(v)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.insert(k, v);
        }
    };
    put("etag", &m.etag);
    put("content-type", &m.content_type);
    put("last-modified", &http_date(m.meta_ts.max(m.ts)));
    put("x-timestamp", &Timestamp(m.meta_ts.max(m.ts)).to_string());
    put("accept-ranges", "bytes");
    if m.delete_at != 0 {
        put("x-delete-at", &m.delete_at.to_string());
    }
    for item in &m.meta {
        if !item.value.is_empty() && !item.key.starts_with("x-object-sysmeta-") {
            let raw = crate::headers::stored_value_bytes(&item.value);
            if let (Ok(k), Ok(v)) = (
                axum::http::HeaderName::from_bytes(title_case(&item.key).as_bytes()),
                HeaderValue::from_bytes(&raw),
            ) {
                h.insert(k, v);
            }
        }
    }
}

/// GET or HEAD of an object as stored (a manifest is returned as itself).
pub async fn get(p: &Proxy, path: &ObjPath, h: &HeaderMap, head: bool) -> SwiftResult<Response> {
    respond(fetch(p, path, h, head).await?, h)
}

/// A 412 or 416 about an object carries its validators (`Etag`, `Last-Modified`,
/// `X-Timestamp`) and `Accept-Ranges`, as Swift's do: a client can tell which version it did not match.
fn with_validators(e: SwiftError, m: &pb::ObjectMeta) -> SwiftError {
    let ts = m.meta_ts.max(m.ts);
    e.with_header("etag", m.etag.clone())
        .with_header("accept-ranges", "bytes".into())
        .with_header("last-modified", http_date(ts))
        .with_header("x-timestamp", Timestamp(ts).to_string())
}

/// The `multipart/byteranges` body of `parts`, cut from `span` (the object's bytes from
/// `start`, in order). A span that ends early ends the body with its error, never with
/// the closing boundary.
pub(crate) fn multipart_body(
    span: ByteStream,
    start: u64,
    parts: headers::Multipart,
) -> ByteStream {
    let state = (span, start, 0usize, false, parts, false);
    let pieces = futures::stream::unfold(
        state,
        |(mut span, mut pos, mut next, mut open, parts, done)| async move {
            if done {
                return None;
            }
            let mut out = Vec::new();
            match span.next().await {
                Some(Ok(chunk)) => {
                    parts.cut(&chunk, &mut pos, &mut next, &mut open, &mut out);
                    Some((Ok(out), (span, pos, next, open, parts, false)))
                }
                Some(Err(e)) => Some((Err(e), (span, pos, next, open, parts, true))),
                None if next == parts.parts.len() => {
                    out.push(parts.closing());
                    Some((Ok(out), (span, pos, next, open, parts, true)))
                }
                None => Some((
                    Err(unavailable("the object ended before its ranges")),
                    (span, pos, next, open, parts, true),
                )),
            }
        },
    );
    Box::pin(pieces.flat_map(|r: SwiftResult<Vec<Bytes>>| {
        futures::stream::iter(match r {
            Ok(v) => v.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        })
    }))
}

/// The answer to a GET or HEAD that found `found`.
pub fn respond(mut found: Found, h: &HeaderMap) -> SwiftResult<Response> {
    let m = &found.meta;
    if conditions(h, &m.etag, m.meta_ts.max(m.ts)).map_err(|e| with_validators(e, m))?
        == Condition::NotModified
    {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        object_headers(&mut r, m);
        r.headers_mut().remove("content-type");
        return Ok(r);
    }
    if let (Some(parts), Some(span)) = (found.parts.take(), found.range) {
        let body = found
            .body
            .take()
            .unwrap_or_else(|| Box::pin(futures::stream::empty()));
        let len = parts.body_len();
        let ctype = parts.content_type();
        let mut r = Response::new(Body::from_stream(
            multipart_body(body, span.start, *parts)
                .map(|r| r.map_err(|e| std::io::Error::other(e.body))),
        ));
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
        object_headers(&mut r, m);
        let h = r.headers_mut();
        h.insert("content-length", HeaderValue::from(len));
        if let Ok(v) = HeaderValue::from_str(&ctype) {
            h.insert("content-type", v);
        }
        return Ok(r);
    }
    let (status, len) = match found.range {
        Some(rg) => (StatusCode::PARTIAL_CONTENT, rg.end - rg.start),
        None => (StatusCode::OK, m.size),
    };
    let body = match found.body {
        Some(b) => Body::from_stream(b.map(|r| r.map_err(|e| std::io::Error::other(e.body)))),
        None => Body::empty(),
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    object_headers(&mut r, m);
    r.headers_mut()
        .insert("content-length", HeaderValue::from(len));
    if let Some(rg) = found.range {
        if let Ok(v) =
            HeaderValue::from_str(&format!("bytes {}-{}/{}", rg.start, rg.end - 1, m.size))
        {
            r.headers_mut().insert("content-range", v);
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    //! GET failover against stand-in replicas: a body that fails or stalls mid-way is
    //! resumed on another replica of the same version, and never on another version.

    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Clone, Copy)]
    enum How {
        Serves,
        /// Sends bytes up to this offset, then a checksum error.
        FailsAt(u64),
        /// Sends bytes up to this offset, then nothing, ever.
        StallsAt(u64),
        /// Holds a newer version than the one being read.
        OtherVersion,
    }

    struct Fake {
        body: Arc<Vec<u8>>,
        how: How,
        opened: Arc<AtomicUsize>,
    }

    const TS: u64 = 100;
    const PIECE: usize = 64 * 1024;

    impl Replica for Fake {
        fn open(
            &self,
            req: pb::GetRequest,
        ) -> futures::future::BoxFuture<'static, Result<(pb::ObjectMeta, MsgStream), Status>>
        {
            self.opened.fetch_add(1, Ordering::SeqCst);
            let (body, how) = (self.body.clone(), self.how);
            Box::pin(async move {
                let meta = pb::ObjectMeta {
                    found: true,
                    ts: if matches!(how, How::OtherVersion) {
                        TS + 1
                    } else {
                        TS
                    },
                    digest: Bytes::from_static(b"digest"),
                    size: body.len() as u64,
                    ..Default::default()
                };
                let start = req.offset.unwrap_or(0) as usize;
                let end = req.length.map_or(body.len(), |l| start + l as usize);
                let cut = match how {
                    How::FailsAt(x) | How::StallsAt(x) => (x as usize).clamp(start, end),
                    _ => end,
                };
                let pieces: Vec<Result<pb::GetMsg, Status>> = (start..cut)
                    .step_by(PIECE)
                    .map(|s| {
                        let d = Bytes::copy_from_slice(&body[s..(s + PIECE).min(cut)]);
                        Ok(pb::GetMsg {
                            msg: Some(pb::get_msg::Msg::Data(d)),
                        })
                    })
                    .collect();
                let head = futures::stream::iter(pieces);
                let s: MsgStream = match how {
                    How::FailsAt(_) => Box::pin(head.chain(futures::stream::once(async {
                        Err(Status::data_loss("block fails its checksum"))
                    }))),
                    How::StallsAt(_) => Box::pin(head.chain(futures::stream::pending())),
                    _ => Box::pin(head),
                };
                Ok((meta, s))
            })
        }
    }

    fn body() -> Arc<Vec<u8>> {
        Arc::new((0..3_000_000u32).map(|i| (i % 251) as u8).collect())
    }

    /// Reads `[start, end)` through a BodyStream over replicas behaving as `hows`, the
    /// first one being read. Returns the bytes received, whether the stream ended in an
    /// error, and how often each replica was opened.
    async fn read(hows: &[How], start: u64, end: u64) -> (Vec<u8>, bool, Vec<usize>) {
        let data = body();
        let fakes: Vec<Fake> = hows
            .iter()
            .map(|&how| Fake {
                body: data.clone(),
                how,
                opened: Arc::new(AtomicUsize::new(0)),
            })
            .collect();
        let opened: Vec<_> = fakes.iter().map(|f| f.opened.clone()).collect();
        let req = pb::GetRequest {
            offset: Some(start),
            length: Some(end - start),
            ..Default::default()
        };
        let (_, cur) = fakes[0].open(req).await.unwrap();
        let replicas: Vec<(Device, Arc<dyn Replica>)> = fakes
            .into_iter()
            .enumerate()
            .map(|(i, f)| {
                let dev = Device {
                    id: i as u32,
                    region: 1,
                    zone: 1,
                    node: format!("127.0.0.1:{}", 7000 + i),
                    name: "d1".into(),
                    weight: 1.0,
                    disk: String::new(),
                };
                (dev, Arc::new(f) as Arc<dyn Replica>)
            })
            .collect();
        let n = replicas.len();
        let b = BodyStream {
            cur,
            first: None,
            pos: start,
            end,
            ts: TS,
            digest: Bytes::from_static(b"digest"),
            target: pb::ObjectTarget::default(),
            replicas,
            current: 0,
            failed_at: vec![None; n],
        };
        let mut s = b.into_stream();
        let (mut got, mut failed) = (Vec::new(), false);
        while let Some(piece) = s.next().await {
            match piece {
                Ok(d) => got.extend_from_slice(&d),
                Err(_) => failed = true,
            }
        }
        let opened = opened.iter().map(|o| o.load(Ordering::SeqCst)).collect();
        (got, failed, opened)
    }

    #[tokio::test]
    async fn a_body_that_fails_mid_way_resumes_on_another_replica() {
        let (got, failed, opened) =
            read(&[How::FailsAt(1_500_000), How::Serves], 0, 3_000_000).await;
        assert!(!failed);
        assert_eq!(got, *body(), "every byte, once, in order");
        assert_eq!(opened, vec![1, 1]);
    }

    #[tokio::test]
    async fn a_range_resumes_where_it_stopped() {
        let (got, failed, _) = read(&[How::FailsAt(200_000), How::Serves], 1_000, 500_000).await;
        assert!(!failed);
        assert_eq!(got, body()[1_000..500_000]);
    }

    /// A replica that stalls counts as failed after the node timeout; one holding another
    /// version is never read from.
    #[tokio::test]
    async fn a_stalled_replica_hands_over_and_other_versions_are_skipped() {
        crate::cluster::set_node_timeout(std::time::Duration::from_millis(300));
        let (got, failed, opened) = read(
            &[How::StallsAt(100_000), How::OtherVersion, How::Serves],
            0,
            3_000_000,
        )
        .await;
        assert!(!failed);
        assert_eq!(got, *body());
        assert_eq!(opened, vec![1, 1, 1]);
    }

    /// When no replica can go on, the stream ends in an error after the verified prefix:
    /// no byte is made up and none is sent twice.
    #[tokio::test]
    async fn when_every_replica_fails_the_stream_errs_after_a_true_prefix() {
        let (got, failed, _) = read(
            &[How::FailsAt(100_000), How::FailsAt(100_000)],
            0,
            3_000_000,
        )
        .await;
        assert!(failed);
        assert_eq!(got, body()[..100_000]);
    }
}
