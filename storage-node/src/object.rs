//! The `Object` gRPC service: PUT (streamed, durable before it is acknowledged), GET/HEAD
//! (ranges, every block verified before it is sent), DELETE (tombstones) and POST.
//!
//! A write's record and its async pending are committed in one synced batch; the container
//! update is then sent (see [`crate::updater`]).

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use rocksdb::WriteBatch;
use stratus_core::timestamp::Timestamp;
use stratus_proto::storage as pb;
use stratus_proto::storage::object_server::Object;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auditor::quarantine;
use crate::bodyfile::TmpBody;
use crate::device::{Device, Space, CF_PENDING};
use crate::diskfile::{
    body_file, name_hash, object_key, read_block, BlockError, BodyHasher, ObjectRecord, BLOCK,
    INLINE_MAX,
};
use crate::engine::disk::Disk;
use crate::engine::{self, Change, Decide, Engine, Key, Outcome, Put};
use crate::updater::{send_container_update, Pending, SYNC_UPDATE_TIMEOUT};
use crate::Node;

/// The gRPC object service of one node.
pub struct ObjectService {
    node: Arc<Node>,
}

impl ObjectService {
    /// Serves `node`'s devices.
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

type Resp<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn bad(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg)
}

fn io_status(dev: &Device, e: std::io::Error) -> Status {
    dev.io_failed("writing a body", &e);
    crate::device::DeviceError::Io(dev.name.clone(), e).into()
}

/// How often (in body bytes) a body whose length was not announced re-checks free space.
const SPACE_CHECK_EVERY: u64 = 16 << 20;

/// The resolved location of one object on one device.
struct Loc {
    dev: Arc<Device>,
    space: Space,
    part: u32,
    hash: [u8; 16],
    key: Vec<u8>,
    path: String,
    t: pb::ObjectTarget,
}

impl Loc {
    fn new(node: &Node, t: Option<pb::ObjectTarget>) -> Result<Self, Status> {
        let t = t.ok_or_else(|| bad("missing target"))?;
        if t.account.is_empty() || t.container.is_empty() || t.object.is_empty() {
            return Err(bad("target needs account, container and object"));
        }
        // `/a/c/o` names one object only if neither the account nor the container holds
        // a `/`: otherwise (`b/x` in `a`/`c`) and (`x` in `a`/`c/b`) would share a record.
        if t.account.contains('/') || t.container.contains('/') {
            return Err(bad("account and container names cannot contain '/'"));
        }
        let space = Space::policy(t.policy)
            .ok_or_else(|| bad(format!("no storage policy {}", t.policy)))?;
        let dev = node.device(&t.device)?;
        let path = format!("/{}/{}/{}", t.account, t.container, t.object);
        let hash = name_hash(&path);
        Ok(Loc {
            key: object_key(t.part, &hash),
            space,
            part: t.part,
            dev,
            hash,
            path,
            t,
        })
    }

    fn load(&self) -> Result<Option<ObjectRecord>, Status> {
        Ok(engine::disk::load(&self.dev, self.space, &self.key)?)
    }

    /// The engine holding this object's copy.
    fn engine(&self) -> Disk {
        Disk::new(self.dev.clone(), self.space)
    }

    fn ekey(&self) -> Key {
        Key {
            part: self.part,
            hash: self.hash,
        }
    }

    /// The current record and, with `body`, its body file opened at once: an open file
    /// stays readable when a newer version replaces it, and a body removed between the
    /// record read and the open (a newer version committed meanwhile) sends it back to
    /// read the newer record, never to quarantine.
    #[allow(clippy::type_complexity)]
    fn open_current(
        &self,
        body: bool,
    ) -> Result<(Option<ObjectRecord>, Option<std::io::Result<std::fs::File>>), Status> {
        let mut rec = self.load()?;
        for _ in 0..3 {
            let Some(r) = rec.as_ref().filter(|r| body && r.has_file()) else {
                return Ok((rec, None));
            };
            match std::fs::File::open(body_file(&self.dev, self.space, self.part, &self.hash, r)) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let again = self.load()?;
                    if again.as_ref().map(ObjectRecord::version) == Some(r.version()) {
                        return Ok((rec, Some(Err(e))));
                    }
                    rec = again;
                }
                opened => return Ok((rec, Some(opened))),
            }
        }
        Ok((rec, None))
    }

    fn pending(&self, rec: &ObjectRecord) -> Pending {
        pending_for(&self.t, rec)
    }

    /// Commits what `decide` says replaces the stored record (see [`Engine::commit`]),
    /// then delivers the container update it queued (never under the object's lock: the
    /// container may live on this very device, behind the same stripe). Returns the
    /// outcome and whether the container replica has the row already.
    async fn commit(&self, node: &Node, decide: Decide) -> Result<(Outcome, bool), Status> {
        let out = self.engine().commit(self.ekey(), None, decide).await?;
        let updated = match &out {
            Outcome::Committed {
                pending: Some((k, p)),
                ..
            } => self.deliver(node, k, p).await?,
            _ => true,
        };
        Ok((out, updated))
    }

    /// Sends the container update `p` queued under `k`; a failed one stays queued for
    /// the updater. Returns whether it was delivered.
    async fn deliver(&self, node: &Node, k: &[u8], p: &Pending) -> Result<bool, Status> {
        fail::fail_point!("put-before-container-update", |_| crate::crash(
            "put-before-container-update"
        ));
        match send_container_update(node, p, SYNC_UPDATE_TIMEOUT).await {
            Ok(()) => {
                let mut b = WriteBatch::default();
                self.dev.batch_delete(&mut b, CF_PENDING, k);
                // Not synced: if lost, the pending is delivered again, harmlessly.
                self.dev.write(b, false)?;
                Ok(true)
            }
            Err(e) => {
                tracing::info!(object = %self.path, error = %e, "container update deferred");
                node.dirty.notify_one();
                Ok(false)
            }
        }
    }
}

/// The container update that records `rec` in the listing of `t`'s container.
fn pending_for(t: &pb::ObjectTarget, rec: &ObjectRecord) -> Pending {
    Pending {
        account: t.account.clone(),
        container: t.container.clone(),
        replica_index: t.replica_index,
        name: t.object.clone(),
        ts: rec.ts,
        size: listed_size(rec),
        content_type: listed_type(rec),
        etag: rec.etag.clone(),
        deleted: rec.deleted,
        queued: Timestamp::now().0,
        ct_ts: rec.ts,
    }
}

fn meta_items(meta: &[(String, String)]) -> Vec<pb::MetaItem> {
    meta.iter()
        .map(|(k, v)| pb::MetaItem {
            key: k.clone(),
            value: v.clone(),
            ts: 0,
        })
        .collect()
}

fn to_meta(rec: &ObjectRecord) -> pb::ObjectMeta {
    pb::ObjectMeta {
        found: true,
        deleted: rec.deleted,
        ts: rec.ts,
        meta_ts: rec.meta_ts,
        size: rec.size,
        content_type: rec.content_type.clone(),
        etag: rec.etag.clone(),
        meta: meta_items(&rec.meta),
        delete_at: rec.delete_at,
        digest: rec.digest().to_vec().into(),
    }
}

/// Receives the body after the header, then commits. Returns whether the container
/// replica was updated.
async fn receive(
    node: Arc<Node>,
    loc: Loc,
    h: pb::PutHeader,
    mut inbound: Streaming<pb::PutMsg>,
) -> Result<bool, Status> {
    let mut hasher = BodyHasher::new();
    let mut inline = Vec::new();
    let mut body: Option<TmpBody> = None;
    let footer = loop {
        let msg = inbound
            .message()
            .await?
            .ok_or_else(|| Status::aborted("the body ended without a footer"))?;
        match msg.msg {
            Some(pb::put_msg::Msg::Data(d)) => {
                hasher.update(&d);
                if h.content_length.is_some_and(|cl| hasher.size > cl) {
                    return Err(bad("body longer than its content length"));
                }
                if body.is_none() && (inline.len() + d.len()) as u64 > INLINE_MAX {
                    loc.dev
                        .check_space(h.content_length.unwrap_or(0).max(hasher.size))?;
                    let mut f = TmpBody::create(&loc.dev).map_err(|e| io_status(&loc.dev, e))?;
                    f.push(&inline).await.map_err(|e| io_status(&loc.dev, e))?;
                    inline = Vec::new();
                    body = Some(f);
                }
                match body.as_mut() {
                    Some(f) => {
                        // A body of unknown length (chunked) keeps the reserve as it grows.
                        let before = hasher.size - d.len() as u64;
                        if h.content_length.is_none()
                            && before / SPACE_CHECK_EVERY != hasher.size / SPACE_CHECK_EVERY
                        {
                            loc.dev.check_space(SPACE_CHECK_EVERY)?;
                        }
                        f.push(&d).await.map_err(|e| io_status(&loc.dev, e))?
                    }
                    None => inline.extend_from_slice(&d),
                }
            }
            Some(pb::put_msg::Msg::Footer(f)) => break f,
            _ => return Err(bad("expected data or a footer")),
        }
    };
    if let Some(cl) = h.content_length {
        if cl != hasher.size {
            return Err(bad(format!(
                "body is {} bytes, content length said {cl}",
                hasher.size
            )));
        }
    }
    let size = hasher.size;
    let (blake3, block_crcs) = hasher.finish();
    // The proxy hashed the bytes it sent; bytes damaged on the way (a bad NIC, memory,
    // a bug) must not be committed as if they were the client's.
    if !footer.blake3.is_empty() && footer.blake3[..] != blake3[..] {
        tracing::error!(object = %loc.path, device = %loc.dev.name, "body arrived damaged: its BLAKE3 differs from the proxy's");
        return Err(Status::data_loss(format!(
            "{}: the body arrived damaged (BLAKE3 differs from the proxy's); not stored",
            loc.path
        )));
    }
    let rec = ObjectRecord {
        name: loc.path.clone(),
        ts: h.ts,
        meta_ts: h.ts,
        deleted: false,
        size,
        content_type: h.content_type,
        etag: footer.etag,
        blake3,
        block_crcs,
        meta: h.meta.into_iter().map(|m| (m.key, m.value)).collect(),
        delete_at: h.delete_at,
        inline: body.is_none().then_some(inline),
        legacy_name: false,
    };
    if let Some(f) = body.as_mut() {
        f.sync().await.map_err(|e| io_status(&loc.dev, e))?;
    }
    fail::fail_point!("put-after-body-fsync", |_| crate::crash(
        "put-after-body-fsync"
    ));
    let pending = loc.pending(&rec);
    match engine::put(&loc.engine(), loc.ekey(), rec, body, Some(pending)).await? {
        Put::Stored {
            pending: Some((k, p)),
            ..
        } => loc.deliver(&node, &k, &p).await,
        Put::Stored { pending: None, .. } => Ok(true),
        // Already durable here (a retry, or a replica's push that came first).
        Put::Same => Ok(true),
        // A later version, or one with the same timestamp that orders after this one, is
        // committed: this PUT is not stored (its temporary body is gone) and the
        // committed body was never touched.
        Put::Superseded(old) => Err(conflict(&loc.path, old.as_ref())),
    }
}

/// 409 for a PUT that a stored version supersedes (the code a proxy counts as "a newer
/// version is there", as Swift's object server answers). The stored timestamp rides in
/// the message after `stored ts `.
fn conflict(path: &str, old: Option<&ObjectRecord>) -> Status {
    let ts = old.map_or(0, |o| o.ts);
    Status::already_exists(format!(
        "{path}: a version that supersedes this one is stored (stored ts {ts})"
    ))
}

/// How far ahead of a GET's reader the node asks the kernel to read.
const READAHEAD: u64 = 32 * BLOCK;

/// Reads `[start, end)` of a stored body, verifying each block touched, into `tx`. A copy
/// that fails its checksum is quarantined (the proxy reads another replica; the replicator
/// restores it). `opened` is the body file if the caller opened it already.
#[allow(clippy::too_many_arguments)]
async fn send_body(
    dev: Arc<Device>,
    space: Space,
    part: u32,
    hash: [u8; 16],
    rec: ObjectRecord,
    opened: Option<std::io::Result<std::fs::File>>,
    start: u64,
    end: u64,
    tx: mpsc::Sender<Result<pb::GetMsg, Status>>,
) {
    let data = |d: Vec<u8>| {
        Ok(pb::GetMsg {
            msg: Some(pb::get_msg::Msg::Data(d.into())),
        })
    };
    if let Some(body) = &rec.inline {
        let ok =
            body.len() as u64 == rec.size && rec.block_crcs.first() == Some(&crc32fast::hash(body));
        if ok {
            let _ = tx
                .send(data(body[start as usize..end as usize].to_vec()))
                .await;
            return;
        }
        let _ = tx
            .send(Err(Status::data_loss(format!(
                "{}: inline body fails its checksum",
                rec.name
            ))))
            .await;
        let _ = quarantine(
            &dev,
            space,
            part,
            &hash,
            rec.version(),
            "inline body fails its CRC",
        )
        .await;
        return;
    }
    let opened =
        opened.unwrap_or_else(|| std::fs::File::open(body_file(&dev, space, part, &hash, &rec)));
    let mut file = match opened {
        Ok(f) => f,
        Err(e) => {
            // A body its record names but that is not there is lost from this copy; any
            // other failure (EACCES, EIO) says nothing about the bytes: the copy stays.
            if e.kind() == std::io::ErrorKind::NotFound {
                let _ =
                    quarantine(&dev, space, part, &hash, rec.version(), "body file missing").await;
            } else {
                dev.io_failed("opening a body for GET", &e);
            }
            let _ = tx
                .send(Err(Status::data_loss(format!(
                    "{}: body file unreadable on {}: {e}",
                    rec.name, dev.name
                ))))
                .await;
            return;
        }
    };
    // Bodies are written around the page cache, so a GET reads from the disk: keep the
    // next READAHEAD bytes of the range being read in flight.
    let fd = {
        use std::os::fd::AsRawFd;
        file.as_raw_fd()
    };
    let will_need = |from: u64, to: u64| {
        if from < to {
            // SAFETY: an advisory call on a descriptor this function keeps open.
            unsafe {
                libc::posix_fadvise(
                    fd,
                    from as libc::off_t,
                    (to - from) as libc::off_t,
                    libc::POSIX_FADV_WILLNEED,
                )
            };
        }
    };
    will_need(start, end.min(start + READAHEAD));
    let mut block = start / BLOCK;
    while block * BLOCK < end {
        let b_start = block * BLOCK;
        let (f, read) = read_block(file, &rec, block).await;
        let buf = match read {
            Ok(buf) => buf,
            Err(BlockError::Read(e)) => {
                dev.io_failed("reading a body for GET", &e);
                let _ = tx
                    .send(Err(Status::data_loss(format!(
                        "{}: read failed: {e}",
                        rec.name
                    ))))
                    .await;
                return;
            }
            Err(BlockError::Checksum) => {
                tracing::error!(object = %rec.name, device = %dev.name, block, "block fails its checksum");
                let _ = tx
                    .send(Err(Status::data_loss(format!(
                        "{}: block {block} fails its checksum on {}",
                        rec.name, dev.name
                    ))))
                    .await;
                let _ = quarantine(
                    &dev,
                    space,
                    part,
                    &hash,
                    rec.version(),
                    "a block fails its CRC on GET",
                )
                .await;
                return;
            }
        };
        file = f.expect("a finished read gives the file back");
        will_need(
            (b_start + READAHEAD).max(start + READAHEAD),
            end.min(b_start + BLOCK + READAHEAD),
        );
        let from = start.saturating_sub(b_start) as usize;
        let to = (end - b_start).min(buf.len() as u64) as usize;
        let piece = if from == 0 && to == buf.len() {
            buf
        } else {
            buf[from..to].to_vec()
        };
        if tx.send(data(piece)).await.is_err() {
            return; // the reader went away
        }
        block += 1;
    }
}

#[tonic::async_trait]
impl Object for ObjectService {
    type PutStream = Resp<pb::PutAck>;
    type GetStream = Resp<pb::GetMsg>;

    async fn put(
        &self,
        req: Request<Streaming<pb::PutMsg>>,
    ) -> Result<Response<Self::PutStream>, Status> {
        let mut inbound = req.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| bad("empty put stream"))?;
        let Some(pb::put_msg::Msg::Header(h)) = first.msg else {
            return Err(bad("a put starts with its header"));
        };
        let loc = Loc::new(&self.node, h.target.clone())?;
        if h.ts == 0 {
            return Err(bad("a put needs a timestamp"));
        }
        loc.dev.check_space(h.content_length.unwrap_or(0))?;
        // Refused before the body moves when a later version is already here (the final
        // word is said under the lock, after the body).
        if let Some(old) = loc.load()?.filter(|o| o.ts > h.ts) {
            return Err(conflict(&loc.path, Some(&old)));
        }
        let (tx, rx) = mpsc::channel(2);
        let ready = pb::PutAck {
            stage: pb::put_ack::Stage::Ready as i32,
            container_updated: false,
        };
        let _ = tx.send(Ok(ready)).await;
        let node = self.node.clone();
        tokio::spawn(async move {
            let r = receive(node, loc, h, inbound)
                .await
                .map(|updated| pb::PutAck {
                    stage: pb::put_ack::Stage::Committed as i32,
                    container_updated: updated,
                });
            let _ = tx.send(r).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<Self::GetStream>, Status> {
        let req = req.into_inner();
        let loc = Loc::new(&self.node, req.target)?;
        loc.dev.check_present()?;
        let (rec, opened) = loc.open_current(!req.head_only)?;
        let (tx, rx) = mpsc::channel(4);
        let meta = rec.as_ref().map_or_else(pb::ObjectMeta::default, to_meta);
        let _ = tx
            .send(Ok(pb::GetMsg {
                msg: Some(pb::get_msg::Msg::Meta(meta)),
            }))
            .await;
        if let Some(rec) = rec.filter(|r| !r.deleted && !req.head_only) {
            let start = req.offset.unwrap_or(0).min(rec.size);
            let end = req
                .length
                .map_or(rec.size, |l| start.saturating_add(l))
                .min(rec.size);
            if start < end {
                tokio::spawn(send_body(
                    loc.dev.clone(),
                    loc.space,
                    loc.part,
                    loc.hash,
                    rec,
                    opened,
                    start,
                    end,
                    tx,
                ));
            }
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::WriteReply>, Status> {
        let req = req.into_inner();
        let loc = Loc::new(&self.node, req.target)?;
        // A tombstone needs no room: a full device still lets users free space.
        loc.dev.check_present()?;
        let (ekey, engine) = (loc.ekey(), loc.engine());
        let target = loc.t.clone();
        let (out, existed) = engine::delete(&engine, ekey, loc.path.clone(), req.ts, move |tomb| {
            Some(pending_for(&target, tomb))
        })
        .await?;
        let updated = match &out {
            Outcome::Committed {
                pending: Some((k, p)),
                ..
            } => loc.deliver(&self.node, k, p).await?,
            _ => true,
        };
        Ok(Response::new(pb::WriteReply {
            existed,
            container_updated: updated,
            sysmeta: Vec::new(),
        }))
    }

    async fn post(
        &self,
        req: Request<pb::PostRequest>,
    ) -> Result<Response<pb::WriteReply>, Status> {
        let req = req.into_inner();
        let loc = Loc::new(&self.node, req.target)?;
        loc.dev.check_space(0)?;
        let target = loc.t.clone();
        let decide: Decide = Box::new(move |old| {
            let mut rec = old.filter(|r| !r.deleted && r.meta_ts < req.ts)?.clone();
            rec.meta_ts = req.ts;
            // System metadata (a static large object's flag and totals) is set by the
            // object's PUT and outlives POSTs, which replace only user metadata (Swift's
            // rule).
            let mut meta: Vec<(String, String)> = rec
                .meta
                .iter()
                .filter(|(k, _)| is_sysmeta(k))
                .cloned()
                .collect();
            meta.extend(
                req.meta
                    .into_iter()
                    .filter(|m| !is_sysmeta(&m.key))
                    .map(|m| (m.key, m.value)),
            );
            rec.meta = meta;
            // A POST that sets the Content-Type tells the container, as Swift's object
            // server does: the stored version's row (its timestamp, size and etag) with
            // the new type, set at the POST's timestamp. Queued in the same write as the
            // record, like a PUT's.
            let pending = req.content_type.map(|ct| {
                rec.content_type = ct;
                let mut p = pending_for(&target, &rec);
                p.ct_ts = req.ts;
                p
            });
            rec.delete_at = req.delete_at;
            Some(Change { rec, pending })
        });
        let (out, updated) = loc.commit(&self.node, decide).await?;
        let stored = match out {
            Outcome::Committed { new, .. } => new,
            Outcome::Declined { current } => match current {
                Some(r) if !r.deleted => r,
                _ => return Err(Status::not_found(format!("{} not found", loc.path))),
            },
        };
        let sysmeta: Vec<(String, String)> = stored
            .meta
            .into_iter()
            .filter(|(k, _)| k.starts_with("x-object-sysmeta-"))
            .collect();
        Ok(Response::new(pb::WriteReply {
            existed: true,
            container_updated: updated,
            sysmeta: meta_items(&sysmeta),
        }))
    }
}

/// Deletes the object at `key` on `dev` if its current version expires at `delete_at`
/// (the expirer's job): a tombstone at the expiry time, and the container row updated
/// like any DELETE. Returns whether it expired something.
pub async fn expire(
    node: &Node,
    dev: &Arc<Device>,
    space: Space,
    key: &[u8],
    delete_at: u64,
) -> Result<bool, Status> {
    let Some((part, _)) = crate::diskfile::key_hash(key) else {
        return Ok(false);
    };
    let Space::Object(policy) = space else {
        return Ok(false);
    };
    let Some(rec) = dev
        .get(space.cf(), key)?
        .and_then(|b| ObjectRecord::decode(&b).ok())
    else {
        return Ok(false);
    };
    let mut names = rec.name.splitn(4, '/').skip(1);
    let (Some(account), Some(container), Some(object)) = (names.next(), names.next(), names.next())
    else {
        return Ok(false);
    };
    // This copy updates the container replica of the same index, as its PUT did; a
    // handoff copy leaves listings to the primaries.
    let me = node.addr.get().cloned().unwrap_or_default();
    let index = node.ring(space).current().and_then(|r| {
        r.primaries(part)
            .position(|d| crate::identity::is_mine(d, &me, dev))
    });
    let t = pb::ObjectTarget {
        device: dev.name.clone(),
        part,
        account: account.to_string(),
        container: container.to_string(),
        object: object.to_string(),
        replica_index: index.unwrap_or(0) as u32,
        policy: u32::from(policy),
    };
    let loc = Loc::new(node, Some(t))?;
    let (name, target, update) = (loc.path.clone(), loc.t.clone(), index.is_some());
    let decide: Decide = Box::new(move |old| {
        let old = old.filter(|o| !o.deleted && o.delete_at == delete_at)?;
        // The expiry time is when it was deleted (so every replica writes the same
        // tombstone), unless the version is newer than that.
        let ts = (delete_at.saturating_mul(1_000_000)).max(old.meta_ts + 1);
        let rec = engine::tombstone(name, ts);
        let pending = update.then(|| pending_for(&target, &rec));
        Some(Change { rec, pending })
    });
    let (out, _) = loc.commit(node, decide).await?;
    Ok(matches!(out, Outcome::Committed { .. }))
}

/// Metadata a POST keeps: `X-Object-Sysmeta-*` and `X-Static-Large-Object`.
pub fn is_sysmeta(key: &str) -> bool {
    key.starts_with("x-object-sysmeta-") || key == "x-static-large-object"
}

/// The content type a container row keeps: a static large object's carries its SLO ETag
/// as `;slo_etag=...` (as Swift keeps it), which listings show as a key of its own; a
/// symlink's carries its target the same way (`;symlink_target=container/object`, then
/// `;symlink_target_account=`, and for a static link `;symlink_target_etag=` and
/// `;symlink_target_bytes=`, with the `slo_etag` of a target that is an SLO), as Swift
/// keeps them with the row's ETag. Targets are stored percent-quoted and ETags hold no
/// `;`, so the parameters split cleanly.
pub fn listed_type(rec: &ObjectRecord) -> String {
    let get = |key: &str| {
        rec.meta
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    let mut out = rec.content_type.clone();
    let slo = get("x-object-sysmeta-slo-etag")
        .or_else(|| get("x-object-sysmeta-symlink-target-slo-etag"));
    if let Some(e) = slo {
        out.push_str(&format!(";slo_etag={e}"));
    }
    if let Some(t) = get("x-object-sysmeta-symlink-target") {
        out.push_str(&format!(";symlink_target={t}"));
        if let Some(a) = get("x-object-sysmeta-symlink-target-account") {
            out.push_str(&format!(";symlink_target_account={a}"));
        }
        if let (Some(e), Some(b)) = (
            get("x-object-sysmeta-symlink-target-etag"),
            get("x-object-sysmeta-symlink-target-bytes"),
        ) {
            out.push_str(&format!(
                ";symlink_target_etag={e};symlink_target_bytes={b}"
            ));
        }
    }
    out
}

/// The size a container listing shows: a static large object's manifest counts as the
/// total of its segments (what a GET returns, as Swift lists it).
pub fn listed_size(rec: &ObjectRecord) -> u64 {
    rec.meta
        .iter()
        .find(|(k, _)| k == "x-object-sysmeta-slo-size")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(rec.size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ct: &str, meta: &[(&str, &str)]) -> ObjectRecord {
        ObjectRecord {
            content_type: ct.into(),
            meta: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    /// A row's content type carries what listings show of SLOs and symlinks, in the order
    /// the proxy reads it back; plain objects list their type alone.
    #[test]
    fn listed_types_carry_slo_and_symlink_keys() {
        assert_eq!(listed_type(&rec("text/plain", &[])), "text/plain");
        assert_eq!(
            listed_type(&rec("a/b", &[("x-object-sysmeta-slo-etag", "s")])),
            "a/b;slo_etag=s"
        );
        assert_eq!(
            listed_type(&rec(
                "application/symlink",
                &[("x-object-sysmeta-symlink-target", "c/o%20x")]
            )),
            "application/symlink;symlink_target=c/o%20x"
        );
        let static_link = rec(
            "a/b",
            &[
                ("x-object-sysmeta-symlink-target", "c/o"),
                ("x-object-sysmeta-symlink-target-account", "AUTH_b"),
                ("x-object-sysmeta-symlink-target-etag", "e"),
                ("x-object-sysmeta-symlink-target-bytes", "5"),
                ("x-object-sysmeta-symlink-target-slo-etag", "s"),
            ],
        );
        assert_eq!(
            listed_type(&static_link),
            "a/b;slo_etag=s;symlink_target=c/o;symlink_target_account=AUTH_b;\
             symlink_target_etag=e;symlink_target_bytes=5"
        );
    }
}
