//! The Raft log in RocksDB (`RaftLogStorage`). Appends and votes are synced before openraft
//! is told they are durable; openraft batches entries under load, so one fsync covers many
//! client writes (group commit).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, RaftLogId, StorageError, StorageIOError, Vote};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};

use super::{cf, CF_LOG, CF_RAFT};
use crate::{NodeId, TypeConfig};

/// The RocksDB-backed Raft log; cheap to clone (it is its own log reader).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
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
        LogStore { db }
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
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut batch = WriteBatch::default();
        let log = cf(&self.db, CF_LOG);
        for ent in entries {
            let b = bincode::serialize(&ent).map_err(|e| StorageIOError::write_logs(&e))?;
            batch.put_cf(log, idx_key(ent.get_log_id().index), b);
        }
        let res = {
            let _t = stratus_client::service::metrics::fsync_timer();
            self.db
                .write_opt(batch, &synced())
                .map_err(std::io::Error::other)
        };
        let failed = res.as_ref().err().map(StorageIOError::write_logs);
        callback.log_io_completed(res);
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
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
