//! The volume I/O client: one writer's view of a replicated volume.
//!
//! - **Attach** is a compare-and-swap in meta that bumps the volume's epoch and records the
//!   writer; the new epoch is then sent to every device of the `volume` ring, which persists
//!   it and from then on refuses the old writer. A device that cannot be told leaves the
//!   replica set at once.
//! - **Writes** go to every replica of the chunk's current set (the ring's primaries minus
//!   the stale ones) and are acknowledged when all have them. A replica that fails or stalls
//!   past [`NODE_TIMEOUT`] leaves the set (recorded in meta), and the write stands on the
//!   others if at least two have it; with fewer, I/O waits for a replica to catch up (up to
//!   [`DEGRADED_WAIT`]), then fails with EIO. A storage node refusing the epoch is final:
//!   the writer was fenced, and every later request fails with EPERM.
//! - **FLUSH** (and FUA) makes the writes durable on every replica that took any since the
//!   last flush before it answers.
//! - **Reads** go to one replica of the set, and to the next if the first has not answered
//!   within [`HEDGE`]; stale replicas serve none.
//! - **Catch-up**: a background task compares the chunk versions of each stale replica with
//!   a healthy one's, copies every chunk that differs, then — with writes held for a moment
//!   — copies what changed meanwhile and returns the replica to the set.
//! - Overlapping writes are ordered (a range lock), so all replicas apply them in the same
//!   order. A new snapshot is noticed within a second: writes are drained, stamped with the
//!   new sequence from then on, and the snapshot confirmed in meta (`snap_ack`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stratus_core::volume::{chunk_path, split, CHUNK_SIZE, SECTOR};
use stratus_proto::storage as pb;
use stratus_proto::storage::chunk_client::ChunkClient;
use tokio::sync::{Notify, RwLock};
use tokio::task::JoinSet;
use tonic::Code;

use crate::meta::MetaClient;
use crate::peers::{Peers, MAX_MESSAGE_BYTES};
use crate::rings::{RingStore, RingWatcher};
use crate::service::trace::{Stamp, Traced};
use crate::volumes::{self, Records, Volume, VolumeError};

/// How long one replica may take over one request before it leaves the replica set.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a read waits for one replica before it also asks the next.
pub const HEDGE: Duration = Duration::from_millis(300);
/// How long I/O waits for a second replica when only one is left in the set.
pub const DEGRADED_WAIT: Duration = Duration::from_secs(60);
/// How often stale replicas are tried for catch-up, and new snapshots looked for.
pub const BACKGROUND_PERIOD: Duration = Duration::from_secs(1);

/// One replica: a device of the volume ring.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Replica {
    pub node: String,
    pub device: String,
}

impl Replica {
    /// How the volume record names it (`node/device`).
    pub fn key(&self) -> String {
        format!("{}/{}", self.node, self.device)
    }
}

/// Registers write sequence numbers as unanswered for as long as it lives.
struct InFlight<'a> {
    io: &'a VolumeIo,
    seqs: Vec<u64>,
}

impl<'a> InFlight<'a> {
    fn new(io: &'a VolumeIo, seqs: Vec<u64>) -> Self {
        let mut f = io.inflight.lock().expect("inflight");
        for s in &seqs {
            *f.entry(*s).or_default() += 1;
        }
        drop(f);
        Self { io, seqs }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut f = self.io.inflight.lock().expect("inflight");
        for s in &self.seqs {
            if let Some(n) = f.get_mut(s) {
                *n -= 1;
                if *n == 0 {
                    f.remove(s);
                }
            }
        }
    }
}

/// Orders overlapping writes: a range is held while one write to it is in flight.
#[derive(Default)]
struct RangeLock {
    held: Mutex<Vec<(u64, u64, u64)>>,
    next: AtomicU64,
    freed: Notify,
}

struct RangeGuard<'a> {
    lock: &'a RangeLock,
    id: u64,
}

impl RangeLock {
    async fn lock(&self, start: u64, end: u64) -> RangeGuard<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut h = self.held.lock().expect("range lock");
                if !h.iter().any(|&(s, e, _)| s < end && start < e) {
                    h.push((start, end, id));
                    return RangeGuard { lock: self, id };
                }
            }
            freed.await;
        }
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        self.lock
            .held
            .lock()
            .expect("range lock")
            .retain(|&(_, _, id)| id != self.id);
        self.lock.freed.notify_waiters();
    }
}

fn err(kind: io::ErrorKind, msg: impl Into<String>) -> io::Error {
    io::Error::new(kind, msg.into())
}

/// What a failed replica call means for the write path.
enum Failure {
    /// The epoch was refused: this writer is fenced for good.
    Fenced(String),
    /// The request itself is wrong (no replica would take it).
    Invalid(String),
    /// The device is full.
    Full(String),
    /// The replica is down, stalled or broken: it leaves the set.
    Replica(String),
}

fn classify(s: &tonic::Status) -> Failure {
    let m = s.message().to_string();
    match s.code() {
        Code::FailedPrecondition => Failure::Fenced(m),
        Code::InvalidArgument => Failure::Invalid(m),
        Code::ResourceExhausted => Failure::Full(m),
        _ => Failure::Replica(format!("{}: {m}", s.code())),
    }
}

/// An attached volume.
pub struct VolumeIo {
    id: String,
    root: String,
    size: u64,
    epoch: u64,
    writer: String,
    read_only: bool,
    ancestors: Vec<pb::Ancestor>,
    vols: Records<Volume>,
    ring: RingWatcher,
    peers: Arc<Peers>,
    seq: AtomicU64,
    snap: AtomicU64,
    stale: Mutex<HashSet<String>>,
    /// Since when each stale replica may have missed writes (see `Volume::stale_since`).
    since: Mutex<HashMap<String, [u64; 2]>>,
    /// Replicas stale for an ancestor: a clone neither reads nor copies up from them.
    ancestor_stale: Mutex<HashSet<String>>,
    /// Sequence numbers of writes not yet answered (how many pieces carry each).
    inflight: Mutex<BTreeMap<u64, usize>>,
    /// Devices written since they were last flushed, with a counter of writes.
    touched: Mutex<HashMap<Replica, u64>>,
    ranges: RangeLock,
    /// Held shared by every write; exclusively to drain writes (catch-up, new snapshot).
    gate: RwLock<()>,
    fenced: AtomicBool,
    /// Wakes I/O waiting for a replica to come back.
    rejoined: Notify,
    closed: AtomicBool,
}

/// How a volume is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    /// As its writer: takes a new epoch, fencing any earlier writer.
    Write,
    /// Reads only; no epoch is taken.
    ReadOnly,
    /// As its writer, but only if no writer holds it (background work must never fence
    /// a user's writer).
    WriteIfFree,
    /// Like `WriteIfFree`, also for a read-only volume: to catch its replicas up.
    Repair,
}

impl VolumeIo {
    /// Attaches volume `id` for writing as `writer` (or for reading only): bumps its epoch
    /// in meta and tells every device of the volume ring. Background catch-up runs until
    /// [`VolumeIo::detach`].
    pub async fn attach(
        meta: MetaClient,
        id: &str,
        writer: &str,
        read_only: bool,
    ) -> io::Result<Arc<Self>> {
        let mode = if read_only {
            Attach::ReadOnly
        } else {
            Attach::Write
        };
        Self::attach_with(meta, id, writer, mode).await
    }

    /// Attaches volume `id` as `mode` says.
    pub async fn attach_with(
        meta: MetaClient,
        id: &str,
        writer: &str,
        mode: Attach,
    ) -> io::Result<Arc<Self>> {
        let vols = volumes::volumes(meta.clone());
        let other = |e: VolumeError| err(io::ErrorKind::Other, e.to_string());
        let mut refusal = None;
        let rec = if mode == Attach::ReadOnly {
            vols.get(id).await.map_err(other)?.map(|(v, _)| v)
        } else {
            vols.update(id, |v| {
                if v.read_only && mode != Attach::Repair {
                    refusal = Some(err(
                        io::ErrorKind::PermissionDenied,
                        format!("volume {id} is read-only"),
                    ));
                    return None;
                }
                if matches!(mode, Attach::WriteIfFree | Attach::Repair) && v.writer.is_some() {
                    refusal = Some(err(
                        io::ErrorKind::ResourceBusy,
                        format!("volume {id} has a writer"),
                    ));
                    return None;
                }
                refusal = None;
                v.epoch += 1;
                v.writer = Some(writer.to_string());
                Some(())
            })
            .await
            .map_err(other)?
            .map(|(v, _)| v)
        };
        let rec = match (rec, refusal) {
            (Some(r), _) => r,
            (None, Some(e)) => return Err(e),
            (None, None) => return Err(err(io::ErrorKind::NotFound, format!("no volume {id}"))),
        };
        let read_only = mode == Attach::ReadOnly || (rec.read_only && mode != Attach::Repair);
        let ancestors = volumes::ancestors(&vols, &rec).await.map_err(other)?;
        let mut ancestor_stale = HashSet::new();
        for a in &ancestors {
            if let Some((av, _)) = vols.get(&a.volume).await.map_err(other)? {
                ancestor_stale.extend(av.stale);
            }
        }
        let ring = RingWatcher::spawn(RingStore::new(meta), "volume")
            .map_err(|e| err(io::ErrorKind::Other, e.to_string()))?;
        if ring.wait_for(1, Duration::from_secs(30)).await.is_none() {
            return Err(err(
                io::ErrorKind::Other,
                "the volume ring is not published",
            ));
        }
        let io = Arc::new(Self {
            id: rec.id.clone(),
            root: rec.root.clone(),
            size: rec.bytes(),
            epoch: rec.epoch,
            writer: writer.to_string(),
            read_only,
            ancestors,
            vols,
            ring,
            peers: Arc::new(Peers::default()),
            seq: AtomicU64::new(0),
            snap: AtomicU64::new(rec.snap_seq),
            stale: Mutex::new(rec.stale.iter().cloned().collect()),
            since: Mutex::new(rec.stale_since.clone().into_iter().collect()),
            ancestor_stale: Mutex::new(ancestor_stale),
            inflight: Mutex::default(),
            touched: Mutex::default(),
            ranges: RangeLock::default(),
            gate: RwLock::new(()),
            fenced: AtomicBool::new(false),
            rejoined: Notify::new(),
            closed: AtomicBool::new(false),
        });
        if !io.read_only {
            if let Err(e) = io.open_everywhere().await {
                let _ = io.detach().await;
                return Err(e);
            }
            // Before any I/O: writes that were never answered (a writer that died, a write
            // refused as a whole after it landed somewhere) may have left the replicas of
            // the set different. Any of their versions is a legal answer, but all must
            // give the same one: the newest is copied to the others.
            if let Err(e) = io.reconcile().await {
                let _ = io.detach().await;
                return Err(e);
            }
            if rec.snap_ack < rec.snap_seq {
                io.confirm_snapshot(rec.snap_seq).await?;
            }
            tokio::spawn(background(Arc::downgrade(&io)));
        }
        Ok(io)
    }

    /// Volume size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The epoch this writer holds.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether writes are refused.
    /// Whether a newer writer took the volume: every write of this one is refused now.
    pub fn fenced(&self) -> bool {
        self.fenced.load(Ordering::Relaxed)
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Replicas currently out of the set.
    pub fn stale(&self) -> Vec<String> {
        let mut v: Vec<_> = self.stale.lock().expect("stale").iter().cloned().collect();
        v.sort();
        v
    }

    fn chunk_client(&self, node: &str) -> Result<ChunkClient<Traced>, tonic::Status> {
        Ok(
            ChunkClient::with_interceptor(self.peers.channel(node)?, Stamp::default())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
    }

    /// Every replica of chunk `chunk` by the ring, in replica order.
    fn placement(&self, chunk: u64) -> io::Result<Vec<Replica>> {
        let ring = self
            .ring
            .current()
            .ok_or_else(|| err(io::ErrorKind::Other, "no volume ring"))?;
        let part = ring.partition(&chunk_path(&self.root, chunk));
        Ok(ring
            .primaries(part)
            .map(|d| Replica {
                node: d.node.clone(),
                device: d.name.clone(),
            })
            .collect())
    }

    /// The chunk's replicas in the set (not stale).
    fn set_of(&self, chunk: u64) -> io::Result<Vec<Replica>> {
        let stale = self.stale.lock().expect("stale");
        let theirs = self.ancestor_stale.lock().expect("ancestor stale");
        Ok(self
            .placement(chunk)?
            .into_iter()
            .filter(|r| {
                let k = r.key();
                !stale.contains(&k) && !theirs.contains(&k)
            })
            .collect())
    }

    /// The oldest (epoch, sequence) a write not yet answered may carry.
    fn oldest_unanswered(&self) -> [u64; 2] {
        let f = self.inflight.lock().expect("inflight");
        let seq = f
            .keys()
            .next()
            .copied()
            .unwrap_or_else(|| self.seq.load(Ordering::Relaxed) + 1);
        [self.epoch, seq]
    }

    fn check_range(&self, offset: u64, len: u64) -> io::Result<()> {
        if !offset.is_multiple_of(SECTOR) || !len.is_multiple_of(SECTOR) {
            return Err(err(
                io::ErrorKind::InvalidInput,
                format!("{offset}+{len} is not aligned to {SECTOR} bytes"),
            ));
        }
        if offset.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(err(
                io::ErrorKind::InvalidInput,
                format!("{offset}+{len} is past the end ({} bytes)", self.size),
            ));
        }
        Ok(())
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.read_only {
            return Err(err(
                io::ErrorKind::PermissionDenied,
                format!("volume {} is attached read-only", self.id),
            ));
        }
        if self.fenced.load(Ordering::Relaxed) {
            return Err(err(
                io::ErrorKind::PermissionDenied,
                format!(
                    "volume {}: epoch {} was fenced by a newer writer",
                    self.id, self.epoch
                ),
            ));
        }
        Ok(())
    }

    /// Tells every device of the ring the new epoch; devices that cannot be told leave
    /// the set.
    async fn open_everywhere(&self) -> io::Result<()> {
        let ring = self
            .ring
            .current()
            .ok_or_else(|| err(io::ErrorKind::Other, "no volume ring"))?;
        let mut set = JoinSet::new();
        for d in ring.devices() {
            let rep = Replica {
                node: d.node.clone(),
                device: d.name.clone(),
            };
            let c = self.chunk_client(&rep.node);
            let req = pb::ChunkOpen {
                device: rep.device.clone(),
                volume: self.id.clone(),
                epoch: self.epoch,
                min_seq: 0,
            };
            set.spawn(async move {
                let r = match c {
                    Ok(mut c) => tokio::time::timeout(NODE_TIMEOUT, c.open(req))
                        .await
                        .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("timed out"))),
                    Err(e) => Err(e),
                };
                (rep, r)
            });
        }
        let mut failed = Vec::new();
        while let Some(j) = set.join_next().await {
            let (rep, r) = j.map_err(|e| err(io::ErrorKind::Other, e.to_string()))?;
            if let Err(s) = r {
                if let Failure::Fenced(m) = classify(&s) {
                    self.fenced.store(true, Ordering::Relaxed);
                    return Err(err(io::ErrorKind::PermissionDenied, m));
                }
                tracing::warn!(volume = %self.id, replica = %rep.key(), error = %s, "replica not told the new epoch; it leaves the set");
                failed.push(rep);
            }
        }
        for rep in failed {
            self.leave(&rep).await?;
        }
        Ok(())
    }

    /// Records in meta that `rep` left the set (if it has not already).
    ///
    /// Meta records it first; only then do later writes leave the replica out, so no write
    /// is answered without it before a new writer would know it is stale.
    async fn leave(&self, rep: &Replica) -> io::Result<()> {
        let key = rep.key();
        if self.stale.lock().expect("stale").contains(&key) {
            return Ok(());
        }
        let epoch = self.epoch;
        let since = self.oldest_unanswered();
        let mut fenced = false;
        let mut recorded = since;
        let r = self
            .vols
            .update(&self.id, |v| {
                fenced = v.epoch != epoch;
                if fenced {
                    return None;
                }
                if v.stale.contains(&key) {
                    recorded = v.stale_since.get(&key).copied().unwrap_or([0, 0]);
                    return None;
                }
                v.stale.push(key.clone());
                v.stale.sort();
                v.stale_since.insert(key.clone(), since);
                Some(())
            })
            .await;
        if fenced {
            self.fenced.store(true, Ordering::Relaxed);
        }
        r.map_err(|e| err(io::ErrorKind::Other, e.to_string()))?;
        self.check_writable()?;
        self.since
            .lock()
            .expect("since")
            .insert(key.clone(), recorded);
        if self.stale.lock().expect("stale").insert(key.clone()) {
            tracing::warn!(volume = %self.id, replica = %key, "replica left the set");
        }
        Ok(())
    }

    /// Waits (bounded) until chunk `chunk` has at least two replicas in the set.
    async fn enough(&self, chunk: u64, deadline: tokio::time::Instant) -> io::Result<Vec<Replica>> {
        loop {
            let notified = self.rejoined.notified();
            let set = self.set_of(chunk)?;
            let want = self.placement(chunk)?.len().min(2);
            if set.len() >= want {
                return Ok(set);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(err(
                    io::ErrorKind::Other,
                    format!(
                        "volume {} chunk {chunk}: {} of its replicas in the set after waiting {:?}",
                        self.id,
                        set.len(),
                        DEGRADED_WAIT
                    ),
                ));
            }
        }
    }

    /// Sends one chunk request to every replica of the set; a replica that fails leaves
    /// it. Succeeds when every remaining member (at least two, or all there are) took it.
    /// Too few replicas in the set is answered `WouldBlock`: the caller waits for one to
    /// come back without holding the write gate (catch-up needs it), then writes again.
    async fn to_all(&self, chunk: u64, req: pb::ChunkWrite) -> io::Result<()> {
        {
            let set = self.set_of(chunk)?;
            if set.len() < self.placement(chunk)?.len().min(2) {
                return Err(err(io::ErrorKind::WouldBlock, format!("chunk {chunk}")));
            }
            let mut js = JoinSet::new();
            for rep in set {
                let c = self.chunk_client(&rep.node);
                let mut req = req.clone();
                req.device = rep.device.clone();
                js.spawn(async move {
                    let r = match c {
                        Ok(mut c) => tokio::time::timeout(NODE_TIMEOUT, c.write(req))
                            .await
                            .unwrap_or_else(|_| {
                                Err(tonic::Status::deadline_exceeded("replica stalled"))
                            }),
                        Err(e) => Err(e),
                    };
                    (rep, r)
                });
            }
            let mut ok = Vec::new();
            let mut lost = Vec::new();
            let mut fatal = None;
            while let Some(j) = js.join_next().await {
                let (rep, r) = j.map_err(|e| err(io::ErrorKind::Other, e.to_string()))?;
                match r.map_err(|s| classify(&s)) {
                    Ok(_) => ok.push(rep),
                    Err(Failure::Fenced(m)) => {
                        self.fenced.store(true, Ordering::Relaxed);
                        fatal = Some(err(io::ErrorKind::PermissionDenied, m));
                    }
                    Err(Failure::Invalid(m)) => fatal = Some(err(io::ErrorKind::InvalidInput, m)),
                    Err(Failure::Full(m)) => fatal = Some(err(io::ErrorKind::StorageFull, m)),
                    Err(Failure::Replica(m)) => {
                        tracing::warn!(volume = %self.id, replica = %rep.key(), error = %m, "write failed");
                        lost.push(rep);
                    }
                }
            }
            for rep in &ok {
                *self
                    .touched
                    .lock()
                    .expect("touched")
                    .entry(rep.clone())
                    .or_default() += 1;
            }
            if let Some(e) = fatal {
                return Err(e);
            }
            for rep in &lost {
                self.leave(rep).await?;
            }
            if lost.is_empty() {
                return Ok(());
            }
            let want = self.placement(chunk)?.len().min(2);
            if ok.len() >= want {
                return Ok(());
            }
            // Too few took it: once enough replicas are back, it is written again (writes
            // are idempotent).
            Err(err(io::ErrorKind::WouldBlock, format!("chunk {chunk}")))
        }
    }

    /// Sends write pieces (one per chunk) to their replica sets, waiting (bounded) for
    /// replicas to come back while too few are in a set.
    async fn submit(
        &self,
        offset: u64,
        len: u64,
        mut pieces: Vec<pb::ChunkWrite>,
    ) -> io::Result<()> {
        let _inflight = InFlight::new(self, pieces.iter().map(|p| p.seq).collect());
        let deadline = tokio::time::Instant::now() + DEGRADED_WAIT;
        loop {
            let short = {
                let _g = self.gate.read().await;
                // Stamped under the gate, on every attempt: a snapshot confirmed while this
                // write waited must see it preserve the chunk.
                let snap = self.snap.load(Ordering::Relaxed);
                for p in &mut pieces {
                    p.snap = snap;
                }
                let _r = self.ranges.lock(offset, offset + len).await;
                let results = futures_join(
                    pieces
                        .iter()
                        .map(|p| self.to_all(p.chunk, p.clone()))
                        .collect(),
                )
                .await;
                let mut short = Vec::new();
                for (p, r) in pieces.iter().zip(results) {
                    match r {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => short.push(p.chunk),
                        Err(e) => return Err(e),
                    }
                }
                short
            };
            if short.is_empty() {
                return Ok(());
            }
            for c in short {
                self.enough(c, deadline).await?;
            }
        }
    }

    fn piece(&self, chunk: u64, offset: u32) -> pb::ChunkWrite {
        pb::ChunkWrite {
            device: String::new(),
            volume: self.id.clone(),
            epoch: self.epoch,
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            chunk,
            offset,
            snap: self.snap.load(Ordering::Relaxed),
            ancestors: self.ancestors.clone(),
            ..Default::default()
        }
    }

    /// Writes `data` at `offset` (512-byte aligned); durable when `fua`.
    pub async fn write(&self, offset: u64, data: &[u8], fua: bool) -> io::Result<()> {
        self.check_writable()?;
        self.check_range(offset, data.len() as u64)?;
        let mut at = 0usize;
        let mut pieces = Vec::new();
        for (chunk, inner, n) in split(offset, data.len() as u64) {
            let mut req = self.piece(chunk, inner);
            req.data = bytes::Bytes::copy_from_slice(&data[at..at + n as usize]);
            req.fua = fua;
            at += n as usize;
            pieces.push(req);
        }
        self.submit(offset, data.len() as u64, pieces).await
    }

    /// Writes zeros (or trims, when `trim`: the range then reads as zeros too).
    pub async fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        trim: bool,
        fua: bool,
    ) -> io::Result<()> {
        self.check_writable()?;
        self.check_range(offset, len)?;
        let mut pieces = Vec::new();
        for (chunk, inner, n) in split(offset, len) {
            let mut req = self.piece(chunk, inner);
            req.zero_len = n;
            // A clone's chunk must read as zeros, not as its parent: write them.
            req.trim = trim && self.ancestors.is_empty();
            req.fua = fua;
            pieces.push(req);
        }
        self.submit(offset, len, pieces).await
    }

    /// Makes every write answered so far durable on every replica that took it.
    pub async fn flush(&self) -> io::Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.check_writable()?;
        let todo: Vec<(Replica, u64)> = self
            .touched
            .lock()
            .expect("touched")
            .iter()
            .map(|(r, n)| (r.clone(), *n))
            .collect();
        let mut js = JoinSet::new();
        for (rep, n) in todo {
            if self.stale.lock().expect("stale").contains(&rep.key()) {
                continue;
            }
            let c = self.chunk_client(&rep.node);
            let req = pb::ChunkFlush {
                device: rep.device.clone(),
                volume: self.id.clone(),
                epoch: self.epoch,
            };
            js.spawn(async move {
                let r = match c {
                    Ok(mut c) => tokio::time::timeout(NODE_TIMEOUT, c.flush(req))
                        .await
                        .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("stalled"))),
                    Err(e) => Err(e),
                };
                (rep, n, r)
            });
        }
        let mut lost = Vec::new();
        while let Some(j) = js.join_next().await {
            let (rep, n, r) = j.map_err(|e| err(io::ErrorKind::Other, e.to_string()))?;
            match r.map_err(|s| classify(&s)) {
                Ok(_) => {
                    let mut t = self.touched.lock().expect("touched");
                    if t.get(&rep) == Some(&n) {
                        t.remove(&rep);
                    }
                }
                Err(Failure::Fenced(m)) => {
                    self.fenced.store(true, Ordering::Relaxed);
                    return Err(err(io::ErrorKind::PermissionDenied, m));
                }
                Err(Failure::Invalid(m)) | Err(Failure::Full(m)) | Err(Failure::Replica(m)) => {
                    tracing::warn!(volume = %self.id, replica = %rep.key(), error = %m, "flush failed");
                    lost.push(rep);
                }
            }
        }
        // A replica that could not make its writes durable leaves the set; the others did.
        for rep in &lost {
            self.leave(rep).await?;
        }
        if !lost.is_empty() {
            // Every chunk must still have two durable copies.
            let chunks = stratus_core::volume::chunks(self.size);
            for c in 0..chunks {
                if self.placement(c)?.iter().any(|r| lost.contains(r)) {
                    self.enough(c, tokio::time::Instant::now() + DEGRADED_WAIT)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Reads `len` bytes at `offset`.
    pub async fn read(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        self.read_snap(offset, len, 0).await
    }

    /// Reads `len` bytes at `offset` of the volume as of snapshot `snap` (0 = as it is).
    pub async fn read_snap(&self, offset: u64, len: u64, snap: u64) -> io::Result<Vec<u8>> {
        self.check_range(offset, len)?;
        let mut pieces = split(offset, len);
        if let (Some((chunk, inner, n)), None) = (pieces.next(), pieces.next()) {
            // One chunk (nearly every read): no task of its own.
            return hedged_read(
                &self.id,
                self.clients_for(chunk)?,
                self.read_req(chunk, inner, n, snap),
            )
            .await;
        }
        let mut out = vec![0u8; len as usize];
        let mut js = JoinSet::new();
        let mut at = 0usize;
        for (chunk, inner, n) in split(offset, len) {
            let clients = self.clients_for(chunk)?;
            let req = self.read_req(chunk, inner, n, snap);
            let id = self.id.clone();
            js.spawn(async move { (at, hedged_read(&id, clients, req).await) });
            at += n as usize;
        }
        while let Some(j) = js.join_next().await {
            let (at, r) = j.map_err(|e| err(io::ErrorKind::Other, e.to_string()))?;
            let data = r?;
            out[at..at + data.len()].copy_from_slice(&data);
        }
        Ok(out)
    }

    /// The chunk's replicas in the set, each with its client, in replica order.
    #[allow(clippy::type_complexity)]
    fn clients_for(
        &self,
        chunk: u64,
    ) -> io::Result<Vec<(Replica, Result<ChunkClient<Traced>, tonic::Status>)>> {
        Ok(self
            .set_of(chunk)?
            .into_iter()
            .map(|r| {
                let c = self.chunk_client(&r.node);
                (r, c)
            })
            .collect())
    }

    fn read_req(&self, chunk: u64, offset: u32, len: u32, snap: u64) -> pb::ChunkRead {
        pb::ChunkRead {
            device: String::new(),
            volume: self.id.clone(),
            chunk,
            offset,
            len,
            snap,
            ancestors: self.ancestors.clone(),
        }
    }

    /// Gives the epoch back (the record keeps it, so fencing holds) and stops catch-up.
    pub async fn detach(&self) -> io::Result<()> {
        self.closed.store(true, Ordering::Relaxed);
        if self.read_only {
            return Ok(());
        }
        let epoch = self.epoch;
        let me = self.writer.clone();
        self.vols
            .update(&self.id, |v| {
                (v.epoch == epoch && v.writer.as_deref() == Some(&me)).then(|| {
                    v.writer = None;
                })
            })
            .await
            .map_err(|e| err(io::ErrorKind::Other, e.to_string()))?;
        Ok(())
    }

    /// Drains writes, stamps later ones with snapshot `seq` and confirms it in meta.
    async fn confirm_snapshot(&self, seq: u64) -> io::Result<()> {
        let _g = self.gate.write().await;
        self.snap.store(seq, Ordering::Relaxed);
        let epoch = self.epoch;
        self.vols
            .update(&self.id, |v| {
                (v.epoch == epoch && v.snap_ack < seq).then(|| {
                    v.snap_ack = seq;
                })
            })
            .await
            .map_err(|e| err(io::ErrorKind::Other, e.to_string()))?;
        Ok(())
    }

    /// One pass of the background work: a new snapshot, then stale replicas.
    async fn tend(&self) -> io::Result<()> {
        let rec = self
            .vols
            .get(&self.id)
            .await
            .map_err(|e| err(io::ErrorKind::Other, e.to_string()))?;
        let Some((rec, _)) = rec else {
            return Ok(());
        };
        if rec.epoch != self.epoch {
            // A newer writer took over: stop catching up. Nothing else changes here —
            // the storage nodes refuse this writer's next request, which is what fences it.
            return Ok(());
        }
        if rec.snap_seq > self.snap.load(Ordering::Relaxed) {
            self.confirm_snapshot(rec.snap_seq).await?;
        }
        self.repair().await?;
        Ok(())
    }

    /// Chunks whose replicas in the set hold different versions: (chunk, the replica with
    /// the newest version, the replicas that differ from it). A replica that cannot be
    /// asked is left out (a writer then takes it out of the set).
    pub async fn divergent(&self) -> io::Result<Vec<(u64, Replica, Vec<Replica>)>> {
        let mut versions: HashMap<Replica, BTreeMap<u64, (u64, u64)>> = HashMap::new();
        let mut unreachable = HashSet::new();
        let mut out = Vec::new();
        for chunk in 0..stratus_core::volume::chunks(self.size) {
            let set = self.set_of(chunk)?;
            for r in &set {
                if !versions.contains_key(r) && !unreachable.contains(r) {
                    match self.versions(r).await {
                        Ok(v) => {
                            versions.insert(r.clone(), v);
                        }
                        Err(e) => {
                            tracing::warn!(volume = %self.id, replica = %r.key(), error = %e, "versions not read");
                            unreachable.insert(r.clone());
                        }
                    }
                }
            }
            let held: Vec<(Replica, Option<(u64, u64)>)> = set
                .into_iter()
                .filter_map(|r| Some((r.clone(), versions.get(&r)?.get(&chunk).copied())))
                .collect();
            let Some((best, want)) = held.iter().max_by_key(|(_, v)| *v).cloned() else {
                continue;
            };
            let others: Vec<Replica> = held
                .into_iter()
                .filter(|(_, v)| *v != want)
                .map(|(r, _)| r)
                .collect();
            if !others.is_empty() {
                out.push((chunk, best, others));
            }
        }
        for r in unreachable {
            if !self.read_only {
                self.leave(&r).await?;
            }
        }
        Ok(out)
    }

    /// A whole chunk and its version from `src` (catch-up and reconcile copy these).
    async fn fetch_chunk(&self, src: &Replica, chunk: u64) -> io::Result<pb::ChunkCopy> {
        let st = |e: tonic::Status| err(io::ErrorKind::Other, e.to_string());
        let mut c = self.chunk_client(&src.node).map_err(st)?;
        Ok(tokio::time::timeout(
            NODE_TIMEOUT,
            c.fetch(pb::ChunkFetch {
                device: src.device.clone(),
                volume: self.id.clone(),
                chunk,
            }),
        )
        .await
        .map_err(|_| err(io::ErrorKind::TimedOut, "source stalled"))?
        .map_err(st)?
        .into_inner())
    }

    /// Stores a fetched chunk on `dst`, under this writer's epoch.
    async fn store_chunk(&self, dst: &Replica, copy: &pb::ChunkCopy) -> Result<(), tonic::Status> {
        let mut c = self.chunk_client(&dst.node)?;
        tokio::time::timeout(
            NODE_TIMEOUT,
            c.store(pb::ChunkStore {
                device: dst.device.clone(),
                volume: self.id.clone(),
                epoch: self.epoch,
                version: copy.version,
                data: copy.data.clone(),
                snap: copy.snap,
            }),
        )
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("replica stalled"))??;
        Ok(())
    }

    /// Copies the newest version of every divergent chunk to the replicas that differ
    /// (see [`VolumeIo::divergent`]); answers how many copies were made.
    pub async fn reconcile(&self) -> io::Result<usize> {
        let mut copies = 0;
        for (chunk, best, others) in self.divergent().await? {
            let _r = self
                .ranges
                .lock(chunk * CHUNK_SIZE, (chunk + 1) * CHUNK_SIZE)
                .await;
            let copy = self.fetch_chunk(&best, chunk).await?;
            if copy.version.is_none() {
                continue;
            }
            for r in others {
                match self.store_chunk(&r, &copy).await {
                    Ok(()) => copies += 1,
                    Err(s) if s.code() == Code::FailedPrecondition => {
                        self.fenced.store(true, Ordering::Relaxed);
                        return Err(err(
                            io::ErrorKind::PermissionDenied,
                            s.message().to_string(),
                        ));
                    }
                    _ => self.leave(&r).await?,
                }
            }
        }
        if copies > 0 {
            tracing::info!(volume = %self.id, copies, "replicas reconciled");
        }
        Ok(copies)
    }

    /// Tries once to bring every stale replica back (what the background task does each
    /// second); answers the replicas still out of the set. A storage node's repair worker
    /// calls this for volumes no writer holds.
    pub async fn repair(&self) -> io::Result<Vec<String>> {
        for key in self.stale() {
            if let Err(e) = self.catch_up(&key).await {
                tracing::debug!(volume = %self.id, replica = %key, error = %e, "catch-up not done yet");
            }
        }
        Ok(self.stale())
    }

    async fn versions(&self, rep: &Replica) -> Result<BTreeMap<u64, (u64, u64)>, tonic::Status> {
        let mut c = self.chunk_client(&rep.node)?;
        let r = tokio::time::timeout(
            NODE_TIMEOUT,
            c.versions(pb::ChunkVersionsRequest {
                device: rep.device.clone(),
                volume: self.id.clone(),
            }),
        )
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("stalled"))??;
        Ok(r.into_inner()
            .chunks
            .into_iter()
            .map(|c| (c.chunk, (c.epoch, c.seq)))
            .collect())
    }

    /// Copies to `stale` every chunk of this volume it holds whose version differs from a
    /// healthy replica's. Answers how many chunks still differ.
    ///
    /// A chunk is copied when its versions differ, and also when the healthy one was
    /// written at or after `since` (two writes to different parts of one chunk can finish
    /// in either order, so equal versions do not prove equal bytes for recent chunks).
    async fn copy_differing(
        &self,
        stale: &Replica,
        lock: bool,
        since: [u64; 2],
    ) -> io::Result<usize> {
        let st = |e: tonic::Status| err(io::ErrorKind::Other, e.to_string());
        let mine = self.versions(stale).await.map_err(st)?;
        let mut healthy: HashMap<Replica, BTreeMap<u64, (u64, u64)>> = HashMap::new();
        let mut copied = 0;
        for chunk in 0..stratus_core::volume::chunks(self.size) {
            let place = self.placement(chunk)?;
            if !place.contains(stale) {
                continue;
            }
            let Some(src) = self.set_of(chunk)?.into_iter().next() else {
                return Err(err(
                    io::ErrorKind::Other,
                    format!("chunk {chunk} has no replica in the set to copy from"),
                ));
            };
            if !healthy.contains_key(&src) {
                let v = self.versions(&src).await.map_err(st)?;
                healthy.insert(src.clone(), v);
            }
            let Some(want) = healthy[&src].get(&chunk).copied() else {
                continue;
            };
            let recent = [want.0, want.1] >= since;
            if !recent && Some(want) == mine.get(&chunk).copied() {
                continue;
            }
            let _r = if lock {
                Some(
                    self.ranges
                        .lock(chunk * CHUNK_SIZE, (chunk + 1) * CHUNK_SIZE)
                        .await,
                )
            } else {
                None
            };
            let copy = self.fetch_chunk(&src, chunk).await?;
            if copy.version.is_none() {
                continue;
            }
            self.store_chunk(stale, &copy).await.map_err(st)?;
            copied += 1;
        }
        Ok(copied)
    }

    /// Brings one stale replica back: copy what differs while writes go on, then once more
    /// with writes held, then return it to the set.
    async fn catch_up(&self, key: &str) -> io::Result<()> {
        let Some((node, device)) = key.rsplit_once('/') else {
            return Ok(());
        };
        let rep = Replica {
            node: node.to_string(),
            device: device.to_string(),
        };
        // The replica must take the epoch before anything else (it may have missed it).
        let mut c = self
            .chunk_client(&rep.node)
            .map_err(|e| err(io::ErrorKind::Other, e.to_string()))?;
        tokio::time::timeout(
            NODE_TIMEOUT,
            c.open(pb::ChunkOpen {
                device: rep.device.clone(),
                volume: self.id.clone(),
                epoch: self.epoch,
                // Every write issued so far is below this: one that stalled on this
                // replica before it left the set can never land after it rejoins.
                min_seq: self.seq.load(Ordering::Relaxed) + 1,
            }),
        )
        .await
        .map_err(|_| err(io::ErrorKind::TimedOut, "stalled"))?
        .map_err(|e| err(io::ErrorKind::Other, e.to_string()))?;
        let since = self
            .since
            .lock()
            .expect("since")
            .get(key)
            .copied()
            .unwrap_or([0, 0]);
        let mark = self.oldest_unanswered();
        let n = self.copy_differing(&rep, true, since).await?;
        // What was written meanwhile, with writes held, so none lands on the others only.
        let _g = self.gate.write().await;
        let m = self.copy_differing(&rep, false, mark).await?;
        let epoch = self.epoch;
        let k = key.to_string();
        self.vols
            .update(&self.id, |v| {
                (v.epoch == epoch && v.stale.contains(&k)).then(|| {
                    v.stale.retain(|s| s != &k);
                    v.stale_since.remove(&k);
                })
            })
            .await
            .map_err(|e| err(io::ErrorKind::Other, e.to_string()))?;
        self.since.lock().expect("since").remove(key);
        self.stale.lock().expect("stale").remove(key);
        tracing::info!(volume = %self.id, replica = %key, copied = n + m, "replica caught up and rejoined the set");
        self.rejoined.notify_waiters();
        Ok(())
    }
}

async fn background(me: std::sync::Weak<VolumeIo>) {
    loop {
        tokio::time::sleep(BACKGROUND_PERIOD).await;
        let Some(io) = me.upgrade() else { return };
        if io.closed.load(Ordering::Relaxed) || io.fenced.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = io.tend().await {
            tracing::debug!(volume = %io.id, error = %e, "background pass failed");
        }
    }
}

/// Polls every future to completion concurrently (no spawning: they borrow).
async fn futures_join<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in futs.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("completed")).collect()
}

/// Reads from the first replica; if it has not answered within [`HEDGE`], also from the
/// next, and so on. The first good answer wins.
async fn hedged_read(
    vol: &str,
    clients: Vec<(Replica, Result<ChunkClient<Traced>, tonic::Status>)>,
    req: pb::ChunkRead,
) -> io::Result<Vec<u8>> {
    if clients.is_empty() {
        return Err(err(
            io::ErrorKind::Other,
            format!("volume {vol} chunk {}: no replica in the set", req.chunk),
        ));
    }
    let mut js = JoinSet::new();
    let mut rest = clients.into_iter();
    let mut last = String::new();
    let launch =
        |js: &mut JoinSet<_>, (rep, c): (Replica, Result<ChunkClient<Traced>, tonic::Status>)| {
            let mut req = req.clone();
            req.device = rep.device.clone();
            js.spawn(async move {
                let r = match c {
                    Ok(mut c) => tokio::time::timeout(NODE_TIMEOUT, c.read(req))
                        .await
                        .unwrap_or_else(|_| {
                            Err(tonic::Status::deadline_exceeded("replica stalled"))
                        }),
                    Err(e) => Err(e),
                };
                (rep, r)
            });
        };
    if let Some(c) = rest.next() {
        launch(&mut js, c);
    }
    loop {
        let next = tokio::time::timeout(HEDGE, js.join_next()).await;
        match next {
            Err(_) => {
                // Slow: ask another replica too.
                if let Some(c) = rest.next() {
                    launch(&mut js, c);
                }
            }
            Ok(None) => match rest.next() {
                Some(c) => launch(&mut js, c),
                None => {
                    return Err(err(
                        io::ErrorKind::Other,
                        format!(
                            "volume {vol} chunk {}: no replica answered: {last}",
                            req.chunk
                        ),
                    ))
                }
            },
            Ok(Some(j)) => {
                let (rep, r) = j.map_err(|e| err(io::ErrorKind::Other, e.to_string()))?;
                match r {
                    Ok(d) => return Ok(d.into_inner().data.to_vec()),
                    Err(s) if s.code() == Code::InvalidArgument => {
                        return Err(err(io::ErrorKind::InvalidInput, s.message().to_string()))
                    }
                    Err(s) => {
                        last = format!("{}: {s}", rep.key());
                        if js.is_empty() {
                            if let Some(c) = rest.next() {
                                launch(&mut js, c);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `StorageFull` as NBD's `ENOSPC`; everything else as it is.
fn nbd_err(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::StorageFull {
        return io::Error::from_raw_os_error(28);
    }
    e
}

/// A volume exported over NBD: one write path, so a flush on any connection covers
/// writes answered on all of them.
impl crate::nbd::BlockDevice for VolumeIo {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn multi_conn(&self) -> bool {
        true
    }

    async fn read(&self, offset: u64, len: u32) -> io::Result<Vec<u8>> {
        VolumeIo::read(self, offset, u64::from(len))
            .await
            .map_err(nbd_err)
    }

    async fn write(&self, offset: u64, data: Vec<u8>, fua: bool) -> io::Result<()> {
        VolumeIo::write(self, offset, &data, fua)
            .await
            .map_err(nbd_err)
    }

    async fn flush(&self) -> io::Result<()> {
        VolumeIo::flush(self).await.map_err(nbd_err)
    }

    async fn trim(&self, offset: u64, len: u32) -> io::Result<()> {
        self.write_zeroes(offset, u64::from(len), true, false)
            .await
            .map_err(nbd_err)
    }

    async fn write_zeroes(&self, offset: u64, len: u32, fua: bool) -> io::Result<()> {
        VolumeIo::write_zeroes(self, offset, u64::from(len), false, fua)
            .await
            .map_err(nbd_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overlapping_ranges_wait_and_disjoint_ones_do_not() {
        let l = Arc::new(RangeLock::default());
        let a = l.lock(0, 4096).await;
        // Disjoint: immediate.
        let b = tokio::time::timeout(Duration::from_secs(1), l.lock(4096, 8192))
            .await
            .expect("disjoint range is free");
        let l2 = l.clone();
        let waiter = tokio::spawn(async move {
            let _c = l2.lock(2048, 6144).await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "overlapping range must wait");
        drop(a);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "still overlaps the second range");
        drop(b);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("freed")
            .unwrap();
    }
}
