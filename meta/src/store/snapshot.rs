//! Snapshot files: the state machine's column families dumped at one RocksDB snapshot.
//!
//! Format (version 1), all integers little endian:
//! ```text
//! "STRSNAP1" | u32 version | u32 meta_len | bincode SnapshotMeta
//! { u8 cf_index | u32 key_len | key | u32 value_len | value }*
//! u8 0xff | u64 record_count | u32 crc32 of every byte before it
//! ```
//! A file is written to `*.tmp`, fsynced, renamed and the directory fsynced; a received file
//! is verified end to end before anything of it is applied.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use openraft::SnapshotMeta;

use crate::NodeId;

const MAGIC: &[u8; 8] = b"STRSNAP1";
const VERSION: u32 = 1;
const END: u8 = 0xff;

/// Metadata of a snapshot as openraft knows it.
pub type Meta = SnapshotMeta<NodeId, openraft::BasicNode>;

/// A snapshot file that fails to parse or verify.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot I/O: {0}")]
    Io(#[from] io::Error),
    #[error("snapshot is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("snapshot format version {0} is not supported (this build reads {VERSION})")]
    Version(u32),
}

struct CrcWriter<W: Write> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Bytes written between write-behind steps.
const WRITE_BEHIND_CHUNK: u64 = 64 << 10;
/// Snapshot files are written no faster than this, so the disk's queue never holds more
/// than a chunk of them in front of a log sync.
const SNAPSHOT_WRITE_BYTES_PER_SEC: u64 = 64 << 20;

/// A file written behind: after each [`WRITE_BEHIND_CHUNK`], writeback of that chunk is
/// started and the previous chunk is waited for, so at most two chunks are ever dirty, and
/// the writer is paced to [`SNAPSHOT_WRITE_BYTES_PER_SEC`].
///
/// A snapshot is tens of MiB written by every member at the same log index. Left dirty in
/// the page cache until the final fsync, it would sit in front of the Raft log's next
/// fdatasync (ext4 commits the WAL's size change in a journal transaction that first writes
/// out the pending data of other files), stalling the log on all members at once.
pub(crate) struct WriteBehind {
    file: File,
    written: u64,
    started: u64,
    previous: Option<(u64, u64)>,
    since: std::time::Instant,
}

impl WriteBehind {
    pub(crate) fn new(file: File) -> Self {
        WriteBehind {
            file,
            written: 0,
            started: 0,
            previous: None,
            since: std::time::Instant::now(),
        }
    }

    /// Sleep until `written` bytes are due at [`SNAPSHOT_WRITE_BYTES_PER_SEC`].
    fn pace(&self) {
        let due = std::time::Duration::from_secs_f64(
            self.written as f64 / SNAPSHOT_WRITE_BYTES_PER_SEC as f64,
        );
        if let Some(wait) = due.checked_sub(self.since.elapsed()) {
            std::thread::sleep(wait);
        }
    }

    fn range(&self, offset: u64, len: u64, flags: libc::c_uint) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open for the life of `self.file`; sync_file_range only
        // starts or waits for writeback of the given byte range.
        let rc = unsafe {
            libc::sync_file_range(self.file.as_raw_fd(), offset as i64, len as i64, flags)
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Make the whole file durable and hand it back.
    pub(crate) fn finish(self) -> io::Result<File> {
        self.file.sync_all()?;
        Ok(self.file)
    }
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self
            .file
            .write(&buf[..buf.len().min(WRITE_BEHIND_CHUNK as usize)])?;
        self.written += n as u64;
        if self.written - self.started >= WRITE_BEHIND_CHUNK {
            if let Some((offset, len)) = self.previous {
                self.range(
                    offset,
                    len,
                    libc::SYNC_FILE_RANGE_WAIT_BEFORE
                        | libc::SYNC_FILE_RANGE_WRITE
                        | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                )?;
            }
            let chunk = (self.started, self.written - self.started);
            self.range(chunk.0, chunk.1, libc::SYNC_FILE_RANGE_WRITE)?;
            self.previous = Some(chunk);
            self.started = self.written;
            self.pace();
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Longest snapshot id accepted.
pub const MAX_ID_LEN: usize = 128;

/// Whether `id`, which a peer sends and which names a file in the snapshot folder, is one
/// this node could have made: 1 to [`MAX_ID_LEN`] ASCII letters, digits and `-` (so no `/`,
/// no `..`, no absolute path).
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > MAX_ID_LEN
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(format!(
            "bad snapshot id {:?}: 1 to {MAX_ID_LEN} letters, digits and '-'",
            id.chars().take(MAX_ID_LEN).collect::<String>()
        ));
    }
    Ok(())
}

/// Streams records into a new snapshot file.
pub struct SnapshotWriter {
    out: CrcWriter<BufWriter<WriteBehind>>,
    tmp: PathBuf,
    dest: PathBuf,
    count: u64,
}

impl SnapshotWriter {
    /// Start `dir/<snapshot_id>.snap`.
    pub fn create(dir: &Path, meta: &Meta) -> io::Result<Self> {
        check_id(&meta.snapshot_id).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        fs::create_dir_all(dir)?;
        let dest = dir.join(format!("{}.snap", meta.snapshot_id));
        let tmp = dir.join(format!("{}.snap.tmp", meta.snapshot_id));
        let file = File::create(&tmp)?;
        let mut out = CrcWriter {
            inner: BufWriter::with_capacity(1 << 20, WriteBehind::new(file)),
            crc: crc32fast::Hasher::new(),
        };
        let meta_bytes = bincode::serialize(meta).map_err(io::Error::other)?;
        out.write_all(MAGIC)?;
        out.write_all(&VERSION.to_le_bytes())?;
        out.write_all(&(meta_bytes.len() as u32).to_le_bytes())?;
        out.write_all(&meta_bytes)?;
        Ok(SnapshotWriter {
            out,
            tmp,
            dest,
            count: 0,
        })
    }

    /// Append one key-value of column family number `cf`.
    pub fn record(&mut self, cf: u8, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.out.write_all(&[cf])?;
        self.out.write_all(&(key.len() as u32).to_le_bytes())?;
        self.out.write_all(key)?;
        self.out.write_all(&(value.len() as u32).to_le_bytes())?;
        self.out.write_all(value)?;
        self.count += 1;
        Ok(())
    }

    /// Seal, fsync and publish the file; returns its path.
    pub fn finish(mut self) -> io::Result<PathBuf> {
        self.out.write_all(&[END])?;
        self.out.write_all(&self.count.to_le_bytes())?;
        let crc = self.out.crc.clone().finalize();
        let mut inner = self.out.inner;
        inner.write_all(&crc.to_le_bytes())?;
        inner.into_inner().map_err(|e| e.into_error())?.finish()?;
        publish(&self.tmp, &self.dest)?;
        Ok(self.dest)
    }
}

/// Rename `tmp` to `dest` and fsync the directory.
pub fn publish(tmp: &Path, dest: &Path) -> io::Result<()> {
    fs::rename(tmp, dest)?;
    if let Some(dir) = dest.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// One key-value of a snapshot: (column family number, key, value).
pub type Record = (u8, Vec<u8>, Vec<u8>);

/// A snapshot read as a stream: the metadata first, then one record at a time, never the
/// whole file in memory. The checksum covers every byte, so a record read before the end
/// is not yet verified: read a received file through once ([`Reader::verify`]) before
/// applying any of it, then again to apply.
pub struct Reader<R: Read> {
    r: R,
    crc: crc32fast::Hasher,
    /// Bytes left before the trailing checksum.
    left: u64,
    count: u64,
    done: bool,
    meta: Meta,
}

impl Reader<io::BufReader<File>> {
    /// Opens the snapshot file at `path`.
    pub fn open(path: &Path) -> Result<Self, SnapshotError> {
        let f = File::open(path)?;
        let len = f.metadata()?.len();
        Reader::new(io::BufReader::with_capacity(1 << 20, f), len)
    }
}

impl<R: Read> Reader<R> {
    /// A reader over `len` bytes of snapshot from `r`; reads and checks the header.
    pub fn new(r: R, len: u64) -> Result<Self, SnapshotError> {
        if len < (MAGIC.len() + 8 + 13) as u64 {
            return Err(SnapshotError::Corrupt("truncated"));
        }
        let mut me = Reader {
            r,
            crc: crc32fast::Hasher::new(),
            left: len - 4,
            count: 0,
            done: false,
            meta: Meta::default(),
        };
        if me.take(8)? != MAGIC {
            return Err(SnapshotError::Corrupt("bad magic"));
        }
        let version = me.u32()?;
        if version != VERSION {
            return Err(SnapshotError::Version(version));
        }
        let meta_len = me.u32()? as usize;
        me.meta = bincode::deserialize(&me.take(meta_len)?)
            .map_err(|_| SnapshotError::Corrupt("bad meta"))?;
        Ok(me)
    }

    /// The snapshot's metadata (as its header says; verified only once read through).
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// `n` bytes of the body; a length running past the body is corruption, never a
    /// large allocation.
    fn take(&mut self, n: usize) -> Result<Vec<u8>, SnapshotError> {
        if n as u64 > self.left {
            return Err(SnapshotError::Corrupt("truncated"));
        }
        let mut buf = vec![0; n];
        self.r.read_exact(&mut buf)?;
        self.crc.update(&buf);
        self.left -= n as u64;
        Ok(buf)
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    /// The next record (column family number, key, value), or `None` at the end, where
    /// the record count and the checksum of the whole file are checked.
    pub fn next_record(&mut self) -> Result<Option<Record>, SnapshotError> {
        if self.done {
            return Ok(None);
        }
        let tag = self.take(1)?[0];
        if tag == END {
            let count = u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"));
            if count != self.count || self.left != 0 {
                return Err(SnapshotError::Corrupt("record count mismatch"));
            }
            let mut crc = [0u8; 4];
            self.r.read_exact(&mut crc)?;
            if self.crc.clone().finalize() != u32::from_le_bytes(crc) {
                return Err(SnapshotError::Corrupt("checksum mismatch"));
            }
            self.done = true;
            return Ok(None);
        }
        let klen = self.u32()? as usize;
        let key = self.take(klen)?;
        let vlen = self.u32()? as usize;
        let value = self.take(vlen)?;
        self.count += 1;
        Ok(Some((tag, key, value)))
    }

    /// Reads to the end, checking every record, the count and the checksum; returns the
    /// metadata and the number of records.
    pub fn verify(mut self) -> Result<(Meta, u64), SnapshotError> {
        while self.next_record()?.is_some() {}
        Ok((self.meta, self.count))
    }
}

/// A parsed, verified snapshot (tests and small tools; installs stream).
#[cfg(test)]
pub struct Parsed {
    pub meta: Meta,
    pub records: Vec<Record>,
}

/// Verify the checksum and parse a whole snapshot held in memory.
#[cfg(test)]
pub fn parse(bytes: &[u8]) -> Result<Parsed, SnapshotError> {
    let mut r = Reader::new(bytes, bytes.len() as u64)?;
    let mut records = Vec::new();
    while let Some(rec) = r.next_record()? {
        records.push(rec);
    }
    Ok(Parsed {
        meta: r.meta,
        records,
    })
}

/// Read only the metadata of a snapshot file (no checksum pass).
pub fn read_meta(path: &Path) -> Result<Meta, SnapshotError> {
    let mut f = File::open(path)?;
    let mut head = [0u8; 16];
    f.read_exact(&mut head)?;
    if &head[..8] != MAGIC {
        return Err(SnapshotError::Corrupt("bad magic"));
    }
    let version = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(SnapshotError::Version(version));
    }
    let len = u32::from_le_bytes(head[12..16].try_into().expect("4 bytes")) as usize;
    let mut meta = vec![0u8; len];
    f.read_exact(&mut meta)?;
    bincode::deserialize(&meta).map_err(|_| SnapshotError::Corrupt("bad meta"))
}

/// The newest complete snapshot in `dir` (by last log index), if any.
pub fn latest(dir: &Path) -> Option<(Meta, PathBuf)> {
    let mut best: Option<(Meta, PathBuf)> = None;
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("snap") {
            continue;
        }
        let Ok(meta) = read_meta(&path) else { continue };
        let newer = match &best {
            None => true,
            Some((b, _)) => meta.last_log_id > b.last_log_id,
        };
        if newer {
            best = Some((meta, path));
        }
    }
    best
}

/// Remove every snapshot file and temp file in `dir` except `keep`.
pub fn remove_others(dir: &Path, keep: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for entry in rd.flatten() {
            let path = entry.path();
            if path != keep {
                let _ = fs::remove_file(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta {
            last_log_id: None,
            last_membership: Default::default(),
            snapshot_id: "t-1".into(),
        };
        let mut w = SnapshotWriter::create(dir.path(), &meta).unwrap();
        w.record(0, b"k", b"v").unwrap();
        w.record(3, b"", &[1, 2, 3]).unwrap();
        let path = w.finish().unwrap();
        let mut bytes = fs::read(&path).unwrap();
        let p = parse(&bytes).unwrap();
        assert_eq!(p.meta, meta);
        assert_eq!(
            p.records,
            vec![
                (0, b"k".to_vec(), b"v".to_vec()),
                (3, vec![], vec![1, 2, 3])
            ]
        );
        assert_eq!(read_meta(&path).unwrap(), meta);
        assert_eq!(latest(dir.path()).unwrap().1, path);
        // Streamed, the whole file is checked by the time the reader reports its end.
        let (m, count) = Reader::open(&path).unwrap().verify().unwrap();
        assert_eq!((m, count), (meta, 2));
        assert!(parse(&bytes[..bytes.len() - 9]).is_err());
        // A flipped bit in a value is only found by the checksum, at the end.
        let at = bytes.len() - 4 - 9 - 1;
        bytes[at] ^= 0x40;
        assert!(matches!(
            parse(&bytes),
            Err(SnapshotError::Corrupt("checksum mismatch"))
        ));
        // A length that runs past the file is corruption, not a huge allocation.
        let mut long = fs::read(&path).unwrap();
        // The records are 11 and 12 bytes; the first key length follows the first tag.
        let first_len = long.len() - 4 - 9 - 12 - 11 + 1;
        long[first_len..first_len + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            parse(&long),
            Err(SnapshotError::Corrupt("truncated"))
        ));
    }
}
