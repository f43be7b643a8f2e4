//! Bulk operations (Swift's `bulk` middleware).
//!
//! - `POST /v1/<account>?bulk-delete` with a body of newline-separated, URL-encoded
//!   `/container/object` or `/container` paths deletes each (at most
//!   [`MAX_DELETES`] per request) with the requester's rights.
//! - `PUT /v1/<account>[/<container>[/<prefix>]]?extract-archive=tar|tar.gz|tar.bz2`
//!   stores every regular file of the archive as an object under that path (at the
//!   account level, the first path component names the container); containers are
//!   created as needed.
//!   The archive is streamed: a decoder thread reads it as it arrives, and each file is
//!   streamed to its replicas in turn, so memory use does not grow with the archive.
//!
//! Both answer 200 with a report of what happened, as Swift words it (plain text by
//! default, JSON or XML by `Accept`), whose `Response Status` says whether all went well.

use std::io::Read;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use stratus_proto::storage as pb;
use tokio::sync::mpsc;

use crate::acl::Identity;
use crate::cluster::RingKind;
use crate::error::{bad_request, SwiftError, SwiftResult};
use crate::names::{decode, Query, MAX_OBJECT_NAME};
use crate::ops::object::{ByteStream, ObjPath};
use crate::ops::report::{render, Report};
use crate::ops::{database, object_versioning, quota};
use crate::proxy::Proxy;

/// Most paths one bulk delete may name (Swift's `max_deletes_per_request`).
pub const MAX_DELETES: usize = 10_000;
/// Failures after which a bulk request gives up (Swift's `max_failed_deletes`).
pub const MAX_FAILED: usize = 1_000;
/// Most containers one archive may create (Swift's `max_containers_per_extraction`).
pub const MAX_CONTAINERS: usize = 10_000;

/// `POST ?bulk-delete`.
pub async fn delete(
    p: &Proxy,
    who: &Identity,
    account: &str,
    h: &HeaderMap,
    body: Body,
) -> SwiftResult<Response> {
    let limit = MAX_DELETES * (MAX_OBJECT_NAME * 3 + 300);
    let raw = axum::body::to_bytes(body, limit).await.map_err(|_| {
        SwiftError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Maximum Bulk Deletes: {MAX_DELETES} per request"),
        )
    })?;
    let text = String::from_utf8_lossy(&raw);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.len() > MAX_DELETES {
        return Err(SwiftError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Maximum Bulk Deletes: {MAX_DELETES} per request"),
        ));
    }
    let mut report = Report::default();
    for line in lines {
        if report.errors.len() >= MAX_FAILED {
            break;
        }
        let name = match decode(line) {
            Ok(n) => n,
            Err(e) => {
                report.error(line.to_string(), e.status);
                continue;
            }
        };
        let shown = format!("/{}", name.trim_start_matches('/'));
        let (c, o) = match name.trim_start_matches('/').split_once('/') {
            Some((c, o)) if !o.is_empty() => (c.to_string(), Some(o.to_string())),
            Some((c, _)) => (c.to_string(), None),
            None => (name.trim_start_matches('/').to_string(), None),
        };
        if c.is_empty() {
            report.error(shown, StatusCode::BAD_REQUEST);
            continue;
        }
        if let Err(e) = p
            .access(who, false, account, Some(&c), o.is_some(), h)
            .await
        {
            report.error(shown, e.status);
            continue;
        }
        let r = match o {
            Some(o) => {
                let path = ObjPath {
                    account: account.to_string(),
                    container: c,
                    object: o,
                };
                object_versioning::delete_object(p, &path).await
            }
            None => object_versioning::delete_container(p, account, &c).await,
        };
        match r {
            Ok(_) => report.deleted += 1,
            Err(e) if e.status == StatusCode::NOT_FOUND => report.not_found += 1,
            Err(e) => report.error(shown, e.status),
        }
    }
    Ok(render(report, h, StatusCode::OK))
}

/// What the decoder thread finds in an archive.
enum Event {
    /// A member: its name and the size its header declares.
    File(String, u64),
    Data(Bytes),
    End,
    Fail(String),
}

/// Reads the request body from the async side, blocking the decoder thread.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    buf: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.buf = b,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf.split_to(n));
        Ok(n)
    }
}

/// Walks the archive, sending each regular file's name and bytes.
fn decode_archive(
    format: &str,
    input: ChannelReader,
    tx: &mpsc::Sender<Event>,
) -> Result<(), String> {
    let reader: Box<dyn Read> = match format {
        "tar.gz" | "tgz" => Box::new(flate2::read::GzDecoder::new(input)),
        "tar.bz2" | "tbz2" => Box::new(bzip2::read::BzDecoder::new(input)),
        _ => Box::new(input),
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| e.to_string())?;
    for entry in entries {
        let mut e = entry.map_err(|e| e.to_string())?;
        if !e.header().entry_type().is_file() {
            continue;
        }
        let name = e
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        let size = e.size();
        if tx.blocking_send(Event::File(name, size)).is_err() {
            return Ok(());
        }
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        loop {
            let n = e.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                // A member cut short (a truncated archive) is not a complete object.
                if got < size {
                    return Err(format!(
                        "archive ends inside a member ({got} of {size} bytes)"
                    ));
                }
                break;
            }
            got += n as u64;
            if tx
                .blocking_send(Event::Data(Bytes::copy_from_slice(&buf[..n])))
                .is_err()
            {
                return Ok(());
            }
        }
        if tx.blocking_send(Event::End).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Where an archive member goes: (container, object), or why it cannot.
fn destination(container: &str, prefix: &str, member: &str) -> Option<(String, String)> {
    let member = member.trim_start_matches("./").trim_start_matches('/');
    if member.is_empty() {
        return None;
    }
    let (c, o) = if container.is_empty() {
        let (c, o) = member.split_once('/')?;
        (c.to_string(), o.to_string())
    } else if prefix.is_empty() {
        (container.to_string(), member.to_string())
    } else {
        (
            container.to_string(),
            format!("{}/{member}", prefix.trim_end_matches('/')),
        )
    };
    // The rules of a request path: no `..`, no container named `..` or holding a `/`,
    // Swift's lengths.
    crate::router::check_names(&c, &o).ok()?;
    Some((c, o))
}

/// Checks and prepares one member's destination: rights, its container (created if need
/// be, as Swift does), quota.
async fn prepare(
    p: &Proxy,
    who: &Identity,
    path: &ObjPath,
    h: &HeaderMap,
    size: u64,
    created: &mut usize,
) -> SwiftResult<Option<u64>> {
    if p.require_container(&path.account, &path.container)
        .await
        .is_err()
    {
        if *created >= MAX_CONTAINERS {
            return Err(bad_request("More than max_containers_per_extraction"));
        }
        p.access(who, false, &path.account, Some(&path.container), false, h)
            .await?;
        database::put(
            p,
            RingKind::Container,
            &path.account,
            &path.container,
            &HeaderMap::new(),
        )
        .await?;
        *created += 1;
    }
    p.require_container(&path.account, &path.container).await?;
    p.access(who, false, &path.account, Some(&path.container), true, h)
        .await?;
    quota::check_put(p, path, size).await
}

/// `PUT ?extract-archive=…`.
#[allow(clippy::too_many_arguments)]
pub async fn extract(
    p: &Proxy,
    who: &Identity,
    account: &str,
    container: &str,
    prefix: &str,
    q: &Query,
    h: &HeaderMap,
    body: Body,
) -> SwiftResult<Response> {
    let format = q.get("extract-archive").unwrap_or("").to_string();
    if !["tar", "tar.gz", "tgz", "tar.bz2", "tbz2"].contains(&format.as_str()) {
        return Err(bad_request("Unsupported archive format"));
    }
    let (body_tx, body_rx) = mpsc::channel::<Bytes>(8);
    let mut data = body.into_data_stream();
    let pump = tokio::spawn(async move {
        while let Some(Ok(piece)) = data.next().await {
            if body_tx.send(piece).await.is_err() {
                break;
            }
        }
    });
    let (tx, mut rx) = mpsc::channel::<Event>(8);
    let decoder = tokio::task::spawn_blocking(move || {
        let input = ChannelReader {
            rx: body_rx,
            buf: Bytes::new(),
        };
        if let Err(e) = decode_archive(&format, input, &tx) {
            let _ = tx.blocking_send(Event::Fail(e));
        }
    });
    let mut report = Report {
        extract: true,
        ..Default::default()
    };
    let mut containers_created = 0;
    let mut failure = None;
    while let Some(ev) = rx.recv().await {
        let (member, size) = match ev {
            Event::File(m, size) => (m, size),
            Event::Fail(e) => {
                failure = Some(e);
                break;
            }
            Event::Data(_) | Event::End => continue,
        };
        let dest = destination(container, prefix, &member).map(|(c, o)| ObjPath {
            account: account.to_string(),
            container: c,
            object: o,
        });
        let ready = match &dest {
            Some(path) => prepare(p, who, path, h, size, &mut containers_created).await,
            None => Err(bad_request("bad name")),
        };
        // The member's bytes flow through `file_tx` into the PUT (or are drained).
        let (file_tx, file_rx) = mpsc::channel::<Result<Bytes, SwiftError>>(4);
        let forward = async {
            let mut sink = Some(file_tx);
            while let Some(ev) = rx.recv().await {
                match ev {
                    Event::Data(b) => {
                        if let Some(s) = &sink {
                            if s.send(Ok(b)).await.is_err() {
                                sink = None;
                            }
                        }
                    }
                    Event::End => return None,
                    Event::Fail(e) => {
                        // The member's PUT must fail, not commit what arrived.
                        if let Some(s) = &sink {
                            let _ = s
                                .send(Err(bad_request(format!("Invalid Tar File: {e}"))))
                                .await;
                        }
                        return Some(e);
                    }
                    Event::File(..) => return Some("archive member out of order".into()),
                }
            }
            None
        };
        let name = format!("/{}/{}", container, member);
        match (ready, dest) {
            (Ok(left), Some(path)) => {
                let header = pb::PutHeader {
                    target: None,
                    ts: 0,
                    content_type: "application/octet-stream".into(),
                    meta: Vec::new(),
                    delete_at: 0,
                    content_length: None,
                };
                let stream: ByteStream =
                    Box::pin(tokio_stream::wrappers::ReceiverStream::new(file_rx));
                let stream = quota::cap(stream, left);
                // Through versioning, as Swift's extraction PUTs go through its pipeline.
                let put = object_versioning::store_object(p, &path, header, stream, None);
                let (stored, fail) = tokio::join!(put, forward);
                match stored {
                    Ok(_) => report.created += 1,
                    Err(e) => report.error(name, e.status),
                }
                if fail.is_some() {
                    failure = fail;
                    break;
                }
            }
            (ready, _) => {
                drop(file_rx);
                let status = ready.err().map_or(StatusCode::BAD_REQUEST, |e| e.status);
                report.error(name, status);
                if let Some(f) = forward.await {
                    failure = Some(f);
                    break;
                }
            }
        }
        if report.errors.len() >= MAX_FAILED {
            break;
        }
    }
    drop(rx);
    pump.abort();
    let _ = decoder.await;
    if let Some(why) = failure {
        if report.created == 0 && report.errors.is_empty() {
            return Err(bad_request(format!("Invalid Tar File: {why}")));
        }
        report
            .errors
            .push(("archive".into(), format!("400 Bad Request: {why}")));
    }
    Ok(render(report, h, StatusCode::CREATED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_land_under_the_upload_path() {
        assert_eq!(
            destination("", "", "./c/a/b.txt"),
            Some(("c".into(), "a/b.txt".into()))
        );
        assert_eq!(destination("", "", "toplevel.txt"), None);
        assert_eq!(
            destination("c", "", "a/b.txt"),
            Some(("c".into(), "a/b.txt".into()))
        );
        assert_eq!(
            destination("c", "pre/", "x"),
            Some(("c".into(), "pre/x".into()))
        );
    }

    #[test]
    fn members_follow_the_name_rules_of_a_request_path() {
        assert_eq!(destination("", "", "../x"), None, "a container named ..");
        assert_eq!(destination("", "", "./../x/y"), None);
        assert_eq!(destination("c", "", "a/../b"), None);
        assert_eq!(destination("c", "", "../b"), None);
        assert_eq!(destination("c", "..", "b"), None);
        let long = format!("{}/o", "c".repeat(300));
        assert_eq!(destination("", "", &long), None, "a 300-byte container");
        assert_eq!(destination("c", "", &"o".repeat(1025)), None);
    }
}
