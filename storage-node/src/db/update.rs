//! Changing a database: what a client request (PUT, POST, DELETE) or a container update
//! does to it, and the rules by which a row replaces the stored one.
//!
//! Every change is a read-modify-write under the device's stripe lock for the database's
//! info key: read the info record (and the row), apply the newer of each, adjust the
//! running totals, and commit rows and info as one batch ([`commit`]). A container whose
//! totals changed is marked dirty so the account reporter tells its account. The row rules
//! ([`apply_obj_row`], [`apply_cont_row`]) are shared with replicas' merges.

use std::sync::Arc;

use rocksdb::WriteBatch;
use stratus_proto::storage as pb;

use super::records::{dec, enc, info, ContRow, Info, ObjRow};
use super::target::{space, Kind, Target};
use crate::device::{sync_wal, Device, DeviceError, CF_DIRTY};

/// Applies `batch` (a change to `t`) under the lock `guard`, marks the partition's cached
/// hash stale, releases the lock, then makes the change durable: writers queued behind the
/// lock share one WAL fsync instead of holding it through one each (see `sync_wal`).
pub(super) async fn commit(
    dev: &Arc<Device>,
    t: &Target,
    batch: WriteBatch,
    guard: tokio::sync::MutexGuard<'_, ()>,
) -> Result<(), DeviceError> {
    dev.write(batch, false)?;
    dev.hashes.invalidate(space(t.kind), t.part, 0);
    drop(guard);
    sync_wal(dev).await
}

/// Marks a container for the account reporter (accounts are not reported anywhere).
pub(super) fn mark_dirty(dev: &Device, batch: &mut WriteBatch, t: &Target) {
    if t.kind == Kind::Container {
        dev.batch_put(
            batch,
            CF_DIRTY,
            &t.info_key(),
            &rand::random::<u64>().to_le_bytes(),
        );
    }
}

/// The info item holding a container's storage policy (its index; absent: 0). It is set
/// once, when the container is created, with the creating PUT's timestamp.
pub const POLICY_KEY: &str = pb::POLICY_META;

/// A container's storage policy, as its info records it.
pub fn policy_of(info: &Info) -> u32 {
    info.meta
        .iter()
        .find(|m| m.key == POLICY_KEY)
        .and_then(|m| m.value.parse().ok())
        .unwrap_or(0)
}

/// What a PUT did.
pub enum PutOutcome {
    /// The new info, and whether the database did not exist before.
    Done(Info, bool),
    /// The container exists with another storage policy (this one): nothing changed.
    PolicyConflict(u32),
}

/// Creates the database, or re-creates a deleted one; merges metadata. A container takes
/// `policy` when it is created (`default_policy` if the PUT names none); a PUT naming
/// another policy than an existing container's changes nothing.
pub async fn put(
    dev: &Arc<Device>,
    t: &Target,
    ts: u64,
    meta: &[pb::MetaItem],
    policy: Option<u32>,
    default_policy: u32,
) -> Result<PutOutcome, DeviceError> {
    let key = t.info_key();
    let _g = dev.lock_for(&key).lock().await;
    let mut info = info(dev, t)?;
    let created = !info.exists() && ts > info.delete_ts;
    let stored = policy_of(&info);
    if t.kind == Kind::Container && info.exists() && policy.is_some_and(|p| p != stored) {
        return Ok(PutOutcome::PolicyConflict(stored));
    }
    if ts > info.put_ts {
        if created {
            info.created_ts = ts;
            if info.delete_ts > 0 {
                // A re-created database starts without the old one's metadata.
                info.meta.clear();
            }
        }
        info.put_ts = ts;
    }
    info.merge_meta(meta);
    if t.kind == Kind::Container && created {
        info.merge_meta(&[pb::MetaItem {
            key: POLICY_KEY.into(),
            value: policy.unwrap_or(default_policy).to_string(),
            ts,
        }]);
    }
    let mut batch = WriteBatch::default();
    dev.batch_put(&mut batch, t.cf(), &key, &enc(&info));
    mark_dirty(dev, &mut batch, t);
    commit(dev, t, batch, _g).await?;
    Ok(PutOutcome::Done(info, created))
}

/// Merges metadata into an existing database; `None` if it does not exist.
pub async fn post(
    dev: &Arc<Device>,
    t: &Target,
    meta: &[pb::MetaItem],
) -> Result<Option<Info>, DeviceError> {
    let key = t.info_key();
    let _g = dev.lock_for(&key).lock().await;
    let mut info = info(dev, t)?;
    if !info.exists() {
        return Ok(None);
    }
    info.merge_meta(meta);
    let mut batch = WriteBatch::default();
    dev.batch_put(&mut batch, t.cf(), &key, &enc(&info));
    commit(dev, t, batch, _g).await?;
    Ok(Some(info))
}

/// Why a delete was refused.
pub enum DeleteOutcome {
    /// Deleted; its info as it is now.
    Deleted(Info),
    /// There was no such database.
    NotFound(Info),
    /// It still holds objects or containers.
    NotEmpty(Info),
}

/// Deletes an empty database.
pub async fn delete(dev: &Arc<Device>, t: &Target, ts: u64) -> Result<DeleteOutcome, DeviceError> {
    let key = t.info_key();
    let _g = dev.lock_for(&key).lock().await;
    let mut info = info(dev, t)?;
    if !info.exists() {
        return Ok(DeleteOutcome::NotFound(info));
    }
    if info.object_count > 0 || info.container_count > 0 {
        return Ok(DeleteOutcome::NotEmpty(info));
    }
    info.delete_ts = info.delete_ts.max(ts);
    let mut batch = WriteBatch::default();
    dev.batch_put(&mut batch, t.cf(), &key, &enc(&info));
    mark_dirty(dev, &mut batch, t);
    commit(dev, t, batch, _g).await?;
    Ok(DeleteOutcome::Deleted(info))
}

/// Applies an object row to a container (merged with the stored one by
/// [`ObjRow::merge`]) and adjusts its totals.
pub async fn object_update(
    dev: &Arc<Device>,
    t: &Target,
    row: &pb::ObjectRow,
) -> Result<Info, DeviceError> {
    let key = t.info_key();
    let _g = dev.lock_for(&key).lock().await;
    let mut info = info(dev, t)?;
    if info.put_ts == 0 && info.delete_ts == 0 {
        // An update for a container this replica never saw created: it exists (the proxy
        // checked); record it so the row is listed.
        info.put_ts = 1;
        info.created_ts = 1;
    }
    let new = ObjRow::from_pb(row);
    let mut batch = WriteBatch::default();
    if !apply_obj_row(dev, t, &mut info, &row.name, new, &mut batch)? {
        return Ok(info);
    }
    dev.batch_put(&mut batch, t.cf(), &key, &enc(&info));
    mark_dirty(dev, &mut batch, t);
    commit(dev, t, batch, _g).await?;
    Ok(info)
}

/// Merges object row `new` into the stored one ([`ObjRow::merge`]: the data of the newer
/// data timestamp, the content type of the newer content-type timestamp), adding the
/// result to `batch` and `info`'s totals if it differs from what is stored. Returns
/// whether it did.
pub(super) fn apply_obj_row(
    dev: &Device,
    t: &Target,
    info: &mut Info,
    name: &str,
    new: ObjRow,
    batch: &mut WriteBatch,
) -> Result<bool, DeviceError> {
    let mut rk = t.row_prefix();
    rk.extend_from_slice(name.as_bytes());
    let old = dev
        .get(t.cf(), &rk)?
        .map(|b| ObjRow::decode(dev, &b))
        .transpose()?;
    let merged = match &old {
        Some(o) => o.merge(&new),
        None => new,
    };
    if old.as_ref() == Some(&merged) {
        return Ok(false);
    }
    if let Some(o) = old.as_ref().filter(|o| !o.deleted) {
        info.object_count = info.object_count.saturating_sub(1);
        info.bytes = info.bytes.saturating_sub(o.size);
    }
    if !merged.deleted {
        info.object_count += 1;
        info.bytes += merged.size;
    }
    dev.batch_put(batch, t.cf(), &rk, &merged.encode());
    Ok(true)
}

/// Adds container row `row` to `batch` and `info`'s totals where it is newer (each of its
/// timestamps and its stats are merged separately).
pub(super) fn apply_cont_row(
    dev: &Device,
    t: &Target,
    info: &mut Info,
    name: &str,
    row: &ContRow,
    batch: &mut WriteBatch,
) -> Result<bool, DeviceError> {
    let mut rk = t.row_prefix();
    rk.extend_from_slice(name.as_bytes());
    let stored: Option<ContRow> = dev.get(t.cf(), &rk)?.map(|b| dec(dev, &b)).transpose()?;
    let old = stored.clone().unwrap_or_default();
    let mut new = old.clone();
    new.put_ts = new.put_ts.max(row.put_ts);
    new.delete_ts = new.delete_ts.max(row.delete_ts);
    if row.stats_ts > old.stats_ts {
        new.object_count = row.object_count;
        new.bytes = row.bytes;
        new.stats_ts = row.stats_ts;
    }
    if stored.is_some() && enc(&new) == enc(&old) {
        return Ok(false);
    }
    let contrib = |r: &ContRow| {
        if r.live() {
            (1, r.object_count, r.bytes)
        } else {
            (0, 0, 0)
        }
    };
    let (oc, oo, ob) = contrib(&old);
    let (nc, no, nb) = contrib(&new);
    info.container_count = (info.container_count + nc).saturating_sub(oc);
    info.object_count = (info.object_count + no).saturating_sub(oo);
    info.bytes = (info.bytes + nb).saturating_sub(ob);
    dev.batch_put(batch, t.cf(), &rk, &enc(&new));
    Ok(true)
}

/// Applies a container row to an account (newest events and stats win) and adjusts totals.
/// The account is created on first use (Swift's `account_autocreate`).
pub async fn account_update(
    dev: &Arc<Device>,
    t: &Target,
    row: &pb::ContainerRow,
) -> Result<Info, DeviceError> {
    let key = t.info_key();
    let _g = dev.lock_for(&key).lock().await;
    let mut info = info(dev, t)?;
    if !info.exists() && info.delete_ts == 0 {
        info.put_ts = row.put_ts.max(1);
        info.created_ts = info.put_ts;
    }
    let new = ContRow {
        put_ts: row.put_ts,
        delete_ts: row.delete_ts,
        object_count: row.object_count,
        bytes: row.bytes,
        stats_ts: row.stats_ts,
    };
    let mut batch = WriteBatch::default();
    if !apply_cont_row(dev, t, &mut info, &row.name, &new, &mut batch)? {
        return Ok(info);
    }
    dev.batch_put(&mut batch, t.cf(), &key, &enc(&info));
    commit(dev, t, batch, _g).await?;
    Ok(info)
}
