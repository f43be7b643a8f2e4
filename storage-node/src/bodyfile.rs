//! Writing a large object's body: [`TmpBody`] receives it into `tmp/`, then makes it
//! durable and moves it into place.
//!
//! Bodies are written with `O_DIRECT` in whole 1 MiB blocks from a page-aligned buffer, so
//! the data goes from our buffer to the disk without first being copied into the page cache
//! (that copy was over half of a storage node's CPU during large PUTs). The last, partial
//! block is written through the page cache after clearing `O_DIRECT`, and `fsync` covers
//! both. File systems without `O_DIRECT` (tmpfs) get ordinary buffered writes.

use std::alloc::Layout;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::ptr::NonNull;

use crate::device::{fsync_dir, Device};
use crate::diskfile::BLOCK;

/// Alignment `O_DIRECT` needs for buffers, offsets and lengths (a page covers every
/// logical block size in use).
pub const ALIGN: usize = 4096;

/// A fixed-capacity byte buffer aligned to [`ALIGN`].
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
}

// SAFETY: AlignedBuf owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// An empty buffer of `cap` bytes (a multiple of [`ALIGN`]).
    pub fn new(cap: usize) -> Self {
        assert!(
            cap > 0 && cap & (ALIGN - 1) == 0,
            "capacity must be a positive multiple of {ALIGN}"
        );
        let layout = Self::layout(cap);
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc(layout) };
        let ptr = NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        Self { ptr, len: 0, cap }
    }

    fn layout(cap: usize) -> Layout {
        Layout::from_size_align(cap, ALIGN).expect("valid layout")
    }

    /// Copies as much of `data` as fits; returns how much.
    pub fn fill(&mut self, data: &[u8]) -> usize {
        let n = (self.cap - self.len).min(data.len());
        // SAFETY: `n` bytes fit after `len` in the allocation, and `data` cannot overlap a
        // buffer we own exclusively.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(self.len), n);
        }
        self.len += n;
        n
    }

    /// The bytes filled so far.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the first `len` bytes were initialized by `fill`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Whether no more bytes fit.
    pub fn is_full(&self) -> bool {
        self.len == self.cap
    }

    /// Empties the buffer (keeping the allocation).
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this very layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.cap)) }
    }
}

/// A body file being written in `tmp/`; removed on drop unless it was moved into place.
pub struct TmpBody {
    path: PathBuf,
    file: Option<std::fs::File>,
    buf: Option<AlignedBuf>,
    direct: bool,
    synced: bool,
}

impl TmpBody {
    /// Creates `<device>/tmp/<random>`.
    pub fn create(dev: &Device) -> std::io::Result<Self> {
        let path = dev
            .root
            .join("tmp")
            .join(format!("{:032x}", rand::random::<u128>()));
        let open = |direct: bool| {
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true);
            if direct {
                o.custom_flags(libc::O_DIRECT);
            }
            o.open(&path)
        };
        let (file, direct) = match open(true) {
            Ok(f) => (f, true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (open(false)?, false),
            Err(e) => return Err(e),
        };
        Ok(Self {
            path,
            file: Some(file),
            buf: Some(AlignedBuf::new(BLOCK as usize)),
            direct,
            synced: false,
        })
    }

    /// Writes the buffer out on a blocking thread. Only the last write may be partial.
    async fn flush(&mut self) -> std::io::Result<()> {
        let mut file = self.file.take().expect("file present");
        let mut buf = self.buf.take().expect("buffer present");
        let direct = self.direct;
        let (file, buf, r) = tokio::task::spawn_blocking(move || {
            let r = write_block(&mut file, buf.as_slice(), direct);
            buf.clear();
            (file, buf, r)
        })
        .await
        .map_err(std::io::Error::other)?;
        self.file = Some(file);
        self.buf = Some(buf);
        r
    }

    /// Appends body bytes.
    pub async fn push(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let buf = self.buf.as_mut().expect("buffer present");
            let n = buf.fill(data);
            data = &data[n..];
            if buf.is_full() {
                self.flush().await?;
            }
        }
        Ok(())
    }

    /// Flushes and fsyncs the body (still in `tmp/`): done before taking the object's
    /// lock, so the lock is never held across a body's fsync.
    pub async fn sync(&mut self) -> std::io::Result<()> {
        if self.synced {
            return Ok(());
        }
        self.flush().await?;
        let file = self.file.take().expect("file present");
        let file = tokio::task::spawn_blocking(move || {
            stratus_client::service::metrics::timed_fsync(|| file.sync_all()).map(|_| file)
        })
        .await
        .map_err(std::io::Error::other)??;
        self.file = Some(file);
        self.synced = true;
        Ok(())
    }

    /// Moves the synced body to `dest` and fsyncs the directories it touched. The caller
    /// holds the object's lock and has decided that the record naming `dest` wins.
    pub async fn install(mut self, dest: PathBuf) -> std::io::Result<()> {
        self.sync().await?;
        drop(self.file.take());
        let tmp = self.path.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let dir = dest.parent().expect("data file has a directory");
            let mut fresh = Vec::new();
            let mut d = dir;
            while !d.exists() {
                fresh.push(d.to_path_buf());
                d = d.parent().expect("objects/ exists");
            }
            std::fs::create_dir_all(dir)?;
            std::fs::rename(&tmp, &dest)?;
            fsync_dir(dir)?;
            // New directories are durable only once their parents are synced too.
            for f in fresh {
                if let Some(p) = f.parent() {
                    fsync_dir(p)?;
                }
            }
            Ok(())
        })
        .await
        .map_err(std::io::Error::other)??;
        self.path = PathBuf::new();
        Ok(())
    }

    /// [`TmpBody::sync`] then [`TmpBody::install`].
    pub async fn finish(self, dest: PathBuf) -> std::io::Result<()> {
        self.install(dest).await
    }
}

/// Writes one block: the aligned part directly, an unaligned tail (the body's last bytes)
/// through the page cache.
fn write_block(file: &mut std::fs::File, data: &[u8], direct: bool) -> std::io::Result<()> {
    if !direct {
        return file.write_all(data);
    }
    let aligned = data.len() / ALIGN * ALIGN;
    file.write_all(&data[..aligned])?;
    if aligned < data.len() {
        let fd = file.as_raw_fd();
        // SAFETY: plain fcntl calls on a descriptor we own.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        file.write_all(&data[aligned..])?;
    }
    Ok(())
}

impl Drop for TmpBody {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bodies_of_every_shape_land_intact() {
        let d = tempfile::tempdir().unwrap();
        let dev = Device::open("d1", d.path(), 0).unwrap();
        for (i, len) in [
            1usize,
            4095,
            4096,
            70_000,
            BLOCK as usize,
            BLOCK as usize + 4097,
            3 * BLOCK as usize + 1,
        ]
        .into_iter()
        .enumerate()
        {
            let data: Vec<u8> = (0..len).map(|x| (x * 7 + i) as u8).collect();
            let mut b = TmpBody::create(&dev).unwrap();
            for piece in data.chunks(65_536 + 3) {
                b.push(piece).await.unwrap();
            }
            let dest = d.path().join(format!("objects/x/{i}.data"));
            b.finish(dest.clone()).await.unwrap();
            assert_eq!(std::fs::read(&dest).unwrap(), data, "length {len}");
        }
        assert_eq!(std::fs::read_dir(d.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn aligned_buffer_fills_to_capacity() {
        let mut b = AlignedBuf::new(ALIGN);
        assert_eq!(b.as_slice().as_ptr() as usize % ALIGN, 0);
        assert_eq!(b.fill(&[1; 4000]), 4000);
        assert_eq!(b.fill(&[2; 200]), 96);
        assert!(b.is_full());
        b.clear();
        assert!(b.as_slice().is_empty());
    }
}
