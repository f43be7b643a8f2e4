//! An image's bytes: `PUT /v2/images/{id}/file` streams them into one object (MD5 and
//! SHA-512 computed and the format checked as they pass, no temporary copy), and `GET`
//! streams them back (ranges too) with `Content-MD5`.
//!
//! The record goes `queued` → `saving` by compare-and-swap (a second upload gets 409), and
//! `saving` → `active` only after the object is committed on a quorum, under a name no
//! other upload uses; a failed upload goes back to `queued` and leaves nothing readable.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use sha2::{Digest, Sha512};
use stratus_client::identity::revoke::now_us;
use stratus_client::images::{Image, IMAGE_ACCOUNT, IMAGE_CONTAINER};

use super::inspect::{self, HEADER_BYTES};
use super::{bad, conflict, empty, ImgError, ImgResult, Req};
use crate::cluster::RingKind;
use crate::error::SwiftError;
use crate::headers::hv;
use crate::ops::object::{body_error, ByteStream, ObjPath};
use crate::ops::store::{store, MAX_FILE_SIZE};

/// An upload whose record has not been touched for this long is taken for dead (its proxy
/// crashed) and a new upload may replace it; a live upload touches its record every
/// [`HEARTBEAT`].
const STALE_UPLOAD_US: u64 = 120_000_000;
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(30);

/// What the stream learned while passing.
#[derive(Default)]
struct Seen {
    head: Vec<u8>,
    /// Hex SHA-512 of the whole body, once the upload is complete.
    sha512: Option<String>,
    size: u64,
    detected: Option<inspect::Detected>,
    refused: Option<String>,
}

fn path_of(object: &str) -> ObjPath {
    ObjPath {
        account: IMAGE_ACCOUNT.into(),
        container: IMAGE_CONTAINER.into(),
        object: object.into(),
    }
}

/// Moves the image from `from` to `to` by compare-and-swap, with `f` applied.
async fn transition(
    r: &Req<'_>,
    id: &str,
    expect: impl Fn(&Image) -> bool,
    f: impl Fn(&mut Image),
) -> ImgResult<Option<Image>> {
    for _ in 0..8 {
        let Some((mut img, rev)) = r.store().get(id).await? else {
            return Ok(None);
        };
        if !expect(&img) {
            return Ok(None);
        }
        f(&mut img);
        img.updated_us = now_us();
        if r.store().swap(&img, rev).await? {
            return Ok(Some(img));
        }
    }
    Ok(None)
}

/// `PUT /v2/images/{id}/file`.
pub(crate) async fn put(r: &Req<'_>, id: &str, body: Body) -> ImgResult {
    let (img, rev) = r.owned(id).await?;
    let stale = img.status == "saving" && now_us().saturating_sub(img.updated_us) > STALE_UPLOAD_US;
    if stale {
        // The proxy of the last upload is gone: its bytes, if any were committed, are
        // nobody's.
        if let Some(old) = img.object.as_deref() {
            discard(r, old).await;
        }
    }
    if img.status != "queued" && !stale {
        return Err(conflict(format!(
            "Image status transition from {} to saving is not allowed",
            img.status
        )));
    }
    let (Some(disk_format), Some(_)) = (img.disk_format.clone(), img.container_format.clone())
    else {
        return Err(bad(
            "Properties disk_format, container_format must be set prior to saving data.",
        ));
    };
    let h = &r.parts.headers;
    let length: Option<u64> = match hv(h, "content-length") {
        Some(v) => Some(
            v.trim()
                .parse()
                .map_err(|_| bad("Invalid Content-Length"))?,
        ),
        None => None,
    };
    if length.is_some_and(|l| l > MAX_FILE_SIZE) {
        return Err(ImgError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Image exceeds the storage limit of {MAX_FILE_SIZE} bytes."),
        ));
    }
    // queued → saving, once: a racing upload loses here.
    let upload = stratus_core::id::new_uuid();
    let mut saving = img.clone();
    saving.status = "saving".into();
    saving.object = Some(format!("{id}/{upload}"));
    saving.updated_us = now_us();
    if !r.store().swap(&saving, rev).await? {
        return Err(conflict("Another upload to this image is under way."));
    }
    let object = format!("{id}/{upload}");
    // While the bytes flow, the record is touched now and then, so that another proxy can
    // tell a live upload from one whose proxy died.
    let result = {
        let upload = stream_in(r, &object, &disk_format, length, body);
        tokio::pin!(upload);
        loop {
            tokio::select! {
                res = &mut upload => break res,
                _ = tokio::time::sleep(HEARTBEAT) => {
                    let mine = |i: &Image| i.status == "saving" && i.object.as_deref() == Some(object.as_str());
                    if let Err(e) = transition(r, id, mine, |_| {}).await {
                        tracing::warn!(image = id, error = %e.message, "could not mark an upload alive");
                    }
                }
            }
        }
    };
    match result {
        Ok((etag, seen)) => {
            let sha = seen.sha512.clone();
            let virtual_size =
                seen.detected
                    .as_ref()
                    .and_then(|d| d.virtual_size)
                    .or(if disk_format == "raw" {
                        Some(seen.size)
                    } else {
                        None
                    });
            let done = transition(
                r,
                id,
                |i| i.status == "saving" && i.object.as_deref() == Some(object.as_str()),
                |i| {
                    i.status = "active".into();
                    i.checksum = Some(etag.clone());
                    i.os_hash_algo = Some("sha512".into());
                    i.os_hash_value = sha.clone();
                    i.size = Some(seen.size);
                    i.virtual_size = virtual_size;
                },
            )
            .await?;
            if done.is_none() {
                // Deleted (or reset) while uploading: the bytes are nobody's.
                discard(r, &object).await;
                return Err(ImgError::new(
                    StatusCode::GONE,
                    format!("Image {id} was deleted while its data was being saved."),
                ));
            }
            Ok(empty(StatusCode::NO_CONTENT))
        }
        Err(e) => {
            // Back to queued, with nothing readable; a committed object (refused after the
            // fact) is removed.
            transition(
                r,
                id,
                |i| i.status == "saving" && i.object.as_deref() == Some(object.as_str()),
                |i| {
                    i.status = "queued".into();
                    i.object = None;
                },
            )
            .await?;
            discard(r, &object).await;
            Err(e)
        }
    }
}

async fn discard(r: &Req<'_>, object: &str) {
    if let Err(e) = crate::ops::object::delete(r.p, &path_of(object)).await {
        if e.status != StatusCode::NOT_FOUND {
            tracing::warn!(object, error = %e.body, "could not remove the bytes of a failed image upload");
        }
    }
}

/// Streams the body into the image's object; the ETag (MD5) and what was seen.
async fn stream_in(
    r: &Req<'_>,
    object: &str,
    disk_format: &str,
    length: Option<u64>,
    body: Body,
) -> ImgResult<(String, Seen)> {
    // The service's container exists from the first upload on (idempotent).
    crate::ops::database::put(
        r.p,
        RingKind::Container,
        IMAGE_ACCOUNT,
        IMAGE_CONTAINER,
        &HeaderMap::new(),
    )
    .await?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let declared: Arc<str> = Arc::from(disk_format);
    let s2 = seen.clone();
    // SHA-512 runs on a thread of its own, fed the same chunks, so it overlaps the network
    // and the replicas' work instead of adding to the request's own path (the MD5 is the
    // object's ETag, computed by the store). A bounded channel holds it back if it lags.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
    let hasher = tokio::task::spawn_blocking(move || {
        let mut h = Sha512::new();
        while let Some(b) = rx.blocking_recv() {
            h.update(&b);
        }
        hex::encode(h.finalize())
    });
    let stream: ByteStream = Box::pin(body.into_data_stream().then(move |chunk| {
        let (tx, s2, declared) = (tx.clone(), s2.clone(), declared.clone());
        async move {
            let chunk = chunk.map_err(body_error)?;
            {
                let mut s = s2.lock().expect("lock");
                s.size += chunk.len() as u64;
                if s.detected.is_none() && s.refused.is_none() {
                    let want = HEADER_BYTES - s.head.len();
                    s.head.extend_from_slice(&chunk[..want.min(chunk.len())]);
                    if s.head.len() >= HEADER_BYTES {
                        match inspect::check(&declared, &s.head) {
                            Ok(d) => s.detected = Some(d),
                            Err(why) => s.refused = Some(why),
                        }
                    }
                }
                if let Some(why) = &s.refused {
                    return Err(SwiftError::new(StatusCode::BAD_REQUEST, why.clone()));
                }
            }
            if tx.send(chunk.clone()).await.is_err() {
                return Err(SwiftError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the image hasher stopped",
                ));
            }
            Ok(chunk)
        }
    }));
    let mut header = crate::ops::store::client_put_header(&HeaderMap::new(), Vec::new(), length)?;
    header.content_type = "application/octet-stream".into();
    let stored = store(r.p, &path_of(object), header, stream, None).await;
    // The stream is gone with the store, so the hasher has seen every chunk and ends.
    let sha512 = hasher.await.ok();
    let mut s = std::mem::take(&mut *seen.lock().expect("lock"));
    s.sha512 = sha512;
    if let Some(why) = s.refused.take() {
        return Err(bad(why));
    }
    let stored = stored?;
    if length.is_some_and(|l| l != s.size) {
        return Err(bad("The upload ended before Content-Length bytes arrived."));
    }
    if s.detected.is_none() {
        // A small image: check it whole.
        s.detected = Some(inspect::check(disk_format, &s.head).map_err(bad)?);
    }
    Ok((stored.etag, s))
}

/// `GET`/`HEAD /v2/images/{id}/file`.
pub(crate) async fn get(r: &Req<'_>, id: &str) -> ImgResult {
    let (img, _) = r.image(id).await?;
    match img.status.as_str() {
        "active" => {}
        "deactivated" if r.is_admin() => {}
        "deactivated" => {
            return Err(super::forbidden(
                "The requested image has been deactivated. Image data download is forbidden.",
            ))
        }
        // No data yet: 204 and nothing (Glance's answer for a queued image).
        _ => return Ok(empty(StatusCode::NO_CONTENT)),
    }
    let object = img
        .object
        .as_deref()
        .ok_or_else(|| ImgError::new(StatusCode::SERVICE_UNAVAILABLE, "image data missing"))?;
    let head = r.parts.method == axum::http::Method::HEAD;
    let found = crate::ops::fetch::fetch(r.p, &path_of(object), &r.parts.headers, head).await?;
    let mut resp: Response = crate::ops::fetch::respond(found, &r.parts.headers)?;
    let hs = resp.headers_mut();
    for k in [
        "x-timestamp",
        "x-object-meta-mtime",
        "last-modified",
        "etag",
    ] {
        hs.remove(k);
    }
    hs.insert(
        "content-type",
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(c) = img.checksum.as_deref() {
        if let Ok(v) = HeaderValue::from_str(c) {
            hs.insert("content-md5", v);
        }
    }
    Ok(resp)
}
