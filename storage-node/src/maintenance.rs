//! Housekeeping workers: the object expirer and the reclaimer.
//!
//! - **Expirer.** Every object with an `X-Delete-At` has an entry in the device's
//!   `expiring` column family, keyed by its expiry time, written in the same batch as its
//!   record. A pass reads that index up to now and replaces each expired object with a
//!   tombstone dated at its expiry (the same on every replica), which removes its body and
//!   its listing row like a DELETE would.
//! - **Reclaimer.** Tombstones must outlive any node's absence, or a node returning with
//!   an old copy would bring a deleted object back. After `reclaim_age` (default 7 days,
//!   Swift's default) they have reached every replica and go, with deleted listing rows.
//!   Quarantined copies are never removed here: they may be the last copy of something,
//!   and only an operator decides (`stratus quarantine purge`).
//! - **Orphans.** A crash between a body's rename into place and its record's commit
//!   leaves a body file no record names (never acknowledged). The reclaimer moves such
//!   files, once older than `orphan_age` (default 1 day), into the device's quarantine as
//!   `orphan-<hash>-<file>`: never deleted, counted as quarantined, listed by
//!   `stratus quarantine list`.

use std::sync::Arc;

use rocksdb::WriteBatch;
use stratus_core::timestamp::Timestamp;

use crate::device::{blocking, Device, DeviceError, Space, CF_EXPIRING};
use crate::diskfile::{batch_record, key_hash, ObjectRecord};
use crate::hashes::{suffix_of, RecordHead};
use crate::worker::{Ctx, Worker};

/// Default reclaim age, seconds.
pub const RECLAIM_AGE: f64 = 7.0 * 86_400.0;
/// Default age before a body file no record names is moved aside, seconds.
pub const ORPHAN_AGE: f64 = 86_400.0;
/// Shortest default idle time between reclaimer passes, seconds.
pub const RECLAIM_INTERVAL: f64 = 3600.0;

const BATCH: usize = 256;

/// The object expirer worker.
pub struct Expirer;

#[tonic::async_trait]
impl Worker for Expirer {
    fn name(&self) -> &'static str {
        "expirer"
    }

    async fn pass(&self, cx: &Ctx) {
        let now = stratus_core::time::now_secs();
        for dev in cx.node.present_devices() {
            if let Err(e) = expire_device(cx, &dev, now).await {
                cx.stats.error(format!("{}: {e}", dev.name));
            }
        }
    }
}

async fn expire_device(cx: &Ctx, dev: &Arc<Device>, now: u64) -> Result<(), String> {
    let mut from = Vec::new();
    loop {
        let rows: Vec<_> = dev
            .scan(CF_EXPIRING, &from, false)
            .take(BATCH)
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let done = rows.len() < BATCH;
        for (k, _) in &rows {
            let Some((at, space, key)) = crate::diskfile::parse_expiring_key(k) else {
                continue;
            };
            if at > now {
                return Ok(());
            }
            cx.stats.scanned(1);
            match crate::object::expire(&cx.node, dev, space, key, at).await {
                Ok(true) => cx.stats.repaired(1),
                Ok(false) => {
                    // A stale entry (the object changed or went): drop it.
                    let mut b = WriteBatch::default();
                    dev.batch_delete(&mut b, CF_EXPIRING, k);
                    dev.write(b, false).map_err(|e| e.to_string())?;
                }
                Err(e) => cx.stats.error(format!("{}: {}", dev.name, e.message())),
            }
        }
        match rows.last() {
            Some((k, _)) if !done => {
                from = k.to_vec();
                from.push(0);
            }
            _ => return Ok(()),
        }
    }
}

/// The reclaimer worker.
pub struct Reclaimer;

#[tonic::async_trait]
impl Worker for Reclaimer {
    fn name(&self) -> &'static str {
        "reclaimer"
    }

    fn settings(&self) -> Vec<(&'static str, f64)> {
        vec![("reclaim_age", RECLAIM_AGE), ("orphan_age", ORPHAN_AGE)]
    }

    /// A pass reads every record; what it removes is days old, so once an hour is plenty.
    fn interval(&self, node_default: f64) -> f64 {
        node_default.max(RECLAIM_INTERVAL)
    }

    async fn pass(&self, cx: &Ctx) {
        let age = cx.settings.get("reclaim_age");
        let before = Timestamp::now()
            .0
            .saturating_sub((age * 1e6).min(u64::MAX as f64) as u64);
        for dev in cx.node.present_devices() {
            for space in Space::objects() {
                match reclaim_objects(cx, &dev, space, before).await {
                    Ok(n) => cx.stats.repaired(n),
                    Err(e) => cx.stats.error(format!("{}: {e}", dev.name)),
                }
            }
            match blocking(&dev, move |d| crate::db::reclaim_rows(d, before)).await {
                Ok(n) => cx.stats.repaired(n),
                Err(e) => cx.stats.error(e),
            }
            let orphan_age = cx.settings.get("orphan_age").clamp(0.0, 1e12) as u64;
            match blocking(&dev, move |d| sweep_orphans(d, orphan_age)).await {
                Ok(n) => {
                    for _ in 0..n {
                        cx.stats.quarantined();
                    }
                }
                Err(e) => cx.stats.error(e),
            }
        }
    }
}

/// Removes tombstones older than `before` (µs). Returns how many went.
async fn reclaim_objects(
    cx: &Ctx,
    dev: &Arc<Device>,
    space: Space,
    before: u64,
) -> Result<u64, DeviceError> {
    let mut from = Vec::new();
    let mut n = 0;
    loop {
        let rows: Vec<_> = dev
            .scan(space.cf(), &from, false)
            .take(BATCH)
            .collect::<Result<_, _>>()?;
        let done = rows.len() < BATCH;
        for (k, v) in &rows {
            cx.stats.scanned(1);
            let old_tomb = RecordHead::decode(v).is_some_and(|h| h.deleted && h.ts < before);
            let Some((part, hash)) = key_hash(k).filter(|_| old_tomb) else {
                continue;
            };
            let _g = dev.lock_for(k).lock().await;
            let Some(rec) = dev
                .get(space.cf(), k)?
                .and_then(|b| ObjectRecord::decode(&b).ok())
            else {
                continue;
            };
            if !(rec.deleted && rec.ts < before) {
                continue;
            }
            let mut b = WriteBatch::default();
            batch_record(dev, &mut b, space, k, None, Some(&rec));
            dev.write(b, true)?;
            dev.hashes.invalidate(space, part, suffix_of(&hash));
            n += 1;
        }
        match rows.last() {
            Some((k, _)) if !done => {
                from = k.to_vec();
                from.push(0);
            }
            _ => return Ok(n),
        }
    }
}

/// Moves body files that no record names and that are older than `age` seconds into the
/// device's quarantine (never deletes them). Returns how many it moved. Blocking.
pub fn sweep_orphans(dev: &Device, age: u64) -> Result<u64, DeviceError> {
    let mut moved = 0;
    for space in Space::objects() {
        moved += sweep_space(dev, space, age)?;
    }
    Ok(moved)
}

fn sweep_space(dev: &Device, space: Space, age: u64) -> Result<u64, DeviceError> {
    use crate::diskfile::{body_file_name, object_key};
    let io = |e| DeviceError::Io(dev.name.clone(), e);
    let now = std::time::SystemTime::now();
    let old_enough = |m: &std::fs::Metadata| {
        m.modified()
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|a| a.as_secs() >= age)
    };
    let dirs = |p: &std::path::Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    let mut moved = 0;
    for part_dir in dirs(&dev.root.join(space.cf())) {
        let Some(part) = part_dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        for suffix_dir in dirs(&part_dir) {
            for hash_dir in dirs(&suffix_dir) {
                let Some(hash) = hash_dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| hex::decode(n).ok())
                    .and_then(|b| <[u8; 16]>::try_from(b).ok())
                else {
                    continue;
                };
                let files = dirs(&hash_dir);
                if files.is_empty() {
                    continue;
                }
                let named = dev
                    .get(space.cf(), &object_key(part, &hash))?
                    .and_then(|b| ObjectRecord::decode(&b).ok())
                    .filter(ObjectRecord::has_file)
                    .map(|r| body_file_name(&r));
                for f in files {
                    let Some(name) = f.file_name().and_then(|n| n.to_str()).map(str::to_string)
                    else {
                        continue;
                    };
                    if named.as_deref() == Some(name.as_str()) {
                        continue;
                    }
                    let Ok(meta) = std::fs::symlink_metadata(&f) else {
                        continue;
                    };
                    if !meta.is_file() || !old_enough(&meta) {
                        continue;
                    }
                    let qdir = dev.quarantine_dir();
                    std::fs::create_dir_all(&qdir).map_err(io)?;
                    let dest = match space {
                        Space::Object(0) => format!("orphan-{}-{name}", hex::encode(hash)),
                        _ => format!("orphan-{}-{}-{name}", space.cf(), hex::encode(hash)),
                    };
                    let dest = qdir.join(dest);
                    std::fs::rename(&f, &dest).map_err(io)?;
                    tracing::warn!(device = %dev.name, file = %f.display(), "body file no record names moved to quarantine");
                    moved += 1;
                }
            }
        }
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diskfile::{batch_record, body_file, name_hash, object_key, BodyHasher};

    #[test]
    fn orphans_are_moved_aside_never_deleted_and_named_bodies_stay() {
        let d = tempfile::tempdir().unwrap();
        let dev = Device::open("d1", d.path(), 0).unwrap();
        let hash = name_hash("/a/c/o");
        let key = object_key(7, &hash);
        let body = vec![5u8; 100_000];
        let mut h = BodyHasher::new();
        h.update(&body);
        let (blake3, block_crcs) = h.finish();
        let rec = ObjectRecord {
            name: "/a/c/o".into(),
            ts: 10,
            meta_ts: 10,
            size: body.len() as u64,
            blake3,
            block_crcs,
            ..Default::default()
        };
        let live = body_file(&dev, Space::Object(0), 7, &hash, &rec);
        std::fs::create_dir_all(live.parent().unwrap()).unwrap();
        std::fs::write(&live, &body).unwrap();
        let mut b = rocksdb::WriteBatch::default();
        batch_record(&dev, &mut b, Space::Object(0), &key, Some(&rec), None);
        dev.write(b, true).unwrap();
        // A crash after the rename of version 11, before its record: an orphan; and one
        // in a directory whose object has no record at all.
        let orphan = live.with_file_name("00000000000000000011-0102030405060708.data");
        std::fs::write(&orphan, b"never acknowledged").unwrap();
        let lone = crate::diskfile::object_dir(&dev, Space::Object(2), 7, &name_hash("/a/c/gone"))
            .join("x.data");
        std::fs::create_dir_all(lone.parent().unwrap()).unwrap();
        std::fs::write(&lone, b"lone").unwrap();

        // Too young: left alone.
        assert_eq!(sweep_orphans(&dev, 3600).unwrap(), 0);
        assert!(orphan.exists());
        assert_eq!(sweep_orphans(&dev, 0).unwrap(), 2);
        assert!(!orphan.exists() && !lone.exists());
        assert_eq!(std::fs::read(&live).unwrap(), body, "the named body stays");
        let kept: Vec<String> = std::fs::read_dir(dev.quarantine_dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert!(kept.iter().all(|k| k.starts_with("orphan-")), "{kept:?}");
        assert_eq!(sweep_orphans(&dev, 0).unwrap(), 0);
    }
}
