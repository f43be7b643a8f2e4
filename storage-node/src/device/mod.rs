//! One device (a directory, normally its own disk) of a storage node.
//!
//! # On-disk layout
//! ```text
//! <device>/db/                                   RocksDB: object records (small objects
//!                                                inline), container and account databases,
//!                                                async pendings, dirty containers
//! <device>/objects/<part>/<suffix>/<hash>/<ts>-<digest>.data   bodies of large objects
//! <device>/volumes/<volume>/head               chunks of a volume (sparse: chunk c at
//!                                                c x 4 MiB); `snap-<s>` beside it holds
//!                                                chunks preserved for snapshots
//! <device>/tmp/                                  bodies being written (never read)
//! <device>/quarantined/objects/                  copies that failed verification (body and
//!                                                record), kept until an operator purges
//!                                                them (`stratus quarantine purge`)
//! ```
//! Every RocksDB write that acknowledges a client is synced (`WriteOptions::set_sync`):
//! concurrent writers are group-committed by RocksDB, so one WAL fsync covers many small
//! objects. A device whose directory disappears, or whose free space falls under the
//! reserve, refuses writes of bodies with [`DeviceError::Insufficient`] (Swift's 507);
//! deletions still pass, so users can free space.
//!
//! A read or write that fails with an I/O error (EIO, EACCES after an ownership change)
//! is never taken for corruption: it is counted ([`Device::io_failed`]) and the device
//! shows as failing for [`FAILING_FOR`] after the last one (`stratus cluster health`,
//! `/metrics`); the copy stays where it is.
//!
//! The device is the bottom of the crate: it imports nothing of the code above it. Its
//! column families and keyspaces are in [`keyspace`]; the partition hashes it caches for
//! [`crate::hashes`] are kept in [`hash_cache`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB};
use stratus_client::service::metrics;
use tokio::sync::Mutex;

pub mod hash_cache;
pub mod keyspace;

use hash_cache::HashCache;
pub use keyspace::{
    Space, CF_ACCOUNTS, CF_CHUNKS, CF_CONTAINERS, CF_DIRTY, CF_EXPIRING, CF_OBJECTS, CF_PENDING,
    MAX_POLICIES, OBJECT_CFS, OBJECT_RINGS,
};

const STRIPES: usize = 256;

/// A key and its value, as a scan yields them.
pub type Row = (Box<[u8]>, Box<[u8]>);

/// Why a device cannot serve a request.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The device is gone or too full (device, why).
    #[error("insufficient storage on device {0}: {1}")]
    Insufficient(String, String),
    /// No device of that name on this node.
    #[error("no device {0} on this node")]
    Unknown(String),
    /// RocksDB failed (device, error).
    #[error("database error on device {0}: {1}")]
    Db(String, rocksdb::Error),
    /// A file operation failed (device, error).
    #[error("I/O error on device {0}: {1}")]
    Io(String, std::io::Error),
    /// A stored record does not decode (device, why).
    #[error("stored record on device {0} is damaged: {1}")]
    Damaged(String, String),
}

impl From<DeviceError> for tonic::Status {
    fn from(e: DeviceError) -> Self {
        match e {
            DeviceError::Insufficient(..) => tonic::Status::resource_exhausted(e.to_string()),
            DeviceError::Unknown(..) => tonic::Status::not_found(e.to_string()),
            DeviceError::Damaged(..) => tonic::Status::data_loss(e.to_string()),
            _ => tonic::Status::internal(e.to_string()),
        }
    }
}

/// A device: its directory, its database and the locks that serialize read-modify-write
/// cycles on one object, container or account.
pub struct Device {
    /// The name the rings use (`d1`).
    pub name: String,
    /// The device directory.
    pub root: PathBuf,
    /// Free bytes kept back; writes that would eat into them are refused.
    pub reserve: u64,
    db: DB,
    stripes: Vec<Mutex<()>>,
    /// Cached partition hashes (see [`hash_cache`] and [`crate::hashes`]).
    pub hashes: HashCache,
    /// I/O errors met on this device since the node started.
    pub io_errors: AtomicU64,
    /// Unix seconds of the last I/O error (0: none).
    last_io_error: AtomicU64,
    /// The disk's id (from its identity file), once the node has checked it.
    pub disk: OnceLock<String>,
}

/// How long a device shows as failing after its last I/O error, seconds.
pub const FAILING_FOR: u64 = 300;

impl Device {
    /// Opens (creating if needed) the device at `root`.
    pub fn open(name: &str, root: &Path, reserve: u64) -> Result<Arc<Self>, DeviceError> {
        let io = |e| DeviceError::Io(name.to_string(), e);
        for sub in OBJECT_CFS.into_iter().chain(["tmp"]) {
            std::fs::create_dir_all(root.join(sub)).map_err(io)?;
        }
        // Bodies left in tmp/ by a crash were never acknowledged.
        if let Ok(rd) = std::fs::read_dir(root.join("tmp")) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(4);
        opts.set_write_buffer_size(16 << 20);
        let cfs = OBJECT_CFS
            .into_iter()
            .chain([
                CF_CONTAINERS,
                CF_ACCOUNTS,
                CF_PENDING,
                CF_DIRTY,
                CF_EXPIRING,
                CF_CHUNKS,
            ])
            .map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
        let db = DB::open_cf_descriptors(&opts, root.join("db"), cfs)
            .map_err(|e| DeviceError::Db(name.to_string(), e))?;
        Ok(Arc::new(Device {
            name: name.to_string(),
            root: root.to_path_buf(),
            reserve,
            db,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hashes: Default::default(),
            io_errors: AtomicU64::new(0),
            last_io_error: AtomicU64::new(0),
            disk: OnceLock::new(),
        }))
    }

    /// Counts an I/O error met while `what` (a read that failed is not corruption: the
    /// copy is left alone and the device shows as failing for a while).
    pub fn io_failed(&self, what: &str, e: &std::io::Error) {
        self.io_errors.fetch_add(1, Ordering::Relaxed);
        self.last_io_error
            .store(stratus_core::time::now_secs(), Ordering::Relaxed);
        tracing::warn!(device = %self.name, error = %e, "I/O error while {what}; the device is marked failing");
    }

    /// Whether an I/O error was met in the last [`FAILING_FOR`] seconds.
    pub fn failing(&self) -> bool {
        let last = self.last_io_error.load(Ordering::Relaxed);
        last != 0 && stratus_core::time::now_secs().saturating_sub(last) < FAILING_FOR
    }

    /// The lock guarding everything keyed by `key` (striped: unrelated keys rarely share).
    pub fn lock_for(&self, key: &[u8]) -> &Mutex<()> {
        let h = crc32fast::hash(key) as usize;
        &self.stripes[h % STRIPES]
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column family is created at open")
    }

    fn db_err(&self, e: rocksdb::Error) -> DeviceError {
        DeviceError::Db(self.name.clone(), e)
    }

    /// Reads one value.
    pub fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, DeviceError> {
        self.db.get_cf(self.cf(cf), key).map_err(|e| self.db_err(e))
    }

    /// Applies a batch built with [`Device::batch_put`] / [`Device::batch_delete`];
    /// `sync` makes it durable before returning.
    pub fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), DeviceError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        let _t = sync.then(metrics::fsync_timer);
        self.db.write_opt(batch, &wo).map_err(|e| self.db_err(e))
    }

    /// Adds a put to `batch`.
    pub fn batch_put(&self, batch: &mut WriteBatch, cf: &str, key: &[u8], value: &[u8]) {
        batch.put_cf(self.cf(cf), key, value);
    }

    /// Adds a delete to `batch`.
    pub fn batch_delete(&self, batch: &mut WriteBatch, cf: &str, key: &[u8]) {
        batch.delete_cf(self.cf(cf), key);
    }

    /// Key/value pairs of `cf` from `start` on (or backwards from it) while `keep` holds.
    pub fn scan(
        &self,
        cf: &str,
        start: &[u8],
        reverse: bool,
    ) -> impl Iterator<Item = Result<Row, DeviceError>> + '_ {
        let dir = if reverse {
            rocksdb::Direction::Reverse
        } else {
            rocksdb::Direction::Forward
        };
        self.db
            .iterator_cf(self.cf(cf), rocksdb::IteratorMode::From(start, dir))
            .map(|r| r.map_err(|e| self.db_err(e)))
    }

    /// Refuses with [`DeviceError::Insufficient`] if the device is gone or cannot take
    /// `bytes` more without eating into the reserve.
    pub fn check_space(&self, bytes: u64) -> Result<(), DeviceError> {
        let (_, free) = self.usage().map_err(|e| self.unavailable(e))?;
        if free < bytes.saturating_add(self.reserve) {
            return Err(DeviceError::Insufficient(
                self.name.clone(),
                format!(
                    "{free} bytes free, {bytes} needed plus {} reserved",
                    self.reserve
                ),
            ));
        }
        Ok(())
    }

    /// Where copies that failed verification go.
    pub fn quarantine_dir(&self) -> PathBuf {
        self.root.join("quarantined").join("objects")
    }

    /// Refuses with [`DeviceError::Insufficient`] if the device is gone (disk pulled or wiped).
    /// One `stat`: this runs on every read.
    pub fn check_present(&self) -> Result<(), DeviceError> {
        self.present().map_err(|e| self.unavailable(e))
    }

    fn unavailable(&self, e: std::io::Error) -> DeviceError {
        DeviceError::Insufficient(self.name.clone(), format!("device unavailable: {e}"))
    }

    /// The database directory going missing means the disk was pulled or wiped.
    fn present(&self) -> std::io::Result<()> {
        std::fs::metadata(self.root.join("db")).map(|_| ())
    }

    /// (capacity, free bytes) of the file system holding the device; fails if the device
    /// directory is gone.
    pub fn usage(&self) -> std::io::Result<(u64, u64)> {
        self.present()?;
        let c = std::ffi::CString::new(self.root.as_os_str().as_encoded_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a valid C string and `st` a properly sized out-parameter.
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let bs = st.f_frsize as u64;
        Ok((st.f_blocks as u64 * bs, st.f_bavail as u64 * bs))
    }
}

/// Runs `f` (database scans, fsyncs, file reads) on a blocking thread, off the runtime.
pub async fn blocking<T: Send + 'static>(
    dev: &Arc<Device>,
    f: impl FnOnce(&Device) -> Result<T, DeviceError> + Send + 'static,
) -> Result<T, DeviceError> {
    let d = dev.clone();
    tokio::task::spawn_blocking(move || f(&d))
        .await
        .map_err(|e| DeviceError::Io(dev.name.clone(), std::io::Error::other(e)))?
}

/// Commits `batch` durably on a blocking thread (a synced write waits for an fsync).
pub async fn write_sync(dev: &Arc<Device>, batch: WriteBatch) -> Result<(), DeviceError> {
    blocking(dev, move |d| d.write(batch, true)).await
}

/// Makes every write made so far durable (fsyncs the WAL) on a blocking thread. Writers
/// that apply an unsynced batch under a lock and call this after releasing it share
/// fsyncs instead of queueing one per lock holder.
pub async fn sync_wal(dev: &Arc<Device>) -> Result<(), DeviceError> {
    blocking(dev, |d| {
        let _t = metrics::fsync_timer();
        d.db.flush_wal(true).map_err(|e| d.db_err(e))
    })
    .await
}

/// Fsyncs a directory, making the renames and creations inside it durable.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    let d = std::fs::File::open(dir)?;
    metrics::timed_fsync(|| d.sync_all())
}
