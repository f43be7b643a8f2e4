//! Volume chunks on a device, and the `Chunk` gRPC service that serves them.
//!
//! # Layout
//! Each device keeps one sparse file per volume, `<device>/volumes/<volume>/head`, with
//! chunk `c` at `c × CHUNK_SIZE`: a FLUSH is one `fdatasync` per volume per device, TRIM
//! punches a hole, and deleting a volume is removing one directory. Chunks preserved for
//! snapshots go to `snap-<s>` beside it, at the same offsets. (One file per chunk would cost
//! an `fdatasync` per chunk touched at every FLUSH, and a log would need its own cleaner.)
//!
//! The device's RocksDB column family [`CF_CHUNKS`] holds the bookkeeping:
//! - `e/<volume>` → the highest epoch seen (big-endian u64), written synced before any
//!   request of that epoch is answered. Requests of an older epoch are refused: that is
//!   what fences an old writer, whatever it believes. A dropped volume keeps `u64::MAX`, so
//!   nothing can write it again.
//! - `m/<volume>/<chunk>` → the chunk's version (epoch and sequence of the last write) and
//!   its snapshot stamp. Present once the chunk was written; persisted at FLUSH, after the
//!   data it describes is durable.
//! - `p/<volume>/<chunk>/<snap>` → a preserved copy: `1` = the chunk as it was for
//!   snapshots up to `snap` is in `snap-<snap>`, `0` = the chunk was unwritten then.
//!
//! # Snapshots and clones
//! A write carries the volume's snapshot sequence. If it is newer than the chunk's stamp, a
//! snapshot was taken since the chunk last changed: the chunk is first copied to
//! `snap-<seq>` (synced, then recorded) and only then written. Reading snapshot `s` reads
//! the oldest preserved copy at or after `s`, else the head.
//!
//! A clone's writes and reads carry its ancestors. An unwritten chunk of a clone reads from
//! the nearest ancestor (as of the snapshot it was cloned from), and its first write copies
//! that chunk up whole. Because the ring places chunks by lineage root, the ancestors'
//! chunks are on this same device: copy-up never crosses the network.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rocksdb::WriteBatch;
use stratus_client::rings::RingStore;
use stratus_core::volume::{valid_id, CHUNK_SIZE, SECTOR};
use stratus_proto::storage as pb;
use stratus_proto::storage::chunk_server::Chunk;
use tonic::{Request, Response, Status};

use crate::device::{blocking, fsync_dir, Device, DeviceError, CF_CHUNKS};
use crate::Node;

const LOCKS: usize = 64;

/// Chunks of the largest volume a device accepts (2^40 chunks: `chunk × CHUNK_SIZE` cannot
/// overflow).
const MAX_CHUNKS: u64 = 1 << 40;

/// A chunk's version and snapshot stamp, as stored under `m/<volume>/<chunk>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ChunkMeta {
    pub epoch: u64,
    pub seq: u64,
    pub snap: u64,
}

impl ChunkMeta {
    fn encode(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&self.epoch.to_be_bytes());
        b[8..16].copy_from_slice(&self.seq.to_be_bytes());
        b[16..].copy_from_slice(&self.snap.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let u = |r: std::ops::Range<usize>| Some(u64::from_be_bytes(b.get(r)?.try_into().ok()?));
        (b.len() == 24).then_some(())?;
        Some(Self {
            epoch: u(0..8)?,
            seq: u(8..16)?,
            snap: u(16..24)?,
        })
    }
}

fn epoch_key(vol: &str) -> Vec<u8> {
    format!("e/{vol}").into_bytes()
}

fn meta_prefix(vol: &str) -> Vec<u8> {
    format!("m/{vol}/").into_bytes()
}

fn meta_key(vol: &str, chunk: u64) -> Vec<u8> {
    let mut k = meta_prefix(vol);
    k.extend_from_slice(&chunk.to_be_bytes());
    k
}

fn preserved_prefix(vol: &str, chunk: u64) -> Vec<u8> {
    let mut k = format!("p/{vol}/").into_bytes();
    k.extend_from_slice(&chunk.to_be_bytes());
    k.push(b'/');
    k
}

fn preserved_key(vol: &str, chunk: u64, snap: u64) -> Vec<u8> {
    let mut k = preserved_prefix(vol, chunk);
    k.extend_from_slice(&snap.to_be_bytes());
    k
}

/// Why a chunk request failed.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error(
        "volume {vol} is fenced on device {dev}: it has seen epoch {held}, this writer has {asked}"
    )]
    Fenced {
        vol: String,
        dev: String,
        held: u64,
        asked: u64,
    },
    #[error("{0}")]
    Invalid(String),
    /// A write that lost its place (older than the replica's catch-up).
    #[error("{0}")]
    Stale(String),
    #[error(transparent)]
    Device(#[from] DeviceError),
}

impl From<ChunkError> for Status {
    fn from(e: ChunkError) -> Self {
        match e {
            ChunkError::Fenced { .. } => Status::failed_precondition(e.to_string()),
            ChunkError::Invalid(m) => Status::invalid_argument(m),
            ChunkError::Stale(m) => Status::aborted(m),
            ChunkError::Device(d) => d.into(),
        }
    }
}

/// One volume on one device.
struct Vol {
    id: String,
    dir: PathBuf,
    /// The highest epoch seen (persisted).
    epoch: Mutex<u64>,
    /// (epoch, sequence) below which writes are refused (set by catch-up; in memory: a
    /// write stalled before a restart died with it).
    floor: Mutex<(u64, u64)>,
    /// The head file, once opened.
    head: Mutex<Option<Arc<File>>>,
    /// Chunk versions written since the last FLUSH (persisted by it).
    dirty: Mutex<HashMap<u64, ChunkMeta>>,
    /// Chunks first written since the last FLUSH: their record must be durable at the
    /// next one (a clone reads an unrecorded chunk from its parent).
    fresh: Mutex<HashSet<u64>>,
    /// Chunk versions known (read from RocksDB or written), so a write need not read.
    known: Mutex<HashMap<u64, Option<ChunkMeta>>>,
    /// Serialize the read-preserve-write of one chunk.
    locks: Vec<Mutex<()>>,
}

impl Vol {
    fn io(dev: &Device) -> impl Fn(std::io::Error) -> ChunkError + '_ {
        move |e| ChunkError::Device(DeviceError::Io(dev.name.clone(), e))
    }

    fn head(&self, dev: &Device, create: bool) -> Result<Option<Arc<File>>, ChunkError> {
        let mut h = self.head.lock().expect("head lock");
        if let Some(f) = h.as_ref() {
            return Ok(Some(f.clone()));
        }
        let path = self.dir.join("head");
        let f = if create {
            if !self.dir.exists() {
                std::fs::create_dir_all(&self.dir).map_err(Self::io(dev))?;
                if let Some(p) = self.dir.parent() {
                    fsync_dir(p).map_err(Self::io(dev))?;
                }
            }
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(Self::io(dev))?;
            fsync_dir(&self.dir).map_err(Self::io(dev))?;
            f
        } else {
            match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Self::io(dev)(e)),
            }
        };
        let f = Arc::new(f);
        *h = Some(f.clone());
        Ok(Some(f))
    }

    fn meta(&self, dev: &Device, chunk: u64) -> Result<Option<ChunkMeta>, ChunkError> {
        if let Some(m) = self.known.lock().expect("known lock").get(&chunk) {
            return Ok(*m);
        }
        let m = match dev.get(CF_CHUNKS, &meta_key(&self.id, chunk))? {
            None => None,
            Some(b) => Some(ChunkMeta::decode(&b).ok_or_else(|| {
                DeviceError::Damaged(dev.name.clone(), format!("chunk record of {}", self.id))
            })?),
        };
        self.known.lock().expect("known lock").insert(chunk, m);
        Ok(m)
    }

    fn set_meta(&self, chunk: u64, m: ChunkMeta, fresh: bool) {
        if fresh {
            self.fresh.lock().expect("fresh lock").insert(chunk);
        }
        self.known
            .lock()
            .expect("known lock")
            .insert(chunk, Some(m));
        self.dirty.lock().expect("dirty lock").insert(chunk, m);
    }

    /// Refuses `asked` if an newer epoch was seen; persists it first if it is newer.
    fn check_epoch(&self, dev: &Device, asked: u64) -> Result<(), ChunkError> {
        let mut e = self.epoch.lock().expect("epoch lock");
        if asked < *e || *e == u64::MAX {
            return Err(ChunkError::Fenced {
                vol: self.id.clone(),
                dev: dev.name.clone(),
                held: *e,
                asked,
            });
        }
        if asked > *e {
            let mut b = WriteBatch::default();
            dev.batch_put(
                &mut b,
                CF_CHUNKS,
                &epoch_key(&self.id),
                &asked.to_be_bytes(),
            );
            dev.write(b, true)?;
            *e = asked;
        }
        Ok(())
    }

    /// The oldest preserved copy of `chunk` at or after snapshot `snap`: `Some(Some(s))` =
    /// in `snap-<s>`, `Some(None)` = the chunk was unwritten then.
    fn preserved(
        &self,
        dev: &Device,
        chunk: u64,
        snap: u64,
    ) -> Result<Option<Option<u64>>, ChunkError> {
        let prefix = preserved_prefix(&self.id, chunk);
        let start = preserved_key(&self.id, chunk, snap);
        if let Some(row) = dev.scan(CF_CHUNKS, &start, false).next() {
            let (k, v) = row?;
            if k.starts_with(&prefix) && k.len() == prefix.len() + 8 {
                let s = u64::from_be_bytes(k[prefix.len()..].try_into().expect("8 bytes"));
                return Ok(Some((v.first() == Some(&1)).then_some(s)));
            }
        }
        Ok(None)
    }

    /// Makes every write so far durable: data first, then the versions that describe it.
    fn flush(&self, dev: &Device) -> Result<(), ChunkError> {
        let dirty: Vec<(u64, ChunkMeta)> = self
            .dirty
            .lock()
            .expect("dirty lock")
            .iter()
            .map(|(c, m)| (*c, *m))
            .collect();
        if let Some(f) = self.head(dev, false)? {
            stratus_client::service::metrics::timed_fsync(|| f.sync_data())
                .map_err(Self::io(dev))?;
        }
        if dirty.is_empty() {
            return Ok(());
        }
        // (`set_meta` marks a chunk fresh before it makes it dirty, so every fresh chunk
        // of this batch is seen here.)
        let fresh: Vec<u64> = {
            let f = self.fresh.lock().expect("fresh lock");
            dirty
                .iter()
                .map(|(c, _)| *c)
                .filter(|c| f.contains(c))
                .collect()
        };
        let mut b = WriteBatch::default();
        for (c, m) in &dirty {
            dev.batch_put(&mut b, CF_CHUNKS, &meta_key(&self.id, *c), &m.encode());
        }
        // A chunk's first record is synced: for a clone it says the chunk is its own. Newer
        // versions of recorded chunks are written without a sync of their own (the data
        // they describe is durable already); a crash that loses one leaves an older version,
        // which catch-up answers by copying the chunk again, never by skipping it.
        dev.write(b, !fresh.is_empty())?;
        {
            let mut f = self.fresh.lock().expect("fresh lock");
            for c in &fresh {
                f.remove(c);
            }
        }
        let mut d = self.dirty.lock().expect("dirty lock");
        for (c, m) in dirty {
            if d.get(&c) == Some(&m) {
                d.remove(&c);
            }
        }
        Ok(())
    }
}

/// Where a chunk's bytes come from when it is read.
enum Source {
    File(PathBuf),
    Head(Arc<File>),
    Zeros,
}

/// The volumes of every device of a node.
#[derive(Default)]
pub struct ChunkStore {
    vols: Mutex<HashMap<(String, String), Arc<Vol>>>,
}

impl ChunkStore {
    fn vol(&self, dev: &Device, id: &str) -> Result<Arc<Vol>, ChunkError> {
        if !valid_id(id) {
            return Err(ChunkError::Invalid(format!("bad volume id {id:?}")));
        }
        let key = (dev.name.clone(), id.to_string());
        if let Some(v) = self.vols.lock().expect("vols lock").get(&key) {
            return Ok(v.clone());
        }
        let epoch = match dev.get(CF_CHUNKS, &epoch_key(id))? {
            None => 0,
            Some(b) => u64::from_be_bytes(b.as_slice().try_into().map_err(|_| {
                DeviceError::Damaged(dev.name.clone(), format!("epoch record of {id}"))
            })?),
        };
        let v = Arc::new(Vol {
            id: id.to_string(),
            dir: dev.root.join("volumes").join(id),
            epoch: Mutex::new(epoch),
            floor: Mutex::new((0, 0)),
            head: Mutex::new(None),
            dirty: Mutex::default(),
            fresh: Mutex::default(),
            known: Mutex::default(),
            locks: (0..LOCKS).map(|_| Mutex::new(())).collect(),
        });
        Ok(self
            .vols
            .lock()
            .expect("vols lock")
            .entry(key)
            .or_insert(v)
            .clone())
    }

    /// Where chunk `chunk` of `vol` (as of `snap`, 0 = now) is read from, following a
    /// clone's ancestors.
    fn source(
        &self,
        dev: &Device,
        vol: &str,
        chunk: u64,
        snap: u64,
        ancestors: &[pb::Ancestor],
    ) -> Result<Source, ChunkError> {
        let v = self.vol(dev, vol)?;
        let mut written = true;
        if snap > 0 {
            match v.preserved(dev, chunk, snap)? {
                Some(Some(s)) => return Ok(Source::File(v.dir.join(format!("snap-{s}")))),
                Some(None) => written = false,
                None => {}
            }
        }
        // A volume that is no clone reads its head whatever the records say: a write not
        // yet flushed has no record but is there.
        if written && (ancestors.is_empty() || v.meta(dev, chunk)?.is_some()) {
            return Ok(match v.head(dev, false)? {
                Some(f) => Source::Head(f),
                None => Source::Zeros,
            });
        }
        match ancestors.split_first() {
            Some((a, rest)) => self.source(dev, &a.volume, chunk, a.snap, rest),
            None => Ok(Source::Zeros),
        }
    }

    fn read_from(dev: &Device, src: &Source, at: u64, len: usize) -> Result<Vec<u8>, ChunkError> {
        let mut buf = vec![0u8; len];
        let read = |f: &File, buf: &mut [u8]| -> std::io::Result<()> {
            let mut done = 0;
            while done < buf.len() {
                match f.read_at(&mut buf[done..], at + done as u64) {
                    Ok(0) => break, // past the end of a sparse file: zeros
                    Ok(n) => done += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        };
        match src {
            Source::Zeros => {}
            Source::Head(f) => read(f, &mut buf).map_err(Vol::io(dev))?,
            Source::File(p) => match File::open(p) {
                Ok(f) => read(&f, &mut buf).map_err(Vol::io(dev))?,
                Err(e) => return Err(Vol::io(dev)(e)),
            },
        }
        Ok(buf)
    }

    fn check_range(chunk: u64, offset: u64, len: u64) -> Result<(), ChunkError> {
        if chunk >= MAX_CHUNKS {
            return Err(ChunkError::Invalid(format!(
                "chunk {chunk} is beyond the largest volume"
            )));
        }
        if !offset.is_multiple_of(SECTOR)
            || !len.is_multiple_of(SECTOR)
            || offset + len > CHUNK_SIZE
        {
            return Err(ChunkError::Invalid(format!(
                "range {offset}+{len} is not 512-byte aligned inside one {CHUNK_SIZE}-byte chunk"
            )));
        }
        Ok(())
    }

    /// Raises the volume's epoch on `dev` (and, with `min_seq`, the floor of its writes);
    /// answers the epoch held.
    pub fn open(
        &self,
        dev: &Device,
        vol: &str,
        epoch: u64,
        min_seq: u64,
    ) -> Result<u64, ChunkError> {
        let v = self.vol(dev, vol)?;
        v.check_epoch(dev, epoch)?;
        if min_seq > 0 {
            // Taken with every chunk lock, so no write of this epoch is half-way through.
            let _all: Vec<_> = v
                .locks
                .iter()
                .map(|l| l.lock().expect("chunk lock"))
                .collect();
            let mut f = v.floor.lock().expect("floor lock");
            *f = (*f).max((epoch, min_seq));
        }
        let e = *v.epoch.lock().expect("epoch lock");
        Ok(e)
    }

    /// Applies one write (see the module docs for preserve and copy-up).
    pub fn write(&self, dev: &Device, w: &pb::ChunkWrite) -> Result<(), ChunkError> {
        let len = if w.data.is_empty() {
            u64::from(w.zero_len)
        } else {
            w.data.len() as u64
        };
        Self::check_range(w.chunk, u64::from(w.offset), len)?;
        let v = self.vol(dev, &w.volume)?;
        v.check_epoch(dev, w.epoch)?;
        if !w.data.is_empty() {
            dev.check_space(len)?;
        }
        let _g = v.locks[(w.chunk % LOCKS as u64) as usize]
            .lock()
            .expect("chunk lock");
        // Again under the lock: a newer writer may have opened the device while this write
        // waited for it, and its writes must not be overwritten by this one.
        v.check_epoch(dev, w.epoch)?;
        if (w.epoch, w.seq) < *v.floor.lock().expect("floor lock") {
            return Err(ChunkError::Stale(format!(
                "write {} of epoch {} to volume {} predates this replica's catch-up",
                w.seq, w.epoch, v.id
            )));
        }
        let base = w.chunk * CHUNK_SIZE;
        let meta = v.meta(dev, w.chunk)?;
        let head = v.head(dev, true)?.expect("created");
        // A snapshot was taken since the chunk last changed: keep it as it is now.
        let stamp = meta.map_or(0, |m| m.snap);
        // (A preserved copy that exists already is never replaced: a stamp lost in a crash
        // must not let later bytes overwrite what the snapshot holds.)
        if w.snap > stamp
            && dev
                .get(CF_CHUNKS, &preserved_key(&v.id, w.chunk, w.snap))?
                .is_none()
        {
            let present = meta.is_some() || w.ancestors.is_empty();
            if present {
                let data =
                    Self::read_from(dev, &Source::Head(head.clone()), base, CHUNK_SIZE as usize)?;
                let p = v.dir.join(format!("snap-{}", w.snap));
                let f = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&p)
                    .map_err(Vol::io(dev))?;
                f.write_all_at(&data, base).map_err(Vol::io(dev))?;
                stratus_client::service::metrics::timed_fsync(|| f.sync_data())
                    .map_err(Vol::io(dev))?;
                fsync_dir(&v.dir).map_err(Vol::io(dev))?;
            }
            let mut b = WriteBatch::default();
            let key = preserved_key(&v.id, w.chunk, w.snap);
            dev.batch_put(&mut b, CF_CHUNKS, &key, &[u8::from(present)]);
            dev.write(b, true)?;
        }
        // The first write to a clone's chunk copies it up from the nearest ancestor.
        if meta.is_none() && !w.ancestors.is_empty() {
            let (a, rest) = w.ancestors.split_first().expect("not empty");
            let src = self.source(dev, &a.volume, w.chunk, a.snap, rest)?;
            let data = Self::read_from(dev, &src, base, CHUNK_SIZE as usize)?;
            head.write_all_at(&data, base).map_err(Vol::io(dev))?;
            // The copy is durable before the record that makes the chunk the clone's own,
            // and the record before this write is answered: a restarted node must not read
            // an acknowledged chunk from the parent again.
            stratus_client::service::metrics::timed_fsync(|| head.sync_data())
                .map_err(Vol::io(dev))?;
            let m = ChunkMeta {
                epoch: w.epoch,
                seq: w.seq,
                snap: w.snap.max(stamp),
            };
            let mut b = WriteBatch::default();
            dev.batch_put(&mut b, CF_CHUNKS, &meta_key(&v.id, w.chunk), &m.encode());
            dev.write(b, true)?;
        }
        let at = base + u64::from(w.offset);
        if !w.data.is_empty() {
            head.write_all_at(&w.data, at).map_err(Vol::io(dev))?;
        } else if w.trim {
            punch(&head, at, len).map_err(Vol::io(dev))?;
        } else {
            let zeros = vec![0u8; len as usize];
            head.write_all_at(&zeros, at).map_err(Vol::io(dev))?;
        }
        v.set_meta(
            w.chunk,
            ChunkMeta {
                epoch: w.epoch,
                seq: w.seq,
                snap: w.snap.max(stamp),
            },
            meta.is_none(),
        );
        drop(_g);
        if w.fua {
            v.flush(dev)?;
        }
        Ok(())
    }

    /// Reads inside one chunk.
    pub fn read(&self, dev: &Device, r: &pb::ChunkRead) -> Result<Vec<u8>, ChunkError> {
        Self::check_range(r.chunk, u64::from(r.offset), u64::from(r.len))?;
        dev.check_present()?;
        let src = self.source(dev, &r.volume, r.chunk, r.snap, &r.ancestors)?;
        Self::read_from(
            dev,
            &src,
            r.chunk * CHUNK_SIZE + u64::from(r.offset),
            r.len as usize,
        )
    }

    /// Makes the volume's writes on `dev` durable.
    pub fn flush(&self, dev: &Device, vol: &str, epoch: u64) -> Result<u64, ChunkError> {
        let v = self.vol(dev, vol)?;
        v.check_epoch(dev, epoch)?;
        v.flush(dev)?;
        let e = *v.epoch.lock().expect("epoch lock");
        Ok(e)
    }

    /// Every chunk version the device holds for the volume.
    pub fn versions(&self, dev: &Device, vol: &str) -> Result<Vec<pb::ChunkVersion>, ChunkError> {
        let v = self.vol(dev, vol)?;
        let prefix = meta_prefix(vol);
        let mut out: HashMap<u64, ChunkMeta> = HashMap::new();
        for row in dev.scan(CF_CHUNKS, &prefix, false) {
            let (k, val) = row?;
            if !k.starts_with(&prefix) {
                break;
            }
            let chunk = k[prefix.len()..]
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| DeviceError::Damaged(dev.name.clone(), "chunk key".into()))?;
            let m = ChunkMeta::decode(&val)
                .ok_or_else(|| DeviceError::Damaged(dev.name.clone(), "chunk record".into()))?;
            out.insert(chunk, m);
        }
        for (c, m) in v.dirty.lock().expect("dirty lock").iter() {
            out.insert(*c, *m);
        }
        let mut list: Vec<_> = out
            .into_iter()
            .map(|(chunk, m)| pb::ChunkVersion {
                chunk,
                epoch: m.epoch,
                seq: m.seq,
            })
            .collect();
        list.sort_by_key(|c| c.chunk);
        Ok(list)
    }

    /// A whole chunk and its version (none if the device never had it written).
    pub fn fetch(&self, dev: &Device, vol: &str, chunk: u64) -> Result<pb::ChunkCopy, ChunkError> {
        Self::check_range(chunk, 0, 0)?;
        let v = self.vol(dev, vol)?;
        let _g = v.locks[(chunk % LOCKS as u64) as usize]
            .lock()
            .expect("chunk lock");
        let Some(m) = v.meta(dev, chunk)? else {
            return Ok(pb::ChunkCopy::default());
        };
        let src = match v.head(dev, false)? {
            Some(f) => Source::Head(f),
            None => Source::Zeros,
        };
        let data = Self::read_from(dev, &src, chunk * CHUNK_SIZE, CHUNK_SIZE as usize)?;
        Ok(pb::ChunkCopy {
            version: Some(pb::ChunkVersion {
                chunk,
                epoch: m.epoch,
                seq: m.seq,
            }),
            data: data.into(),
            snap: m.snap,
        })
    }

    /// Replaces a chunk with a copy from another replica, durably.
    pub fn store(&self, dev: &Device, s: &pb::ChunkStore) -> Result<(), ChunkError> {
        let ver = s
            .version
            .as_ref()
            .ok_or_else(|| ChunkError::Invalid("a stored chunk needs its version".into()))?;
        if s.data.len() as u64 != CHUNK_SIZE {
            return Err(ChunkError::Invalid(format!(
                "a stored chunk is {CHUNK_SIZE} bytes, not {}",
                s.data.len()
            )));
        }
        if ver.chunk >= MAX_CHUNKS {
            return Err(ChunkError::Invalid(format!(
                "chunk {} is beyond the largest volume",
                ver.chunk
            )));
        }
        let v = self.vol(dev, &s.volume)?;
        v.check_epoch(dev, s.epoch)?;
        dev.check_space(CHUNK_SIZE)?;
        let _g = v.locks[(ver.chunk % LOCKS as u64) as usize]
            .lock()
            .expect("chunk lock");
        v.check_epoch(dev, s.epoch)?;
        let head = v.head(dev, true)?.expect("created");
        head.write_all_at(&s.data, ver.chunk * CHUNK_SIZE)
            .map_err(Vol::io(dev))?;
        stratus_client::service::metrics::timed_fsync(|| head.sync_data()).map_err(Vol::io(dev))?;
        let m = ChunkMeta {
            epoch: ver.epoch,
            seq: ver.seq,
            snap: s.snap,
        };
        let mut b = WriteBatch::default();
        dev.batch_put(&mut b, CF_CHUNKS, &meta_key(&v.id, ver.chunk), &m.encode());
        dev.write(b, true)?;
        v.known
            .lock()
            .expect("known lock")
            .insert(ver.chunk, Some(m));
        v.dirty.lock().expect("dirty lock").remove(&ver.chunk);
        Ok(())
    }

    /// Deletes the volume's data on `dev`; its epoch becomes `u64::MAX`, so no writer can
    /// bring it back.
    pub fn drop_volume(&self, dev: &Device, vol: &str) -> Result<(), ChunkError> {
        let v = self.vol(dev, vol)?;
        {
            let mut e = v.epoch.lock().expect("epoch lock");
            let mut b = WriteBatch::default();
            dev.batch_put(&mut b, CF_CHUNKS, &epoch_key(vol), &u64::MAX.to_be_bytes());
            dev.write(b, true)?;
            *e = u64::MAX;
        }
        *v.head.lock().expect("head lock") = None;
        match std::fs::remove_dir_all(&v.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Vol::io(dev)(e)),
        }
        let mut b = WriteBatch::default();
        let mut n = 0;
        for prefix in [meta_prefix(vol), format!("p/{vol}/").into_bytes()] {
            for row in dev.scan(CF_CHUNKS, &prefix, false) {
                let (k, _) = row?;
                if !k.starts_with(&prefix) {
                    break;
                }
                dev.batch_delete(&mut b, CF_CHUNKS, &k);
                n += 1;
            }
        }
        if n > 0 {
            dev.write(b, true)?;
        }
        v.known.lock().expect("known lock").clear();
        v.dirty.lock().expect("dirty lock").clear();
        Ok(())
    }

    /// Volumes with data on `dev` (for `stratus cluster health` and tests).
    pub fn volumes_on(dev: &Device) -> Vec<String> {
        let mut out: HashSet<String> = HashSet::new();
        if let Ok(rd) = std::fs::read_dir(dev.root.join("volumes")) {
            for e in rd.flatten() {
                if let Ok(n) = e.file_name().into_string() {
                    out.insert(n);
                }
            }
        }
        let mut v: Vec<_> = out.into_iter().collect();
        v.sort();
        v
    }
}

/// Deallocates `len` bytes at `at` (they read as zeros afterwards).
fn punch(f: &File, at: u64, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor; fallocate only reads its integer arguments.
    let r = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            at as libc::off_t,
            len as libc::off_t,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
        // A file system without hole punching: write the zeros.
        return f.write_all_at(&vec![0u8; len as usize], at);
    }
    Err(e)
}

/// Brings this node's devices back into the replica sets of volumes no writer holds: for
/// each volume whose `stale` list names a device of this node, it attaches the volume (a
/// writer's attach fences it, so a user's writer always wins; it attaches only while no
/// writer holds the volume), runs catch-up and detaches. Read-only image volumes too.
/// (An attached writer catches its replicas up itself.)
pub struct VolumeRepairer;

#[tonic::async_trait]
impl crate::worker::Worker for VolumeRepairer {
    fn name(&self) -> &'static str {
        "volume-repairer"
    }

    async fn pass(&self, cx: &crate::worker::Ctx) {
        let Some(addr) = cx.node.addr.get() else {
            return;
        };
        let mine = format!("{addr}/");
        let vols = match stratus_client::volumes::volumes(cx.node.meta.clone())
            .list()
            .await
        {
            Ok(v) => v,
            Err(e) => return cx.stats.error(format!("listing volumes: {e}")),
        };
        // Replicas that differ with nobody stale (writes never answered): the node that
        // sorts first in the volume ring looks, each pass, at volumes no writer holds, and
        // attaching one reconciles it.
        let first = RingStore::new(cx.node.meta.clone())
            .current("volume")
            .await
            .ok()
            .and_then(|(r, _)| r.devices().iter().map(|d| d.node.clone()).min())
            .is_some_and(|n| &n == addr);
        for v in vols {
            if v.writer.is_some() {
                continue;
            }
            if first && v.stale.is_empty() {
                let looked = stratus_client::volume_io::VolumeIo::attach_with(
                    cx.node.meta.clone(),
                    &v.id,
                    &format!("volume-repairer@{addr}"),
                    stratus_client::volume_io::Attach::ReadOnly,
                )
                .await;
                if let Ok(ro) = looked {
                    match ro.divergent().await {
                        Ok(d) if !d.is_empty() => {
                            cx.stats.scanned(1);
                            match stratus_client::volume_io::VolumeIo::attach_with(
                                cx.node.meta.clone(),
                                &v.id,
                                &format!("volume-repairer@{addr}"),
                                stratus_client::volume_io::Attach::Repair,
                            )
                            .await
                            {
                                // Attaching reconciled it.
                                Ok(io) => {
                                    cx.stats.repaired(d.len() as u64);
                                    if let Err(e) = io.detach().await {
                                        cx.stats.error(format!("detaching {}: {e}", v.id));
                                    }
                                }
                                Err(e) => cx.stats.error(format!("reconciling {}: {e}", v.id)),
                            }
                        }
                        Ok(_) => {}
                        Err(e) => cx.stats.error(format!("comparing {}: {e}", v.id)),
                    }
                }
                continue;
            }
            if !v.stale.iter().any(|s| s.starts_with(&mine)) {
                continue;
            }
            cx.stats.scanned(1);
            let io = match stratus_client::volume_io::VolumeIo::attach_with(
                cx.node.meta.clone(),
                &v.id,
                &format!("volume-repairer@{addr}"),
                stratus_client::volume_io::Attach::Repair,
            )
            .await
            {
                Ok(io) => io,
                Err(e) => {
                    cx.stats.error(format!("attaching {}: {e}", v.id));
                    continue;
                }
            };
            match io.repair().await {
                Ok(left) => cx
                    .stats
                    .repaired((v.stale.len().saturating_sub(left.len())) as u64),
                Err(e) => cx.stats.error(format!("repairing {}: {e}", v.id)),
            }
            if let Err(e) = io.detach().await {
                cx.stats.error(format!("detaching {}: {e}", v.id));
            }
        }
    }
}

/// The gRPC `Chunk` service of one node.
pub struct ChunkService {
    node: Arc<Node>,
}

impl ChunkService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    async fn run<T: Send + 'static>(
        &self,
        device: &str,
        f: impl FnOnce(&ChunkStore, &Device) -> Result<T, ChunkError> + Send + 'static,
    ) -> Result<T, Status> {
        let dev = self.node.device(device)?;
        let node = self.node.clone();
        // `blocking` fails only with a DeviceError; the chunk error travels inside.
        blocking(&dev, move |d| Ok(f(&node.chunks, d)))
            .await?
            .map_err(Status::from)
    }
}

#[tonic::async_trait]
impl Chunk for ChunkService {
    async fn open(&self, r: Request<pb::ChunkOpen>) -> Result<Response<pb::ChunkEpoch>, Status> {
        let r = r.into_inner();
        let epoch = self
            .run(&r.device, move |s, d| {
                s.open(d, &r.volume, r.epoch, r.min_seq)
            })
            .await?;
        Ok(Response::new(pb::ChunkEpoch { epoch }))
    }

    async fn write(
        &self,
        r: Request<pb::ChunkWrite>,
    ) -> Result<Response<pb::ChunkWritten>, Status> {
        let r = r.into_inner();
        let dev = r.device.clone();
        self.run(&dev, move |s, d| s.write(d, &r)).await?;
        Ok(Response::new(pb::ChunkWritten {}))
    }

    async fn read(&self, r: Request<pb::ChunkRead>) -> Result<Response<pb::ChunkData>, Status> {
        let r = r.into_inner();
        // Served on the runtime thread: a read of at most one chunk is a pread that the
        // page cache nearly always answers, and a hand-off to the blocking pool would cost
        // more than the read (it is the hot path of a random-read workload).
        let dev = self.node.device(&r.device)?;
        let data = self.node.chunks.read(&dev, &r)?;
        Ok(Response::new(pb::ChunkData { data: data.into() }))
    }

    async fn flush(&self, r: Request<pb::ChunkFlush>) -> Result<Response<pb::ChunkEpoch>, Status> {
        let r = r.into_inner();
        let epoch = self
            .run(&r.device, move |s, d| s.flush(d, &r.volume, r.epoch))
            .await?;
        Ok(Response::new(pb::ChunkEpoch { epoch }))
    }

    async fn versions(
        &self,
        r: Request<pb::ChunkVersionsRequest>,
    ) -> Result<Response<pb::ChunkVersions>, Status> {
        let r = r.into_inner();
        let chunks = self
            .run(&r.device, move |s, d| s.versions(d, &r.volume))
            .await?;
        Ok(Response::new(pb::ChunkVersions { chunks }))
    }

    async fn fetch(&self, r: Request<pb::ChunkFetch>) -> Result<Response<pb::ChunkCopy>, Status> {
        let r = r.into_inner();
        let c = self
            .run(&r.device, move |s, d| s.fetch(d, &r.volume, r.chunk))
            .await?;
        Ok(Response::new(c))
    }

    async fn store(&self, r: Request<pb::ChunkStore>) -> Result<Response<pb::ChunkEpoch>, Status> {
        let r = r.into_inner();
        let dev = r.device.clone();
        let epoch = r.epoch;
        self.run(&dev, move |s, d| s.store(d, &r)).await?;
        Ok(Response::new(pb::ChunkEpoch { epoch }))
    }

    async fn remove(
        &self,
        r: Request<pb::ChunkRemove>,
    ) -> Result<Response<pb::ChunkEpoch>, Status> {
        let r = r.into_inner();
        self.run(&r.device, move |s, d| s.drop_volume(d, &r.volume))
            .await?;
        Ok(Response::new(pb::ChunkEpoch { epoch: u64::MAX }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> (tempfile::TempDir, Arc<Device>) {
        let t = tempfile::tempdir().unwrap();
        let d = Device::open("d1", t.path(), 0).unwrap();
        (t, d)
    }

    fn write(
        vol: &str,
        epoch: u64,
        chunk: u64,
        offset: u32,
        byte: u8,
        len: usize,
    ) -> pb::ChunkWrite {
        pb::ChunkWrite {
            device: "d1".into(),
            volume: vol.into(),
            epoch,
            seq: 1,
            chunk,
            offset,
            data: vec![byte; len].into(),
            ..Default::default()
        }
    }

    fn read(vol: &str, chunk: u64, offset: u32, len: u32, snap: u64) -> pb::ChunkRead {
        pb::ChunkRead {
            device: "d1".into(),
            volume: vol.into(),
            chunk,
            offset,
            len,
            snap,
            ancestors: vec![],
        }
    }

    #[test]
    fn an_older_epoch_is_refused_after_open_and_after_a_restart() {
        let (t, d) = dev();
        let s = ChunkStore::default();
        s.write(&d, &write("v", 1, 0, 0, 1, 512)).unwrap();
        assert_eq!(s.open(&d, "v", 2, 0).unwrap(), 2);
        let e = s.write(&d, &write("v", 1, 0, 0, 9, 512)).unwrap_err();
        assert!(
            matches!(
                e,
                ChunkError::Fenced {
                    held: 2,
                    asked: 1,
                    ..
                }
            ),
            "{e}"
        );
        // A new store (a restarted node) reads the persisted epoch.
        drop(s);
        let s = ChunkStore::default();
        assert!(s.write(&d, &write("v", 1, 0, 0, 9, 512)).is_err());
        assert_eq!(s.read(&d, &read("v", 0, 0, 512, 0)).unwrap(), vec![1; 512]);
        // A write of a newer epoch raises it without an open.
        s.write(&d, &write("v", 3, 0, 0, 3, 512)).unwrap();
        assert!(s.open(&d, "v", 2, 0).is_err());
        drop(t);
    }

    #[test]
    fn a_write_older_than_the_catch_up_floor_never_lands() {
        let (_t, d) = dev();
        let s = ChunkStore::default();
        let mut w = write("v", 3, 0, 0, 1, 512);
        w.seq = 12;
        s.write(&d, &w).unwrap();
        s.open(&d, "v", 3, 20).unwrap();
        let mut late = write("v", 3, 0, 0, 9, 512);
        late.seq = 15;
        assert!(matches!(s.write(&d, &late), Err(ChunkError::Stale(_))));
        assert_eq!(s.read(&d, &read("v", 0, 0, 512, 0)).unwrap(), vec![1; 512]);
        let mut next = write("v", 3, 0, 0, 2, 512);
        next.seq = 21;
        s.write(&d, &next).unwrap();
        // A chunk number whose byte offset would overflow is refused, not wrapped.
        let mut far = write("v", 3, u64::MAX / 2, 0, 2, 512);
        far.seq = 22;
        assert!(matches!(s.write(&d, &far), Err(ChunkError::Invalid(_))));
    }

    #[test]
    fn unwritten_chunks_read_as_zeros_and_ranges_are_checked() {
        let (_t, d) = dev();
        let s = ChunkStore::default();
        assert_eq!(
            s.read(&d, &read("v", 7, 4096, 4096, 0)).unwrap(),
            vec![0; 4096]
        );
        s.write(&d, &write("v", 1, 7, 4096, 5, 4096)).unwrap();
        let got = s.read(&d, &read("v", 7, 0, 8192, 0)).unwrap();
        assert_eq!(&got[..4096], &[0; 4096][..]);
        assert_eq!(&got[4096..], &[5; 4096][..]);
        assert!(matches!(
            s.read(&d, &read("v", 0, (CHUNK_SIZE - 512) as u32, 1024, 0)),
            Err(ChunkError::Invalid(_))
        ));
        assert!(matches!(
            s.write(&d, &write("v", 1, 0, 100, 1, 512)),
            Err(ChunkError::Invalid(_))
        ));
        assert!(matches!(
            s.open(&d, "../x", 1, 0),
            Err(ChunkError::Invalid(_))
        ));
    }

    #[test]
    fn a_snapshot_keeps_what_the_chunk_held_and_a_clone_copies_up() {
        let (_t, d) = dev();
        let s = ChunkStore::default();
        s.write(&d, &write("p", 1, 0, 0, 1, 4096)).unwrap();
        // Snapshot 1 taken; the next write carries snap 1 and preserves the chunk first.
        let mut w = write("p", 1, 0, 0, 2, 4096);
        w.snap = 1;
        s.write(&d, &w).unwrap();
        // A second write after the same snapshot does not preserve again.
        let mut w = write("p", 1, 0, 0, 3, 4096);
        w.snap = 1;
        s.write(&d, &w).unwrap();
        assert_eq!(
            s.read(&d, &read("p", 0, 0, 4096, 1)).unwrap(),
            vec![1; 4096]
        );
        assert_eq!(
            s.read(&d, &read("p", 0, 0, 4096, 0)).unwrap(),
            vec![3; 4096]
        );
        // Chunk 1 was unwritten at snapshot 1: zeros then, whatever comes later.
        let mut w = write("p", 1, 1, 0, 4, 512);
        w.snap = 1;
        s.write(&d, &w).unwrap();
        assert_eq!(s.read(&d, &read("p", 1, 0, 512, 1)).unwrap(), vec![0; 512]);
        // A clone of snapshot 1 reads it, and its first write copies the chunk up.
        let anc = vec![pb::Ancestor {
            volume: "p".into(),
            snap: 1,
        }];
        let mut r = read("c", 0, 0, 8192, 0);
        r.ancestors = anc.clone();
        assert_eq!(s.read(&d, &r).unwrap()[..4096], [1; 4096]);
        let mut w = write("c", 1, 0, 4096, 7, 512);
        w.ancestors = anc.clone();
        s.write(&d, &w).unwrap();
        let got = s.read(&d, &r).unwrap();
        assert_eq!(&got[..4096], &[1; 4096][..]);
        assert_eq!(&got[4096..4608], &[7; 512][..]);
        assert_eq!(
            s.read(&d, &read("p", 0, 0, 4096, 0)).unwrap(),
            vec![3; 4096]
        );
    }

    #[test]
    fn flush_persists_versions_and_drop_fences_for_good() {
        let (_t, d) = dev();
        let s = ChunkStore::default();
        let mut w = write("v", 4, 2, 0, 1, 512);
        w.seq = 9;
        s.write(&d, &w).unwrap();
        s.flush(&d, "v", 4).unwrap();
        let s2 = ChunkStore::default();
        let v = s2.versions(&d, "v").unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].chunk, v[0].epoch, v[0].seq), (2, 4, 9));
        let c = s2.fetch(&d, "v", 2).unwrap();
        assert_eq!(c.data.len() as u64, CHUNK_SIZE);
        s2.drop_volume(&d, "v").unwrap();
        assert!(s2.versions(&d, "v").unwrap().is_empty());
        assert!(!d.root.join("volumes/v").exists());
        assert!(s2.write(&d, &write("v", 99, 0, 0, 1, 512)).is_err());
    }
}
