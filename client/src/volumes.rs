//! Cinder v3 volume and snapshot records in meta, and what the cluster needs of them to
//! place and fence volume I/O.
//!
//! # Keys
//! - `/volumes/<id>`: a [`Volume`] (JSON, versioned).
//! - `/volume-snapshots/<id>`: a [`Snapshot`].
//!
//! Every change is a compare-and-swap on the record's revision: attaching (which bumps the
//! epoch that storage nodes fence with), a replica leaving or rejoining the set, a status
//! change. Two writers therefore never both believe they hold the same epoch.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use stratus_proto::meta as pb;

use crate::meta::{ClientError, MetaClient};

const VOLUMES: &str = "/volumes/";
const SNAPSHOTS: &str = "/volume-snapshots/";

/// Where a clone's unwritten chunks come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Parent {
    pub volume: String,
    /// The parent's snapshot sequence the clone was made from.
    pub snap: u64,
}

/// One attachment, as Cinder shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attachment {
    pub id: String,
    pub server_id: Option<String>,
    pub host_name: Option<String>,
    pub device: Option<String>,
    pub attached_us: u64,
}

/// A block volume.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Volume {
    #[serde(default = "crate::records::v1")]
    pub v: u32,
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    /// Size in GiB (Cinder's unit).
    pub size_gb: u64,
    /// Cinder's status: `creating`, `available`, `reserved`, `attaching`, `in-use`,
    /// `detaching`, `extending`, `deleting`, `error`, `error_deleting`.
    pub status: String,
    pub project_id: String,
    pub user_id: String,
    pub created_us: u64,
    pub updated_us: u64,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub availability_zone: String,
    pub volume_type: String,
    pub bootable: bool,
    pub image_id: Option<String>,
    pub snapshot_id: Option<String>,
    pub source_volid: Option<String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// The oldest ancestor of its clone chain (itself when it is no clone): chunks are
    /// placed by it.
    pub root: String,
    /// For a clone: where unwritten chunks come from.
    pub parent: Option<Parent>,
    /// The writer's epoch: storage nodes refuse writes of older ones.
    pub epoch: u64,
    /// Who holds `epoch` (a host and process), while attached for writing.
    pub writer: Option<String>,
    /// How many snapshots were taken (the newest snapshot's sequence number).
    pub snap_seq: u64,
    /// The snapshot sequence the writer stamps its writes with (it confirms a new
    /// snapshot by raising this to `snap_seq`).
    #[serde(default)]
    pub snap_ack: u64,
    /// Replicas (`node/device`) out of the replica set: they missed writes and serve no
    /// reads until they have caught up.
    #[serde(default)]
    pub stale: Vec<String>,
    /// For each stale replica, the (epoch, sequence) from which it may have missed
    /// writes: catch-up copies every chunk written since, even one whose version looks
    /// the same (two writes to one chunk can finish in either order).
    #[serde(default)]
    pub stale_since: std::collections::BTreeMap<String, [u64; 2]>,
    /// Read-only (an image volume: the parent of every volume made from an image).
    #[serde(default)]
    pub read_only: bool,
    /// Not listed by the volume API (image volumes are the cluster's own).
    #[serde(default)]
    pub hidden: bool,
}

impl Volume {
    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        self.size_gb.saturating_mul(stratus_core::volume::GIB)
    }
}

/// A snapshot of a volume.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    #[serde(default = "crate::records::v1")]
    pub v: u32,
    pub id: String,
    pub volume_id: String,
    /// The volume's snapshot sequence number this snapshot is.
    pub seq: u64,
    pub name: Option<String>,
    pub description: Option<String>,
    /// `creating`, `available`, `deleting`, `error`, `error_deleting`.
    pub status: String,
    pub size_gb: u64,
    pub project_id: String,
    pub created_us: u64,
    pub updated_us: u64,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// Why a volume record operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("stored volume record is damaged: {0}")]
    Damaged(String),
    #[error("record {0} kept changing under 64 attempts to update it")]
    Contended(String),
    #[error(transparent)]
    Meta(#[from] ClientError),
}

/// Records of one kind (volumes or snapshots) under one key prefix.
#[derive(Clone)]
pub struct Records<T> {
    client: MetaClient,
    prefix: &'static str,
    _t: std::marker::PhantomData<fn() -> T>,
}

/// Something stored by id.
pub trait Keyed {
    fn id(&self) -> &str;
}

impl Keyed for Volume {
    fn id(&self) -> &str {
        &self.id
    }
}

impl Keyed for Snapshot {
    fn id(&self) -> &str {
        &self.id
    }
}

impl<T> Records<T> {
    /// Records stored as JSON under `prefix` (which ends in `/`).
    pub fn new(client: MetaClient, prefix: &'static str) -> Self {
        Self {
            client,
            prefix,
            _t: std::marker::PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned + Keyed> Records<T> {
    fn key(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    /// The record with `id` and its revision.
    pub async fn get(&self, id: &str) -> Result<Option<(T, i64)>, VolumeError> {
        if id.is_empty() || id.contains('/') {
            return Ok(None);
        }
        match self.client.get(self.key(id)).await? {
            None => Ok(None),
            Some(kv) => serde_json::from_slice(&kv.value)
                .map(|v| Some((v, kv.mod_revision)))
                .map_err(|e| VolumeError::Damaged(e.to_string())),
        }
    }

    /// Every record.
    pub async fn list(&self) -> Result<Vec<T>, VolumeError> {
        let r = self.client.range_prefix(self.prefix, 0).await?;
        r.kvs
            .iter()
            .map(|kv| {
                serde_json::from_slice(&kv.value).map_err(|e| VolumeError::Damaged(e.to_string()))
            })
            .collect()
    }

    async fn when(
        &self,
        id: &str,
        target: pb::compare::Target,
        op: pb::request_op::Request,
    ) -> Result<bool, VolumeError> {
        let r = self
            .client
            .txn(pb::TxnRequest {
                compare: vec![pb::Compare {
                    result: pb::compare::Result::Equal as i32,
                    key: self.key(id).into_bytes(),
                    target: Some(target),
                }],
                success: vec![pb::RequestOp { request: Some(op) }],
                ..Default::default()
            })
            .await?;
        Ok(r.succeeded)
    }

    fn put_op(&self, rec: &T) -> pb::request_op::Request {
        pb::request_op::Request::Put(pb::PutRequest {
            key: self.key(rec.id()).into_bytes(),
            value: serde_json::to_vec(rec).expect("plain struct serializes"),
            ..Default::default()
        })
    }

    /// Stores a new record (its id must be new); false if the id is taken.
    pub async fn create(&self, rec: &T) -> Result<bool, VolumeError> {
        self.when(rec.id(), pb::compare::Target::Version(0), self.put_op(rec))
            .await
    }

    /// Replaces the record if it is still at `rev`; false if it changed meanwhile.
    pub async fn swap(&self, rec: &T, rev: i64) -> Result<bool, VolumeError> {
        self.when(
            rec.id(),
            pb::compare::Target::ModRevision(rev),
            self.put_op(rec),
        )
        .await
    }

    /// Deletes the record if it is still at `rev`.
    pub async fn delete(&self, id: &str, rev: i64) -> Result<bool, VolumeError> {
        let del = pb::request_op::Request::Delete(pb::DeleteRequest {
            key: self.key(id).into_bytes(),
            ..Default::default()
        });
        self.when(id, pb::compare::Target::ModRevision(rev), del)
            .await
    }

    /// Reads, changes and swaps the record until the swap holds (retrying when someone
    /// else changed it meanwhile). `change` answers `None` to give up without writing.
    /// Answers the record as written, or `None` if it is absent or `change` gave up.
    pub async fn update<R>(
        &self,
        id: &str,
        mut change: impl FnMut(&mut T) -> Option<R>,
    ) -> Result<Option<(T, R)>, VolumeError> {
        for _ in 0..64 {
            let Some((mut rec, rev)) = self.get(id).await? else {
                return Ok(None);
            };
            let Some(r) = change(&mut rec) else {
                return Ok(None);
            };
            if self.swap(&rec, rev).await? {
                return Ok(Some((rec, r)));
            }
        }
        Err(VolumeError::Contended(id.to_string()))
    }
}

/// Volumes in meta.
pub fn volumes(client: MetaClient) -> Records<Volume> {
    Records::new(client, VOLUMES)
}

/// Volume snapshots in meta.
pub fn snapshots(client: MetaClient) -> Records<Snapshot> {
    Records::new(client, SNAPSHOTS)
}

/// A clone's ancestors, nearest first, as storage nodes want them.
pub async fn ancestors(
    vols: &Records<Volume>,
    vol: &Volume,
) -> Result<Vec<stratus_proto::storage::Ancestor>, VolumeError> {
    let mut out = Vec::new();
    let mut next = vol.parent.clone();
    while let Some(p) = next {
        if out.len() > 64 {
            return Err(VolumeError::Damaged(format!(
                "volume {} has a clone chain deeper than 64",
                vol.id
            )));
        }
        out.push(stratus_proto::storage::Ancestor {
            volume: p.volume.clone(),
            snap: p.snap,
        });
        next = match vols.get(&p.volume).await? {
            Some((pv, _)) => pv.parent,
            None => {
                return Err(VolumeError::Damaged(format!(
                    "volume {} names parent {} which does not exist",
                    vol.id, p.volume
                )))
            }
        };
    }
    Ok(out)
}
