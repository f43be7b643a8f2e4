//! Object requests: PUT (streamed to every primary, 201 on a durable quorum), GET/HEAD
//! (newest timestamp wins, ranges, conditionals), DELETE, POST, COPY and `X-Copy-From`.

use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};
use stratus_client::service::trace::Traced;
use stratus_core::ring::Device;
use stratus_core::time::now_secs;
use stratus_core::timestamp::Timestamp;
use stratus_proto::storage as pb;
use stratus_proto::storage::object_client::ObjectClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::acl::Identity;
use crate::cluster::{node_failure, timed, Placement, RingKind};
use crate::error::{
    bad_request, not_found, precondition_failed, unavailable, SwiftError, SwiftResult,
};
use crate::headers::{self, conditions, http_date, hv, range_spec, title_case, Condition};
use crate::router::{decode, MAX_OBJECT_NAME};
use crate::Proxy;

/// Largest object (Swift's `max_file_size`: 5 GiB + 2).
pub const MAX_FILE_SIZE: u64 = 5 * 1024 * 1024 * 1024 + 2;

/// Largest data message sent to a storage node.
const CHUNK: usize = 1 << 20;

/// Stored headers besides `X-Object-Meta-*`.
pub const STORED_HEADERS: &[&str] = &[
    "content-disposition",
    "content-encoding",
    "content-language",
    "cache-control",
    "expires",
    "x-object-manifest",
];

/// An object's address.
#[derive(Clone, Debug)]
pub struct ObjPath {
    pub account: String,
    pub container: String,
    pub object: String,
}

impl ObjPath {
    /// Where the object lives.
    fn place(&self, p: &Proxy) -> SwiftResult<Placement> {
        p.cluster.place(
            RingKind::Object,
            &self.account,
            Some(&self.container),
            Some(&self.object),
        )
    }

    fn target(&self, p: &Placement) -> pb::ObjectTarget {
        pb::ObjectTarget {
            device: String::new(),
            part: p.part,
            account: self.account.clone(),
            container: self.container.clone(),
            object: self.object.clone(),
            replica_index: 0,
        }
    }
}

/// A body, as the proxy streams it.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, SwiftError>> + Send>>;

/// 499: the client went away mid-body.
pub fn client_disconnect() -> SwiftError {
    SwiftError::new(
        StatusCode::from_u16(499).expect("valid status"),
        "Client Disconnect",
    )
}

/// One replica taking a PUT.
struct Writer {
    tx: mpsc::Sender<pb::PutMsg>,
    acks: Streaming<pb::PutAck>,
    dev: Device,
}

async fn open_writer(
    p: &Proxy,
    dev: &Device,
    header: &pb::PutHeader,
    index: u32,
) -> Result<Writer, Status> {
    let mut h = header.clone();
    if let Some(t) = h.target.as_mut() {
        t.device = dev.name.clone();
        t.replica_index = index;
    }
    let (tx, rx) = mpsc::channel(16);
    tx.send(pb::PutMsg {
        msg: Some(pb::put_msg::Msg::Header(h)),
    })
    .await
    .map_err(|_| Status::internal("put channel closed"))?;
    let mut client = p.cluster.peers.object(&dev.node)?;
    let mut acks = client.put(ReceiverStream::new(rx)).await?.into_inner();
    match acks.message().await? {
        Some(a) if a.stage == pb::put_ack::Stage::Ready as i32 => Ok(Writer {
            tx,
            acks,
            dev: dev.clone(),
        }),
        _ => Err(Status::unavailable("node did not get ready")),
    }
}

/// Opens a writer per primary, replacing failed primaries by handoffs.
async fn open_writers(p: &Proxy, place: &Placement, header: &pb::PutHeader) -> Vec<Writer> {
    let calls = place.primaries.iter().enumerate().map(|(i, primary)| async move {
        let mut dev = primary.clone();
        loop {
            match timed(open_writer(p, &dev, header, i as u32)).await {
                Ok(w) => return Some(w),
                Err(s) if node_failure(&s) => {
                    tracing::info!(node = %dev.node, device = %dev.name, error = %s.message(), "primary unavailable for PUT; trying a handoff");
                    dev = place.next_handoff()?.clone();
                }
                Err(s) => {
                    tracing::warn!(node = %dev.node, error = %s.message(), "PUT refused");
                    return None;
                }
            }
        }
    });
    futures::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Sends one data message to every writer, dropping the writers that failed.
async fn send_all(writers: &mut Vec<Writer>, data: Bytes) {
    let msg = pb::PutMsg {
        msg: Some(pb::put_msg::Msg::Data(data)),
    };
    let sends = writers.iter().map(|w| w.tx.send(msg.clone()));
    let ok: Vec<bool> = futures::future::join_all(sends)
        .await
        .into_iter()
        .map(|r| r.is_ok())
        .collect();
    let mut i = 0;
    writers.retain(|_| {
        i += 1;
        ok[i - 1]
    });
}

/// What a stored PUT produced.
pub struct Stored {
    pub etag: String,
    pub ts: Timestamp,
}

/// Streams `body` to a quorum of replicas and commits it.
pub async fn store(
    p: &Proxy,
    path: &ObjPath,
    mut header: pb::PutHeader,
    mut body: ByteStream,
    expect_etag: Option<String>,
) -> SwiftResult<Stored> {
    let place = path.place(p)?;
    let ts = Timestamp::now();
    header.ts = ts.0;
    header.target = Some(path.target(&place));
    let mut writers = open_writers(p, &place, &header).await;
    let quorum = place.quorum();
    if writers.len() < quorum {
        return Err(unavailable(format!(
            "only {} of {} replicas could take {}/{}/{}",
            writers.len(),
            place.primaries.len(),
            path.account,
            path.container,
            path.object
        )));
    }
    let mut md5 = Md5::new();
    let mut size = 0u64;
    // Client bodies arrive in small frames (often 8–16 KiB); they are gathered into
    // messages of up to CHUNK so each replica gets few, large gRPC messages.
    let mut pending = bytes::BytesMut::new();
    let mut ended = false;
    while !ended {
        match body.next().await {
            Some(piece) => {
                let piece = piece?;
                size += piece.len() as u64;
                if size > MAX_FILE_SIZE {
                    return Err(SwiftError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "<html><h1>Request Entity Too Large</h1><p>The body of your request was too large for this server.</p></html>",
                    ));
                }
                md5.update(&piece);
                pending.extend_from_slice(&piece);
                if pending.len() < CHUNK {
                    continue;
                }
            }
            None => ended = true,
        }
        while pending.len() >= CHUNK || (ended && !pending.is_empty()) {
            let part = pending.split_to(CHUNK.min(pending.len())).freeze();
            send_all(&mut writers, part).await;
            if writers.len() < quorum {
                return Err(unavailable("replicas failed while the body streamed"));
            }
        }
    }
    let etag = hex::encode(md5.finalize());
    if let Some(want) = expect_etag {
        if want.trim_matches('"') != etag {
            // Writers are dropped without a footer: every replica discards the body.
            return Err(SwiftError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "<html><h1>Unprocessable Entity</h1><p>Unable to process the contained instructions</p></html>",
            ));
        }
    }
    let footer = pb::PutMsg {
        msg: Some(pb::put_msg::Msg::Footer(pb::PutFooter {
            etag: etag.clone(),
        })),
    };
    let commits = writers.into_iter().map(|mut w| {
        let footer = footer.clone();
        async move {
            w.tx.send(footer).await.map_err(|_| Status::unavailable("stream closed"))?;
            drop(w.tx);
            let r = tokio::time::timeout(std::time::Duration::from_secs(60), w.acks.message()).await;
            match r {
                Ok(Ok(Some(a))) if a.stage == pb::put_ack::Stage::Committed as i32 => Ok(()),
                Ok(Err(s)) => {
                    tracing::warn!(node = %w.dev.node, error = %s.message(), "replica failed to commit");
                    Err(s)
                }
                _ => Err(Status::unavailable("no commit from replica")),
            }
        }
    });
    let committed = futures::future::join_all(commits)
        .await
        .into_iter()
        .filter(|r| r.is_ok())
        .count();
    if committed < quorum {
        return Err(unavailable(format!(
            "{committed} of {} replicas committed",
            place.primaries.len()
        )));
    }
    Ok(Stored { etag, ts })
}

/// An object found for a GET or HEAD.
pub struct Found {
    pub meta: pb::ObjectMeta,
    /// The body (or the requested range of it) unless HEAD.
    pub body: Option<ByteStream>,
    /// The range served, if one was asked for and satisfiable.
    pub range: Option<headers::ByteRange>,
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

/// A body being streamed to a client from one replica, with the other replicas of the same
/// version to fall back on: if the replica fails mid-body (a block fails its checksum, the
/// node dies), the rest of the range is read from the next one, so the client still gets
/// every byte, and no byte that failed verification.
struct BodyStream {
    cur: Streaming<pb::GetMsg>,
    first: Option<Bytes>,
    /// Absolute offset of the next byte to send, and the end of the range.
    pos: u64,
    end: u64,
    ts: u64,
    target: pb::ObjectTarget,
    /// Every replica of this version, the one being read included.
    replicas: Vec<(Device, ObjectClient<Traced>)>,
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
            match self.cur.message().await {
                Ok(Some(pb::GetMsg {
                    msg: Some(pb::get_msg::Msg::Data(d)),
                })) => {
                    self.pos += d.len() as u64;
                    return Some(Ok(d));
                }
                Ok(Some(_)) => continue,
                Ok(None) => tracing::error!(at = self.pos, "replica ended the body early"),
                Err(e) => {
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
            let (dev, client) = &self.replicas[i];
            let mut t = self.target.clone();
            t.device = dev.name.clone();
            let req = pb::GetRequest {
                target: Some(t),
                head_only: false,
                offset: Some(self.pos),
                length: Some(self.end - self.pos),
            };
            let opened = timed(start_get(client.clone(), req)).await;
            match opened {
                Ok((m, s)) if m.ts == self.ts => {
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

/// Reads an object: primaries first (the newest timestamp wins), then handoffs.
pub async fn fetch(
    p: &Proxy,
    path: &ObjPath,
    h: &HeaderMap,
    head_only: bool,
) -> SwiftResult<Found> {
    let place = path.place(p)?;
    let target = path.target(&place);
    let spec = if head_only { None } else { range_spec(h) };
    let hint = spec.and_then(|s| s.hint());
    // The first primary is asked for the body straight away (unless the range needs the
    // size first); the others only for metadata, to find the newest version.
    let speculate = !head_only && (spec.is_none() || hint.is_some());
    let calls = place
        .primaries
        .iter()
        .enumerate()
        .map(|(i, d)| timed(open_get(p, d, &target, !(speculate && i == 0), hint)));
    let mut answers: Vec<(Device, pb::ObjectMeta, Option<Streaming<pb::GetMsg>>, bool)> =
        Vec::new();
    let mut missing = 0;
    let mut failed = 0;
    for (i, r) in futures::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        match r {
            Ok((m, s)) if m.found => {
                answers.push((place.primaries[i].clone(), m, Some(s), speculate && i == 0))
            }
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
                        !head_only && hint.is_none() && spec.is_none(),
                    ));
                    break;
                }
                Ok(_) => {}
                Err(_) => {}
            }
        }
    }
    let Some(best) = answers.iter().map(|a| (a.1.ts, a.1.meta_ts)).max() else {
        if missing == 0 && failed > 0 {
            return Err(unavailable("no replica of the object answered"));
        }
        return Err(not_found());
    };
    let newest = answers
        .iter()
        .find(|a| (a.1.ts, a.1.meta_ts) == best)
        .expect("best exists")
        .1
        .clone();
    if newest.deleted || (newest.delete_at != 0 && newest.delete_at <= now_secs()) {
        return Err(not_found());
    }
    // A large object's manifest is read whole: the range applies to its segments.
    let manifest = crate::large::is_manifest(&newest);
    let reuse_ok = !(manifest && spec.is_some());
    let spec = if manifest { None } else { spec };
    let range = spec.map(|s| s.resolve(newest.size)).transpose()?;
    if head_only {
        return Ok(Found {
            meta: newest,
            body: None,
            range: None,
        });
    }
    // Read the body from a replica holding the newest data, verifying the first chunk
    // arrives before committing to it; a corrupt or failing copy hands over to the next.
    let (start, end) = range.map_or((0, newest.size), |r| (r.start, r.end));
    let mut sources: Vec<_> = answers
        .into_iter()
        .filter(|a| a.1.ts == newest.ts)
        .collect();
    sources.sort_by_key(|a| !a.3); // an already-streaming body first
    let replicas: Vec<(Device, ObjectClient<Traced>)> = sources
        .iter()
        .filter_map(|a| Some((a.0.clone(), p.cluster.peers.object(&a.0.node).ok()?)))
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
                Ok((m, s)) if m.ts == newest.ts => s,
                _ => continue,
            }
        };
        if start == end {
            return Ok(Found {
                meta: newest,
                body: Some(Box::pin(futures::stream::empty())),
                range,
            });
        }
        match s.message().await {
            Ok(Some(pb::GetMsg {
                msg: Some(pb::get_msg::Msg::Data(d)),
            })) => {
                let current = replicas.iter().position(|r| r.0 == dev).unwrap_or(0);
                let failed_at = vec![None; replicas.len()];
                let body = BodyStream {
                    cur: s,
                    first: Some(d),
                    pos: start,
                    end,
                    ts: newest.ts,
                    target: target.clone(),
                    replicas,
                    current,
                    failed_at,
                };
                return Ok(Found {
                    meta: newest,
                    body: Some(body.into_stream()),
                    range,
                });
            }
            Ok(_) => tracing::error!(node = %dev.node, "object body missing"),
            Err(e) => {
                tracing::error!(node = %dev.node, error = %e.message(), "replica failed verification; trying another")
            }
        }
    }
    Err(unavailable("no replica could serve the object body"))
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
            put(&title_case(&item.key), &item.value);
        }
    }
}

/// GET or HEAD of an object as stored (a manifest is returned as itself).
pub async fn get(p: &Proxy, path: &ObjPath, h: &HeaderMap, head: bool) -> SwiftResult<Response> {
    respond(fetch(p, path, h, head).await?, h)
}

/// The answer to a GET or HEAD that found `found`.
pub fn respond(found: Found, h: &HeaderMap) -> SwiftResult<Response> {
    let m = &found.meta;
    if conditions(h, &m.etag, m.meta_ts.max(m.ts))? == Condition::NotModified {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        object_headers(&mut r, m);
        r.headers_mut().remove("content-type");
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

/// `X-Delete-At` / `X-Delete-After` of a request, as seconds since the epoch (0: none).
/// `X-Delete-At`/`X-Delete-After` of a request.
pub fn delete_at(h: &HeaderMap) -> SwiftResult<u64> {
    let now = now_secs();
    if let Some(v) = hv(h, "x-delete-after") {
        let n: u64 = v
            .trim()
            .parse()
            .map_err(|_| bad_request("Non-integer X-Delete-After"))?;
        return Ok(now + n);
    }
    if let Some(v) = hv(h, "x-delete-at") {
        let at: u64 = v
            .trim()
            .split('.')
            .next()
            .unwrap_or("")
            .parse()
            .map_err(|_| bad_request("Non-integer X-Delete-At"))?;
        if at <= now {
            return Err(bad_request("X-Delete-At in past"));
        }
        return Ok(at);
    }
    Ok(0)
}

/// Turns stored metadata pairs into the wire form (empty values dropped).
pub fn meta_items(items: Vec<(String, String)>) -> Vec<pb::MetaItem> {
    items
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(key, value)| pb::MetaItem { key, value, ts: 0 })
        .collect()
}

/// 201 with the new object's ETag and Last-Modified.
pub fn created(stored: &Stored) -> Response {
    let mut r = SwiftError::new(StatusCode::CREATED, "").into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&stored.etag) {
        h.insert("etag", v);
    }
    if let Ok(v) = HeaderValue::from_str(&http_date(stored.ts.0)) {
        h.insert("last-modified", v);
    }
    r
}

/// The storage header of a client's PUT: its content type (by default
/// `application/octet-stream`), metadata `meta`, expiry, and body length if known.
pub fn client_put_header(
    h: &HeaderMap,
    meta: Vec<(String, String)>,
    content_length: Option<u64>,
) -> SwiftResult<pb::PutHeader> {
    Ok(pb::PutHeader {
        target: None,
        ts: 0,
        content_type: hv(h, "content-type")
            .unwrap_or("application/octet-stream")
            .to_string(),
        meta: meta_items(meta),
        delete_at: delete_at(h)?,
        content_length,
    })
}

/// PUT (plain, or a copy with `X-Copy-From`).
pub async fn put(
    p: &Arc<Proxy>,
    who: &Identity,
    path: &ObjPath,
    h: &HeaderMap,
    body: Body,
    as_stored: bool,
) -> SwiftResult<Response> {
    p.require_container(&path.account, &path.container).await?;
    if let Some(src) = hv(h, "x-copy-from") {
        let (c, o) = parse_copy_path(src)?;
        p.access(who, true, &path.account, Some(&c), true, h)
            .await?;
        let src = ObjPath {
            account: path.account.clone(),
            container: c,
            object: o,
        };
        return copy(p, who, &src, path, h, as_stored).await;
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
    let chunked = hv(h, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
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
    if hv(h, "if-none-match").is_some_and(|v| v.trim() == "*") {
        match fetch(p, path, h, true).await {
            Ok(_) => return Err(precondition_failed("Object exists")),
            Err(e) if e.status == StatusCode::NOT_FOUND => {}
            Err(e) => return Err(e),
        }
    }
    let meta = headers::metadata(h, "object", STORED_HEADERS)?;
    let header = client_put_header(h, meta, if chunked { None } else { content_length })?;
    crate::quota::check_put(p, path, content_length.unwrap_or(0)).await?;
    crate::versioning::archive_current(p, path).await?;
    let stream: ByteStream = Box::pin(
        body.into_data_stream()
            .map(|r| r.map_err(|_| client_disconnect())),
    );
    let expect = hv(h, "etag").map(str::to_string);
    let stored = store(p, path, header, stream, expect).await?;
    Ok(created(&stored))
}

/// `container/object` of `X-Copy-From` or `Destination` (percent-encoded, leading `/` ok).
fn parse_copy_path(v: &str) -> SwiftResult<(String, String)> {
    let v = decode(v.trim().trim_start_matches('/'))?;
    match v.split_once('/') {
        Some((c, o)) if !c.is_empty() && !o.is_empty() && o.len() <= MAX_OBJECT_NAME => {
            Ok((c.to_string(), o.to_string()))
        }
        _ => Err(precondition_failed(
            "X-Copy-From header must be of the form <container name>/<object name>",
        )),
    }
}

/// Server-side copy of `src` to `dst`: the source streams straight into the new PUT.
///
/// A large object is copied assembled, as a plain object (its segments are read with the
/// requester's rights); with `?multipart-manifest=get` (`as_stored`), its manifest is copied.
pub async fn copy(
    p: &Arc<Proxy>,
    who: &Identity,
    src: &ObjPath,
    dst: &ObjPath,
    h: &HeaderMap,
    as_stored: bool,
) -> SwiftResult<Response> {
    let found = fetch(p, src, &HeaderMap::new(), false).await?;
    let m = found.meta.clone();
    let (size, body, assembled) = if as_stored || !crate::large::is_manifest(&m) {
        (m.size, found.body, false)
    } else {
        match crate::large::assembled(p, who, src, found, h).await? {
            Ok((size, body)) => (size, Some(body), true),
            Err(found) => (m.size, found.body, false),
        }
    };
    let fresh = hv(h, "x-fresh-metadata").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut meta: Vec<(String, String)> = if fresh {
        Vec::new()
    } else {
        m.meta
            .iter()
            .filter(|i| !(assembled && crate::large::is_manifest_meta(&i.key)))
            .map(|i| (i.key.clone(), i.value.clone()))
            .collect()
    };
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
    crate::quota::check_put(p, dst, size).await?;
    crate::versioning::archive_current(p, dst).await?;
    let stored = store(p, dst, header, body, None).await?;
    let mut r = created(&stored);
    let hs = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("{}/{}", src.container, src.object)) {
        hs.insert("x-copied-from", v);
    }
    if let Ok(v) = HeaderValue::from_str(&http_date(m.meta_ts.max(m.ts))) {
        hs.insert("x-copied-from-last-modified", v);
    }
    Ok(r)
}

/// COPY with a `Destination: container/object` header.
pub async fn copy_verb(
    p: &Arc<Proxy>,
    who: &Identity,
    src: &ObjPath,
    h: &HeaderMap,
    as_stored: bool,
) -> SwiftResult<Response> {
    let dest =
        hv(h, "destination").ok_or_else(|| precondition_failed("Destination header required"))?;
    let (c, o) = parse_copy_path(dest)?;
    let dst = ObjPath {
        account: src.account.clone(),
        container: c,
        object: o,
    };
    p.require_container(&dst.account, &dst.container).await?;
    p.access(who, false, &dst.account, Some(&dst.container), true, h)
        .await?;
    copy(p, who, src, &dst, h, as_stored).await
}

/// DELETE: a tombstone on every replica.
pub async fn delete(p: &Proxy, path: &ObjPath) -> SwiftResult<Response> {
    let place = path.place(p)?;
    let ts = Timestamp::now().0;
    let target = path.target(&place);
    let results = p
        .cluster
        .write_all(&place, |dev, i| {
            let mut t = target.clone();
            t.device = dev.name.clone();
            t.replica_index = i;
            async move {
                let mut c = p.cluster.peers.object(&dev.node)?;
                Ok(c.delete(pb::DeleteRequest {
                    target: Some(t),
                    ts,
                })
                .await?
                .into_inner())
            }
        })
        .await;
    let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    if ok.len() < place.quorum() {
        return Err(unavailable("object DELETE reached no quorum"));
    }
    if ok.iter().filter(|r| r.existed).count() * 2 < ok.len() {
        return Err(not_found());
    }
    Ok(SwiftError::new(StatusCode::NO_CONTENT, "").into_response())
}

/// POST: replaces the object's metadata (and optionally content type and expiry).
pub async fn post(p: &Proxy, path: &ObjPath, h: &HeaderMap) -> SwiftResult<Response> {
    let place = path.place(p)?;
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
        return Ok(SwiftError::new(StatusCode::ACCEPTED, "").into_response());
    }
    if missing > 0 && missing + ok == results.len() {
        return Err(not_found());
    }
    Err(unavailable("object POST reached no quorum"))
}
