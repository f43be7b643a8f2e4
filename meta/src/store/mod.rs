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
//! - `sm`: `applied`, `membership`, `revision`, `compact`, `dedup_seq`
//! - `dedup`: request id → bincode (dedup sequence number, Response); `dedup_idx`: that
//!   number BE ++ id, written by builds before the dedup records were dropped by compactions
//!   (those compactions drop it too)

pub mod log_store;
pub mod snapshot;
pub mod state_machine;

use std::path::Path;
use std::sync::atomic::AtomicU64;
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

/// Open (or create) the node's database with every column family; past `wal_bytes` of live
/// WAL files, the oldest one's memtables are flushed and the file recycled.
/// Compactions drop dedup records numbered below `dedup_floor`
/// ([`state_machine::DedupFilterFactory`]).
pub fn open_db(
    path: &Path,
    wal_bytes: u64,
    dedup_floor: &Arc<AtomicU64>,
) -> Result<Arc<DB>, rocksdb::Error> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(2);
    opts.set_keep_log_file_num(4);
    // Every client write waits for a WAL fdatasync on a quorum. On a WAL file that grows,
    // that sync also writes the file's metadata (its new size, its newly allocated blocks:
    // a journal commit on ext4 with a journal, the inode itself without one, as on the
    // machine measured); on a recycled WAL, whose blocks were written before, it writes the
    // data and nothing else (fdatasync at 1 in flight: ~550 us before, ~360 us after).
    // RocksDB recycles only files that became obsolete, so the WAL is also bounded: past
    // `wal_bytes` RocksDB flushes the column families the oldest file still holds (the
    // small `raft` and `sm` ones would otherwise keep every WAL alive), and that file becomes
    // the next one written. Recycling is safe with point-in-time recovery (our mode) since
    // RocksDB 9.1: records carry their file's number, so a reused file's old records end the
    // replay.
    opts.set_recycle_log_file_num(RECYCLED_WALS);
    opts.set_max_total_wal_size(wal_bytes);
    // The Raft log's fdatasync must not wait for a memtable flush or a compaction. With
    // buffered table writes it does: ext4 (data=ordered) commits the WAL's size change in a
    // journal transaction that first writes out every dirty page of the new table file, and
    // the three members flush at the same moment (same writes, same memtable sizes), so no
    // quorum escapes it. Measured under `benches/meta_vs_etcd.py` at 64 in flight: log syncs
    // of 270-290 ms on every member during each 64 MiB flush. Table files are written with
    // O_DIRECT instead (no dirty pages for the journal to wait on), and at a bounded rate, so
    // the WAL's small writes are not queued behind a whole table's.
    if supports_direct_io(path) {
        opts.set_use_direct_io_for_flush_and_compaction(true);
    }
    opts.set_ratelimiter(BACKGROUND_WRITE_BYTES_PER_SEC, 20_000, 10);
    // ... and in small requests: a log sync queued behind one 1 MiB table write (RocksDB's
    // default buffer) waits ~4 ms on this kind of disk, three times a sync's own time.
    opts.set_writable_file_max_buffer_size(BACKGROUND_WRITE_REQUEST_BYTES);
    // Compactions run at a lower CPU priority: they are never urgent, and on a machine whose
    // cores also serve the log they would otherwise take turns with it.
    let mut env = rocksdb::Env::new()?;
    env.lower_thread_pool_cpu_priority();
    opts.set_env(&env);
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
    .map(|name| ColumnFamilyDescriptor::new(name, cf_options(name, dedup_floor)));
    Ok(Arc::new(DB::open_cf_descriptors(&opts, path, cfs)?))
}

/// WAL files kept for reuse instead of deleted. With the live WAL bounded by `wal_bytes`, a
/// switch finds one ready nearly always; each costs up to `wal_bytes` of disk.
const RECYCLED_WALS: usize = 2;

/// Default total size of the live WAL files past which RocksDB flushes the oldest one's
/// memtables (~40,000 client writes; a flush then writes a few MiB per column family).
pub const DEFAULT_WAL_BYTES: u64 = 64 << 20;

/// Rate of flush and compaction writes. A member writes ~1.5 KiB of log, state and history
/// per client write, so this keeps up with ~40,000 writes/s, far above what three members
/// commit on one machine.
const BACKGROUND_WRITE_BYTES_PER_SEC: i64 = 64 << 20;

/// Largest single write of a table file (and of the WAL, whose appends are far smaller).
const BACKGROUND_WRITE_REQUEST_BYTES: u64 = 64 << 10;

/// Whether files in `dir` can be opened with O_DIRECT (tmpfs, for one, refuses it; RocksDB
/// would then fail its first flush).
fn supports_direct_io(dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    if std::fs::create_dir_all(dir).is_err() {
        return false;
    }
    let probe = dir.join(".direct-io-probe");
    let ok = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe)
        .is_ok();
    let _ = std::fs::remove_file(&probe);
    if !ok {
        tracing::info!(dir = %dir.display(), "no O_DIRECT here: table files are written through the page cache");
    }
    ok
}

/// Open the log store and state machine of a node whose data lives under `dir`.
pub async fn open(
    dir: &Path,
    wal_bytes: u64,
) -> Result<(LogStore, StateMachineStore), crate::MetaError> {
    std::fs::create_dir_all(dir)?;
    let dedup_floor = Arc::new(AtomicU64::new(0));
    let db = open_db(&dir.join("db"), wal_bytes, &dedup_floor)?;
    let log = LogStore::new(db.clone());
    let sm = StateMachineStore::open(db, dir.join("snapshots"), dedup_floor).await?;
    Ok((log, sm))
}

/// Every client write looks up its request id in `dedup`, where it is almost never found:
/// whole-key bloom filters, in the memtable and in each table file, answer "absent" without
/// walking the memtable's skip list or reading table blocks.
fn cf_options(name: &str, dedup_floor: &Arc<AtomicU64>) -> Options {
    let mut opts = Options::default();
    if let Some(filter) = state_machine::DedupFilterFactory::for_cf(name, dedup_floor) {
        opts.set_compaction_filter_factory(filter);
    }
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
            let (log, sm) = super::open(dir.path(), super::DEFAULT_WAL_BYTES)
                .await
                .expect("open store");
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn openraft_storage_suite() -> Result<(), StorageError<NodeId>> {
        Suite::test_all(Builder)
    }
}

#[cfg(test)]
mod tables {
    use super::{cf, open_db, CF_EVENTS, CF_KV};

    /// Table files written by flushes and compactions (with O_DIRECT where the directory
    /// allows it, through the rate limiter) read back whole after a reopen.
    #[test]
    fn flushed_and_compacted_tables_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        {
            let db = open_db(&path, super::DEFAULT_WAL_BYTES, &Default::default()).expect("open");
            for round in 0..3u32 {
                for i in 0..2_000u32 {
                    let v = format!("{round}-{i}-").repeat(40);
                    db.put_cf(cf(&db, CF_KV), i.to_be_bytes(), &v).expect("put");
                    db.put_cf(cf(&db, CF_EVENTS), (round * 10_000 + i).to_be_bytes(), &v)
                        .expect("put");
                }
                db.flush_cf(cf(&db, CF_KV)).expect("flush kv");
                db.flush_cf(cf(&db, CF_EVENTS)).expect("flush events");
            }
            db.compact_range_cf(cf(&db, CF_KV), None::<&[u8]>, None::<&[u8]>);
        }
        let db = open_db(&path, super::DEFAULT_WAL_BYTES, &Default::default()).expect("reopen");
        for i in (0..2_000u32).step_by(97) {
            let got = db.get_cf(cf(&db, CF_KV), i.to_be_bytes()).expect("get");
            assert_eq!(got, Some(format!("2-{i}-").repeat(40).into_bytes()));
            let old = db.get_cf(cf(&db, CF_EVENTS), i.to_be_bytes()).expect("get");
            assert_eq!(old, Some(format!("0-{i}-").repeat(40).into_bytes()));
        }
    }
}
