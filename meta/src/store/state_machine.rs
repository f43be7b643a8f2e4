//! The replicated state machine in RocksDB (`RaftStateMachine`) and its read side.
//!
//! The committed entries openraft hands over together are applied as one atomic RocksDB write
//! batch (up to [`APPLY_BATCH_ENTRIES`] entries or [`APPLY_BATCH_BYTES`]) that also records
//! the last applied log id, so the state machine is always exactly "the log up to
//! `applied`". Within a batch, each entry sees the writes of the entries before it through an
//! overlay over the database. Applies are not synced (see the durability invariant in
//! [`super`]).
//!
//! History: every writing revision stores its events (with previous values) in `events`.
//! Watches replay them; reads at an older revision undo them. Every [`COMPACT_EVERY`]
//! revisions, history older than [`HISTORY_REVISIONS`] is dropped; the compaction point is
//! a function of the revision alone, so every replica compacts identically.
//!
//! Dedup: a request id seen within the last [`DEDUP_WINDOW`] client writes returns its first
//! answer instead of being applied again. The window counts writes, not log entries: one
//! entry carries up to 512 writes (group commit), so a window of entries would keep up to
//! 512 times as many records, all of them copied into every snapshot. Records that fell out
//! of the window are dropped by RocksDB's compactions ([`DedupFilterFactory`]), not by the
//! writes: forgetting costs the apply path nothing.

use std::collections::{BTreeMap, HashMap};
use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, WriteOptions, DB};
use tokio::io::AsyncSeekExt;
use tokio::sync::watch;

use super::snapshot::{self, SnapshotWriter};
use super::{cf, key_ceiling, CF_DEDUP, CF_DEDUP_IDX, CF_EVENTS, CF_KV, CF_SM, SM_CFS};
use crate::kv::{
    self, apply_txn, Event, KeyRange, KeyValue, KvRead, OpResult, Proposal, RangeEnd, RangeQuery,
    Request, Response,
};
use crate::{NodeId, TypeConfig};

/// Revisions of history kept for watches and reads at an old revision.
pub const HISTORY_REVISIONS: i64 = 100_000;
/// How often (in revisions) history is compacted.
pub const COMPACT_EVERY: i64 = 1024;
/// Client writes (with a request id) within which a repeated request id is recognised.
/// A client retries one write for up to 30 s (`MetaClient`'s default timeout); a 3-member
/// cluster on this machine commits at most ~14,000 writes/s (64 in flight), so a retry is at
/// most ~420,000 writes late.
pub const DEDUP_WINDOW: u64 = 500_000;
/// How often the dedup floor ([`StateMachineStore::advance_dedup_floor`]) moves up.
#[cfg(not(test))]
const DEDUP_FLOOR_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// Unit tests move the floor themselves.
#[cfg(test)]
const DEDUP_FLOOR_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
/// Most entries applied in one RocksDB write batch.
pub const APPLY_BATCH_ENTRIES: usize = 1024;
/// A write batch is written once it holds this many bytes, whatever its entry count.
pub const APPLY_BATCH_BYTES: usize = 16 * 1024 * 1024;

type Membership = StoredMembership<NodeId, openraft::BasicNode>;

/// Events grouped by revision, oldest first.
pub type History = Vec<(i64, Vec<Event>)>;

/// A read the state machine cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("revision {requested} has been compacted; the oldest available is {oldest}")]
    Compacted { requested: i64, oldest: i64 },
    #[error("revision {requested} is in the future; the current revision is {current}")]
    Future { requested: i64, current: i64 },
    #[error("storage: {0}")]
    Storage(String),
}

impl From<rocksdb::Error> for ReadError {
    fn from(e: rocksdb::Error) -> Self {
        ReadError::Storage(e.to_string())
    }
}

struct Shared {
    db: Arc<DB>,
    snap_dir: PathBuf,
    /// Latest applied revision, for watchers.
    revision: watch::Sender<i64>,
    /// Held for writing while a snapshot replaces the whole state; reads hold it for reading.
    install: RwLock<()>,
    current: Mutex<Option<(snapshot::Meta, PathBuf)>>,
    seq: AtomicU64,
    /// [`DEDUP_WINDOW`]; smaller in tests.
    dedup_window: AtomicU64,
    /// The dedup clock of the last write batch written (not necessarily durable yet).
    dedup_written: AtomicU64,
    /// Dedup records numbered below this may be dropped ([`DedupFilterFactory`]).
    dedup_floor: Arc<AtomicU64>,
}

/// The state machine handed to openraft.
#[derive(Clone)]
pub struct StateMachineStore {
    shared: Arc<Shared>,
}

/// Read access for the gRPC service: gets, ranges, history and the revision feed.
#[derive(Clone)]
pub struct SmReader {
    shared: Arc<Shared>,
}

fn be(rev: i64) -> [u8; 8] {
    (rev as u64).to_be_bytes()
}

fn sm_get<T: serde::de::DeserializeOwned>(
    db: &DB,
    snap: Option<&rocksdb::Snapshot>,
    key: &str,
) -> Result<Option<T>, rocksdb::Error> {
    let raw = match snap {
        Some(s) => s.get_cf(cf(db, CF_SM), key)?,
        None => db.get_cf(cf(db, CF_SM), key)?,
    };
    Ok(raw.and_then(|b| bincode::deserialize(&b).ok()))
}

fn ser<T: serde::Serialize>(v: &T) -> Vec<u8> {
    bincode::serialize(v).expect("serializing plain data cannot fail")
}

/// The state an entry is applied on: the database plus the writes of the earlier entries of
/// the same, not yet written, batch.
struct Pending<'a> {
    db: &'a DB,
    batch: WriteBatch,
    /// Keys written by the batch so far (`None` = deleted).
    kv: BTreeMap<Vec<u8>, Option<KeyValue>>,
    /// Request ids answered by the batch so far.
    dedup: HashMap<[u8; 16], Response>,
    /// Client writes with a request id applied so far, ever (the dedup clock).
    dedup_seq: u64,
    /// The last entry in the batch.
    last: Option<LogId<NodeId>>,
    entries: usize,
    /// The first read error met while applying ([`KvRead`] cannot return one): the apply
    /// fails with it instead of treating the key as absent on this replica only.
    read_error: std::cell::RefCell<Option<String>>,
}

impl<'a> Pending<'a> {
    fn new(db: &'a DB) -> Result<Self, rocksdb::Error> {
        Ok(Pending {
            db,
            batch: WriteBatch::default(),
            kv: BTreeMap::new(),
            dedup: HashMap::new(),
            dedup_seq: sm_get(db, None, DEDUP_SEQ)?.unwrap_or(0),
            last: None,
            entries: 0,
            read_error: std::cell::RefCell::new(None),
        })
    }

    fn note<T, E: std::fmt::Display>(&self, r: Result<T, E>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.read_error.borrow_mut().get_or_insert(e.to_string());
                None
            }
        }
    }

    fn full(&self) -> bool {
        self.entries >= APPLY_BATCH_ENTRIES || self.batch.size_in_bytes() >= APPLY_BATCH_BYTES
    }

    /// Write the batch with the applied log id and revision; start an empty one.
    fn write(&mut self, revision: i64) -> Result<(), StorageError<NodeId>> {
        let Some(last) = self.last else {
            return Ok(());
        };
        let db = self.db;
        let mut batch = std::mem::take(&mut self.batch);
        batch.put_cf(cf(db, CF_SM), "applied", ser(&Some(last)));
        batch.put_cf(cf(db, CF_SM), "revision", ser(&revision));
        batch.put_cf(cf(db, CF_SM), DEDUP_SEQ, ser(&self.dedup_seq));
        db.write(batch)
            .map_err(|e| StorageIOError::apply(last, &e))?;
        self.kv.clear();
        self.dedup.clear();
        self.last = None;
        self.entries = 0;
        Ok(())
    }
}

impl KvRead for Pending<'_> {
    fn get(&self, key: &[u8]) -> Option<KeyValue> {
        if let Some(v) = self.kv.get(key) {
            return v.clone();
        }
        let raw = self
            .note(self.db.get_cf(cf(self.db, CF_KV), key))
            .flatten()?;
        self.note(bincode::deserialize(&raw))
    }
    fn range(&self, range: &KeyRange) -> Vec<KeyValue> {
        if range.end == RangeEnd::Single {
            return self.get(&range.start).into_iter().collect();
        }
        let base = self
            .note(scan(self.db, None, range, usize::MAX).map(|(kvs, _)| kvs))
            .unwrap_or_default();
        let mut written = self
            .kv
            .range(range.start.clone()..)
            .take_while(|(k, _)| range.contains(k))
            .peekable();
        if written.peek().is_none() {
            return base;
        }
        let mut merged: BTreeMap<Vec<u8>, KeyValue> =
            base.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
        for (k, v) in written {
            match v {
                Some(kv) => merged.insert(k.clone(), kv.clone()),
                None => merged.remove(k),
            };
        }
        merged.into_values().collect()
    }
}

/// Live keys of `range`, in order, at most `max` of them decoded, and how many there are
/// in all (counting goes on past `max` without decoding). A row that does not decode is
/// an error, never a key read as absent on this replica only.
fn scan(
    db: &DB,
    snap: Option<&rocksdb::Snapshot>,
    range: &KeyRange,
    max: usize,
) -> Result<(Vec<KeyValue>, usize), ReadError> {
    let undecodable = |k: &[u8], e: bincode::Error| {
        tracing::error!(key = %String::from_utf8_lossy(k), error = %e, "stored row does not decode");
        ReadError::Storage(format!(
            "stored row {:?} does not decode: {e}",
            String::from_utf8_lossy(k)
        ))
    };
    if range.end == RangeEnd::Single {
        let raw = match snap {
            Some(s) => s.get_cf(cf(db, CF_KV), &range.start)?,
            None => db.get_cf(cf(db, CF_KV), &range.start)?,
        };
        let kv: Option<KeyValue> = match raw {
            Some(b) => Some(bincode::deserialize(&b).map_err(|e| undecodable(&range.start, e))?),
            None => None,
        };
        let n = usize::from(kv.is_some());
        return Ok((kv.into_iter().take(max).collect(), n));
    }
    let mut opts = ReadOptions::default();
    if let Some(s) = snap {
        opts.set_snapshot(s);
    }
    if let RangeEnd::Before(end) = &range.end {
        opts.set_iterate_upper_bound(end.clone());
    }
    let mut out = Vec::new();
    let mut total = 0;
    for item in db.iterator_cf_opt(
        cf(db, CF_KV),
        opts,
        IteratorMode::From(&range.start, Direction::Forward),
    ) {
        let (k, v) = item?;
        total += 1;
        if out.len() < max {
            out.push(bincode::deserialize(&v).map_err(|e| undecodable(&k, e))?);
        }
    }
    Ok((out, total))
}

impl StateMachineStore {
    /// Open the state machine over `db`, with snapshot files in `snap_dir`; `dedup_floor` is
    /// the one `db`'s dedup column families were opened with ([`DedupFilterFactory`]).
    pub async fn open(
        db: Arc<DB>,
        snap_dir: PathBuf,
        dedup_floor: Arc<AtomicU64>,
    ) -> Result<Self, crate::MetaError> {
        std::fs::create_dir_all(&snap_dir)?;
        if let Some(id) = sm_get::<String>(&db, None, INSTALLING)? {
            // Stopped while loading a snapshot: load it again, from its file.
            let path = snap_dir.join(format!("{id}.snap"));
            if !path.exists() {
                return Err(crate::MetaError::Recovery(format!(
                    "this member stopped while loading snapshot {id}, and {} is gone: its \
                     state is incomplete. Remove it from the cluster, wipe {} and add it \
                     again",
                    path.display(),
                    snap_dir.parent().unwrap_or(&snap_dir).display()
                )));
            }
            let revision = load_snapshot(&db, &path).map_err(crate::MetaError::Recovery)?;
            tracing::info!(snapshot = %id, revision, "finished an interrupted snapshot install");
        }
        let current = snapshot::latest(&snap_dir);
        if let Some((_, keep)) = &current {
            snapshot::remove_others(&snap_dir, keep);
        }
        let revision: i64 = sm_get(&db, None, "revision")?.unwrap_or(0);
        // What the database holds after a restart is durable: its clock may set the floor.
        let dedup_seq: u64 = sm_get(&db, None, DEDUP_SEQ)?.unwrap_or(0);
        dedup_floor.fetch_max(dedup_seq.saturating_sub(DEDUP_WINDOW), Ordering::AcqRel);
        let (tx, _) = watch::channel(revision);
        let shared = Arc::new(Shared {
            db,
            snap_dir,
            revision: tx,
            install: RwLock::new(()),
            current: Mutex::new(current),
            seq: AtomicU64::new(0),
            dedup_window: AtomicU64::new(DEDUP_WINDOW),
            dedup_written: AtomicU64::new(dedup_seq),
            dedup_floor,
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("dedup-floor".into())
            .spawn(move || loop {
                std::thread::sleep(DEDUP_FLOOR_EVERY);
                let Some(shared) = weak.upgrade() else { return };
                if let Err(e) = (StateMachineStore { shared }).advance_dedup_floor() {
                    tracing::warn!(error = %e, "could not sync the WAL to raise the dedup floor");
                }
            })?;
        Ok(StateMachineStore { shared })
    }

    /// A reader over the same state.
    pub fn reader(&self) -> SmReader {
        SmReader {
            shared: self.shared.clone(),
        }
    }

    /// Apply one log entry: the answers of the client writes it carries, in order.
    fn apply_one(
        &self,
        ent: Entry<TypeConfig>,
        revision: &mut i64,
        p: &mut Pending,
    ) -> Result<Vec<Response>, StorageError<NodeId>> {
        let db = &*self.shared.db;
        let log_id = ent.log_id;
        p.last = Some(log_id);
        p.entries += 1;
        let mut out = Vec::new();
        match ent.payload {
            EntryPayload::Blank => {}
            EntryPayload::Membership(m) => {
                p.batch.put_cf(
                    cf(db, CF_SM),
                    "membership",
                    ser(&Membership::new(Some(log_id), m)),
                );
            }
            EntryPayload::Normal(Proposal(reqs)) => {
                for req in &reqs {
                    out.push(self.apply_request(req, log_id, revision, p)?);
                }
            }
        }
        Ok(out)
    }

    /// Apply one client write of the entry `log_id`; a request id answered before (within
    /// the last [`DEDUP_WINDOW`] writes) gets its first answer again and changes nothing.
    fn apply_request(
        &self,
        req: &Request,
        log_id: LogId<NodeId>,
        revision: &mut i64,
        p: &mut Pending,
    ) -> Result<Response, StorageError<NodeId>> {
        let db = &*self.shared.db;
        if let Some(id) = &req.id {
            if let Some(first) = p.dedup.get(&id.0) {
                return Ok(first.clone());
            }
            let seen = db
                .get_cf(cf(db, CF_DEDUP), id.0)
                .map_err(|e| StorageIOError::apply(log_id, &e))?
                .and_then(|b| bincode::deserialize::<(u64, Response)>(&b).ok());
            if let Some((first_seq, first)) = seen {
                if p.dedup_seq.saturating_sub(first_seq) <= self.dedup_window() {
                    return Ok(first);
                }
            }
        }
        let applied = apply_txn(&*p, &req.txn, *revision);
        if let Some(e) = p.read_error.borrow_mut().take() {
            return Err(StorageIOError::apply(log_id, &std::io::Error::other(e)).into());
        }
        for (k, v) in applied.changes {
            match &v {
                Some(kv) => p.batch.put_cf(cf(db, CF_KV), &k, ser(kv)),
                None => p.batch.delete_cf(cf(db, CF_KV), &k),
            }
            p.kv.insert(k, v);
        }
        if !applied.events.is_empty() {
            *revision = applied.response.revision;
            p.batch
                .put_cf(cf(db, CF_EVENTS), be(*revision), ser(&applied.events));
            if (*revision).rem_euclid(COMPACT_EVERY) == 0 && *revision > HISTORY_REVISIONS {
                let compact = *revision - HISTORY_REVISIONS;
                p.batch
                    .delete_range_cf(cf(db, CF_EVENTS), be(0), be(compact + 1));
                p.batch.put_cf(cf(db, CF_SM), "compact", ser(&compact));
            }
        }
        if let Some(id) = &req.id {
            p.dedup_seq += 1;
            let seq = p.dedup_seq;
            p.batch
                .put_cf(cf(db, CF_DEDUP), id.0, ser(&(seq, &applied.response)));
            p.dedup.insert(id.0, applied.response.clone());
        }
        Ok(applied.response)
    }

    fn dedup_window(&self) -> u64 {
        self.shared.dedup_window.load(Ordering::Relaxed)
    }

    fn apply_blocking(
        &self,
        entries: Vec<Entry<TypeConfig>>,
    ) -> Result<Vec<Vec<Response>>, StorageError<NodeId>> {
        let mut revision = *self.shared.revision.borrow();
        let mut out = Vec::new();
        let mut pending =
            Pending::new(&self.shared.db).map_err(|e| StorageIOError::read_state_machine(&e))?;
        for ent in entries {
            out.push(self.apply_one(ent, &mut revision, &mut pending)?);
            if pending.full() {
                pending.write(revision)?;
                self.written(revision, pending.dedup_seq);
            }
        }
        pending.write(revision)?;
        self.written(revision, pending.dedup_seq);
        Ok(out)
    }

    /// After a write batch: tell watchers the revision, and the dedup floor the clock.
    fn written(&self, revision: i64, dedup_seq: u64) {
        self.shared.revision.send_replace(revision);
        self.shared
            .dedup_written
            .store(dedup_seq, Ordering::Release);
    }

    /// Raise the dedup floor to the window's start as of the last write batch, once that
    /// batch is durable. Only a durable clock may set it: a member that stops loses its
    /// unsynced applies and applies those entries again from the log, on the clock of its
    /// disk, and the records they are answered from must still be there.
    fn advance_dedup_floor(&self) -> Result<(), rocksdb::Error> {
        let written = self.shared.dedup_written.load(Ordering::Acquire);
        let floor = written.saturating_sub(self.dedup_window());
        if floor <= self.shared.dedup_floor.load(Ordering::Acquire) {
            return Ok(());
        }
        // The WAL is one sequence: syncing it now makes the batch that set `written` durable.
        self.shared.db.flush_wal(true)?;
        self.shared.dedup_floor.fetch_max(floor, Ordering::AcqRel);
        Ok(())
    }

    fn build_blocking(&self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let db = &*self.shared.db;
        // Make every applied entry durable before the log may be purged behind this snapshot.
        db.flush_wal(true)
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let snap = db.snapshot();
        let read = |e: rocksdb::Error| StorageError::from(StorageIOError::read_state_machine(&e));
        let applied: Option<LogId<NodeId>> =
            sm_get::<Option<LogId<NodeId>>>(db, Some(&snap), "applied")
                .map_err(read)?
                .flatten();
        let membership: Membership = sm_get(db, Some(&snap), "membership")
            .map_err(read)?
            .unwrap_or_default();
        let seq = self.shared.seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match applied {
            Some(l) => format!(
                "{}-{}-{}-{}",
                l.leader_id.term, l.leader_id.node_id, l.index, seq
            ),
            None => format!("0-0-0-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: applied,
            last_membership: membership,
            snapshot_id,
        };
        let werr = |e: std::io::Error| {
            StorageError::from(StorageIOError::write_snapshot(Some(meta.signature()), &e))
        };
        let mut w = SnapshotWriter::create(&self.shared.snap_dir, &meta).map_err(werr)?;
        for (i, name) in SM_CFS.iter().enumerate() {
            let mut opts = ReadOptions::default();
            opts.set_snapshot(&snap);
            for item in db.iterator_cf_opt(cf(db, name), opts, IteratorMode::Start) {
                let (k, v) = item.map_err(read)?;
                w.record(i as u8, &k, &v).map_err(werr)?;
            }
        }
        let path = w.finish().map_err(werr)?;
        snapshot::remove_others(&self.shared.snap_dir, &path);
        *self.shared.current.lock().expect("lock") = Some((meta.clone(), path.clone()));
        let file = std::fs::File::open(&path).map_err(werr)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        })
    }

    /// Installs a snapshot a leader sent (`incoming`, read from its start): the file is
    /// copied to the snapshot folder and verified end to end, published as this member's
    /// snapshot, and only then loaded into the state. Nothing of it is ever held whole in
    /// memory: a snapshot may be larger than the RAM the member can spare.
    fn install_blocking(
        &self,
        meta: &snapshot::Meta,
        incoming: std::fs::File,
    ) -> Result<i64, StorageError<NodeId>> {
        let sig = Some(meta.signature());
        let werr = |e: &dyn std::fmt::Display| {
            StorageError::from(StorageIOError::write_snapshot(
                sig.clone(),
                &std::io::Error::other(e.to_string()),
            ))
        };
        // The id names a file: a peer's id must be one this node could have made.
        if let Err(e) = snapshot::check_id(&meta.snapshot_id) {
            tracing::warn!(error = %e, "refused a snapshot");
            return Err(werr(&e));
        }
        let dir = &self.shared.snap_dir;
        let dest = dir.join(format!("{}.snap", meta.snapshot_id));
        let tmp = dir.join(format!("{}.snap.tmp", meta.snapshot_id));
        let copied = std::fs::File::create(&tmp).and_then(|f| {
            let mut w = snapshot::WriteBehind::new(f);
            std::io::copy(
                &mut std::io::BufReader::with_capacity(1 << 20, incoming),
                &mut w,
            )?;
            w.finish()
        });
        let verified = copied
            .map_err(|e| e.to_string())
            .and_then(|_| {
                snapshot::Reader::open(&tmp)
                    .and_then(|r| r.verify())
                    .map_err(|e| e.to_string())
            })
            .and_then(|(m, _)| {
                (m.last_log_id == meta.last_log_id && m.snapshot_id == meta.snapshot_id)
                    .then_some(())
                    .ok_or_else(|| "snapshot file does not match its metadata".to_string())
            });
        if let Err(e) = verified {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(snapshot = %meta.snapshot_id, error = %e, "refused a snapshot");
            return Err(werr(&e));
        }
        // Keep the verified file as our current snapshot before touching the state: a
        // crash while loading it finishes from this file at the next start.
        snapshot::publish(&tmp, &dest).map_err(|e| werr(&e))?;
        let revision = {
            let _guard = self.shared.install.write().expect("lock");
            load_snapshot(&self.shared.db, &dest).map_err(|e| werr(&e))?
        };
        let dedup_seq = sm_get(&self.shared.db, None, DEDUP_SEQ)
            .map_err(|e| werr(&e))?
            .unwrap_or(0);
        self.shared
            .dedup_written
            .store(dedup_seq, Ordering::Release);
        snapshot::remove_others(dir, &dest);
        *self.shared.current.lock().expect("lock") = Some((meta.clone(), dest));
        Ok(revision)
    }
}

/// Bytes of records per RocksDB write while a snapshot is loaded.
const INSTALL_BATCH_BYTES: usize = 8 << 20;
/// The dedup clock (in `sm`): how many client writes with a request id were applied.
const DEDUP_SEQ: &str = "dedup_seq";
/// Set (in `sm`) while a snapshot is being loaded: the id of the snapshot.
const INSTALLING: &str = "installing";

/// Replaces the whole state with the verified snapshot file at `path`, in writes of at most
/// [`INSTALL_BATCH_BYTES`], and returns the revision it holds.
///
/// The first write (synced) clears the state and sets [`INSTALLING`] to the snapshot's id;
/// the last (synced) sets `applied` and `membership` and clears the marker. A member that
/// stops in between finds the marker at its next start and loads the same file again
/// ([`StateMachineStore::open`]), so its state is never a mix of two.
fn load_snapshot(db: &DB, path: &std::path::Path) -> Result<i64, String> {
    let mut r = snapshot::Reader::open(path).map_err(|e| e.to_string())?;
    let meta = r.meta().clone();
    let err = |e: &dyn std::fmt::Display| format!("loading snapshot {}: {e}", meta.snapshot_id);
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    let mut batch = WriteBatch::default();
    for name in SM_CFS {
        batch.delete_range_cf(cf(db, name), Vec::new(), key_ceiling());
    }
    batch.put_cf(cf(db, CF_SM), INSTALLING, ser(&meta.snapshot_id));
    db.write_opt(batch, &sync).map_err(|e| err(&e))?;
    let mut batch = WriteBatch::default();
    let mut first = true;
    while let Some((i, k, v)) = r.next_record().map_err(|e| err(&e))? {
        let Some(name) = SM_CFS.get(i as usize) else {
            return Err(err(&"unknown column family in snapshot"));
        };
        batch.put_cf(cf(db, name), k, v);
        if batch.size_in_bytes() >= INSTALL_BATCH_BYTES {
            db.write(std::mem::take(&mut batch)).map_err(|e| err(&e))?;
            if std::mem::take(&mut first) {
                fail::fail_point!("snapshot-mid-install", |_| crate::crash(
                    "snapshot-mid-install"
                ));
            }
        }
    }
    if !batch.is_empty() {
        db.write(std::mem::take(&mut batch)).map_err(|e| err(&e))?;
        if first {
            fail::fail_point!("snapshot-mid-install", |_| crate::crash(
                "snapshot-mid-install"
            ));
        }
    }
    batch.put_cf(cf(db, CF_SM), "applied", ser(&meta.last_log_id));
    batch.put_cf(cf(db, CF_SM), "membership", ser(&meta.last_membership));
    batch.delete_cf(cf(db, CF_SM), INSTALLING);
    db.write_opt(batch, &sync).map_err(|e| err(&e))?;
    sm_get(db, None, "revision")
        .map_err(|e| err(&e))
        .map(|r| r.unwrap_or(0))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        // Every member builds at the same log index, on the cores that serve writes: the
        // build runs on a thread of its own at a lower CPU priority (nice 10), so it takes
        // the time writes leave idle.
        let me = self.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("snapshot-build".into())
            .spawn(move || {
                // SAFETY: gettid and setpriority only read and set this thread's nice value.
                unsafe {
                    let tid = libc::gettid() as libc::id_t;
                    libc::setpriority(libc::PRIO_PROCESS, tid, 10);
                }
                let _ = tx.send(me.build_blocking());
            })
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        rx.await.map_err(|e| {
            StorageIOError::write_snapshot(None, &std::io::Error::other(e.to_string()))
        })?
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        let db = &*self.shared.db;
        let read = |e: rocksdb::Error| StorageError::from(StorageIOError::read_state_machine(&e));
        let applied = sm_get::<Option<LogId<NodeId>>>(db, None, "applied")
            .map_err(read)?
            .flatten();
        let membership = sm_get(db, None, "membership")
            .map_err(read)?
            .unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Response>>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let scans = entries.iter().any(|e| match &e.payload {
            EntryPayload::Normal(Proposal(reqs)) => reqs.iter().any(|r| r.txn.scans()),
            _ => false,
        });
        // Applying runs on the node's runtime, whose threads also answer Raft and clients.
        // A txn over a range (a prefix delete of 64k keys took 0.5-0.9 s) would stop all of
        // that, so a follower missed heartbeats and the leader its quorum; such batches run
        // on a blocking thread (with either scheduler: a node with one worker thread runs
        // tokio's current-thread one). Point writes, nearly all of them, stay inline:
        // handing them to another thread costs more than applying them.
        if scans {
            let me = self.clone();
            tokio::task::spawn_blocking(move || me.apply_blocking(entries))
                .await
                .map_err(|e| StorageIOError::write_state_machine(&e))?
        } else {
            self.apply_blocking(entries)
        }
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<NodeId>> {
        let seq = self.shared.seq.fetch_add(1, Ordering::Relaxed);
        let path = self
            .shared
            .snap_dir
            .join(format!("incoming-{seq}-{}.tmp", rand::random::<u32>()));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        mut snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<NodeId>> {
        let rerr = |e: std::io::Error| {
            StorageError::from(StorageIOError::read_snapshot(Some(meta.signature()), &e))
        };
        snapshot.seek(SeekFrom::Start(0)).await.map_err(rerr)?;
        let file = snapshot.into_std().await;
        let me = self.clone();
        let meta2 = meta.clone();
        let revision = tokio::task::spawn_blocking(move || me.install_blocking(&meta2, file))
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))??;
        self.shared.revision.send_replace(revision);
        tracing::info!(snapshot = %meta.snapshot_id, revision, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let current = self.shared.current.lock().expect("lock").clone();
        let Some((meta, path)) = current else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(file),
        }))
    }
}

impl SmReader {
    /// The latest applied revision and a feed of its changes.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.shared.revision.subscribe()
    }

    /// The latest applied revision.
    pub fn revision(&self) -> i64 {
        *self.shared.revision.borrow()
    }

    /// The oldest revision whose state can still be read (history before it is dropped).
    pub fn compact_revision(&self) -> i64 {
        sm_get(&self.shared.db, None, "compact")
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// Answer a range query as of `at` (0 = current). Returns the answer and the revision it
    /// reflects.
    pub fn range(&self, q: &RangeQuery, at: i64) -> Result<(OpResult, i64), ReadError> {
        let _guard = self.shared.install.read().expect("lock");
        let db = &*self.shared.db;
        let snap = db.snapshot();
        let current: i64 = sm_get(db, Some(&snap), "revision")?.unwrap_or(0);
        let compact: i64 = sm_get(db, Some(&snap), "compact")?.unwrap_or(0);
        if at > current {
            return Err(ReadError::Future {
                requested: at,
                current,
            });
        }
        if at > 0 && at < compact {
            return Err(ReadError::Compacted {
                requested: at,
                oldest: compact,
            });
        }
        // A current read decodes only the page it answers (the request's limit, or
        // DEFAULT_RANGE_LIMIT without one) and counts the rest; a read of an older
        // revision rebuilds the whole range first.
        let historic = at > 0 && at < current;
        let limit = match q.limit {
            _ if q.count_only => 0,
            0 => stratus_core::limits::DEFAULT_RANGE_LIMIT,
            n => n,
        };
        let decode = if historic || q.count_only {
            usize::MAX
        } else {
            limit.saturating_add(1)
        };
        let (mut kvs, total) = scan(db, Some(&snap), &q.range, decode)?;
        if historic {
            let mut opts = ReadOptions::default();
            opts.set_snapshot(&snap);
            opts.set_iterate_lower_bound(be(at + 1).to_vec());
            let mut newer = Vec::new();
            for item in db.iterator_cf_opt(cf(db, CF_EVENTS), opts, IteratorMode::End) {
                let (_, v) = item?;
                let evs: Vec<Event> =
                    bincode::deserialize(&v).map_err(|e| ReadError::Storage(e.to_string()))?;
                newer.extend(evs.into_iter().rev());
            }
            kvs = kv::undo_events(kvs, &q.range, newer);
        }
        let total = if historic { kvs.len() } else { total };
        Ok((
            kv::range_page(kvs, q, limit, total),
            if at > 0 { at } else { current },
        ))
    }

    /// Events of revisions `>= from` whose key starts with `prefix`, scanning at most
    /// `max_revisions` revisions. Returns the matching events and the last revision scanned
    /// (`from - 1` when nothing was there yet).
    pub fn events(
        &self,
        from: i64,
        prefix: &[u8],
        max_revisions: usize,
    ) -> Result<(History, i64), ReadError> {
        let _guard = self.shared.install.read().expect("lock");
        let db = &*self.shared.db;
        let compact: i64 = sm_get(db, None, "compact")?.unwrap_or(0);
        if from <= compact {
            return Err(ReadError::Compacted {
                requested: from,
                oldest: compact + 1,
            });
        }
        let mut out = Vec::new();
        let mut scanned = from - 1;
        let iter = db.iterator_cf(
            cf(db, CF_EVENTS),
            IteratorMode::From(&be(from), Direction::Forward),
        );
        for item in iter.take(max_revisions) {
            let (k, v) = item?;
            let rev = u64::from_be_bytes(
                k.as_ref()
                    .try_into()
                    .map_err(|_| ReadError::Storage("bad event key".into()))?,
            ) as i64;
            scanned = rev;
            let evs: Vec<Event> =
                bincode::deserialize(&v).map_err(|e| ReadError::Storage(e.to_string()))?;
            let evs: Vec<Event> = evs
                .into_iter()
                .filter(|e| e.kv.key.starts_with(prefix))
                .collect();
            if !evs.is_empty() {
                out.push((rev, evs));
            }
        }
        Ok((out, scanned))
    }
}

/// Drops, as RocksDB compacts them, the dedup records no write can be answered from any
/// more: those numbered below the floor, the window's start as of a durable dedup clock
/// ([`StateMachineStore::advance_dedup_floor`]). One factory serves `dedup` (the number is
/// the first 8 bytes of the value, bincode's little-endian u64) and one `dedup_idx`, which
/// builds before this one wrote (the number is the key's first 8 bytes, big endian).
///
/// Only reclaims space: [`StateMachineStore::apply_request`] ignores a record older than
/// the window whether it is gone or not, so when a member's compactions run cannot change
/// an answer. A record that the same id wrote again later carries the later number.
pub(crate) struct DedupFilterFactory {
    floor: Arc<AtomicU64>,
    index: bool,
}

impl DedupFilterFactory {
    /// The factory for column family `name`, if it holds dedup records.
    pub(crate) fn for_cf(name: &str, floor: &Arc<AtomicU64>) -> Option<Self> {
        (name == CF_DEDUP || name == CF_DEDUP_IDX).then(|| DedupFilterFactory {
            floor: floor.clone(),
            index: name == CF_DEDUP_IDX,
        })
    }
}

const DEDUP_FILTER: &std::ffi::CStr = c"stratus-dedup-window";

impl rocksdb::compaction_filter_factory::CompactionFilterFactory for DedupFilterFactory {
    type Filter = DedupFilter;

    fn create(
        &mut self,
        _: rocksdb::compaction_filter_factory::CompactionFilterContext,
    ) -> DedupFilter {
        DedupFilter {
            floor: self.floor.load(Ordering::Acquire),
            index: self.index,
        }
    }

    fn name(&self) -> &std::ffi::CStr {
        DEDUP_FILTER
    }
}

/// One compaction's filter: the floor as it was when the compaction began.
pub(crate) struct DedupFilter {
    floor: u64,
    index: bool,
}

impl rocksdb::compaction_filter::CompactionFilter for DedupFilter {
    fn filter(&mut self, _level: u32, key: &[u8], value: &[u8]) -> rocksdb::CompactionDecision {
        let number = if self.index {
            key.first_chunk::<8>().map(|b| u64::from_be_bytes(*b))
        } else {
            value.first_chunk::<8>().map(|b| u64::from_le_bytes(*b))
        };
        match number {
            Some(n) if n < self.floor => rocksdb::CompactionDecision::Remove,
            _ => rocksdb::CompactionDecision::Keep,
        }
    }

    fn name(&self) -> &std::ffi::CStr {
        DEDUP_FILTER
    }
}

#[cfg(test)]
mod tests {
    //! Group commit: one entry carrying several client writes, and several entries applied
    //! in one write batch, give the same state and answers as one write at a time.
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
    use stratus_core::id::RequestId;

    use crate::kv::{
        Compare, CompareOp, KeyRange, Op, OpResult, Proposal, RangeQuery, Request, Target, Txn,
    };
    use crate::TypeConfig;

    fn put(key: &str, value: &str) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            prev_kv: false,
        }
    }

    fn req(id: u8, txn: Txn) -> Request {
        Request {
            id: Some(RequestId([id; 16])),
            txn,
        }
    }

    fn entry(index: u64, reqs: Vec<Request>) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Proposal(reqs)),
        }
    }

    fn writes(key: &str, value: &str) -> Txn {
        Txn {
            success: vec![put(key, value)],
            ..Default::default()
        }
    }

    /// The dedup window counts client writes, not log entries: a retry more than the
    /// window's writes late is applied again even when those writes shared one entry, and
    /// records older than the window are dropped.
    #[tokio::test]
    async fn the_dedup_window_counts_writes_and_old_records_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, mut sm) = super::super::open(dir.path(), super::super::DEFAULT_WAL_BYTES)
            .await
            .unwrap();
        sm.shared
            .dedup_window
            .store(100, std::sync::atomic::Ordering::Relaxed);
        let id = |n: u32| {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&n.to_be_bytes());
            RequestId(b)
        };
        let write = |n: u32| Request {
            id: Some(id(n)),
            txn: writes(&format!("k{n}"), "v"),
        };
        let first = sm.apply(vec![entry(1, vec![write(0)])]).await.unwrap();
        // 100 more writes in one entry: a retry is still within the window.
        let hundred = (1..=100).map(write).collect();
        sm.apply(vec![entry(2, hundred)]).await.unwrap();
        let retry = sm.apply(vec![entry(3, vec![write(0)])]).await.unwrap();
        assert_eq!(retry[0][0].revision, first[0][0].revision, "deduplicated");
        // One more write, in the next entry: the first is 101 writes back, and applied again.
        sm.apply(vec![entry(4, vec![write(101)])]).await.unwrap();
        let late = sm.apply(vec![entry(5, vec![write(0)])]).await.unwrap();
        assert!(late[0][0].revision > first[0][0].revision, "applied again");
        // Index records, as builds before compactions dropped them wrote one per write.
        let db = sm.shared.db.clone();
        let idx = super::super::cf(&db, super::super::CF_DEDUP_IDX);
        for n in [1u64, 52, 53, 1100] {
            let mut k = n.to_be_bytes().to_vec();
            k.extend_from_slice(&[7; 16]);
            db.put_cf(idx, k, b"").unwrap();
        }
        let store = sm.clone();
        let compact = || {
            store.advance_dedup_floor().unwrap();
            for name in [super::super::CF_DEDUP, super::super::CF_DEDUP_IDX] {
                db.compact_range_cf(super::super::cf(&db, name), None::<&[u8]>, None::<&[u8]>);
            }
        };
        let count = |name| {
            db.iterator_cf(super::super::cf(&db, name), rocksdb::IteratorMode::Start)
                .count()
        };
        // 103 writes so far (the deduplicated retry is not one); 1,100 in all, in entries
        // of 50.
        let mut seq = 103;
        let mut index = 6;
        while seq < 1100 {
            let reqs: Vec<_> = (seq + 1..=(seq + 50).min(1100)).map(write).collect();
            seq += reqs.len() as u32;
            sm.apply(vec![entry(index, reqs)]).await.unwrap();
            index += 1;
            if seq == 153 {
                // The floor is 53: record 1 (write 0's first answer) is dropped, but not
                // record 103, its second: a retry is still answered from it.
                compact();
                assert_eq!(count(super::super::CF_DEDUP_IDX), 2, "1 and 52 dropped");
                let again = sm.apply(vec![entry(index, vec![write(0)])]).await.unwrap();
                index += 1;
                assert_eq!(again[0][0].revision, late[0][0].revision, "deduplicated");
            }
        }
        // Not durable yet, not dropped: the floor moves only once the WAL is synced.
        db.compact_range_cf(
            super::super::cf(&db, super::super::CF_DEDUP),
            None::<&[u8]>,
            None::<&[u8]>,
        );
        assert!(count(super::super::CF_DEDUP) > 200);
        // Records 1,000 to 1,100 are within the window of the next write.
        compact();
        assert_eq!(count(super::super::CF_DEDUP), 101);
        assert_eq!(count(super::super::CF_DEDUP_IDX), 1, "only 1,100's is left");
    }

    /// A current range read decodes only the page it answers and counts the rest; without
    /// a limit it answers DEFAULT_RANGE_LIMIT keys with `more`; a row that does not decode
    /// is an error, not a missing key.
    #[tokio::test]
    async fn range_reads_answer_a_page_and_refuse_undecodable_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, mut sm) =
            super::super::open(&dir.path().join("data"), super::super::DEFAULT_WAL_BYTES)
                .await
                .unwrap();
        let n = stratus_core::limits::DEFAULT_RANGE_LIMIT + 5;
        let reqs: Vec<Request> = (0..n)
            .map(|i| Request {
                id: None,
                txn: writes(&format!("k/{i:06}"), "v"),
            })
            .collect();
        sm.apply(vec![entry(1, reqs)]).await.unwrap();
        let reader = sm.reader();
        let q = |limit| RangeQuery {
            range: KeyRange::prefix(b"k/".to_vec()),
            limit,
            keys_only: false,
            count_only: false,
        };
        let (r, _) = reader.range(&q(3), 0).unwrap();
        let OpResult::Range { kvs, more, count } = r else {
            panic!("not a range answer")
        };
        assert_eq!(kvs.len(), 3);
        assert!(more);
        assert_eq!(count, n as i64);
        assert_eq!(kvs[2].key, b"k/000002");
        let (r, _) = reader.range(&q(0), 0).unwrap();
        let OpResult::Range { kvs, more, count } = r else {
            panic!("not a range answer")
        };
        assert_eq!(kvs.len(), stratus_core::limits::DEFAULT_RANGE_LIMIT);
        assert!(more);
        assert_eq!(count, n as i64);

        // A damaged row: the read fails and names it.
        let db = &sm.shared.db;
        db.put_cf(super::cf(db, super::CF_KV), b"k/000001", b"\xff\xff")
            .unwrap();
        let e = reader.range(&q(3), 0).unwrap_err();
        assert!(e.to_string().contains("does not decode"), "{e}");
    }

    /// A peer's snapshot id names a file: one with `/`, `..` or an absolute path is
    /// refused before anything is written, and the state is untouched.
    #[tokio::test]
    async fn snapshot_ids_that_name_other_files_are_refused() {
        use openraft::storage::RaftSnapshotBuilder;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (_log, mut sm) = super::super::open(&data, super::super::DEFAULT_WAL_BYTES)
            .await
            .unwrap();
        sm.apply(vec![entry(1, vec![req(1, writes("kept", "1"))])])
            .await
            .unwrap();
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let outside = dir.path().join("outside");
        for bad in [
            outside.display().to_string(),
            "../../outside".to_string(),
            "a/b".to_string(),
            "..".to_string(),
            String::new(),
            "x".repeat(200),
        ] {
            let mut meta = snap.meta.clone();
            meta.snapshot_id = bad.clone();
            let path = sm.shared.current.lock().unwrap().clone().unwrap().1;
            let file = tokio::fs::File::open(&path).await.unwrap();
            let r = sm.install_snapshot(&meta, Box::new(file)).await;
            assert!(r.is_err(), "{bad:?} was accepted");
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(names, ["data"], "nothing written beside the data folder");
        let (got, _) = sm
            .reader()
            .range(
                &RangeQuery {
                    range: KeyRange::single("kept"),
                    limit: 0,
                    keys_only: false,
                    count_only: false,
                },
                0,
            )
            .unwrap();
        assert!(matches!(got, OpResult::Range { kvs, .. } if kvs.len() == 1));
    }

    #[tokio::test]
    async fn batched_writes_see_each_other_and_keep_their_own_answers() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, mut sm) = super::super::open(dir.path(), super::super::DEFAULT_WAL_BYTES)
            .await
            .unwrap();
        // Entry 1: three writes; the third repeats the first's request id.
        // Entry 2 (same apply call): a compare on what entry 1 wrote, and a range over it.
        let if_two = Txn {
            compares: vec![Compare {
                key: b"a".to_vec(),
                op: CompareOp::Equal,
                target: Target::Value(b"2".to_vec()),
            }],
            success: vec![
                put("b", "seen"),
                Op::Range(RangeQuery {
                    range: KeyRange::prefix("a"),
                    limit: 0,
                    keys_only: false,
                    count_only: false,
                }),
            ],
            failure: vec![put("b", "missed")],
        };
        let answers = sm
            .apply(vec![
                entry(
                    1,
                    vec![
                        req(1, writes("a", "1")),
                        req(2, writes("a", "2")),
                        req(1, writes("a", "3")),
                        req(3, writes("a2", "x")),
                    ],
                ),
                entry(2, vec![req(4, if_two)]),
            ])
            .await
            .unwrap();
        assert_eq!(answers.len(), 2, "one answer list per entry");
        let revs: Vec<i64> = answers[0].iter().map(|r| r.revision).collect();
        assert_eq!(revs, [1, 2, 1, 3], "the repeated id gets its first answer");
        let second = &answers[1][0];
        assert!(second.succeeded, "entry 2 sees entry 1's writes");
        assert_eq!(second.revision, 4);
        match &second.results[1] {
            OpResult::Range { kvs, .. } => {
                let keys: Vec<&[u8]> = kvs.iter().map(|kv| kv.key.as_slice()).collect();
                assert_eq!(keys, [b"a".as_slice(), b"a2".as_slice()]);
                assert_eq!(kvs[0].value, b"2");
                assert_eq!(kvs[0].version, 2, "applied once per distinct request");
            }
            other => panic!("expected a range result, got {other:?}"),
        }

        // The same id in a later apply call is still answered from the dedup table.
        let again = sm
            .apply(vec![entry(3, vec![req(2, writes("a", "zzz"))])])
            .await
            .unwrap();
        assert_eq!(again[0][0].revision, 2);
        let reader = sm.reader();
        let (got, rev) = reader
            .range(
                &RangeQuery {
                    range: KeyRange::single("a"),
                    limit: 0,
                    keys_only: false,
                    count_only: false,
                },
                0,
            )
            .unwrap();
        assert_eq!(rev, 4);
        match got {
            OpResult::Range { kvs, .. } => assert_eq!(kvs[0].value, b"2"),
            other => panic!("expected a range result, got {other:?}"),
        }
        let (applied, _) = sm.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(3));
    }
}
