//! The Raft log in RocksDB (`RaftLogStorage`), with group commit.
//!
//! `append` writes its entries to RocksDB *unsynced* (they are readable at once, as openraft
//! requires) and hands the flush callback to the log's sync thread, then returns. The sync
//! thread takes every callback queued so far, syncs the WAL once (`flush_wal(true)`), and
//! only then tells openraft those entries are durable. Every entry whose callback it took was
//! written before the sync began, so one fsync covers all of them.
//!
//! On the leader, the (patched, see `vendor/README.md`) Raft core does not wait for that
//! callback: it sends the entries to the followers while the leader's disk syncs them, and
//! counts its own log in a quorum once the callback came. Followers wait for it before they
//! answer. Above Raft, the meta service proposes the client writes that arrived meanwhile as
//! one entry ([`crate::grpc::propose`]).
//!
//! Votes, truncations and purge points are still written with `sync = true`. The WAL is
//! sequential, so a synced write also makes every earlier write durable, and the state
//! machine (applied unsynced, after its entries were written here) is never ahead of the log.
//!
//! Metrics, on every member: `stratus_raft_log_entries_per_sync` and
//! `stratus_raft_log_writes_per_sync` (log entries and client writes each WAL sync made
//! durable) and `stratus_raft_log_sync_seconds` (how long each took).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, EntryPayload, LogId, RaftLogId, StorageError, StorageIOError, Vote};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};
use stratus_client::service::metrics::{fsync_timer, register};

use super::{cf, CF_LOG, CF_RAFT};
use crate::{NodeId, TypeConfig};

/// The RocksDB-backed Raft log; cheap to clone (it is its own log reader).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    /// Queue of the log's sync thread; the thread ends when the last clone is dropped.
    syncer: Sender<Unsynced>,
    /// Whether this node leads (set from openraft's metrics by the server). Only a leader's
    /// append goes through the sync thread; a follower's Raft core waits for its append
    /// anyway, so it syncs inline and saves the hand-over.
    leading: Arc<AtomicBool>,
}

/// Entries written but not yet synced, and whom to tell once they are.
struct Unsynced {
    entries: u64,
    writes: u64,
    callback: LogFlushed<TypeConfig>,
}

struct SyncMetrics {
    entries: Histogram,
    writes: Histogram,
    seconds: Histogram,
}

static SYNC: LazyLock<SyncMetrics> = LazyLock::new(|| SyncMetrics {
    entries: register(
        "stratus_raft_log_entries_per_sync",
        "Raft log entries each synced append made durable",
        Histogram::new(exponential_buckets(1.0, 2.0, 12)),
    ),
    writes: register(
        "stratus_raft_log_writes_per_sync",
        "Client writes each synced append made durable (group commit)",
        Histogram::new(exponential_buckets(1.0, 2.0, 12)),
    ),
    seconds: register(
        "stratus_raft_log_sync_seconds",
        "Time of each synced append to the Raft log",
        Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
    ),
});

/// Run `sync` (one synced write or WAL sync) and record it with the entries and client
/// writes it made durable.
fn timed_sync<T>(entries: u64, writes: u64, sync: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let res = {
        let _t = fsync_timer();
        sync()
    };
    SYNC.seconds.observe(started.elapsed().as_secs_f64());
    SYNC.entries.observe(entries as f64);
    SYNC.writes.observe(writes as f64);
    res
}

/// The sync thread: wait for unsynced appends, take all that are queued, sync the WAL once,
/// then report to each in order.
fn sync_loop(db: Arc<DB>, queue: Receiver<Unsynced>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        group.extend(queue.try_iter());
        let entries = group.iter().map(|u| u.entries).sum();
        let writes = group.iter().map(|u| u.writes).sum();
        let res = timed_sync(entries, writes, || db.flush_wal(true));
        if let Err(e) = &res {
            tracing::error!(error = %e, "syncing the Raft log failed");
        }
        for u in group {
            u.callback.log_io_completed(
                res.as_ref()
                    .map(|_| ())
                    .map_err(|e| std::io::Error::other(e.to_string())),
            );
        }
    }
}

fn idx_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

impl LogStore {
    /// A log store over an opened database.
    pub fn new(db: Arc<DB>) -> Self {
        LazyLock::force(&SYNC);
        let (syncer, queue) = mpsc::channel();
        let sync_db = db.clone();
        std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || sync_loop(sync_db, queue))
            .expect("spawning the Raft log's sync thread");
        LogStore {
            db,
            syncer,
            leading: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The flag that says whether this node leads; either value is safe (every append is
    /// durable before openraft hears so), it only chooses the faster path.
    pub fn leading(&self) -> Arc<AtomicBool> {
        self.leading.clone()
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError<NodeId>> {
        let raw = self
            .db
            .get_cf(cf(&self.db, CF_RAFT), key)
            .map_err(|e| StorageIOError::read(&e))?;
        match raw {
            None => Ok(None),
            Some(b) => bincode::deserialize(&b)
                .map(Some)
                .map_err(|e| StorageIOError::read(&e).into()),
        }
    }

    fn put_meta<T: serde::Serialize>(
        &self,
        key: &str,
        v: &T,
        sync: bool,
    ) -> Result<(), StorageError<NodeId>> {
        let b = bincode::serialize(v).map_err(|e| StorageIOError::write(&e))?;
        let opts = if sync {
            synced()
        } else {
            WriteOptions::default()
        };
        self.db
            .put_cf_opt(cf(&self.db, CF_RAFT), key, b, &opts)
            .map_err(|e| StorageIOError::write(&e).into())
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        let mut it = self.db.iterator_cf(cf(&self.db, CF_LOG), IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(Err(e)) => Err(StorageIOError::read_logs(&e).into()),
            Some(Ok((_, v))) => {
                let ent: Entry<TypeConfig> =
                    bincode::deserialize(&v).map_err(|e| StorageIOError::read_logs(&e))?;
                Ok(Some(*ent.get_log_id()))
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x + 1,
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            cf(&self.db, CF_LOG),
            IteratorMode::From(&idx_key(start), Direction::Forward),
        );
        for item in it {
            let (k, v) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            let index = u64::from_be_bytes(
                k.as_ref()
                    .try_into()
                    .map_err(|e| StorageIOError::read_logs(&e))?,
            );
            if !range.contains(&index) {
                break;
            }
            out.push(bincode::deserialize(&v).map_err(|e| StorageIOError::read_logs(&e))?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged: Option<LogId<NodeId>> = self.get_meta("purged")?;
        let last = self.last_entry_log_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.put_meta("vote", vote, true)
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.get_meta("vote")
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Not synced: losing it only means re-learning the commit index from the leader.
        self.put_meta("committed", &committed, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self
            .get_meta::<Option<LogId<NodeId>>>("committed")?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries_in: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut batch = WriteBatch::default();
        let log = cf(&self.db, CF_LOG);
        let (mut entries, mut writes) = (0u64, 0u64);
        for ent in entries_in {
            let b = bincode::serialize(&ent).map_err(|e| StorageIOError::write_logs(&e))?;
            batch.put_cf(log, idx_key(ent.get_log_id().index), b);
            entries += 1;
            if let EntryPayload::Normal(p) = &ent.payload {
                writes += p.0.len() as u64;
            }
        }
        if !self.leading.load(Ordering::Relaxed) {
            let res = timed_sync(entries, writes, || {
                self.db
                    .write_opt(batch, &synced())
                    .map_err(std::io::Error::other)
            });
            let failed = res.as_ref().err().map(StorageIOError::write_logs);
            callback.log_io_completed(res);
            return match failed {
                Some(e) => Err(e.into()),
                None => Ok(()),
            };
        }
        // Written (readable) now; durable once the sync thread's next WAL sync returns.
        if let Err(e) = self.db.write(batch) {
            callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
            return Err(StorageIOError::write_logs(&e).into());
        }
        self.syncer
            .send(Unsynced {
                entries,
                writes,
                callback,
            })
            .map_err(|_| {
                StorageIOError::write_logs(&std::io::Error::other("the log sync thread is gone"))
                    .into()
            })
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.db
            .delete_range_cf_opt(
                cf(&self.db, CF_LOG),
                idx_key(log_id.index),
                idx_key(u64::MAX),
                &synced(),
            )
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Record the purge point first: a crash between the two leaves extra entries, which
        // is harmless, never a gap.
        self.put_meta("purged", &log_id, true)?;
        self.db
            .delete_range_cf(cf(&self.db, CF_LOG), idx_key(0), idx_key(log_id.index + 1))
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
