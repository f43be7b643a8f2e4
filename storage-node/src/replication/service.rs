//! The `Replication` gRPC service: what a device holds (partition and suffix hashes,
//! summaries of a suffix's records) and taking the copies a peer pushes.
//!
//! A pushed record is stored only if it is newer than the device's copy, by the same
//! engine commit and rule as a PUT ([`crate::engine::put`]): its body is written, checked
//! against the record's checksums and made durable under its final name before the
//! record that names it is committed. A metadata-only record updates the version the device already holds. A
//! pushed database piece is merged by [`crate::db::merge_dump`].

use std::sync::Arc;

use stratus_proto::storage as pb;
use stratus_proto::storage::replication_server::Replication;
use tonic::{Request, Response, Status, Streaming};

use crate::bodyfile::TmpBody;
use crate::db::{self, Kind};
use crate::device::{blocking, Device, DeviceError, Space};
use crate::diskfile::{BodyHasher, ObjectRecord};
use crate::engine::disk::Disk;
use crate::engine::{self, Engine, Key, Outcome, Put};
use crate::hashes::{self, Hashes};
use crate::Node;

fn bad(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg)
}

/// The gRPC replication service of one node.
pub struct ReplicationService {
    node: Arc<Node>,
}

impl ReplicationService {
    /// Serves `node`'s devices.
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    fn device(&self, name: &str) -> Result<Arc<Device>, Status> {
        let dev = self.node.device(name)?;
        dev.check_present()?;
        Ok(dev)
    }
}

fn space_of(ring: &str) -> Result<Space, Status> {
    Space::from_ring(ring).ok_or_else(|| bad(format!("no ring named {ring:?}")))
}

/// The object keyspace a summaries or sync request names (empty: policy 0's).
fn object_space(ring: &str) -> Result<Space, Status> {
    match ring {
        "" => Ok(Space::Object(0)),
        r => match space_of(r)? {
            s @ Space::Object(_) => Ok(s),
            _ => Err(bad(format!("ring {r:?} holds no objects"))),
        },
    }
}

/// Stores a pushed record (its body, if any, already staged) by the PUT rule: only a
/// version that orders after the stored one is taken. Returns whether it changed anything.
pub async fn apply_record<E: Engine>(
    e: &E,
    part: u32,
    rec: ObjectRecord,
    body: Option<E::Staged>,
) -> Result<bool, DeviceError> {
    let key = Key::of(part, &rec.name);
    Ok(matches!(
        engine::put(e, key, rec, body, None).await?,
        Put::Stored { .. }
    ))
}

/// Applies newer metadata to the version the device already holds.
pub async fn apply_meta<E: Engine>(
    e: &E,
    part: u32,
    rec: ObjectRecord,
) -> Result<bool, DeviceError> {
    let key = Key::of(part, &rec.name);
    Ok(matches!(
        e.commit(key, None, engine::newer_meta(rec)).await?,
        Outcome::Committed { .. }
    ))
}

/// Receives the `size` body bytes of a pushed record and checks them against it.
async fn receive_body(
    dev: &Arc<Device>,
    rec: &ObjectRecord,
    inbound: &mut Streaming<pb::SyncMsg>,
) -> Result<TmpBody, Status> {
    dev.check_space(rec.size)?;
    let io = |e| Status::from(DeviceError::Io(dev.name.clone(), e));
    let mut tmp = TmpBody::create(dev).map_err(io)?;
    let mut hasher = BodyHasher::new();
    while hasher.size < rec.size {
        let msg = inbound
            .message()
            .await?
            .ok_or_else(|| Status::aborted(format!("{}: body cut short", rec.name)))?;
        let Some(pb::sync_msg::Msg::Data(d)) = msg.msg else {
            return Err(bad(format!("{}: expected body data", rec.name)));
        };
        hasher.update(&d);
        if hasher.size > rec.size {
            return Err(bad(format!("{}: body longer than its record", rec.name)));
        }
        tmp.push(&d).await.map_err(io)?;
    }
    let (b3, crcs) = hasher.finish();
    if b3 != rec.blake3 || crcs != rec.block_crcs {
        return Err(Status::data_loss(format!(
            "{}: pushed body does not match its record's checksums",
            rec.name
        )));
    }
    Ok(tmp)
}

fn to_pb(h: Hashes) -> Vec<pb::SuffixHash> {
    h.into_iter()
        .map(|(s, h)| pb::SuffixHash {
            suffix: u32::from(s),
            hash: h.hash.to_vec().into(),
        })
        .collect()
}

/// Most partitions one BatchHashes request may name.
pub const MAX_BATCH_PARTS: usize = 4096;

fn decode_record(b: &[u8]) -> Result<ObjectRecord, Status> {
    let rec = ObjectRecord::decode(b).map_err(bad)?;
    if let Some(body) = &rec.inline {
        if body.len() as u64 != rec.size || blake3::hash(body).as_bytes() != &rec.blake3 {
            return Err(Status::data_loss(format!(
                "{}: pushed inline body does not match its record",
                rec.name
            )));
        }
    }
    Ok(rec)
}

#[tonic::async_trait]
impl Replication for ReplicationService {
    async fn batch_hashes(
        &self,
        req: Request<pb::BatchHashesRequest>,
    ) -> Result<Response<pb::BatchHashesReply>, Status> {
        let req = req.into_inner();
        let space = space_of(&req.ring)?;
        let dev = self.device(&req.device)?;
        if req.parts.len() > MAX_BATCH_PARTS {
            return Err(bad(format!(
                "at most {MAX_BATCH_PARTS} partitions per request"
            )));
        }
        let parts = blocking(&dev, move |dev| {
            req.parts
                .iter()
                .map(|&part| {
                    if req.suffixes {
                        let h = hashes::hashes(dev, space, part)?;
                        let d = hashes::partition_hash(&h);
                        Ok(pb::PartHashes {
                            part,
                            hash: if h.is_empty() { Vec::new() } else { d.to_vec() }.into(),
                            suffixes: to_pb(h),
                        })
                    } else {
                        let d = hashes::digest(dev, space, part)?;
                        Ok(pb::PartHashes {
                            part,
                            hash: d.map(|d| d.hash.to_vec()).unwrap_or_default().into(),
                            suffixes: Vec::new(),
                        })
                    }
                })
                .collect::<Result<Vec<_>, DeviceError>>()
        })
        .await?;
        Ok(Response::new(pb::BatchHashesReply { parts }))
    }

    async fn summaries(
        &self,
        req: Request<pb::SummariesRequest>,
    ) -> Result<Response<pb::SummariesReply>, Status> {
        let req = req.into_inner();
        let dev = self.device(&req.device)?;
        let suffixes: Vec<u16> = req
            .suffixes
            .iter()
            .filter(|&&s| s <= u32::from(hashes::MAX_SUFFIX))
            .map(|&s| s as u16)
            .collect();
        let space = object_space(&req.ring)?;
        let list = blocking(&dev, move |d| {
            hashes::summaries(d, space, req.part, &suffixes)
        })
        .await?;
        Ok(Response::new(pb::SummariesReply {
            objects: list
                .into_iter()
                .map(|(nh, ts, meta_ts, deleted, digest)| pb::Summary {
                    name_hash: nh.to_vec().into(),
                    ts,
                    meta_ts,
                    deleted,
                    digest: digest.to_vec().into(),
                })
                .collect(),
        }))
    }

    async fn sync(
        &self,
        req: Request<Streaming<pb::SyncMsg>>,
    ) -> Result<Response<pb::SyncReply>, Status> {
        let mut inbound = req.into_inner();
        let first = inbound.message().await?.ok_or_else(|| bad("empty sync"))?;
        let Some(pb::sync_msg::Msg::Target(t)) = first.msg else {
            return Err(bad("a sync starts with its target"));
        };
        let space = object_space(&t.ring)?;
        let dev = self.device(&t.device)?;
        let disk = Disk::new(dev.clone(), space);
        let mut applied = 0;
        while let Some(msg) = inbound.message().await? {
            match msg.msg {
                Some(pb::sync_msg::Msg::Record(b)) => {
                    let rec = decode_record(&b)?;
                    let body = if rec.has_file() {
                        Some(receive_body(&dev, &rec, &mut inbound).await?)
                    } else {
                        None
                    };
                    applied += apply_record(&disk, t.part, rec, body).await? as u64;
                }
                Some(pb::sync_msg::Msg::MetaRecord(b)) => {
                    let rec = ObjectRecord::decode(&b).map_err(bad)?;
                    applied += apply_meta(&disk, t.part, rec).await? as u64;
                }
                _ => return Err(bad("expected a record")),
            }
        }
        Ok(Response::new(pb::SyncReply { applied }))
    }

    async fn db_sync(
        &self,
        req: Request<pb::DbSyncRequest>,
    ) -> Result<Response<pb::SyncReply>, Status> {
        let req = req.into_inner();
        let kind =
            Kind::of(space_of(&req.ring)?).ok_or_else(|| bad("objects are pushed with Sync"))?;
        let dev = self.device(&req.device)?;
        let mut applied = 0;
        for d in &req.databases {
            applied += db::merge_dump(&dev, kind, req.part, d).await?;
        }
        Ok(Response::new(pb::SyncReply { applied }))
    }
}
