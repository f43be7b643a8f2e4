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

use std::sync::Arc;

use rocksdb::WriteBatch;
use stratus_core::timestamp::Timestamp;

use crate::device::{blocking, Device, DeviceError, Space, CF_EXPIRING, CF_OBJECTS};
use crate::diskfile::{batch_record, key_hash, ObjectRecord};
use crate::hashes::{suffix_of, RecordHead};
use crate::worker::{Ctx, Worker};

/// Default reclaim age, seconds.
pub const RECLAIM_AGE: f64 = 7.0 * 86_400.0;
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
            let Some(at) = k
                .get(..8)
                .map(|b| u64::from_be_bytes(b.try_into().expect("8")))
            else {
                continue;
            };
            if at > now {
                return Ok(());
            }
            cx.stats.scanned(1);
            let key = &k[8..];
            match crate::object::expire(&cx.node, dev, key, at).await {
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
        vec![("reclaim_age", RECLAIM_AGE)]
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
            match reclaim_objects(cx, &dev, before).await {
                Ok(n) => cx.stats.repaired(n),
                Err(e) => cx.stats.error(format!("{}: {e}", dev.name)),
            }
            match blocking(&dev, move |d| crate::db::reclaim_rows(d, before)).await {
                Ok(n) => cx.stats.repaired(n),
                Err(e) => cx.stats.error(e),
            }
        }
    }
}

/// Removes tombstones older than `before` (µs). Returns how many went.
async fn reclaim_objects(cx: &Ctx, dev: &Arc<Device>, before: u64) -> Result<u64, DeviceError> {
    let mut from = Vec::new();
    let mut n = 0;
    loop {
        let rows: Vec<_> = dev
            .scan(CF_OBJECTS, &from, false)
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
                .get(CF_OBJECTS, k)?
                .and_then(|b| ObjectRecord::decode(&b).ok())
            else {
                continue;
            };
            if !(rec.deleted && rec.ts < before) {
                continue;
            }
            let mut b = WriteBatch::default();
            batch_record(dev, &mut b, k, None, Some(&rec));
            dev.write(b, true)?;
            dev.hashes.invalidate(Space::Object, part, suffix_of(&hash));
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
