//! Large objects, made of segments in a segment container and a manifest: uploading a file
//! in segments, several at a time, each sent with its MD5 as the ETag so the proxy refuses a
//! corrupted transfer, then the manifest (a static large object listing every segment, or
//! with `--use-dlo` a dynamic one naming the segments' prefix); and deleting an object so
//! that a large object's segments go with it.
//!
//! Segment names carry the file's mtime, size and segment size, so a file changed since an
//! earlier upload (new mtime or size) gets new segments instead of overwriting old ones.

use std::path::Path;

use anyhow::{bail, Result};
use futures::StreamExt;
use md5::{Digest, Md5};
use reqwest::Method;
use tokio::io::AsyncReadExt;

use super::session::Swift;
use super::transfer::{file_stream, mtime, QUIET_BELOW};
use crate::progress::Progress;

/// Where a segmented upload goes.
pub(super) struct Segmented<'a> {
    /// The container of the manifest.
    pub container: &'a str,
    /// The object name of the manifest.
    pub name: &'a str,
    /// The container of the segments.
    pub seg_container: &'a str,
    /// Bytes per segment (the last one may be shorter).
    pub seg_size: u64,
    /// A DLO (`X-Object-Manifest`) instead of an SLO.
    pub dynamic: bool,
}

/// Segments uploaded at once.
const SEGMENT_PARALLELISM: usize = 4;

/// Uploads `file` in segments, then its manifest: an SLO listing each segment's path, ETag
/// and size (checked by the proxy), or a DLO naming the segments' prefix.
pub(super) async fn upload_large(
    s: &Swift,
    file: &Path,
    len: u64,
    t: &Segmented<'_>,
) -> Result<()> {
    let mt = mtime(file);
    let prefix = if t.dynamic {
        format!("{}/{mt}/{len}/{}/", t.name, t.seg_size)
    } else {
        format!("{}/slo/{mt}/{len}/{}/", t.name, t.seg_size)
    };
    let count = len.div_ceil(t.seg_size);
    let progress = std::sync::Arc::new(std::sync::Mutex::new(Progress::new(
        t.name,
        len,
        QUIET_BELOW,
    )));
    let uploads = (0..count).map(|i| {
        let seg_name = format!("{prefix}{i:08}");
        let offset = i * t.seg_size;
        let size = t.seg_size.min(len - offset);
        let progress = &progress;
        async move {
            // Two reads of the segment (the second mostly from the page cache): one for its
            // MD5, sent as the ETag so the proxy refuses a corrupted transfer (422), and one
            // streamed, so memory does not grow with the segment size.
            let open = || async {
                let mut f = tokio::fs::File::open(file).await?;
                tokio::io::AsyncSeekExt::seek(&mut f, std::io::SeekFrom::Start(offset)).await?;
                anyhow::Ok(f.take(size))
            };
            let mut md5 = Md5::new();
            let mut f = open().await?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                md5.update(&buf[..n]);
            }
            let etag = hex::encode(md5.finalize());
            let p2 = progress.clone();
            let body = file_stream(open().await?, move |n| p2.lock().expect("lock").add(n));
            let r = s
                .req(Method::PUT, &format!("{}/{seg_name}", t.seg_container))
                .header("etag", &etag)
                .header("content-length", size)
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await?;
            Swift::check(r, &format!("uploading segment {seg_name}")).await?;
            anyhow::Ok(serde_json::json!({
                "path": format!("/{}/{seg_name}", t.seg_container),
                "etag": etag,
                "size_bytes": size,
            }))
        }
    });
    let segments: Vec<serde_json::Value> = futures::stream::iter(uploads)
        .buffered(SEGMENT_PARALLELISM)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    progress.lock().expect("lock").finish();
    let path = format!("{}/{}", t.container, t.name);
    let r = if t.dynamic {
        s.req(Method::PUT, &path)
            .header("x-object-manifest", format!("{}/{prefix}", t.seg_container))
            .header("x-object-meta-mtime", &mt)
            .header("content-length", 0)
            .body("")
            .send()
            .await?
    } else {
        s.req(Method::PUT, &path)
            .query(&[("multipart-manifest", "put")])
            .header("x-object-meta-mtime", &mt)
            .body(serde_json::to_vec(&segments)?)
            .send()
            .await?
    };
    Swift::check(r, &format!("uploading the manifest of {}", t.name)).await?;
    println!("{} ({count} segments)", t.name);
    Ok(())
}

/// Deletes an object; a large object's segments go with it.
pub(super) async fn delete_object(s: &Swift, container: &str, name: &str) -> Result<()> {
    let path = format!("{container}/{name}");
    let head = s.req(Method::HEAD, &path).send().await?;
    let h = |k: &str| {
        head.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if h("x-static-large-object").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        let r = s
            .req(Method::DELETE, &path)
            .query(&[("multipart-manifest", "delete")])
            .send()
            .await?;
        let r = Swift::check(r, &format!("deleting {name}")).await?;
        let report = r.text().await.unwrap_or_default();
        if !report.contains("Response Status: 200") {
            bail!("deleting {name}: {report}");
        }
        return Ok(());
    }
    let r = s.req(Method::DELETE, &path).send().await?;
    Swift::check(r, &format!("deleting {name}")).await?;
    if let Some(m) = h("x-object-manifest") {
        let m = percent_encoding::percent_decode_str(&m)
            .decode_utf8_lossy()
            .into_owned();
        if let Some((c, prefix)) = m.split_once('/') {
            for e in s.names(c, Some(prefix), None).await? {
                if let Some(seg) = e["name"].as_str() {
                    let r = s.req(Method::DELETE, &format!("{c}/{seg}")).send().await?;
                    Swift::check(r, &format!("deleting segment {seg}")).await?;
                }
            }
        }
    }
    Ok(())
}
