//! Storing an object: the body streams to every primary (a handoff standing in for each
//! one that fails), gathered into large messages, and the PUT succeeds when a quorum of
//! replicas has committed it with the ETag the proxy computed.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use md5::{Digest, Md5};
use stratus_core::ring::Device;
use stratus_core::timestamp::Timestamp;
use stratus_proto::storage as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::cluster::{abandoned, gather, node_failure, node_timeout, timed, Placement};
use crate::error::{unavailable, SwiftError, SwiftResult};
use crate::headers::{http_date, hv};
use crate::ops::object::{delete_at, meta_items, ByteStream, ObjPath};
use crate::proxy::Proxy;

/// Largest object (Swift's `max_file_size`: 5 GiB + 2).
pub const MAX_FILE_SIZE: u64 = 5 * 1024 * 1024 * 1024 + 2;

/// Largest data message sent to a storage node.
const CHUNK: usize = 1 << 20;

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

/// Whether a node refused a PUT because a version that supersedes it is stored there
/// (Swift's object server answers 409).
fn superseded(s: &Status) -> bool {
    s.code() == tonic::Code::AlreadyExists
}

/// Opens a writer per primary, replacing failed primaries by handoffs. Also returns how
/// many primaries refused because they hold a version that supersedes this one.
async fn open_writers(
    p: &Proxy,
    place: &Placement,
    header: &pb::PutHeader,
) -> (Vec<Writer>, usize) {
    let calls = place.primaries.iter().enumerate().map(|(i, primary)| async move {
        let mut dev = primary.clone();
        loop {
            match timed(open_writer(p, &dev, header, i as u32)).await {
                Ok(w) => return Ok(w),
                Err(s) if node_failure(&s) => {
                    tracing::info!(node = %dev.node, device = %dev.name, error = %s.message(), "primary unavailable for PUT; trying a handoff");
                    dev = match place.next_handoff() {
                        Some(d) => d.clone(),
                        None => return Err(false),
                    };
                }
                Err(s) => {
                    tracing::warn!(node = %dev.node, error = %s.message(), "PUT refused");
                    return Err(superseded(&s));
                }
            }
        }
    });
    let mut writers = Vec::new();
    let mut conflicts = 0;
    // A primary still silent half a second after a quorum is ready is left out (the
    // replicator brings it the object later): a stalled node must not stall the PUT.
    for r in gather(calls, place.quorum(), Result::is_ok).await {
        match r {
            Some(Ok(w)) => writers.push(w),
            Some(Err(true)) => conflicts += 1,
            Some(Err(false)) | None => {}
        }
    }
    (writers, conflicts)
}

/// 202, as Swift answers a PUT that replicas refused because they hold a version at least
/// as new: the request was valid, and a concurrent or later write won.
fn accepted_not_stored() -> SwiftError {
    SwiftError::new(
        StatusCode::ACCEPTED,
        "<html><h1>Accepted</h1><p>The request is accepted for processing.</p></html>",
    )
}

/// Sends one data message to every writer, dropping the writers that failed.
async fn send_all(writers: &mut Vec<Writer>, data: Bytes) {
    let msg = pb::PutMsg {
        msg: Some(pb::put_msg::Msg::Data(data)),
    };
    // A replica that cannot take the message within the node timeout is dropped.
    let sends = writers
        .iter()
        .map(|w| tokio::time::timeout(node_timeout(), w.tx.send(msg.clone())));
    let ok: Vec<bool> = futures::future::join_all(sends)
        .await
        .into_iter()
        .map(|r| matches!(r, Ok(Ok(()))))
        .collect();
    let mut i = 0;
    writers.retain(|_| {
        i += 1;
        ok[i - 1]
    });
}

/// What a stored PUT produced.
pub struct Stored {
    /// The MD5 of the body, hex.
    pub etag: String,
    /// The timestamp the object was stored under.
    pub ts: Timestamp,
    /// The length of the body stored.
    pub size: u64,
}

/// Streams `body` to a quorum of replicas and commits it.
pub async fn store(
    p: &Proxy,
    path: &ObjPath,
    mut header: pb::PutHeader,
    mut body: ByteStream,
    expect_etag: Option<String>,
) -> SwiftResult<Stored> {
    let place = path.place(p).await?;
    let ts = Timestamp::now();
    header.ts = ts.0;
    header.target = Some(path.target(&place));
    let (mut writers, refused) = open_writers(p, &place, &header).await;
    let quorum = place.quorum();
    if writers.len() < quorum && refused > 0 && writers.len() + refused >= quorum {
        return Err(accepted_not_stored());
    }
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
    // Each node checks the bytes it got against this before committing them.
    let mut b3 = blake3::Hasher::new();
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
                b3.update(&piece);
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
            blake3: b3.finalize().as_bytes().to_vec().into(),
        })),
    };
    let commits = writers.into_iter().map(|mut w| {
        let footer = footer.clone();
        async move {
            w.tx.send(footer).await.map_err(|_| Status::unavailable("stream closed"))?;
            drop(w.tx);
            let r = tokio::time::timeout(node_timeout(), w.acks.message()).await;
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
    let results: Vec<Result<(), Status>> = gather(commits, quorum, Result::is_ok)
        .await
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(abandoned())))
        .collect();
    let committed = results.iter().filter(|r| r.is_ok()).count();
    let refused = refused
        + results
            .iter()
            .filter(|r| r.as_ref().is_err_and(superseded))
            .count();
    if committed < quorum && refused > 0 && committed + refused >= quorum {
        return Err(accepted_not_stored());
    }
    if committed < quorum {
        return Err(unavailable(format!(
            "{committed} of {} replicas committed",
            place.primaries.len()
        )));
    }
    Ok(Stored { etag, ts, size })
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
