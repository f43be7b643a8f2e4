//! The object store of one device, behind one trait: what the object service, the
//! replicator and the expirer may do to an object's copy, and the rules they do it by.
//!
//! An [`Engine`] holds, per object, one record (the current version or a tombstone) and
//! the bodies records name. Every change is one [`Engine::commit`]: under the object's
//! lock a [`Decide`] rule looks at the stored record and says what replaces it; the engine
//! then moves the staged body into place, commits the record (and the container update it
//! queues) durably in one write, and drops the replaced version's body. A rule that
//! declines leaves everything as it was, and a staged body that is not taken is discarded.
//!
//! The rules every caller shares are here too: [`put`] (a version is taken only if it
//! orders after the stored one; see [`VersionOrder`]), [`delete`] (a tombstone is taken
//! only if it is newer) and [`newer_meta`] (replicated metadata of the same version).
//!
//! Two engines implement the trait: [`disk::Disk`] (RocksDB records, body files, what a
//! node runs) and [`mem::Mem`] (maps in memory, for unit tests of what sits above it).
//! One conformance suite (`conformance.rs`) runs against both.

use std::future::Future;

use crate::device::DeviceError;
use crate::diskfile::{name_hash, object_key, ObjectRecord, VersionOrder};
use crate::updater::Pending;

pub mod disk;
pub mod mem;

#[cfg(test)]
mod conformance;

/// Where an object lives on a device: its partition and the hash of its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub part: u32,
    pub hash: [u8; 16],
}

impl Key {
    /// The key of the object at `path` (`/account/container/object`) in `part`.
    pub fn of(part: u32, path: &str) -> Self {
        Key {
            part,
            hash: name_hash(path),
        }
    }

    /// The record's key in the device's database.
    pub fn bytes(&self) -> Vec<u8> {
        object_key(self.part, &self.hash)
    }
}

/// What a rule decided to commit: the new record, and the container update to queue with
/// it (committed in the same write, so a crash never keeps one without the other).
#[derive(Debug, Clone)]
pub struct Change {
    pub rec: ObjectRecord,
    pub pending: Option<Pending>,
}

/// A rule: given the stored record (if any), what replaces it (`None`: nothing changes).
pub type Decide = Box<dyn FnOnce(Option<&ObjectRecord>) -> Option<Change> + Send>;

/// What [`Engine::commit`] did (returned once per commit, never stored: its size is
/// of no concern).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// `new` is committed in place of `old`; `pending` is the queued container update
    /// and the key it is stored under.
    Committed {
        old: Option<ObjectRecord>,
        new: ObjectRecord,
        pending: Option<(Vec<u8>, Pending)>,
    },
    /// The rule declined: `current` is what stays stored.
    Declined { current: Option<ObjectRecord> },
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The body the record names is not there.
    #[error("body missing")]
    Missing,
    /// The read failed (says nothing about the bytes).
    #[error("read failed: {0}")]
    Io(std::io::Error),
    /// The bytes do not match their checksum: this copy is damaged.
    #[error("block {0} fails its checksum")]
    Checksum(u64),
}

/// One device's objects. Every method is safe to call concurrently; commits to one key
/// are serialized, and a commit is durable when it returns.
pub trait Engine: Send + Sync {
    /// A body written and made durable but not yet named by any record.
    type Staged: Send + 'static;

    /// The stored record of `key`: the current version or its tombstone.
    fn get(
        &self,
        key: Key,
    ) -> impl Future<Output = Result<Option<ObjectRecord>, DeviceError>> + Send;

    /// Writes `body` where no record can see it yet (what a PUT streams into, here whole).
    fn stage(&self, body: &[u8]) -> impl Future<Output = Result<Self::Staged, DeviceError>> + Send;

    /// Under `key`'s lock: asks `decide` what replaces the stored record and, if it says,
    /// installs `body` as the new record's body file (when the record has one), commits
    /// the record with its pending container update, and removes the replaced version's
    /// body. A body not installed is discarded.
    fn commit(
        &self,
        key: Key,
        body: Option<Self::Staged>,
        decide: Decide,
    ) -> impl Future<Output = Result<Outcome, DeviceError>> + Send;

    /// Bytes `[start, end)` of `rec`'s body (as stored under `key`), every block verified
    /// against its checksum before it is returned.
    fn read(
        &self,
        key: Key,
        rec: &ObjectRecord,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<Vec<u8>, ReadError>> + Send;

    /// Every record of partition `part`, in key order (records that do not decode are
    /// left to the auditor).
    fn scan(
        &self,
        part: u32,
    ) -> impl Future<Output = Result<Vec<(Key, ObjectRecord)>, DeviceError>> + Send;

    /// The container update queued under `key`, if it is still queued.
    fn pending(
        &self,
        key: &[u8],
    ) -> impl Future<Output = Result<Option<Pending>, DeviceError>> + Send;
}

/// What [`put`] did with a version.
#[derive(Debug)]
pub enum Put {
    /// Committed; it replaced `old`.
    Stored {
        old: Option<ObjectRecord>,
        pending: Option<(Vec<u8>, Pending)>,
    },
    /// This very version (timestamp and content) is stored already: a retry, or a
    /// replica's push that came first. Nothing changed.
    Same,
    /// A version that orders after this one is stored (returned); nothing changed and
    /// the committed body was not touched.
    Superseded(Option<ObjectRecord>),
}

/// The PUT rule, shared by client writes and replication: `rec` is taken only if it
/// orders after the stored version (by timestamp, then content digest).
pub async fn put<E: Engine>(
    e: &E,
    key: Key,
    rec: ObjectRecord,
    body: Option<E::Staged>,
    pending: Option<Pending>,
) -> Result<Put, DeviceError> {
    let version = rec.version();
    let decide: Decide = Box::new(move |old| {
        (rec.order(old) == VersionOrder::Newer).then_some(Change { rec, pending })
    });
    Ok(match e.commit(key, body, decide).await? {
        Outcome::Committed { old, pending, .. } => Put::Stored { old, pending },
        Outcome::Declined { current } => {
            if current.as_ref().map(ObjectRecord::version) == Some(version) {
                Put::Same
            } else {
                Put::Superseded(current)
            }
        }
    })
}

/// The DELETE rule: a tombstone at `ts` is taken only if the stored version is older.
/// `pending` builds the container update from the tombstone. Returns the outcome and
/// whether a live version was there.
pub async fn delete<E: Engine>(
    e: &E,
    key: Key,
    name: String,
    ts: u64,
    pending: impl FnOnce(&ObjectRecord) -> Option<Pending> + Send + 'static,
) -> Result<(Outcome, bool), DeviceError> {
    let decide: Decide = Box::new(move |old| {
        if old.is_some_and(|o| o.ts >= ts) {
            return None;
        }
        let rec = tombstone(name, ts);
        Some(Change {
            pending: pending(&rec),
            rec,
        })
    });
    let out = e.commit(key, None, decide).await?;
    let existed = match &out {
        Outcome::Committed { old, .. } => old.as_ref().is_some_and(|o| !o.deleted),
        Outcome::Declined { current } => current.as_ref().is_some_and(|o| !o.deleted),
    };
    Ok((out, existed))
}

/// A tombstone for `name` at `ts`.
pub fn tombstone(name: String, ts: u64) -> ObjectRecord {
    ObjectRecord {
        name,
        ts,
        meta_ts: ts,
        deleted: true,
        ..Default::default()
    }
}

/// The rule for replicated metadata: `rec`'s metadata replaces the stored version's only
/// if that is the very same version (timestamp and digest) with older metadata.
pub fn newer_meta(rec: ObjectRecord) -> Decide {
    Box::new(move |old| {
        let old = old?;
        if old.deleted || old.version() != rec.version() || old.meta_ts >= rec.meta_ts {
            return None;
        }
        let mut new = old.clone();
        new.meta_ts = rec.meta_ts;
        new.meta = rec.meta;
        new.content_type = rec.content_type;
        new.delete_at = rec.delete_at;
        Some(Change {
            rec: new,
            pending: None,
        })
    })
}

/// Checks the bytes of an inline body against its record.
pub fn inline_ok(rec: &ObjectRecord, body: &[u8]) -> bool {
    body.len() as u64 == rec.size && rec.block_crcs.first() == Some(&crc32fast::hash(body))
}

/// What every engine's [`Engine::read`] does first: clamps `end` to the body, answers an
/// empty range and an inline body (verified) straight away (`Err` holds that answer), and
/// otherwise gives the clamped end for the engine to read its body file up to.
pub fn small_read(
    rec: &ObjectRecord,
    start: u64,
    end: u64,
) -> Result<u64, Result<Vec<u8>, ReadError>> {
    let end = end.min(rec.size);
    if start >= end {
        return Err(Ok(Vec::new()));
    }
    match &rec.inline {
        Some(b) if !inline_ok(rec, b) => Err(Err(ReadError::Checksum(0))),
        Some(b) => Err(Ok(b[start as usize..end as usize].to_vec())),
        None => Ok(end),
    }
}

/// Builds the record of a body `bytes` long (inline when it is small enough), as a PUT
/// would: checksums computed from the bytes (the ETag stands in for the proxy's MD5).
pub fn record_for(name: &str, ts: u64, bytes: &[u8]) -> ObjectRecord {
    let mut h = crate::diskfile::BodyHasher::new();
    h.update(bytes);
    let size = h.size;
    let (blake3, block_crcs) = h.finish();
    ObjectRecord {
        name: name.to_string(),
        ts,
        meta_ts: ts,
        size,
        etag: hex::encode(&blake3[..16]),
        blake3,
        block_crcs,
        inline: (size <= crate::diskfile::INLINE_MAX).then(|| bytes.to_vec()),
        ..Default::default()
    }
}
