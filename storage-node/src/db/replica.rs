//! Databases between replicas: a partition's databases dumped for a peer, a peer's dump
//! merged in, a handed-off partition removed, and old tombstones reclaimed.
//!
//! A dump carries stored rows as they are (encoded), in pieces of at most [`DUMP_ROWS`]
//! rows, each with its database's info. Merging one is idempotent and commutative:
//! timestamps take the maximum, metadata merges per item, rows by the rules of
//! [`super::update`] (an object row's data and content type each by their own
//! timestamp) — so two replicas that push to each other converge, and pushing twice
//! changes nothing. Tombstoned rows are kept until [`reclaim_rows`] judges that their
//! deletion has reached every replica.

use std::sync::Arc;

use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use stratus_proto::storage as pb;

use super::records::{dec, enc, load_info, Info, ObjRow};
use super::target::{parse_info_key, space, Kind, Target};
use super::update::{apply_cont_row, apply_obj_row, commit, mark_dirty};
use crate::device::{Device, DeviceError, Space, CF_CONTAINERS, CF_DIRTY};

/// One database (or a slice of its rows) as a replicator pushes it.
#[derive(Debug, Serialize, Deserialize)]
struct DbDump {
    /// The account.
    account: String,
    /// The container (empty for an account database).
    container: String,
    /// Its info record.
    info: Info,
    /// Row name → stored row (encoded).
    rows: Vec<(String, Vec<u8>)>,
}

/// Rows per pushed message.
pub const DUMP_ROWS: usize = 2000;

/// Every database of partition `part`, encoded for [`merge_dump`] in pieces of at most
/// [`DUMP_ROWS`] rows, handed to `sink` one at a time as the scan makes them — a
/// partition of millions of rows is never held whole. `sink` returning `false` stops the
/// dump (the receiving end went away). Returns whether it ran to the end. Blocking.
pub fn dump_partition(
    dev: &Device,
    kind: Kind,
    part: u32,
    mut sink: impl FnMut(Vec<u8>) -> bool,
) -> Result<bool, DeviceError> {
    let cf = kind.cf();
    let mut prefix = vec![b'I'];
    prefix.extend_from_slice(&part.to_be_bytes());
    // Info keys sort before row keys of the same partition, so the info scan is one pass
    // over a short run of keys; each database's rows are then scanned as they are sent.
    let infos: Vec<_> = dev
        .scan(cf, &prefix, false)
        .take_while(|r| r.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
        .collect::<Result<_, _>>()?;
    for (k, v) in infos {
        let Some((account, container)) = parse_info_key(kind, &k) else {
            continue;
        };
        let info: Info = dec(dev, &v)?;
        let t = Target {
            kind,
            part,
            account: account.clone(),
            container: container.clone(),
        };
        let base = t.row_prefix();
        let mut rows = Vec::new();
        // Every piece carries the info (merging it twice is harmless); a database without
        // rows is one piece.
        let mut flush = |rows: &mut Vec<(String, Vec<u8>)>| {
            sink(enc(&DbDump {
                account: account.clone(),
                container: container.clone(),
                info: info.clone(),
                rows: std::mem::take(rows),
            }))
        };
        for item in dev.scan(cf, &base, false) {
            let (rk, rv) = item?;
            if !rk.starts_with(&base) {
                break;
            }
            let name = String::from_utf8_lossy(&rk[base.len()..]).into_owned();
            rows.push((name, rv.to_vec()));
            if rows.len() >= DUMP_ROWS && !flush(&mut rows) {
                return Ok(false);
            }
        }
        if !flush(&mut rows) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Merges one piece of [`dump_partition`]'s output into this device's copy: timestamps
/// and metadata merge per item, rows by their timestamps. Returns the rows (and info
/// records) that changed.
pub async fn merge_dump(
    dev: &Arc<Device>,
    kind: Kind,
    part: u32,
    raw: &[u8],
) -> Result<u64, DeviceError> {
    let d: DbDump = dec(dev, raw)?;
    let t = Target {
        kind,
        part,
        account: d.account,
        container: d.container,
    };
    if t.account.is_empty() || (kind == Kind::Container) == t.container.is_empty() {
        return Err(DeviceError::Damaged(
            dev.name.clone(),
            "database dump names no database".into(),
        ));
    }
    let key = t.info_key();
    let _g = dev.lock_for(&key).lock().await;
    let stored = load_info(dev, &t)?;
    let mut info = stored.clone().unwrap_or_default();
    let mut applied = 0u64;
    if stored.is_none() {
        info.created_ts = d.info.created_ts;
    }
    let before = (info.put_ts, info.delete_ts, info.meta.clone());
    info.put_ts = info.put_ts.max(d.info.put_ts);
    info.delete_ts = info.delete_ts.max(d.info.delete_ts);
    let items: Vec<pb::MetaItem> = d
        .info
        .meta
        .iter()
        .map(|m| pb::MetaItem {
            key: m.key.clone(),
            value: m.value.clone(),
            ts: m.ts,
        })
        .collect();
    info.merge_meta(&items);
    if stored.is_none() || before != (info.put_ts, info.delete_ts, info.meta.clone()) {
        applied += 1;
    }
    let mut batch = WriteBatch::default();
    for (name, v) in &d.rows {
        let changed = match kind {
            Kind::Container => apply_obj_row(
                dev,
                &t,
                &mut info,
                name,
                ObjRow::decode(dev, v)?,
                &mut batch,
            )?,
            Kind::Account => apply_cont_row(dev, &t, &mut info, name, &dec(dev, v)?, &mut batch)?,
        };
        applied += changed as u64;
    }
    if applied == 0 {
        return Ok(0);
    }
    dev.batch_put(&mut batch, t.cf(), &key, &enc(&info));
    mark_dirty(dev, &mut batch, &t);
    commit(dev, &t, batch, _g).await?;
    Ok(applied)
}

/// Removes every database of partition `part` (a handoff copy whose primaries have it
/// all), with their pending account reports. Blocking.
pub fn remove_partition(dev: &Device, kind: Kind, part: u32) -> Result<u64, DeviceError> {
    let cf = kind.cf();
    let mut batch = WriteBatch::default();
    let mut n = 0;
    for tag in [b'I', b'R'] {
        let mut prefix = vec![tag];
        prefix.extend_from_slice(&part.to_be_bytes());
        for item in dev.scan(cf, &prefix, false) {
            let (k, _) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            dev.batch_delete(&mut batch, cf, &k);
            if tag == b'I' && kind == Kind::Container {
                dev.batch_delete(&mut batch, CF_DIRTY, &k);
            }
            n += 1;
        }
    }
    dev.write(batch, true)?;
    dev.hashes.forget(space(kind), part);
    Ok(n)
}

/// Removes deleted object rows older than `before` (µs) from every container database:
/// their deletion has reached every replica long ago. Returns how many went. Blocking.
pub fn reclaim_rows(dev: &Device, before: u64) -> Result<u64, DeviceError> {
    let mut n = 0;
    let mut batch = WriteBatch::default();
    let mut parts = std::collections::BTreeSet::new();
    for item in dev.scan(CF_CONTAINERS, b"R", false) {
        let (k, v) = item?;
        if k.first() != Some(&b'R') {
            break;
        }
        let r = ObjRow::decode(dev, &v)?;
        if r.deleted && r.ts < before {
            dev.batch_delete(&mut batch, CF_CONTAINERS, &k);
            if let Some(p) = k.get(1..5) {
                parts.insert(u32::from_be_bytes(p.try_into().expect("4 bytes")));
            }
            n += 1;
        }
    }
    if n > 0 {
        dev.write(batch, true)?;
        for p in parts {
            dev.hashes.invalidate(Space::Container, p, 0);
        }
    }
    Ok(n)
}
