//! The records a database is made of, as stored: one info record (timestamps, metadata,
//! running totals) and one row per object (containers) or per container (accounts).
//!
//! Every record is encoded by [`enc`]: a format byte (1) and the bincode of the struct, so
//! a later format can be told apart. Deleted rows stay as tombstones and the info record
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

/// An object row of a container database.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub(super) struct ObjRow {
    pub(super) ts: u64,
    pub(super) size: u64,
    pub(super) content_type: String,
    pub(super) etag: String,
    pub(super) deleted: bool,
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
