//! Container and account databases, as rows in a device's RocksDB.
//!
//! # Keys
//! ```text
//! containers CF:  I <part:be32> <account> 0x00 <container>               → DbInfo
//!                 R <part:be32> <account> 0x00 <container> 0x00 <object> → ObjectRow
//! accounts CF:    I <part:be32> <account>                                → DbInfo
//!                 R <part:be32> <account> 0x00 <container>               → ContainerRow
//! ```
//! Names never contain NUL (the proxy refuses them), so rows sort by name in UTF-8 byte
//! order, which is Swift's listing order. Deleted rows stay as tombstones (newest timestamp
//! wins) so replicas can be merged; the info record keeps running totals so HEAD is O(1).
//!
//! Every change is a read-modify-write under the device's stripe lock for the database,
//! committed as one synced batch.

use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use stratus_proto::storage as pb;

use std::sync::Arc;

use crate::device::{sync_wal, Device, DeviceError, CF_ACCOUNTS, CF_CONTAINERS, CF_DIRTY};
use crate::hashes::Space;

/// Which of the two database kinds a target names.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Container,
    Account,
}

/// A metadata item with its own timestamp (merged per key; an empty value deletes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetaItem {
    pub key: String,
    pub value: String,
    pub ts: u64,
}

/// The info record of a container or account database.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Info {
    pub put_ts: u64,
    pub delete_ts: u64,
    pub created_ts: u64,
    pub object_count: u64,
    pub bytes: u64,
    pub container_count: u64,
    pub meta: Vec<MetaItem>,
}

impl Info {
    /// Whether the database exists (its newest event is a PUT).
    pub fn exists(&self) -> bool {
        self.put_ts > self.delete_ts
    }

    fn merge_meta(&mut self, items: &[pb::MetaItem]) {
        for it in items {
            match self
                .meta
                .iter_mut()
                .find(|m| m.key.eq_ignore_ascii_case(&it.key))
            {
                Some(m) if m.ts < it.ts => {
                    m.value = it.value.clone();
                    m.ts = it.ts;
                }
                Some(_) => {}
                None => self.meta.push(MetaItem {
                    key: it.key.clone(),
                    value: it.value.clone(),
                    ts: it.ts,
                }),
            }
        }
    }

    /// The wire form.
    pub fn to_pb(&self) -> pb::DbInfo {
        pb::DbInfo {
            exists: self.exists(),
            put_ts: self.put_ts,
            delete_ts: self.delete_ts,
            created_ts: self.created_ts,
            object_count: self.object_count,
            bytes: self.bytes,
            container_count: self.container_count,
            meta: self
                .meta
                .iter()
                .map(|m| pb::MetaItem {
                    key: m.key.clone(),
                    value: m.value.clone(),
                    ts: m.ts,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct ObjRow {
    ts: u64,
    size: u64,
    content_type: String,
    etag: String,
    deleted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct ContRow {
    put_ts: u64,
    delete_ts: u64,
    object_count: u64,
    bytes: u64,
    stats_ts: u64,
}

impl ContRow {
    fn live(&self) -> bool {
        self.put_ts > self.delete_ts
    }
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![1u8];
    bincode::serialize_into(&mut out, v).expect("plain struct serializes");
    out
}

fn dec<T: for<'a> Deserialize<'a>>(dev: &Device, b: &[u8]) -> Result<T, DeviceError> {
    match b.split_first() {
        Some((1, rest)) => bincode::deserialize(rest)
            .map_err(|e| DeviceError::Damaged(dev.name.clone(), e.to_string())),
        _ => Err(DeviceError::Damaged(
            dev.name.clone(),
            "unknown database row format".into(),
        )),
    }
}

/// The database a request names.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: Kind,
    pub part: u32,
    pub account: String,
    pub container: String,
}

impl Target {
    /// From the wire: an empty container names the account database.
    pub fn from_pb(t: &pb::DbTarget) -> Self {
        Target {
            kind: if t.container.is_empty() {
                Kind::Account
            } else {
                Kind::Container
            },
            part: t.part,
            account: t.account.clone(),
            container: t.container.clone(),
        }
    }

    fn cf(&self) -> &'static str {
        match self.kind {
            Kind::Container => CF_CONTAINERS,
            Kind::Account => CF_ACCOUNTS,
        }
    }

    fn base(&self, tag: u8) -> Vec<u8> {
        let mut k = vec![tag];
        k.extend_from_slice(&self.part.to_be_bytes());
        k.extend_from_slice(self.account.as_bytes());
        if self.kind == Kind::Container {
            k.push(0);
            k.extend_from_slice(self.container.as_bytes());
        }
        k
    }

    /// Key of the info record.
    pub fn info_key(&self) -> Vec<u8> {
        self.base(b'I')
    }

    /// Prefix of every row (followed by the row's name).
    fn row_prefix(&self) -> Vec<u8> {
        let mut k = self.base(b'R');
        k.push(0);
        k
    }
}

fn load_info(dev: &Device, t: &Target) -> Result<Option<Info>, DeviceError> {
    dev.get(t.cf(), &t.info_key())?
        .map(|b| dec(dev, &b))
        .transpose()
}

/// The info of a database (a default, non-existing one if absent).
pub fn info(dev: &Device, t: &Target) -> Result<Info, DeviceError> {
    Ok(load_info(dev, t)?.unwrap_or_default())
}

impl Kind {
    /// The database kind a keyspace holds (`None` for objects).
    pub fn of(space: Space) -> Option<Kind> {
        match space {
            Space::Object => None,
            Space::Container => Some(Kind::Container),
            Space::Account => Some(Kind::Account),
        }
    }
}

/// The hashes space of a database kind.
pub fn space(kind: Kind) -> Space {
    match kind {
        Kind::Container => Space::Container,
        Kind::Account => Space::Account,
    }
}

/// Applies `batch` (a change to `t`) under the lock `guard`, marks the partition's cached
/// hash stale, releases the lock, then makes the change durable: writers queued behind the
/// lock share one WAL fsync instead of holding it through one each (see `sync_wal`).
async fn commit(
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

fn mark_dirty(dev: &Device, batch: &mut WriteBatch, t: &Target) {
    if t.kind == Kind::Container {
        dev.batch_put(
            batch,
            CF_DIRTY,
            &t.info_key(),
            &rand::random::<u64>().to_le_bytes(),
        );
    }
}

/// Creates the database, or re-creates a deleted one; merges metadata. Returns the new info
/// and whether it did not exist before.
pub async fn put(
    dev: &Arc<Device>,
    t: &Target,
    ts: u64,
    meta: &[pb::MetaItem],
) -> Result<(Info, bool), DeviceError> {
    let key = t.info_key();
    let _g = dev.lock_for(&key).lock().await;
    let mut info = info(dev, t)?;
    let created = !info.exists() && ts > info.delete_ts;
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
    let mut batch = WriteBatch::default();
    dev.batch_put(&mut batch, t.cf(), &key, &enc(&info));
    mark_dirty(dev, &mut batch, t);
    commit(dev, t, batch, _g).await?;
    Ok((info, created))
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
    Deleted(Info),
    NotFound(Info),
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

/// Applies an object row to a container (newest timestamp wins) and adjusts its totals.
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
    let new = ObjRow {
        ts: row.ts,
        size: row.size,
        content_type: row.content_type.clone(),
        etag: row.etag.clone(),
        deleted: row.deleted,
    };
    let mut batch = WriteBatch::default();
    if !apply_obj_row(dev, t, &mut info, &row.name, new, &mut batch)? {
        return Ok(info);
    }
    dev.batch_put(&mut batch, t.cf(), &key, &enc(&info));
    mark_dirty(dev, &mut batch, t);
    commit(dev, t, batch, _g).await?;
    Ok(info)
}

/// Adds object row `new` to `batch` and `info`'s totals if it is newer than the stored one.
fn apply_obj_row(
    dev: &Device,
    t: &Target,
    info: &mut Info,
    name: &str,
    new: ObjRow,
    batch: &mut WriteBatch,
) -> Result<bool, DeviceError> {
    let mut rk = t.row_prefix();
    rk.extend_from_slice(name.as_bytes());
    let old: Option<ObjRow> = dev.get(t.cf(), &rk)?.map(|b| dec(dev, &b)).transpose()?;
    if old.as_ref().is_some_and(|o| o.ts >= new.ts) {
        return Ok(false);
    }
    if let Some(o) = old.as_ref().filter(|o| !o.deleted) {
        info.object_count = info.object_count.saturating_sub(1);
        info.bytes = info.bytes.saturating_sub(o.size);
    }
    if !new.deleted {
        info.object_count += 1;
        info.bytes += new.size;
    }
    dev.batch_put(batch, t.cf(), &rk, &enc(&new));
    Ok(true)
}

/// Adds container row `row` to `batch` and `info`'s totals where it is newer (each of its
/// timestamps and its stats are merged separately).
fn apply_cont_row(
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

/// Lists a database's rows in name order (or reverse) with Swift's `prefix`, `delimiter`,
/// `marker`, `end_marker` and `limit`. `limit` counts live entries; deleted rows met on the
/// way are returned too (flagged), so a proxy merging replicas can honour deletions.
pub fn list(
    dev: &Device,
    t: &Target,
    q: &pb::ListRequest,
) -> Result<Vec<pb::ListEntry>, DeviceError> {
    let base = t.row_prefix();
    let mut scan_prefix = base.clone();
    scan_prefix.extend_from_slice(q.prefix.as_bytes());
    let limit = q.limit.max(1) as usize;
    // Lower and upper bounds on names, exclusive, from marker/end_marker.
    let (after, before) = if q.reverse {
        (&q.end_marker, &q.marker)
    } else {
        (&q.marker, &q.end_marker)
    };
    let mut start = base.clone();
    if q.reverse {
        // Start from the top of the prefix range, or just below `before`.
        if before.is_empty() {
            start = scan_prefix.clone();
            start.extend_from_slice(&[0xff; 8]);
        } else {
            start.extend_from_slice(before.as_bytes());
        }
    } else if !after.is_empty() && after.as_bytes() > q.prefix.as_bytes() {
        start.extend_from_slice(after.as_bytes());
        start.push(0);
    } else {
        start = scan_prefix.clone();
    }
    let mut out = Vec::new();
    let mut live = 0usize;
    let mut tombstones = 0usize;
    let mut seek: Option<Vec<u8>> = Some(start);
    // Rows under a subdir already listed (walking down, the seek can land inside it).
    let mut skip: Option<Vec<u8>> = None;
    'outer: while let Some(from) = seek.take() {
        for item in dev.scan(t.cf(), &from, q.reverse) {
            let (k, v) = item?;
            if skip.as_ref().is_some_and(|s| k.starts_with(s)) {
                continue;
            }
            if !k.starts_with(&scan_prefix) {
                if q.reverse && k.as_ref() > scan_prefix.as_slice() {
                    continue; // above the prefix range while walking down
                }
                break 'outer;
            }
            let name = String::from_utf8_lossy(&k[base.len()..]).into_owned();
            if !after.is_empty() && name.as_str() <= after.as_str() {
                if q.reverse {
                    break 'outer;
                }
                continue;
            }
            if !before.is_empty() && name.as_str() >= before.as_str() {
                if q.reverse {
                    continue;
                }
                break 'outer;
            }
            let entry = row_entry(dev, t, &name, &v)?;
            if !q.delimiter.is_empty() {
                let rest = &name[q.prefix.len()..];
                if let Some(i) = rest.find(q.delimiter.as_str()) {
                    if entry.deleted {
                        continue;
                    }
                    let dir = format!("{}{}", q.prefix, &rest[..i + q.delimiter.len()]);
                    let mut next = base.clone();
                    next.extend_from_slice(dir.as_bytes());
                    skip = Some(next.clone());
                    if !q.reverse {
                        // Skip past every name under `dir`.
                        next.extend_from_slice(&[0xff; 8]);
                    }
                    let subdir_after_marker = after.is_empty() || dir.as_str() > after.as_str();
                    if subdir_after_marker {
                        out.push(pb::ListEntry {
                            name: dir,
                            subdir: true,
                            ..Default::default()
                        });
                        live += 1;
                        if live >= limit {
                            break 'outer;
                        }
                    }
                    seek = Some(next);
                    continue 'outer;
                }
            }
            if entry.deleted {
                tombstones += 1;
                if tombstones > 10 * limit {
                    break 'outer;
                }
            } else {
                live += 1;
            }
            out.push(entry);
            if live >= limit {
                break 'outer;
            }
        }
    }
    Ok(out)
}

fn row_entry(dev: &Device, t: &Target, name: &str, v: &[u8]) -> Result<pb::ListEntry, DeviceError> {
    Ok(match t.kind {
        Kind::Container => {
            let r: ObjRow = dec(dev, v)?;
            pb::ListEntry {
                name: name.to_string(),
                subdir: false,
                deleted: r.deleted,
                ts: r.ts,
                bytes: r.size,
                count: 0,
                content_type: r.content_type,
                etag: r.etag,
            }
        }
        Kind::Account => {
            let r: ContRow = dec(dev, v)?;
            pb::ListEntry {
                name: name.to_string(),
                subdir: false,
                deleted: !r.live(),
                ts: r.put_ts.max(r.delete_ts),
                bytes: r.bytes,
                count: r.object_count,
                content_type: String::new(),
                etag: String::new(),
            }
        }
    })
}

/// Parses a container info key back into (part, account, container).
pub fn parse_container_key(k: &[u8]) -> Option<(u32, String, String)> {
    let rest = k.strip_prefix(b"I")?;
    let part = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    let s = std::str::from_utf8(&rest[4..]).ok()?;
    let (a, c) = s.split_once('\0')?;
    Some((part, a.to_string(), c.to_string()))
}

/// The report a container sends to its account.
pub fn container_row(name: &str, info: &Info, stats_ts: u64) -> pb::ContainerRow {
    pb::ContainerRow {
        name: name.to_string(),
        put_ts: info.put_ts,
        delete_ts: info.delete_ts,
        object_count: info.object_count,
        bytes: info.bytes,
        stats_ts,
    }
}

/// What of an info record replicas must agree on (timestamps and metadata; the creation
/// time and the totals are each replica's own), hashed.
pub fn info_digest(dev: &Device, v: &[u8]) -> Result<[u8; 32], DeviceError> {
    let info: Info = dec(dev, v)?;
    let mut h = blake3::Hasher::new();
    h.update(&info.put_ts.to_le_bytes());
    h.update(&info.delete_ts.to_le_bytes());
    let mut meta: Vec<_> = info
        .meta
        .iter()
        .map(|m| (m.key.to_ascii_lowercase(), &m.value, m.ts))
        .collect();
    meta.sort();
    for (k, v, ts) in meta {
        h.update(&(k.len() as u32).to_le_bytes());
        h.update(k.as_bytes());
        h.update(&(v.len() as u32).to_le_bytes());
        h.update(v.as_bytes());
        h.update(&ts.to_le_bytes());
    }
    Ok(*h.finalize().as_bytes())
}

/// One database (or a slice of its rows) as a replicator pushes it.
#[derive(Debug, Serialize, Deserialize)]
struct DbDump {
    account: String,
    container: String,
    info: Info,
    /// Row name → stored row (encoded).
    rows: Vec<(String, Vec<u8>)>,
}

/// Rows per pushed message.
pub const DUMP_ROWS: usize = 2000;

fn parse_info_key(kind: Kind, k: &[u8]) -> Option<(String, String)> {
    let s = std::str::from_utf8(k.get(5..)?).ok()?;
    match kind {
        Kind::Account => Some((s.to_string(), String::new())),
        Kind::Container => {
            let (a, c) = s.split_once('\0')?;
            Some((a.to_string(), c.to_string()))
        }
    }
}

/// Every database of partition `part`, encoded for [`merge_dump`] in pieces of at most
/// [`DUMP_ROWS`] rows. Blocking.
pub fn dump_partition(dev: &Device, kind: Kind, part: u32) -> Result<Vec<Vec<u8>>, DeviceError> {
    let cf = space_cf(kind);
    let mut prefix = vec![b'I'];
    prefix.extend_from_slice(&part.to_be_bytes());
    let mut out = Vec::new();
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
            out.push(enc(&DbDump {
                account: account.clone(),
                container: container.clone(),
                info: info.clone(),
                rows: std::mem::take(rows),
            }));
        };
        for item in dev.scan(cf, &base, false) {
            let (rk, rv) = item?;
            if !rk.starts_with(&base) {
                break;
            }
            let name = String::from_utf8_lossy(&rk[base.len()..]).into_owned();
            rows.push((name, rv.to_vec()));
            if rows.len() >= DUMP_ROWS {
                flush(&mut rows);
            }
        }
        flush(&mut rows);
    }
    Ok(out)
}

fn space_cf(kind: Kind) -> &'static str {
    match kind {
        Kind::Container => CF_CONTAINERS,
        Kind::Account => CF_ACCOUNTS,
    }
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
            Kind::Container => apply_obj_row(dev, &t, &mut info, name, dec(dev, v)?, &mut batch)?,
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
    let cf = space_cf(kind);
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
        let r: ObjRow = dec(dev, &v)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> (tempfile::TempDir, std::sync::Arc<Device>) {
        let d = tempfile::tempdir().unwrap();
        let dev = Device::open("d1", d.path(), 0).unwrap();
        (d, dev)
    }

    fn row(name: &str, ts: u64, deleted: bool) -> pb::ObjectRow {
        pb::ObjectRow {
            name: name.into(),
            ts,
            size: 10,
            deleted,
            ..Default::default()
        }
    }

    fn names(e: &[pb::ListEntry]) -> Vec<String> {
        e.iter()
            .filter(|e| !e.deleted)
            .map(|e| e.name.clone())
            .collect()
    }

    #[tokio::test]
    async fn listing_params_totals_and_tombstones() {
        let (_d, dev) = dev();
        let t = Target {
            kind: Kind::Container,
            part: 3,
            account: "a".into(),
            container: "c".into(),
        };
        put(&dev, &t, 1, &[]).await.unwrap();
        for (i, n) in ["a/1", "a/2", "b", "c/x/1", "d"].iter().enumerate() {
            object_update(&dev, &t, &row(n, 10 + i as u64, false))
                .await
                .unwrap();
        }
        // An older update loses; a newer delete wins and adjusts totals.
        object_update(&dev, &t, &row("b", 1, true)).await.unwrap();
        let i = object_update(&dev, &t, &row("d", 100, true)).await.unwrap();
        assert_eq!((i.object_count, i.bytes), (4, 40));
        let q = |f: &dyn Fn(&mut pb::ListRequest)| {
            let mut r = pb::ListRequest {
                limit: 100,
                ..Default::default()
            };
            f(&mut r);
            names(&list(&dev, &t, &r).unwrap())
        };
        assert_eq!(q(&|_| {}), ["a/1", "a/2", "b", "c/x/1"]);
        assert_eq!(q(&|r| r.delimiter = "/".into()), ["a/", "b", "c/"]);
        assert_eq!(
            q(&|r| {
                r.delimiter = "/".into();
                r.reverse = true
            }),
            ["c/", "b", "a/"]
        );
        assert_eq!(q(&|r| r.prefix = "a/".into()), ["a/1", "a/2"]);
        assert_eq!(q(&|r| r.marker = "a/2".into()), ["b", "c/x/1"]);
        assert_eq!(q(&|r| r.end_marker = "b".into()), ["a/1", "a/2"]);
        assert_eq!(q(&|r| r.limit = 2), ["a/1", "a/2"]);
        assert_eq!(
            q(&|r| {
                r.reverse = true;
                r.marker = "c".into()
            }),
            ["b", "a/2", "a/1"]
        );
        assert_eq!(
            q(&|r| {
                r.prefix = "c/".into();
                r.delimiter = "/".into()
            }),
            ["c/x/"]
        );
        // The deleted row comes back flagged, for merging.
        let all = list(
            &dev,
            &t,
            &pb::ListRequest {
                limit: 100,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(all.iter().any(|e| e.name == "d" && e.deleted));
        // Not empty → refused; emptied → deleted.
        assert!(matches!(
            delete(&dev, &t, 200).await.unwrap(),
            DeleteOutcome::NotEmpty(_)
        ));
        for n in ["a/1", "a/2", "b", "c/x/1"] {
            object_update(&dev, &t, &row(n, 300, true)).await.unwrap();
        }
        assert!(matches!(
            delete(&dev, &t, 400).await.unwrap(),
            DeleteOutcome::Deleted(_)
        ));
        assert!(!info(&dev, &t).unwrap().exists());
    }

    #[tokio::test]
    async fn account_rows_roll_up() {
        let (_d, dev) = dev();
        let t = Target {
            kind: Kind::Account,
            part: 0,
            account: "a".into(),
            container: String::new(),
        };
        let mut r = pb::ContainerRow {
            name: "c1".into(),
            put_ts: 5,
            object_count: 2,
            bytes: 20,
            stats_ts: 1,
            ..Default::default()
        };
        account_update(&dev, &t, &r).await.unwrap();
        r.object_count = 3;
        r.bytes = 30;
        r.stats_ts = 2;
        let i = account_update(&dev, &t, &r).await.unwrap();
        assert_eq!((i.container_count, i.object_count, i.bytes), (1, 3, 30));
        // Stale stats lose.
        r.object_count = 1;
        r.stats_ts = 1;
        let i = account_update(&dev, &t, &r).await.unwrap();
        assert_eq!(i.object_count, 3);
        r.delete_ts = 9;
        r.stats_ts = 3;
        r.object_count = 0;
        r.bytes = 0;
        let i = account_update(&dev, &t, &r).await.unwrap();
        assert_eq!((i.container_count, i.object_count, i.bytes), (0, 0, 0));
    }

    #[tokio::test]
    async fn replicas_converge_by_pushing_dumps_both_ways() {
        let (_a, a) = dev();
        let (_b, b) = dev();
        let t = Target {
            kind: Kind::Container,
            part: 9,
            account: "acct".into(),
            container: "c".into(),
        };
        let meta = |k: &str, v: &str, ts| pb::MetaItem {
            key: k.into(),
            value: v.into(),
            ts,
        };
        put(&a, &t, 10, &[meta("X-Container-Meta-Color", "red", 10)])
            .await
            .unwrap();
        put(&b, &t, 12, &[meta("X-Container-Meta-Color", "blue", 12)])
            .await
            .unwrap();
        // Each replica missed some updates; one row is deleted on b after a had it live.
        for i in 0..5 {
            object_update(&a, &t, &row(&format!("o{i}"), 20 + i, false))
                .await
                .unwrap();
        }
        object_update(&b, &t, &row("o2", 40, true)).await.unwrap();
        object_update(&b, &t, &row("o9", 41, false)).await.unwrap();
        let hash = |d: &Device| crate::hashes::db_hashes(d, Space::Container, 9).unwrap();
        assert_ne!(hash(&a), hash(&b));
        for (from, to) in [(&a, &b), (&b, &a)] {
            for d in dump_partition(from, Kind::Container, 9).unwrap() {
                merge_dump(to, Kind::Container, 9, &d).await.unwrap();
            }
        }
        assert_eq!(hash(&a), hash(&b), "replicas agree after pushing both ways");
        for d in [&a, &b] {
            let i = info(d, &t).unwrap();
            // o0, o1, o3, o4 and o9 are live; o2's deletion won.
            assert_eq!((i.object_count, i.bytes), (5, 50));
            assert_eq!((i.put_ts, i.meta[0].value.as_str()), (12, "blue"));
        }
        // Pushing again changes nothing.
        for d in dump_partition(&a, Kind::Container, 9).unwrap() {
            assert_eq!(merge_dump(&b, Kind::Container, 9, &d).await.unwrap(), 0);
        }
        // A handoff copy removed: nothing of the partition is left, dirty marks included.
        assert!(remove_partition(&a, Kind::Container, 9).unwrap() > 0);
        assert!(crate::hashes::db_hashes(&a, Space::Container, 9)
            .unwrap()
            .is_empty());
        assert!(a.scan(CF_DIRTY, &[], false).next().is_none());
    }
}
