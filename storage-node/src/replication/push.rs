//! Pushing copies to a peer device whose hashes differ from ours.
//!
//! Objects: the peer's summaries of the differing suffixes say what it lacks or holds
//! older; only that is streamed over one `Sync` call — whole records (with their body
//! blocks, each verified on the way: a rotten copy is quarantined here, never pushed) or
//! metadata-only records. Databases: every database of the partition is dumped piece by
//! piece on a blocking thread (never whole in memory) and sent
//! in `DbSync` requests of at most half a message each; the peer merges them row by row.
//! Every byte pushed is paced by the replicator's `bytes_per_sec` setting.

use std::collections::HashMap;
use std::sync::Arc;

use stratus_client::peers::MAX_MESSAGE_BYTES;
use stratus_core::ring::Device as RingDevice;
use stratus_proto::storage as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::peer::{client, timed, Remote};
use crate::auditor::quarantine;
use crate::db::{self, Kind};
use crate::device::{blocking, Device, Space};
use crate::diskfile::{body_file, object_key, read_block, BlockError, ObjectRecord, BLOCK};
use crate::hashes::{self, Hashes};
use crate::worker::{Ctx, Limiter};

/// Whether a peer's hashes equal ours (every suffix, none extra on either side that we
/// hold; a suffix only the peer holds is the peer's to push).
fn differing(local: &Hashes, remote: &Remote) -> Vec<u16> {
    local
        .iter()
        .filter(|(s, h)| remote.get(&u32::from(**s)).map(Vec::as_slice) != Some(&h.hash[..]))
        .map(|(s, _)| *s)
        .collect()
}

/// A peer's summary of one object: (timestamp, digest, metadata timestamp), by name hash.
pub type Theirs = HashMap<Vec<u8>, (u64, Vec<u8>, u64)>;

/// What to push, given our summaries and the peer's: (name hash, metadata only). A
/// version the peer lacks or holds older (versions order by timestamp, then digest, as on
/// every node: see [`crate::diskfile::VersionOrder`]) goes whole; the same version with
/// newer metadata goes as metadata alone; anything else stays.
pub fn plan(ours: Vec<hashes::Summary>, theirs: &Theirs) -> Vec<([u8; 16], bool)> {
    let mut send = Vec::new();
    for (nh, ts, meta_ts, deleted, digest) in ours {
        match theirs.get(&nh[..]) {
            None => send.push((nh, false)),
            Some((t, d, mt)) => match (*t, d.as_slice()).cmp(&(ts, &digest[..])) {
                std::cmp::Ordering::Less => send.push((nh, false)),
                std::cmp::Ordering::Equal if *mt < meta_ts && !deleted => send.push((nh, true)),
                _ => {}
            },
        }
    }
    send
}

/// Pushes copies to peers for one pass; every push of the pass shares its byte pace.
pub(super) struct Pusher<'a> {
    cx: &'a Ctx,
    bytes: tokio::sync::Mutex<Limiter>,
}

impl<'a> Pusher<'a> {
    /// A pusher for a pass run by `cx`.
    pub(super) fn new(cx: &'a Ctx) -> Self {
        Pusher {
            cx,
            bytes: tokio::sync::Mutex::new(Limiter::new()),
        }
    }

    /// Counts `n` bytes pushed and waits as long as `bytes_per_sec` asks.
    async fn pace_bytes(&self, n: usize) {
        self.cx.stats.bytes(n as u64);
        let rate = self.cx.settings.get("bytes_per_sec");
        self.bytes.lock().await.take(n as f64, rate).await;
    }

    /// Pushes to `peer` the objects of `part` it lacks or holds older; returns how many.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn push_objects(
        &self,
        dev: &Arc<Device>,
        space: Space,
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
            ring: space.ring().into(),
        }))
        .await?;
        let theirs: Theirs = theirs
            .objects
            .into_iter()
            .map(|o| (o.name_hash.to_vec(), (o.ts, o.digest.to_vec(), o.meta_ts)))
            .collect();
        let ours = blocking(dev, move |d| hashes::summaries(d, space, part, &differ)).await?;
        let send = plan(ours, &theirs);
        if send.is_empty() {
            return Ok(0);
        }
        let (tx, rx) = mpsc::channel(4);
        let target = pb::SyncMsg {
            msg: Some(pb::sync_msg::Msg::Target(pb::SyncTarget {
                device: peer.name.clone(),
                part,
                ring: space.ring().into(),
            })),
        };
        let _ = tx.send(target).await;
        let call = c.sync(ReceiverStream::new(rx));
        let produce = self.produce(dev, space, part, send, tx);
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
        space: Space,
        part: u32,
        send: Vec<([u8; 16], bool)>,
        tx: mpsc::Sender<pb::SyncMsg>,
    ) -> Result<(), Status> {
        let msg = |m| pb::SyncMsg { msg: Some(m) };
        for (nh, meta_only) in send {
            let key = object_key(part, &nh);
            let Some(raw) = dev.get(space.cf(), &key)? else {
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
                    let _ = quarantine(
                        dev,
                        space,
                        part,
                        &nh,
                        rec.version(),
                        "inline body fails BLAKE3",
                    )
                    .await;
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
            let path = body_file(dev, space, part, &nh, &rec);
            let mut file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        let _ =
                            quarantine(dev, space, part, &nh, rec.version(), "body file missing")
                                .await;
                    } else {
                        dev.io_failed("reading a body to push", &e);
                    }
                    return Err(Status::data_loss(format!("{}: {e}", rec.name)));
                }
            };
            let mut block = 0u64;
            while block * BLOCK < rec.size {
                let (f, read) = read_block(file, &rec, block).await;
                let buf = match read {
                    Ok(buf) => buf,
                    Err(BlockError::Checksum) => {
                        let _ =
                            quarantine(dev, space, part, &nh, rec.version(), "block fails its CRC")
                                .await;
                        // Ending the stream mid-body makes the receiver drop the partial
                        // copy.
                        return Err(Status::data_loss(format!(
                            "{}: block {block} is damaged here; quarantined",
                            rec.name
                        )));
                    }
                    Err(BlockError::Read(e)) => {
                        dev.io_failed("reading a body to push", &e);
                        return Err(Status::data_loss(format!(
                            "{}: block {block} could not be read here: {e}",
                            rec.name
                        )));
                    }
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
    pub(super) async fn push_dbs(
        &self,
        dev: &Arc<Device>,
        kind: Kind,
        part: u32,
        peer: &RingDevice,
    ) -> Result<u64, Status> {
        let mut c = client(&self.cx.node, &peer.node)?;
        let ring = db::space(kind).ring();
        // The dump streams from a blocking thread through a short queue: at most a few
        // pieces and one message are in memory, however large the partition.
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
        let producer = blocking(dev, move |d| {
            db::dump_partition(d, kind, part, |piece| tx.blocking_send(piece).is_ok())
        });
        // The sender owns the queue's receiving end: if it fails, the queue closes and the
        // dump stops at its next piece instead of waiting forever for room.
        let sender = async move {
            let mut applied = 0;
            let mut batch: Vec<Vec<u8>> = Vec::new();
            let mut size = 0;
            let mut next = rx.recv().await;
            while let Some(d) = next {
                size += d.len();
                batch.push(d);
                next = rx.recv().await;
                let full = next
                    .as_ref()
                    .is_some_and(|n| size + n.len() > MAX_MESSAGE_BYTES / 2);
                if full || next.is_none() {
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
            Ok::<_, Status>(applied)
        };
        let (dumped, sent) = tokio::join!(producer, sender);
        // A failed send drops the queue, which ends the dump early: report the send.
        let applied = sent?;
        dumped?;
        Ok(applied)
    }
}
