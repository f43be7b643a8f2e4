//! A volume from a Glance image (`imageRef`).
//!
//! An image is imported once, into its **image volume** (`image-<image id>`, hidden, its
//! size the image's virtual size rounded up to GiB); every volume made from the image is
//! a copy-on-write clone of that volume's sealed snapshot, so only the first costs a copy.
//! [`stratus_client::volume_ops::Volumes::image_volume`] creates the image volume with a
//! compare-and-swap, so of racing requests exactly one is told it created it, and imports:
//! it attaches the image volume as its one writer, streams the image's bytes from their
//! object (a raw image as it is; a qcow2 converted to raw on the fly by
//! [`stratus_core::qcow2`], reading the object by ranges), writes only the 4 MiB pieces that
//! hold a non-zero byte (the rest of a thin volume reads as zeros already), flushes,
//! detaches and seals the image volume (read-only, snapshot taken).
//!
//! The new volume is answered at once, `creating`, while a task finishes it: after the
//! import (or, in the other requests, after waiting for it) the volume becomes the image
//! volume's clone and `available`, or `error` with a log line saying why.
//!
//! An import touches its image volume's record every [`HEARTBEAT`]; one whose record has
//! not been touched for [`STALE_US`] lost its proxy, and a waiting request takes it over
//! (a compare-and-swap, so only one does) and imports again — attaching bumps the volume's
//! epoch, so a writer that was only slow is fenced. An import that failed leaves the image
//! volume `error`: the volumes waiting for it fail, and the next request for the image
//! imports again.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use stratus_client::identity::revoke::now_us;
use stratus_client::images::{Image, IMAGE_ACCOUNT, IMAGE_CONTAINER};
use stratus_client::volume_io::VolumeIo;
use stratus_client::volume_ops::{image_volume_id, NewVolume, Source, Volumes};
use stratus_client::volumes::{Volume, VolumeError};
use stratus_core::qcow2::{Qcow2, ReadAt};
use stratus_core::volume::{CHUNK_SIZE, GIB, SECTOR};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::{bad, not_found, CinderResult, Req};
use crate::ops::object::ObjPath;
use crate::proxy::Proxy;

/// Bytes a piece: one volume chunk. Only pieces holding a non-zero byte are written.
const PIECE: usize = CHUNK_SIZE as usize;
/// Pieces written at once (and queued between reading and writing).
const IN_FLIGHT: usize = 4;
/// How often an import touches its image volume's record to show it is alive.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// An import whose image volume's record has not been touched for this long is dead.
const STALE_US: u64 = 90_000_000;
/// How often a request waiting for another's import looks at it.
const WAIT_STEP: Duration = Duration::from_millis(500);
/// The longest a new volume waits for its image to be imported.
const MAX_WAIT: Duration = Duration::from_secs(6 * 3600);
/// Bytes of a qcow2 image's object read by one ranged GET, and how many such blocks are
/// kept (the tables and the clusters being inflated are read again and again).
const BLOCK: u64 = 4 << 20;
const CACHED_BLOCKS: usize = 8;

/// A piece of the volume: its offset and bytes.
type Piece = (u64, Vec<u8>);

/// `POST /volumes` with `imageRef`: checks the image and the size, and answers the new
/// volume — `available` at once when the image volume is sealed already, else `creating`
/// while a task imports the image or waits for its import.
pub(crate) async fn create(
    r: &Req<'_>,
    mut new: NewVolume,
    image_id: &str,
    size: Option<u64>,
) -> CinderResult<Volume> {
    let img = match r.p.images.store().get(image_id).await? {
        Some((img, _)) if crate::image::visible_to(&r.caller, &img) => img,
        _ => return Err(not_found(format!("Image {image_id} could not be found."))),
    };
    if img.status != "active" {
        return Err(bad(format!(
            "Invalid input received: Image {image_id} is not active."
        )));
    }
    let format = img.disk_format.as_deref().unwrap_or("");
    if !matches!(format, "raw" | "qcow2" | "iso") {
        return Err(bad(format!(
            "Invalid input received: Image {image_id} is {format}; volumes are made of raw, iso and qcow2 images."
        )));
    }
    let virtual_size = img.virtual_size.ok_or_else(|| {
        bad(format!(
            "Invalid input received: Image {image_id} has no known virtual size."
        ))
    })?;
    let image_gb = virtual_size.div_ceil(GIB).max(1);
    new.size_gb = size.unwrap_or(image_gb.max(img.min_disk));
    if new.size_gb < image_gb {
        return Err(bad(format!(
            "Invalid input received: Size of specified image {image_gb}GB is larger than volume size {}GB.",
            new.size_gb
        )));
    }
    if new.size_gb < img.min_disk {
        return Err(bad(format!(
            "Invalid input received: Volume size {}GB cannot be smaller than the image minDisk size {}GB.",
            new.size_gb, img.min_disk
        )));
    }
    new.source = Source::Image(img.id.clone());
    let ops = r.ops();
    let owner = img.owner.clone().unwrap_or_default();
    let (iv, created) = ops.image_volume(&img.id, image_gb, &owner).await?;
    if !created && iv.status == "available" && iv.snap_seq > 0 {
        return Ok(ops.create(new).await?);
    }
    let v = ops.create_awaiting_image(new).await?;
    let retry_failed = !created && iv.status == "error";
    let task = finish(r.p.clone(), img, v.id.clone(), created, retry_failed);
    tokio::spawn(task.instrument(tracing::Span::current()));
    Ok(v)
}

/// Makes volume `vol` the clone of its image's volume once that is imported — by this
/// task (`import`), or by another it waits for — or marks it `error`.
async fn finish(p: Arc<Proxy>, img: Image, vol: String, import: bool, retry_failed: bool) {
    let ops = &p.volumes.ops;
    let done = async {
        let iv = image_volume_id(&img.id);
        let deadline = Instant::now() + MAX_WAIT;
        let (mut import, mut retry_failed) = (import, retry_failed);
        loop {
            if import {
                import_image(&p, &img).await?;
                break;
            }
            match ops.vols.get(&iv).await {
                Ok(Some((v, _))) if v.status == "available" && v.snap_seq > 0 => break,
                Ok(Some((v, _))) if v.status == "error" && retry_failed => {
                    retry_failed = false;
                    import = take_over(ops, &iv, true).await.map_err(|e| e.to_string())?;
                }
                Ok(Some((v, _))) if v.status == "creating" => {
                    if now_us().saturating_sub(v.updated_us) > STALE_US {
                        import = take_over(ops, &iv, false)
                            .await
                            .map_err(|e| e.to_string())?;
                        if import {
                            tracing::warn!(image = %img.id, "the import of this image stalled; importing again");
                        }
                    }
                }
                Ok(Some((v, _))) => return Err(format!("its image volume is {}", v.status)),
                Ok(None) => return Err("its image volume is gone".to_string()),
                Err(e) => tracing::warn!(image = %img.id, error = %e, "reading the image volume"),
            }
            if import {
                continue;
            }
            if Instant::now() >= deadline {
                return Err(format!("the image was not imported within {MAX_WAIT:?}"));
            }
            tokio::time::sleep(WAIT_STEP).await;
        }
        ops.finish_from_image(&vol)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    };
    if let Err(why) = done.await {
        tracing::error!(volume = %vol, image = %img.id, error = %why, "could not create a volume from an image");
        let failed = ops
            .vols
            .update(&vol, |v| {
                (v.status == "creating").then(|| {
                    v.status = "error".into();
                    v.updated_us = now_us();
                })
            })
            .await;
        if let Err(e) = failed {
            tracing::error!(volume = %vol, error = %e, "could not mark a volume as failed");
        }
    }
}

/// Takes over the import of image volume `id` if its importer died (`creating`, not
/// touched for [`STALE_US`]) or, with `failed`, if it failed (`error`): true if this call
/// did (a compare-and-swap: of racing callers one does).
async fn take_over(ops: &Volumes, id: &str, failed: bool) -> Result<bool, VolumeError> {
    let now = now_us();
    let taken = ops
        .vols
        .update(id, |v| {
            let dead = v.status == "creating" && now.saturating_sub(v.updated_us) > STALE_US;
            (dead || (failed && v.status == "error")).then(|| {
                v.status = "creating".into();
                v.updated_us = now;
            })
        })
        .await?;
    Ok(taken.is_some())
}

/// Who writes an import (shown as the image volume's writer).
fn writer_name(image: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("stratus-proxy@{host}:{}/import/{image}", std::process::id())
}

/// Imports image `img` into its image volume and seals it; on failure the image volume
/// is left `error` (unless another import took over meanwhile).
async fn import_image(p: &Arc<Proxy>, img: &Image) -> Result<(), String> {
    let ops = &p.volumes.ops;
    let iv = image_volume_id(&img.id);
    let writer = writer_name(&img.id);
    let started = Instant::now();
    let result = async {
        let object = img.object.clone().ok_or("the image has no data")?;
        let len = img.size.ok_or("the image has no size")?;
        let path = ObjPath {
            account: IMAGE_ACCOUNT.into(),
            container: IMAGE_CONTAINER.into(),
            object,
        };
        let io = VolumeIo::attach(ops.meta().clone(), &iv, &writer, false)
            .await
            .map_err(|e| format!("attaching image volume {iv}: {e}"))?;
        let copy = async {
            let (tx, rx) = mpsc::channel(IN_FLIGHT);
            let read = async {
                if img.disk_format.as_deref() == Some("qcow2") {
                    read_qcow2(p.clone(), path, len, io.size(), tx).await
                } else {
                    read_raw(p, &path, len, io.size(), tx).await
                }
            };
            // A reader that stopped because the writer did says less than the writer.
            let (read, written) = tokio::join!(read, write_pieces(&io, rx));
            let written = written?;
            read?;
            io.flush().await.map_err(|e| format!("flushing: {e}"))?;
            Ok::<u64, String>(written)
        };
        let written = tokio::select! {
            r = copy => r,
            _ = keep_alive(ops, &iv, &writer) => Err("another import took over".to_string()),
        };
        if let Err(e) = io.detach().await {
            tracing::warn!(volume = %iv, error = %e, "detaching an image volume after its import");
        }
        let written = written?;
        ops.seal_image_volume(&img.id)
            .await
            .map_err(|e| format!("sealing image volume {iv}: {e}"))?;
        Ok::<u64, String>(written)
    }
    .await;
    match result {
        Ok(written) => {
            tracing::info!(image = %img.id, volume = %iv, bytes = img.size, written, secs = started.elapsed().as_secs_f64(), "image imported into its volume");
            Ok(())
        }
        Err(why) => {
            tracing::error!(image = %img.id, volume = %iv, error = %why, "importing an image failed");
            // Unless another import took over (and holds the volume now).
            let marked = ops
                .vols
                .update(&iv, |v| {
                    let mine = v.writer.as_deref().is_none_or(|w| w == writer);
                    (v.status == "creating" && mine).then(|| {
                        v.status = "error".into();
                        v.updated_us = now_us();
                    })
                })
                .await;
            if let Err(e) = marked {
                tracing::error!(volume = %iv, error = %e, "could not mark an image volume as failed");
            }
            Err(why)
        }
    }
}

/// Touches the image volume's record every [`HEARTBEAT`] while its import by `writer`
/// runs; ends only if the record is no longer that import (another took it over).
async fn keep_alive(ops: &Volumes, iv: &str, writer: &str) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let touched = ops
            .vols
            .update(iv, |v| {
                (v.status == "creating" && v.writer.as_deref() == Some(writer)).then(|| {
                    v.updated_us = now_us();
                })
            })
            .await;
        match touched {
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(e) => tracing::warn!(volume = %iv, error = %e, "could not show an import alive"),
        }
    }
}

/// Writes the pieces that arrive, [`IN_FLIGHT`] at once; the bytes written.
async fn write_pieces(io: &VolumeIo, mut rx: mpsc::Receiver<Piece>) -> Result<u64, String> {
    let mut inflight = FuturesUnordered::new();
    let mut written = 0u64;
    loop {
        tokio::select! {
            piece = rx.recv(), if inflight.len() < IN_FLIGHT => {
                let Some((off, data)) = piece else { break };
                written += data.len() as u64;
                inflight.push(async move {
                    io.write(off, &data, false)
                        .await
                        .map_err(|e| format!("writing at {off}: {e}"))
                });
            }
            Some(done) = inflight.next(), if !inflight.is_empty() => done?,
        }
    }
    while let Some(done) = inflight.next().await {
        done?;
    }
    Ok(written)
}

/// A raw image: its object's bytes as they are.
async fn read_raw(
    p: &Proxy,
    path: &ObjPath,
    len: u64,
    capacity: u64,
    tx: mpsc::Sender<Piece>,
) -> Result<(), String> {
    if len > capacity {
        return Err(format!(
            "the image ({len} bytes) is larger than its volume ({capacity} bytes)"
        ));
    }
    let found = crate::ops::fetch::fetch(p, path, &HeaderMap::new(), false)
        .await
        .map_err(|e| format!("reading the image: {}", e.body))?;
    let mut body = found.body.ok_or("reading the image: no body")?;
    let mut chop = Chopper::default();
    while let Some(bytes) = body.next().await {
        let bytes = bytes.map_err(|e| format!("reading the image: {}", e.body))?;
        if chop.end() + bytes.len() as u64 > len {
            return Err(format!("the image holds more than its {len} bytes"));
        }
        for piece in chop.push(&bytes) {
            tx.send(piece)
                .await
                .map_err(|_| "the volume writer stopped")?;
        }
    }
    if chop.end() != len {
        return Err(format!(
            "the image ended after {} of its {len} bytes",
            chop.end()
        ));
    }
    if let Some(piece) = chop.finish() {
        tx.send(piece)
            .await
            .map_err(|_| "the volume writer stopped")?;
    }
    Ok(())
}

/// A qcow2 image: the disk it holds, converted on a blocking thread.
async fn read_qcow2(
    p: Arc<Proxy>,
    path: ObjPath,
    len: u64,
    capacity: u64,
    tx: mpsc::Sender<Piece>,
) -> Result<(), String> {
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let src = ObjectReader {
            p,
            path,
            len,
            rt,
            cache: Mutex::default(),
        };
        let mut image = Qcow2::open(src).map_err(|e| e.to_string())?;
        if image.virtual_size() > capacity {
            return Err(format!(
                "the image's disk ({} bytes) is larger than its volume ({capacity} bytes)",
                image.virtual_size()
            ));
        }
        let mut sink = PieceSink {
            chop: Chopper::default(),
            tx,
        };
        image.copy_to_raw(&mut sink).map_err(|e| e.to_string())?;
        if let Some(piece) = sink.chop.finish() {
            sink.tx
                .blocking_send(piece)
                .map_err(|_| "the volume writer stopped")?;
        }
        Ok(())
    })
    .await
    .map_err(|e| format!("the qcow2 reader failed: {e}"))?
}

/// True when every byte is zero.
fn is_zero(b: &[u8]) -> bool {
    // Or-folding fixed chunks vectorises; `iter().all` stops early and does not.
    let mut chunks = b.chunks_exact(64);
    for c in &mut chunks {
        if c.iter().fold(0u8, |a, &x| a | x) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&x| x == 0)
}

/// Cuts a stream of bytes starting at offset 0 into [`PIECE`]-aligned pieces, keeping
/// only those that hold a non-zero byte.
#[derive(Default)]
struct Chopper {
    buf: Vec<u8>,
    /// The offset of `buf[0]`.
    at: u64,
}

impl Chopper {
    /// The offset after the last byte pushed.
    fn end(&self) -> u64 {
        self.at + self.buf.len() as u64
    }

    /// Takes `data`; the whole pieces it completed that are not all zeros.
    fn push(&mut self, mut data: &[u8]) -> Vec<Piece> {
        let mut out = Vec::new();
        while !data.is_empty() {
            if self.buf.capacity() < PIECE {
                self.buf.reserve_exact(PIECE - self.buf.len());
            }
            let take = (PIECE - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == PIECE {
                if is_zero(&self.buf) {
                    self.buf.clear();
                } else {
                    out.push((self.at, std::mem::take(&mut self.buf)));
                }
                self.at += PIECE as u64;
            }
        }
        out
    }

    /// The last, partial piece (padded with zeros to a whole sector), unless all zeros.
    fn finish(mut self) -> Option<Piece> {
        if self.buf.is_empty() || is_zero(&self.buf) {
            return None;
        }
        let sector = SECTOR as usize;
        self.buf.resize(self.buf.len().div_ceil(sector) * sector, 0);
        Some((self.at, self.buf))
    }
}

/// The `Write` end of a qcow2 conversion: whole pieces go to the volume writer.
struct PieceSink {
    chop: Chopper,
    tx: mpsc::Sender<Piece>,
}

impl Write for PieceSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for piece in self.chop.push(buf) {
            self.tx
                .blocking_send(piece)
                .map_err(|_| io::Error::other("the volume writer stopped"))?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An image's object read at any offset, [`BLOCK`] bytes a ranged GET, the last
/// [`CACHED_BLOCKS`] blocks kept. Called from blocking threads only.
struct ObjectReader {
    p: Arc<Proxy>,
    path: ObjPath,
    len: u64,
    rt: tokio::runtime::Handle,
    /// Blocks by index, least recently used first.
    cache: Mutex<Vec<(u64, Arc<Vec<u8>>)>>,
}

impl ObjectReader {
    fn block(&self, index: u64) -> io::Result<Arc<Vec<u8>>> {
        {
            let mut cache = self.cache.lock().expect("block cache");
            if let Some(at) = cache.iter().position(|(i, _)| *i == index) {
                let hit = cache.remove(at);
                let data = hit.1.clone();
                cache.push(hit);
                return Ok(data);
            }
        }
        let start = index * BLOCK;
        let end = (start + BLOCK).min(self.len);
        let data = Arc::new(self.rt.block_on(self.fetch(start, end))?);
        let mut cache = self.cache.lock().expect("block cache");
        cache.push((index, data.clone()));
        if cache.len() > CACHED_BLOCKS {
            cache.remove(0);
        }
        Ok(data)
    }

    /// Bytes `start..end` of the object.
    async fn fetch(&self, start: u64, end: u64) -> io::Result<Vec<u8>> {
        let mut h = HeaderMap::new();
        let range = HeaderValue::from_str(&format!("bytes={start}-{}", end - 1))
            .map_err(io::Error::other)?;
        h.insert("range", range);
        let found = crate::ops::fetch::fetch(&self.p, &self.path, &h, false)
            .await
            .map_err(|e| io::Error::other(format!("reading the image: {}", e.body)))?;
        let mut body = found
            .body
            .ok_or_else(|| io::Error::other("reading the image: no body"))?;
        let want = (end - start) as usize;
        let mut out = Vec::with_capacity(want);
        while let Some(bytes) = body.next().await {
            let bytes =
                bytes.map_err(|e| io::Error::other(format!("reading the image: {}", e.body)))?;
            if out.len() + bytes.len() > want {
                return Err(io::Error::other("reading the image: more bytes than asked"));
            }
            out.extend_from_slice(&bytes);
        }
        if out.len() != want {
            return Err(io::Error::other(format!(
                "reading the image: {} of {want} bytes at {start}",
                out.len()
            )));
        }
        Ok(out)
    }
}

impl ReadAt for ObjectReader {
    fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let index = offset / BLOCK;
        let block = self.block(index)?;
        let start = (offset - index * BLOCK) as usize;
        let n = buf.len().min(block.len().saturating_sub(start));
        buf[..n].copy_from_slice(&block[start..start + n]);
        Ok(n)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pieces_holding_data_are_kept_and_the_tail_is_padded() {
        let mut data = vec![0u8; 3 * PIECE + 1000];
        data[PIECE + 7] = 1; // piece 1
        data[3 * PIECE + 999] = 2; // the tail
        let mut chop = Chopper::default();
        let mut pieces = Vec::new();
        // Odd-sized pushes, as a body arrives.
        for part in data.chunks(777_777) {
            pieces.extend(chop.push(part));
        }
        assert_eq!(chop.end(), data.len() as u64);
        let tail = chop.finish().expect("the tail holds data");
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].0, PIECE as u64);
        assert_eq!(pieces[0].1.len(), PIECE);
        assert_eq!(pieces[0].1[7], 1);
        assert_eq!(tail.0, 3 * PIECE as u64);
        assert_eq!(tail.1.len(), 1024);
        assert_eq!(tail.1[999], 2);
        assert!(tail.1[1000..].iter().all(|&b| b == 0));

        let mut chop = Chopper::default();
        assert!(chop.push(&vec![0u8; PIECE + 512]).is_empty());
        assert!(chop.finish().is_none());
        assert!(is_zero(&[0; 100]));
        assert!(!is_zero(&[0, 0, 0, 9]));
    }
}
