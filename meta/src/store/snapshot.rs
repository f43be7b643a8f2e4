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

/// Streams records into a new snapshot file.
pub struct SnapshotWriter {
    out: CrcWriter<BufWriter<File>>,
    tmp: PathBuf,
    dest: PathBuf,
    count: u64,
}

impl SnapshotWriter {
    /// Start `dir/<snapshot_id>.snap`.
    pub fn create(dir: &Path, meta: &Meta) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let dest = dir.join(format!("{}.snap", meta.snapshot_id));
        let tmp = dir.join(format!("{}.snap.tmp", meta.snapshot_id));
        let file = File::create(&tmp)?;
        let mut out = CrcWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
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
        let file = inner.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
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

/// A parsed, verified snapshot.
pub struct Parsed {
    pub meta: Meta,
    /// (column family number, key, value)
    pub records: Vec<(u8, Vec<u8>, Vec<u8>)>,
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], SnapshotError> {
    if buf.len() < n {
        return Err(SnapshotError::Corrupt("truncated"));
    }
    let (a, b) = buf.split_at(n);
    *buf = b;
    Ok(a)
}

fn u32_at(buf: &mut &[u8]) -> Result<u32, SnapshotError> {
    Ok(u32::from_le_bytes(
        take(buf, 4)?.try_into().expect("4 bytes"),
    ))
}

/// Verify the checksum and parse a whole snapshot.
pub fn parse(bytes: &[u8]) -> Result<Parsed, SnapshotError> {
    if bytes.len() < MAGIC.len() + 8 + 13 || &bytes[..8] != MAGIC {
        return Err(SnapshotError::Corrupt("bad magic"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(SnapshotError::Corrupt("checksum mismatch"));
    }
    let mut buf = &body[8..];
    let version = u32_at(&mut buf)?;
    if version != VERSION {
        return Err(SnapshotError::Version(version));
    }
    let meta_len = u32_at(&mut buf)? as usize;
    let meta: Meta = bincode::deserialize(take(&mut buf, meta_len)?)
        .map_err(|_| SnapshotError::Corrupt("bad meta"))?;
    let mut records = Vec::new();
    loop {
        let tag = take(&mut buf, 1)?[0];
        if tag == END {
            let count = u64::from_le_bytes(take(&mut buf, 8)?.try_into().expect("8 bytes"));
            if count != records.len() as u64 || !buf.is_empty() {
                return Err(SnapshotError::Corrupt("record count mismatch"));
            }
            return Ok(Parsed { meta, records });
        }
        let klen = u32_at(&mut buf)? as usize;
        let key = take(&mut buf, klen)?.to_vec();
        let vlen = u32_at(&mut buf)? as usize;
        let value = take(&mut buf, vlen)?.to_vec();
        records.push((tag, key, value));
    }
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
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        assert!(matches!(
            parse(&bytes),
            Err(SnapshotError::Corrupt("checksum mismatch"))
        ));
        assert!(parse(&bytes[..bytes.len() - 9]).is_err());
    }
}
