//! RocksDB storage of a meta node: the Raft log and the state machine in one database.
//!
//! # Durability invariant
//! Log and state machine share one RocksDB instance and therefore one write-ahead log. Log
//! appends, votes and snapshot installs are written with `sync = true`; state-machine applies
//! are not. Because the WAL is sequential, a synced write makes every earlier write durable
//! too, so the state machine on disk is never ahead of what the log can replay, and a crash
//! loses at most applies that the log will re-apply on restart. Before a snapshot lets the
//! log be purged, the WAL is synced, so the purged entries are in the durable state machine.
//!
//! Column families:
//! - `log`: index (u64 BE) → bincode `Entry`
//! - `raft`: `vote`, `committed`, `purged`
//! - `kv`: user key → bincode [`KeyValue`](crate::kv::KeyValue) (current state)
//! - `events`: revision (u64 BE) → bincode `Vec<Event>` (history for watch and old reads)
//! - `sm`: `applied`, `membership`, `revision`, `compact`
//! - `dedup`: request id → bincode (log index, Response); `dedup_idx`: index BE ++ id

pub mod log_store;
pub mod snapshot;
pub mod state_machine;

use std::path::Path;
use std::sync::Arc;

use rocksdb::{BlockBasedOptions, ColumnFamilyDescriptor, Options, DB};

pub use log_store::LogStore;
pub use state_machine::{SmReader, StateMachineStore};

pub(crate) const CF_LOG: &str = "log";
pub(crate) const CF_RAFT: &str = "raft";
pub(crate) const CF_KV: &str = "kv";
pub(crate) const CF_EVENTS: &str = "events";
pub(crate) const CF_SM: &str = "sm";
pub(crate) const CF_DEDUP: &str = "dedup";
pub(crate) const CF_DEDUP_IDX: &str = "dedup_idx";

/// Column families that make up the state machine, in snapshot order.
pub(crate) const SM_CFS: [&str; 5] = [CF_KV, CF_EVENTS, CF_SM, CF_DEDUP, CF_DEDUP_IDX];

/// Open (or create) the node's database with every column family.
pub fn open_db(path: &Path) -> Result<Arc<DB>, rocksdb::Error> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(2);
    opts.set_keep_log_file_num(4);
    let cfs = [
        CF_LOG,
        CF_RAFT,
        CF_KV,
        CF_EVENTS,
        CF_SM,
        CF_DEDUP,
        CF_DEDUP_IDX,
    ]
    .into_iter()
    .map(|name| ColumnFamilyDescriptor::new(name, cf_options(name)));
    Ok(Arc::new(DB::open_cf_descriptors(&opts, path, cfs)?))
}

/// Open the log store and state machine of a node whose data lives under `dir`.
pub async fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), crate::MetaError> {
    std::fs::create_dir_all(dir)?;
    let db = open_db(&dir.join("db"))?;
    let log = LogStore::new(db.clone());
    let sm = StateMachineStore::open(db, dir.join("snapshots")).await?;
    Ok((log, sm))
}

/// Every client write looks up its request id in `dedup`, where it is almost never found:
/// whole-key bloom filters, in the memtable and in each table file, answer "absent" without
/// walking the memtable's skip list or reading table blocks.
fn cf_options(name: &str) -> Options {
    let mut opts = Options::default();
    if name == CF_DEDUP {
        let mut table = BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        table.set_whole_key_filtering(true);
        opts.set_block_based_table_factory(&table);
        opts.set_memtable_prefix_bloom_ratio(0.1);
        opts.set_memtable_whole_key_filtering(true);
    }
    opts
}

pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name)
        .expect("column family is created at open")
}

/// An upper bound above every key any column family holds (keys are ≤ 4 KiB + 8 bytes).
pub(crate) fn key_ceiling() -> Vec<u8> {
    vec![0xff; stratus_core::limits::MAX_KEY_BYTES + 64]
}

#[cfg(test)]
mod conformance {
    //! openraft's storage conformance suite against the RocksDB log store and state machine.
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::StorageError;

    use super::{LogStore, StateMachineStore};
    use crate::{NodeId, TypeConfig};

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<NodeId>>
        {
            let dir = tempfile::tempdir().expect("tempdir");
            let (log, sm) = super::open(dir.path()).await.expect("open store");
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn openraft_storage_suite() -> Result<(), StorageError<NodeId>> {
        Suite::test_all(Builder)
    }
}
