//! Whole objects to and from files: walking the paths to upload, uploading one file as one
//! object (its mtime kept as `X-Object-Meta-Mtime`), downloading one object; both show a
//! [`crate::progress`] line on a terminal.
//!
//! Both directions stream in 1 MiB chunks, so memory does not grow with the object. A
//! download is written to a temporary file beside its destination and renamed into place
//! only once its bytes match the ETag (MD5); a large object's ETag is not the MD5 of its
//! bytes, so it is kept unchecked (the proxy checked each segment instead).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use md5::{Digest, Md5};
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::session::Swift;
use crate::progress::Progress;

/// Transfers up to this size show no progress line.
pub(super) const QUIET_BELOW: u64 = 8 << 20;

/// Appends the files under `path` (itself if it is a file) to `out`, in name order.
pub(super) fn walk(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let md = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if md.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)?
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for e in entries {
            walk(&e, out)?;
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// The object name of an uploaded file: its path, without a leading `./` or `/`.
pub(super) fn name_for(path: &Path) -> String {
    let s = path.to_string_lossy();
    s.trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

/// Uploads `file` as the object `container/name`, in one request.
pub(super) async fn upload_file(s: &Swift, container: &str, file: &Path, name: &str) -> Result<()> {
    let f = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("opening {}", file.display()))?;
    let len = f.metadata().await?.len();
    let progress =
        std::sync::Arc::new(std::sync::Mutex::new(Progress::new(name, len, QUIET_BELOW)));
    let p2 = progress.clone();
    let stream = file_stream(f, move |n| p2.lock().expect("lock").add(n));
    let r = s
        .req(Method::PUT, &format!("{container}/{name}"))
        .header("content-length", len)
        .header("x-object-meta-mtime", mtime(file))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await?;
    progress.lock().expect("lock").finish();
    Swift::check(r, &format!("uploading {name}")).await?;
    println!("{name}");
    Ok(())
}

/// A file's modification time in seconds since the epoch (`1700000000.123456`), or empty.
pub(super) fn mtime(p: &Path) -> String {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| format!("{:.6}", d.as_secs_f64()))
        .unwrap_or_default()
}

/// The file as a stream of 1 MiB chunks, reporting each chunk's size to `on_chunk`.
pub(crate) fn file_stream(
    f: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    on_chunk: impl FnMut(u64) + Send + 'static,
) -> impl futures::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
    futures::stream::unfold(Some((f, on_chunk)), |state| async move {
        let (mut f, mut cb) = state?;
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                cb(n as u64);
                Some((Ok(buf), Some((f, cb))))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// Downloads `container/name` to `dir/name`, checked against its ETag unless it is a large
/// object.
pub(super) async fn download(s: &Swift, container: &str, name: &str, dir: &Path) -> Result<()> {
    let r = s
        .req(Method::GET, &format!("{container}/{name}"))
        .send()
        .await?;
    let r = Swift::check(r, &format!("downloading {name}")).await?;
    // A large object's ETag is not the MD5 of its bytes (each segment was checked by the
    // proxy instead).
    let large = r.headers().contains_key("x-static-large-object")
        || r.headers().contains_key("x-object-manifest");
    let etag = r
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .filter(|_| !large)
        .map(|e| e.trim_matches('"').to_string());
    let total = r.content_length().unwrap_or(0);
    let dest = dir.join(name);
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let tmp = dest.with_extension(format!("stratus-part-{}", std::process::id()));
    let mut out = tokio::fs::File::create(&tmp)
        .await
        .with_context(|| format!("creating {}", tmp.display()))?;
    let mut md5 = Md5::new();
    let mut progress = Progress::new(name, total, QUIET_BELOW);
    let mut body = r.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.with_context(|| format!("downloading {name}"))?;
        md5.update(&chunk);
        out.write_all(&chunk).await?;
        progress.add(chunk.len() as u64);
    }
    progress.finish();
    out.flush().await?;
    let got = hex::encode(md5.finalize());
    if etag.as_deref().is_some_and(|e| e != got) {
        let _ = tokio::fs::remove_file(&tmp).await;
        bail!(
            "{name}: downloaded data does not match its ETag ({got} != {})",
            etag.unwrap_or_default()
        );
    }
    tokio::fs::rename(&tmp, &dest).await?;
    println!("{name}");
    Ok(())
}
