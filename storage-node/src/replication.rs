//! Replication: the `Replication` gRPC service (what a device holds, and taking pushed
//! copies) and the replicator worker that uses it.
//!
//! # A pass
//! For every partition a device holds (objects, container and account databases), the
//! replicator compares its hashes with each *other* primary's. It asks every peer device
//! once per pass for all the partitions they share ([`MAX_BATCH_PARTS`] at a time,
//! answered from the peer's cache), then repairs only the partitions that differ:
//! - objects: for each suffix that differs it fetches the peer's summaries of that suffix
//!   (name hash, timestamps, deletion) and streams over [`Sync`] only what the peer lacks
//!   or holds an older version of — whole objects, metadata-only updates, tombstones;
//! - databases: it pushes the partition's databases, which the peer merges row by row.
//!
//! Each node only *pushes*; a peer holding something newer pushes it back in its own pass.
//! A partition the device holds although the ring does not place it there (a handoff: a
//! write made while a primary was down, or a partition a rebalance moved away) is pushed
//! to every primary and, once all of them have it, removed locally. This is how data
//! follows the ring after `stratus ring rebalance`.
//!
//! After each pass the node reports to meta, per ring, the ring version the pass started
//! at and how many handoff partitions it still holds; `stratus ring rebalance` waits for
//! those to reach zero instead of making operators wait `min_part_hours`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocksdb::WriteBatch;

use stratus_core::ring::{Device as RingDevice, Ring};
use stratus_proto::storage as pb;
use stratus_proto::storage::replication_client::ReplicationClient;
use stratus_proto::storage::replication_server::Replication;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

use crate::auditor::quarantine;
use crate::bodyfile::TmpBody;
use crate::db::{self, Kind};
use crate::device::{blocking, write_sync, Device, DeviceError, CF_OBJECTS};
use crate::diskfile::{
    batch_record, data_file, name_hash, object_key, read_block, BodyHasher, ObjectRecord, BLOCK,
};
use crate::hashes::{self, suffix_of, Hashes, Space};
use crate::worker::{Ctx, Limiter, Worker};
use crate::Node;
use stratus_client::peers::MAX_MESSAGE_BYTES;
use stratus_client::records::{progress_key, Progress, RingProgress};

/// How long a hashes or summaries RPC may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Stores a pushed record (its body, if any, already written to `body`) if it is newer
/// than what the device holds. Returns whether it changed anything.
async fn apply_record(
    dev: &Arc<Device>,
    part: u32,
    rec: ObjectRecord,
    body: Option<TmpBody>,
) -> Result<bool, Status> {
    let hash = name_hash(&rec.name);
    let key = object_key(part, &hash);
    let io = |e| Status::from(DeviceError::Io(dev.name.clone(), e));
    // As in a PUT: the body is durable under its final name before a record names it.
    let wrote_file = body.is_some();
    if let Some(b) = body {
        b.finish(data_file(dev, part, &hash, rec.ts))
            .await
            .map_err(io)?;
    }
    let _g = dev.lock_for(&key).lock().await;
    let old = match dev.get(CF_OBJECTS, &key)? {
        Some(b) => ObjectRecord::decode(&b).ok(),
        None => None,
    };
    if old.as_ref().is_some_and(|o| o.ts >= rec.ts) {
        if wrote_file && old.as_ref().is_some_and(|o| o.ts != rec.ts) {
            let _ = std::fs::remove_file(data_file(dev, part, &hash, rec.ts));
        }
        return Ok(false);
    }
    let mut batch = WriteBatch::default();
    batch_record(dev, &mut batch, &key, Some(&rec), old.as_ref());
    write_sync(dev, batch).await?;
    dev.hashes.invalidate(Space::Object, part, suffix_of(&hash));
    if let Some(o) = old.filter(|o| o.has_file()) {
        let _ = std::fs::remove_file(data_file(dev, part, &hash, o.ts));
    }
    Ok(true)
}

/// Applies newer metadata to the version the device already holds.
async fn apply_meta(dev: &Arc<Device>, part: u32, rec: ObjectRecord) -> Result<bool, Status> {
    let hash = name_hash(&rec.name);
    let key = object_key(part, &hash);
    let _g = dev.lock_for(&key).lock().await;
    let Some(old) = dev
        .get(CF_OBJECTS, &key)?
        .and_then(|b| ObjectRecord::decode(&b).ok())
    else {
        return Ok(false);
    };
    if old.deleted || old.ts != rec.ts || old.meta_ts >= rec.meta_ts {
        return Ok(false);
    }
    let mut new = old.clone();
    new.meta_ts = rec.meta_ts;
    new.meta = rec.meta;
    new.content_type = rec.content_type;
    new.delete_at = rec.delete_at;
    let mut batch = WriteBatch::default();
    batch_record(dev, &mut batch, &key, Some(&new), Some(&old));
    write_sync(dev, batch).await?;
    dev.hashes.invalidate(Space::Object, part, suffix_of(&hash));
    Ok(true)
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

/// A peer's suffix hashes of one partition: suffix → hash.
type Remote = HashMap<u32, Vec<u8>>;

/// Every peer device's partition hashes (or why it could not be asked): (node, device) →
/// partition → its hash (empty: the peer holds nothing of it).
type PeerHashes = HashMap<(String, String), Result<HashMap<u32, Vec<u8>>, Status>>;

fn from_pb(s: Vec<pb::SuffixHash>) -> Remote {
    s.into_iter().map(|s| (s.suffix, s.hash.to_vec())).collect()
}

/// Whether a peer's hashes equal ours (every suffix, none extra on either side that we
/// hold; a suffix only the peer holds is the peer's to push).
fn differing(local: &Hashes, remote: &Remote) -> Vec<u16> {
    local
        .iter()
        .filter(|(s, h)| remote.get(&u32::from(**s)).map(Vec::as_slice) != Some(&h.hash[..]))
        .map(|(s, _)| *s)
        .collect()
}

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
        let list = blocking(&dev, move |d| hashes::summaries(d, req.part, &suffixes)).await?;
        Ok(Response::new(pb::SummariesReply {
            objects: list
                .into_iter()
                .map(|(nh, ts, meta_ts, deleted)| pb::Summary {
                    name_hash: nh.to_vec().into(),
                    ts,
                    meta_ts,
                    deleted,
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
        let dev = self.device(&t.device)?;
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
                    applied += apply_record(&dev, t.part, rec, body).await? as u64;
                }
                Some(pb::sync_msg::Msg::MetaRecord(b)) => {
                    let rec = ObjectRecord::decode(&b).map_err(bad)?;
                    applied += apply_meta(&dev, t.part, rec).await? as u64;
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

/// Default pacing of pushes: unlimited bytes, unlimited partitions.
pub const DEFAULT_BYTES_PER_SEC: f64 = 0.0;

/// The replicator worker.
#[derive(Default)]
pub struct Replicator {
    /// The last progress report written to meta (rewritten only when it changes).
    reported: Mutex<Option<(Progress, tokio::time::Instant)>>,
}

/// How often an unchanged progress report is rewritten anyway.
const PROGRESS_REFRESH: Duration = Duration::from_secs(300);

fn client(node: &Node, addr: &str) -> Result<ReplicationClient<Channel>, Status> {
    Ok(ReplicationClient::new(node.peers.channel(addr)?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<Response<T>, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(RPC_TIMEOUT, f).await {
        Ok(r) => r.map(Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded("timed out")),
    }
}

struct Pass<'a> {
    cx: &'a Ctx,
    me: String,
    bytes: tokio::sync::Mutex<Limiter>,
}

impl Pass<'_> {
    async fn pace_bytes(&self, n: usize) {
        self.cx.stats.bytes(n as u64);
        let rate = self.cx.settings.get("bytes_per_sec");
        self.bytes.lock().await.take(n as f64, rate).await;
    }

    fn is_me(&self, d: &RingDevice, dev: &Device) -> bool {
        d.node == self.me && d.name == dev.name
    }

    /// Replicates the partitions `parts` of `space` on `dev`. Asks every peer device once
    /// for its hash of each partition they share, and looks closer (suffix by suffix) only
    /// at the partitions whose hashes differ. Returns how many are still held as handoffs.
    async fn device_space(
        &self,
        dev: &Arc<Device>,
        space: Space,
        ring: &Ring,
        parts: Vec<u32>,
        parts_limiter: &mut Limiter,
    ) -> u64 {
        let parts: Vec<u32> = parts
            .into_iter()
            .filter(|&p| (p as usize) < ring.partitions())
            .collect();
        let digests = blocking(dev, move |d| {
            parts
                .into_iter()
                .map(|p| Ok((p, hashes::digest(d, space, p)?)))
                .collect::<Result<Vec<_>, DeviceError>>()
        });
        let local = match digests.await {
            Ok(l) => l,
            Err(e) => {
                self.cx.stats.error(e);
                return 0;
            }
        };
        // Which partitions each peer device shares with us.
        let mut by_peer: BTreeMap<(String, String), Vec<u32>> = BTreeMap::new();
        for (part, digest) in &local {
            if digest.is_none() {
                continue;
            }
            for p in ring.primaries(*part).filter(|p| !self.is_me(p, dev)) {
                by_peer
                    .entry((p.node.clone(), p.name.clone()))
                    .or_default()
                    .push(*part);
            }
        }
        let mut remote = PeerHashes::new();
        for ((node, name), parts) in by_peer {
            let r = self.batch_digests(&node, &name, space, &parts).await;
            remote.insert((node, name), r);
        }
        let mut handoffs = 0;
        for (part, digest) in local {
            parts_limiter
                .take(1.0, self.cx.settings.get("parts_per_sec"))
                .await;
            self.cx.stats.scanned(1);
            if let Some(digest) = digest {
                match self
                    .partition(dev, space, ring, part, &digest.hash, &remote)
                    .await
                {
                    Ok(true) => handoffs += 1,
                    Ok(false) => {}
                    Err(e) => {
                        handoffs += 1;
                        self.cx.stats.error(e);
                    }
                }
            }
            self.cx
                .stats
                .progress_done
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        handoffs
    }

    /// A peer device's partition hashes of `parts` (empty: it holds nothing of one), in
    /// requests of at most [`MAX_BATCH_PARTS`].
    async fn batch_digests(
        &self,
        node: &str,
        device: &str,
        space: Space,
        parts: &[u32],
    ) -> Result<HashMap<u32, Vec<u8>>, Status> {
        let mut c = client(&self.cx.node, node)?;
        let mut out = HashMap::new();
        for chunk in parts.chunks(MAX_BATCH_PARTS) {
            let r = timed(c.batch_hashes(pb::BatchHashesRequest {
                device: device.to_string(),
                ring: space.ring().into(),
                parts: chunk.to_vec(),
                suffixes: false,
            }))
            .await?;
            for p in r.parts {
                out.insert(p.part, p.hash.to_vec());
            }
        }
        Ok(out)
    }

    /// A peer device's suffix hashes of one partition.
    async fn suffix_hashes(
        &self,
        peer: &RingDevice,
        space: Space,
        part: u32,
    ) -> Result<Remote, Status> {
        let mut c = client(&self.cx.node, &peer.node)?;
        let r = timed(c.batch_hashes(pb::BatchHashesRequest {
            device: peer.name.clone(),
            ring: space.ring().into(),
            parts: vec![part],
            suffixes: true,
        }))
        .await?;
        Ok(r.parts
            .into_iter()
            .next()
            .map(|p| from_pb(p.suffixes))
            .unwrap_or_default())
    }

    /// Repairs one partition of `dev` against every other primary, given their partition
    /// hashes; returns whether the device still holds it as a handoff afterwards.
    async fn partition(
        &self,
        dev: &Arc<Device>,
        space: Space,
        ring: &Ring,
        part: u32,
        digest: &[u8; 16],
        remote: &PeerHashes,
    ) -> Result<bool, String> {
        let primaries: Vec<RingDevice> = ring.primaries(part).cloned().collect();
        let handoff = !primaries.iter().any(|p| self.is_me(p, dev));
        let mut all_ok = true;
        // This device's suffix hashes, read only if some peer differs.
        let mut local: Option<Hashes> = None;
        for p in primaries.iter().filter(|p| !self.is_me(p, dev)) {
            let theirs = match remote.get(&(p.node.clone(), p.name.clone())) {
                Some(Ok(m)) => Ok(m.get(&part).map(Vec::as_slice).unwrap_or_default()),
                Some(Err(e)) => Err(e.clone()),
                None => Err(Status::internal("peer not asked")),
            };
            let r = match theirs {
                Ok(theirs) if theirs == &digest[..] => Ok(0),
                Ok(_) => {
                    if local.is_none() {
                        let h = blocking(dev, move |d| hashes::hashes(d, space, part));
                        local = Some(h.await.map_err(|e| e.to_string())?);
                    }
                    let ours = local.as_ref().expect("just read");
                    match Kind::of(space) {
                        None => match self.suffix_hashes(p, space, part).await {
                            Ok(theirs) => self.push_objects(dev, part, ours, &theirs, p).await,
                            Err(e) => Err(e),
                        },
                        Some(kind) => self.push_dbs(dev, kind, part, p).await,
                    }
                }
                Err(e) => Err(e),
            };
            match r {
                Ok(n) => self.cx.stats.repaired(n),
                Err(e) => {
                    all_ok = false;
                    self.cx.stats.error(format!(
                        "{} partition {part} of {} → {}/{}: {}",
                        space.ring(),
                        dev.name,
                        p.node,
                        p.name,
                        e.message()
                    ));
                }
            }
        }
        if handoff && all_ok {
            let compared = match local {
                Some(h) => h,
                None => blocking(dev, move |d| hashes::hashes(d, space, part))
                    .await
                    .map_err(|e| e.to_string())?,
            };
            self.remove_handoff(dev, space, part, compared).await?;
            return Ok(false);
        }
        Ok(handoff)
    }

    /// Pushes to `peer` the objects of `part` it lacks or holds older; returns how many.
    async fn push_objects(
        &self,
        dev: &Arc<Device>,
        part: u32,
        local: &Hashes,
        remote: &Remote,
        peer: &RingDevice,
    ) -> Result<u64, Status> {
        let mut c = client(&self.cx.node, &peer.node)?;
        let differ = differing(local, remote);
        if differ.is_empty() {
            return Ok(0);
        }
        let theirs = timed(c.summaries(pb::SummariesRequest {
            device: peer.name.clone(),
            part,
            suffixes: differ.iter().map(|&s| u32::from(s)).collect(),
        }))
        .await?;
        let theirs: HashMap<Vec<u8>, (u64, u64)> = theirs
            .objects
            .into_iter()
            .map(|o| (o.name_hash.to_vec(), (o.ts, o.meta_ts)))
            .collect();
        let ours = blocking(dev, move |d| hashes::summaries(d, part, &differ)).await?;
        // (name hash, metadata only)
        let mut send = Vec::new();
        for (nh, ts, meta_ts, deleted) in ours {
            match theirs.get(&nh[..]) {
                None => send.push((nh, false)),
                Some(&(t, _)) if t < ts => send.push((nh, false)),
                Some(&(t, mt)) if t == ts && mt < meta_ts && !deleted => send.push((nh, true)),
                _ => {}
            }
        }
        if send.is_empty() {
            return Ok(0);
        }
        let (tx, rx) = mpsc::channel(4);
        let target = pb::SyncMsg {
            msg: Some(pb::sync_msg::Msg::Target(pb::SyncTarget {
                device: peer.name.clone(),
                part,
            })),
        };
        let _ = tx.send(target).await;
        let call = c.sync(ReceiverStream::new(rx));
        let produce = self.produce(dev, part, send, tx);
        let (reply, produced) = tokio::join!(call, produce);
        let applied = reply?.into_inner().applied;
        produced?;
        Ok(applied)
    }

    /// Streams the records (and bodies) named by `send` into `tx`, verifying every body
    /// block on the way: a rotten copy is quarantined here, never pushed.
    async fn produce(
        &self,
        dev: &Arc<Device>,
        part: u32,
        send: Vec<([u8; 16], bool)>,
        tx: mpsc::Sender<pb::SyncMsg>,
    ) -> Result<(), Status> {
        let msg = |m| pb::SyncMsg { msg: Some(m) };
        for (nh, meta_only) in send {
            let key = object_key(part, &nh);
            let Some(raw) = dev.get(CF_OBJECTS, &key)? else {
                continue; // gone since the summary: nothing to push
            };
            let Ok(rec) = ObjectRecord::decode(&raw) else {
                continue; // the auditor deals with it
            };
            if meta_only {
                let mut m = rec;
                m.inline = None;
                if tx
                    .send(msg(pb::sync_msg::Msg::MetaRecord(m.encode().into())))
                    .await
                    .is_err()
                {
                    return Ok(()); // the call ended; its status says why
                }
                continue;
            }
            if let Some(body) = &rec.inline {
                if blake3::hash(body).as_bytes() != &rec.blake3 {
                    let _ = quarantine(dev, part, &nh, rec.ts, "inline body fails BLAKE3").await;
                    continue;
                }
            }
            self.pace_bytes(raw.len()).await;
            if tx
                .send(msg(pb::sync_msg::Msg::Record(raw.into())))
                .await
                .is_err()
            {
                return Ok(());
            }
            if !rec.has_file() {
                continue;
            }
            let path = data_file(dev, part, &nh, rec.ts);
            let mut file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    let _ = quarantine(dev, part, &nh, rec.ts, "body file missing").await;
                    return Err(Status::data_loss(format!("{}: {e}", rec.name)));
                }
            };
            let mut block = 0u64;
            while block * BLOCK < rec.size {
                let (f, read) = read_block(file, &rec, block).await;
                let Ok(buf) = read else {
                    let _ = quarantine(dev, part, &nh, rec.ts, "block fails its CRC").await;
                    // Ending the stream mid-body makes the receiver drop the partial copy.
                    return Err(Status::data_loss(format!(
                        "{}: block {block} is damaged here; quarantined",
                        rec.name
                    )));
                };
                file = f.expect("a finished read gives the file back");
                self.pace_bytes(buf.len()).await;
                if tx
                    .send(msg(pb::sync_msg::Msg::Data(buf.into())))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
                block += 1;
            }
        }
        Ok(())
    }

    /// Pushes the databases of `part` to `peer` (whose hash differs); returns the rows it
    /// merged.
    async fn push_dbs(
        &self,
        dev: &Arc<Device>,
        kind: Kind,
        part: u32,
        peer: &RingDevice,
    ) -> Result<u64, Status> {
        let mut c = client(&self.cx.node, &peer.node)?;
        let ring = db::space(kind).ring();
        let dumps = blocking(dev, move |d| db::dump_partition(d, kind, part)).await?;
        let mut applied = 0;
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut size = 0;
        let mut iter = dumps.into_iter().peekable();
        while let Some(d) = iter.next() {
            size += d.len();
            batch.push(d);
            let full = iter
                .peek()
                .is_some_and(|n| size + n.len() > MAX_MESSAGE_BYTES / 2);
            if full || iter.peek().is_none() {
                self.pace_bytes(size).await;
                let req = pb::DbSyncRequest {
                    device: peer.name.clone(),
                    ring: ring.into(),
                    part,
                    databases: std::mem::take(&mut batch)
                        .into_iter()
                        .map(Into::into)
                        .collect(),
                };
                applied += timed(c.db_sync(req)).await?.applied;
                size = 0;
            }
        }
        Ok(applied)
    }

    /// Removes a handoff partition every primary now has. Only what was compared is
    /// removed: a record written since (or changed) stays for the next pass.
    async fn remove_handoff(
        &self,
        dev: &Arc<Device>,
        space: Space,
        part: u32,
        compared: Hashes,
    ) -> Result<(), String> {
        if let Some(kind) = Kind::of(space) {
            let n = blocking(dev, move |d| {
                // Unchanged since it was pushed (else the next pass pushes the change first).
                if hashes::hashes(d, space, part)? != compared {
                    return Ok(0);
                }
                db::remove_partition(d, kind, part)
            })
            .await
            .map_err(|e| e.to_string())?;
            tracing::info!(device = %dev.name, ring = space.ring(), part, rows = n, "handoff partition moved to its primaries");
            return Ok(());
        }
        let suffixes: Vec<u16> = compared.keys().copied().collect();
        let list = blocking(dev, move |d| hashes::summaries(d, part, &suffixes))
            .await
            .map_err(|e| e.to_string())?;
        let mut removed = 0;
        for (nh, ts, meta_ts, deleted) in list {
            let key = object_key(part, &nh);
            let _g = dev.lock_for(&key).lock().await;
            let Some(old) = dev
                .get(CF_OBJECTS, &key)
                .map_err(|e| e.to_string())?
                .and_then(|b| ObjectRecord::decode(&b).ok())
            else {
                continue;
            };
            if (old.ts, old.meta_ts, old.deleted) != (ts, meta_ts, deleted) {
                continue;
            }
            let mut batch = WriteBatch::default();
            batch_record(dev, &mut batch, &key, None, Some(&old));
            // Unsynced: if lost in a crash, the copy is pushed (a no-op) and removed again.
            dev.write(batch, false).map_err(|e| e.to_string())?;
            dev.hashes.invalidate(Space::Object, part, suffix_of(&nh));
            if old.has_file() {
                let _ = std::fs::remove_file(data_file(dev, part, &nh, old.ts));
            }
            removed += 1;
        }
        // Empty directories of the partition go too (non-empty ones fail harmlessly).
        let pdir = dev.root.join("objects").join(part.to_string());
        if let Ok(rd) = std::fs::read_dir(&pdir) {
            for s in rd.flatten() {
                if let Ok(hs) = std::fs::read_dir(s.path()) {
                    for h in hs.flatten() {
                        let _ = std::fs::remove_dir(h.path());
                    }
                }
                let _ = std::fs::remove_dir(s.path());
            }
        }
        let _ = std::fs::remove_dir(&pdir);
        tracing::info!(device = %dev.name, part, objects = removed, "handoff partition moved to its primaries");
        Ok(())
    }
}

#[tonic::async_trait]
impl Worker for Replicator {
    fn name(&self) -> &'static str {
        "replicator"
    }

    fn settings(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("bytes_per_sec", DEFAULT_BYTES_PER_SEC),
            ("parts_per_sec", 0.0),
        ]
    }

    async fn pass(&self, cx: &Ctx) {
        let Some(me) = cx.node.addr.get().cloned() else {
            return;
        };
        let pass = Pass {
            cx,
            me,
            bytes: tokio::sync::Mutex::new(Limiter::new()),
        };
        let devices = cx.node.present_devices();
        let mut work = Vec::new();
        let mut progress = Progress::default();
        for space in Space::ALL {
            let Some(ring) = cx.node.ring(space).current() else {
                continue;
            };
            progress.rings.insert(
                space.ring().to_string(),
                RingProgress {
                    version: ring.version(),
                    ..Default::default()
                },
            );
            for dev in &devices {
                match blocking(dev, move |d| hashes::local_partitions(d, space)).await {
                    Ok(parts) => work.push((dev.clone(), space, ring.clone(), parts)),
                    Err(e) => cx.stats.error(e),
                }
            }
        }
        let total: usize = work.iter().map(|w| w.3.len()).sum();
        cx.stats
            .progress_total
            .store(total as u64, std::sync::atomic::Ordering::Relaxed);
        let mut parts_limiter = Limiter::new();
        for (dev, space, ring, parts) in work {
            let p = progress
                .rings
                .get_mut(space.ring())
                .expect("inserted above");
            p.parts += parts.len() as u64;
            p.handoff_parts += pass
                .device_space(&dev, space, &ring, parts, &mut parts_limiter)
                .await;
        }
        crate::metrics::replication(&progress);
        self.report(cx, &pass.me, progress).await;
    }
}

impl Replicator {
    async fn report(&self, cx: &Ctx, me: &str, progress: Progress) {
        let due = match &*self.reported.lock().expect("report lock") {
            Some((last, at)) => *last != progress || at.elapsed() >= PROGRESS_REFRESH,
            None => true,
        };
        if !due {
            return;
        }
        let body = serde_json::to_vec(&progress).expect("plain struct serializes");
        match cx.node.meta.put(progress_key(me), body).await {
            Ok(_) => {
                *self.reported.lock().expect("report lock") =
                    Some((progress, tokio::time::Instant::now()))
            }
            Err(e) => cx.stats.error(format!("reporting progress to meta: {e}")),
        }
    }
}
