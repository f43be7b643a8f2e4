//! The records a database is made of, as stored: one info record (timestamps, metadata,
//! running totals) and one row per object (containers) or per container (accounts).
//!
//! Every record is encoded by [`enc`]: a format byte (1) and the bincode of the struct, so
//! a later format can be told apart; object rows have a format 2 as well (see [`ObjRow`]). Deleted rows stay as tombstones and the info record
//! keeps the totals of the live ones. [`info_digest`] says which part of an info record
//! replicas must agree on; the partition hashes of [`crate::hashes`] are built from it.

use serde::{Deserialize, Serialize};
use stratus_proto::storage as pb;

use super::target::Target;
use crate::device::{Device, DeviceError};

/// A metadata item with its own timestamp (merged per key; an empty value deletes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetaItem {
    /// The header name, compared without case.
    pub key: String,
    /// Its value.
    pub value: String,
    /// When it was set (µs).
    pub ts: u64,
}

/// The info record of a container or account database.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Info {
    /// The newest PUT.
    pub put_ts: u64,
    /// The newest DELETE.
    pub delete_ts: u64,
    /// When this replica saw it created.
    pub created_ts: u64,
    /// Live objects (in a container, or in all of an account's containers).
    pub object_count: u64,
    /// Bytes of those objects.
    pub bytes: u64,
    /// Live containers (accounts only).
    pub container_count: u64,
    /// Metadata, merged per item.
    pub meta: Vec<MetaItem>,
}

impl Info {
    /// Whether the database exists (its newest event is a PUT).
    pub fn exists(&self) -> bool {
        self.put_ts > self.delete_ts
    }

    /// Merges `items` in, per key (newest timestamp wins).
    pub(super) fn merge_meta(&mut self, items: &[pb::MetaItem]) {
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

/// An object row of a container database: the data of the newest version (timestamp
/// `ts`, size, etag, or a deletion) and the newest content type (set at `ct_ts`, by that
/// version's PUT or a later POST), merged separately as Swift merges them.
///
/// Stored as format 1 (the layout before content-type timestamps, still written when
/// `ct_ts == ts`, so rows nobody POSTed a type to stay as they were) or format 2 (with
/// `ct_ts`). Every replica encodes a row the same way: partition hashes hash rows' bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct ObjRow {
    pub(super) ts: u64,
    pub(super) size: u64,
    pub(super) content_type: String,
    pub(super) etag: String,
    pub(super) deleted: bool,
    /// When `content_type` was set; never below `ts`.
    pub(super) ct_ts: u64,
}

/// Format 1 of [`ObjRow`] (no content-type timestamp: it is `ts`).
#[derive(Serialize, Deserialize)]
struct ObjRowV1 {
    ts: u64,
    size: u64,
    content_type: String,
    etag: String,
    deleted: bool,
}

/// Format 2 of [`ObjRow`].
#[derive(Serialize, Deserialize)]
struct ObjRowV2 {
    ts: u64,
    size: u64,
    content_type: String,
    etag: String,
    deleted: bool,
    ct_ts: u64,
}

impl ObjRow {
    /// The row a container update carries (`ct_ts` 0, or below `ts`, means `ts`).
    pub(super) fn from_pb(row: &pb::ObjectRow) -> Self {
        ObjRow {
            ts: row.ts,
            size: row.size,
            content_type: row.content_type.clone(),
            etag: row.etag.clone(),
            deleted: row.deleted,
            ct_ts: row.ct_ts.max(row.ts),
        }
    }

    /// The stored form: format 1 when the type came with the data, else format 2.
    pub(super) fn encode(&self) -> Vec<u8> {
        if self.ct_ts <= self.ts {
            let mut out = vec![1u8];
            let v1 = ObjRowV1 {
                ts: self.ts,
                size: self.size,
                content_type: self.content_type.clone(),
                etag: self.etag.clone(),
                deleted: self.deleted,
            };
            bincode::serialize_into(&mut out, &v1).expect("plain struct serializes");
            out
        } else {
            let mut out = vec![2u8];
            let v2 = ObjRowV2 {
                ts: self.ts,
                size: self.size,
                content_type: self.content_type.clone(),
                etag: self.etag.clone(),
                deleted: self.deleted,
                ct_ts: self.ct_ts,
            };
            bincode::serialize_into(&mut out, &v2).expect("plain struct serializes");
            out
        }
    }

    /// Decodes either format; anything else is [`DeviceError::Damaged`].
    pub(super) fn decode(dev: &Device, b: &[u8]) -> Result<Self, DeviceError> {
        let damaged = |e: String| DeviceError::Damaged(dev.name.clone(), e);
        match b.split_first() {
            Some((1, rest)) => {
                let r: ObjRowV1 = bincode::deserialize(rest).map_err(|e| damaged(e.to_string()))?;
                Ok(ObjRow {
                    ct_ts: r.ts,
                    ts: r.ts,
                    size: r.size,
                    content_type: r.content_type,
                    etag: r.etag,
                    deleted: r.deleted,
                })
            }
            Some((2, rest)) => {
                let r: ObjRowV2 = bincode::deserialize(rest).map_err(|e| damaged(e.to_string()))?;
                Ok(ObjRow {
                    ct_ts: r.ct_ts.max(r.ts),
                    ts: r.ts,
                    size: r.size,
                    content_type: r.content_type,
                    etag: r.etag,
                    deleted: r.deleted,
                })
            }
            _ => Err(damaged("unknown object row format".into())),
        }
    }

    /// When the row last changed (the listing's last_modified): the newer of its data
    /// and its content type.
    pub(super) fn last_modified(&self) -> u64 {
        self.ts.max(self.ct_ts)
    }

    /// Merges `other` in, as Swift merges object rows: the data (timestamp, size, etag,
    /// deletion) of the newer data timestamp, the content type of the newer content-type
    /// timestamp. Ties are broken by value (data over a deletion, as the object store
    /// breaks them; then etag, size; the greater type), so replicas merging the same rows
    /// in any order end with the same row.
    pub(super) fn merge(&self, other: &ObjRow) -> ObjRow {
        let data = |r: &ObjRow| (r.ts, !r.deleted, r.etag.clone(), r.size);
        let ctype = |r: &ObjRow| (r.ct_ts, r.content_type.clone());
        let d = if data(other) > data(self) {
            other
        } else {
            self
        };
        let c = if ctype(other) > ctype(self) {
            other
        } else {
            self
        };
        ObjRow {
            ts: d.ts,
            size: d.size,
            etag: d.etag.clone(),
            deleted: d.deleted,
            content_type: c.content_type.clone(),
            ct_ts: c.ct_ts.max(d.ts),
        }
    }
}

/// A container row of an account database.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub(super) struct ContRow {
    pub(super) put_ts: u64,
    pub(super) delete_ts: u64,
    pub(super) object_count: u64,
    pub(super) bytes: u64,
    pub(super) stats_ts: u64,
}

impl ContRow {
    /// Whether the container exists (its newest event is a PUT).
    pub(super) fn live(&self) -> bool {
        self.put_ts > self.delete_ts
    }
}

/// Encodes a stored record (format byte 1, then bincode).
pub(super) fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![1u8];
    bincode::serialize_into(&mut out, v).expect("plain struct serializes");
    out
}

/// Decodes what [`enc`] encoded; anything else is [`DeviceError::Damaged`].
pub(super) fn dec<T: for<'a> Deserialize<'a>>(dev: &Device, b: &[u8]) -> Result<T, DeviceError> {
    match b.split_first() {
        Some((1, rest)) => bincode::deserialize(rest)
            .map_err(|e| DeviceError::Damaged(dev.name.clone(), e.to_string())),
        _ => Err(DeviceError::Damaged(
            dev.name.clone(),
            "unknown database row format".into(),
        )),
    }
}

/// The stored info of a database, if any.
pub(super) fn load_info(dev: &Device, t: &Target) -> Result<Option<Info>, DeviceError> {
    dev.get(t.cf(), &t.info_key())?
        .map(|b| dec(dev, &b))
        .transpose()
}

/// The info of a database (a default, non-existing one if absent).
pub fn info(dev: &Device, t: &Target) -> Result<Info, DeviceError> {
    Ok(load_info(dev, t)?.unwrap_or_default())
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
