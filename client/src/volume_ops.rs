//! The volume lifecycle, shared by the Cinder API in the proxy and the `stratus volume`
//! commands: create (blank, or a copy-on-write clone of a snapshot, a volume or an image
//! volume), snapshot, extend, flatten and delete.
//!
//! Creating a volume writes only its record: chunks are thin, so a volume of any size —
//! and any clone — is ready at once. A clone's record names its parent and the parent's
//! snapshot sequence; it shares the parent's lineage root, so storage nodes find the
//! parent's chunks beside its own.
//!
//! Deleting a volume removes its chunks from every device of the volume ring, then its
//! record. A volume that still has clones is hidden and kept (status `deleting`) until its
//! last clone is gone or flattened.

use std::time::Duration;

use stratus_core::id::new_uuid;
use stratus_proto::storage as pb;
use stratus_proto::storage::chunk_client::ChunkClient;
use tokio::task::JoinSet;

use crate::meta::MetaClient;
use crate::peers::Peers;
use crate::rings::{RingStore, RingStoreError};
use crate::volume_io::{Attach, VolumeIo, NODE_TIMEOUT};
use crate::volumes::{self, Parent, Records, Snapshot, Volume, VolumeError};

/// The largest volume, GiB.
pub const MAX_SIZE_GB: u64 = 16 * 1024;

/// How long a snapshot of an attached volume waits for its writer to confirm it.
pub const SNAPSHOT_CONFIRM: Duration = Duration::from_secs(10);

/// Why a volume operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// 400.
    #[error("{0}")]
    Invalid(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409 / 400 by the API's rules: the volume is not in a state that allows it.
    #[error("{0}")]
    State(String),
    /// 500/503.
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Record(#[from] VolumeError),
}

impl From<RingStoreError> for OpError {
    fn from(e: RingStoreError) -> Self {
        OpError::Failed(e.to_string())
    }
}

/// Where a new volume's content comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Blank,
    Snapshot(String),
    Volume(String),
    /// An image volume (see [`Volumes::image_volume`]), by the image's id.
    Image(String),
}

/// What a new volume is.
#[derive(Debug, Clone)]
pub struct NewVolume {
    pub name: Option<String>,
    pub description: Option<String>,
    /// GiB; at least the source's size.
    pub size_gb: u64,
    pub project_id: String,
    pub user_id: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub source: Source,
}

/// The volume service.
#[derive(Clone)]
pub struct Volumes {
    meta: MetaClient,
    pub vols: Records<Volume>,
    pub snaps: Records<Snapshot>,
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The id of the image volume holding image `image_id`.
pub fn image_volume_id(image_id: &str) -> String {
    format!("image-{image_id}")
}

impl Volumes {
    pub fn new(meta: MetaClient) -> Self {
        Self {
            vols: volumes::volumes(meta.clone()),
            snaps: volumes::snapshots(meta.clone()),
            meta,
        }
    }

    /// The meta client.
    pub fn meta(&self) -> &MetaClient {
        &self.meta
    }

    fn blank(id: String, new: &NewVolume) -> Volume {
        let now = now_us();
        Volume {
            v: 1,
            root: id.clone(),
            id,
            name: new.name.clone(),
            description: new.description.clone(),
            size_gb: new.size_gb,
            status: "available".into(),
            project_id: new.project_id.clone(),
            user_id: new.user_id.clone(),
            created_us: now,
            updated_us: now,
            metadata: new.metadata.clone(),
            availability_zone: "nova".into(),
            volume_type: "__DEFAULT__".into(),
            bootable: false,
            image_id: None,
            snapshot_id: None,
            source_volid: None,
            attachments: Vec::new(),
            parent: None,
            epoch: 0,
            writer: None,
            snap_seq: 0,
            snap_ack: 0,
            stale: Vec::new(),
            stale_since: Default::default(),
            read_only: false,
            hidden: false,
        }
    }

    /// Creates a volume; it is `available` at once (thin, and clones are copy-on-write).
    pub async fn create(&self, new: NewVolume) -> Result<Volume, OpError> {
        if new.size_gb == 0 || new.size_gb > MAX_SIZE_GB {
            return Err(OpError::Invalid(format!(
                "Invalid input received: size must be 1 to {MAX_SIZE_GB} GiB, not {}",
                new.size_gb
            )));
        }
        let id = new_uuid();
        let mut v = Self::blank(id, &new);
        let (parent, min_gb) = match &new.source {
            Source::Blank => (None, 0),
            Source::Snapshot(sid) => {
                let (s, _) = self.snapshot(sid).await?;
                if s.status != "available" {
                    return Err(OpError::State(format!(
                        "Invalid snapshot: snapshot {sid} is {}, not available.",
                        s.status
                    )));
                }
                v.snapshot_id = Some(sid.clone());
                (Some((s.volume_id.clone(), s.seq)), s.size_gb)
            }
            Source::Volume(src) => {
                let (sv, _) = self.get(src).await?;
                if !matches!(sv.status.as_str(), "available" | "in-use") {
                    return Err(OpError::State(format!(
                        "Invalid volume: volume {src} is {}.",
                        sv.status
                    )));
                }
                let seq = self.take_snapshot(src).await?;
                v.source_volid = Some(src.clone());
                v.bootable = sv.bootable;
                (Some((src.clone(), seq)), sv.size_gb)
            }
            Source::Image(image) => {
                let (iv, _) = self.get(&image_volume_id(image)).await?;
                if iv.status != "available" || iv.snap_seq == 0 {
                    return Err(OpError::State(format!(
                        "image {image} has not been imported yet"
                    )));
                }
                v.image_id = Some(image.clone());
                v.bootable = true;
                (Some((iv.id.clone(), iv.snap_seq)), iv.size_gb)
            }
        };
        if new.size_gb < min_gb {
            return Err(OpError::Invalid(format!(
                "Invalid input received: size {} GiB is smaller than the source's {min_gb} GiB.",
                new.size_gb
            )));
        }
        if let Some((pid, snap)) = parent {
            let (pv, _) = self.get(&pid).await?;
            v.root = pv.root.clone();
            v.parent = Some(Parent { volume: pid, snap });
        }
        if !self.vols.create(&v).await? {
            return Err(OpError::Failed(format!("volume id {} taken", v.id)));
        }
        Ok(v)
    }

    /// Creates the record of a volume made from image `new.source` (a [`Source::Image`])
    /// whose image volume is still being imported: `creating`, with no content yet.
    /// [`Volumes::finish_from_image`] makes it the image volume's clone once that is sealed.
    pub async fn create_awaiting_image(&self, new: NewVolume) -> Result<Volume, OpError> {
        let Source::Image(image) = &new.source else {
            return Err(OpError::Invalid("not a volume from an image".into()));
        };
        if new.size_gb == 0 || new.size_gb > MAX_SIZE_GB {
            return Err(OpError::Invalid(format!(
                "Invalid input received: size must be 1 to {MAX_SIZE_GB} GiB, not {}",
                new.size_gb
            )));
        }
        let mut v = Self::blank(new_uuid(), &new);
        v.status = "creating".into();
        v.image_id = Some(image.clone());
        v.bootable = true;
        if !self.vols.create(&v).await? {
            return Err(OpError::Failed(format!("volume id {} taken", v.id)));
        }
        Ok(v)
    }

    /// Makes a volume from [`Volumes::create_awaiting_image`] a clone of its image's
    /// volume, which must be sealed by now: `available`.
    pub async fn finish_from_image(&self, id: &str) -> Result<Volume, OpError> {
        let (v, _) = self.get(id).await?;
        let image = v.image_id.clone().unwrap_or_default();
        let (iv, _) = self.get(&image_volume_id(&image)).await?;
        if iv.status != "available" || iv.snap_seq == 0 {
            return Err(OpError::State(format!(
                "image {image} has not been imported yet"
            )));
        }
        if v.size_gb < iv.size_gb {
            return Err(OpError::Invalid(format!(
                "Invalid input received: size {} GiB is smaller than the image's {} GiB.",
                v.size_gb, iv.size_gb
            )));
        }
        let (v, _) = self
            .vols
            .update(id, |v| {
                (v.status == "creating" && v.parent.is_none()).then(|| {
                    v.root = iv.root.clone();
                    v.parent = Some(Parent {
                        volume: iv.id.clone(),
                        snap: iv.snap_seq,
                    });
                    v.status = "available".into();
                    v.updated_us = now_us();
                })
            })
            .await?
            .ok_or_else(|| OpError::State(format!("volume {id} is no longer being created")))?;
        Ok(v)
    }

    /// A volume by id (hidden ones included) and its revision.
    pub async fn get(&self, id: &str) -> Result<(Volume, i64), OpError> {
        self.vols
            .get(id)
            .await?
            .ok_or_else(|| OpError::NotFound(format!("Volume {id} could not be found.")))
    }

    /// A snapshot by id (its status brought up to date) and its revision.
    pub async fn snapshot(&self, id: &str) -> Result<(Snapshot, i64), OpError> {
        let (mut s, rev) = self
            .snaps
            .get(id)
            .await?
            .ok_or_else(|| OpError::NotFound(format!("Snapshot {id} could not be found.")))?;
        if s.status == "creating" {
            if let Some((v, _)) = self.vols.get(&s.volume_id).await? {
                if v.writer.is_none() || v.snap_ack >= s.seq {
                    s.status = "available".into();
                    s.updated_us = now_us();
                    if self.snaps.swap(&s, rev).await? {
                        if let Some(now) = self.snaps.get(id).await? {
                            return Ok(now);
                        }
                    }
                }
            }
        }
        Ok((s, rev))
    }

    /// Bumps the volume's snapshot sequence (O(1): chunks are preserved as they are
    /// written later) and, if a writer holds the volume, waits for it to confirm.
    async fn take_snapshot(&self, vol: &str) -> Result<u64, OpError> {
        let (v, _) = self
            .vols
            .update(vol, |v| {
                v.snap_seq += 1;
                v.updated_us = now_us();
                Some(())
            })
            .await?
            .ok_or_else(|| OpError::NotFound(format!("Volume {vol} could not be found.")))?;
        let seq = v.snap_seq;
        if v.writer.is_some() {
            let deadline = tokio::time::Instant::now() + SNAPSHOT_CONFIRM;
            loop {
                let (v, _) = self.get(vol).await?;
                if v.writer.is_none() || v.snap_ack >= seq {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(OpError::Failed(format!(
                        "the writer of volume {vol} did not confirm snapshot {seq} within {SNAPSHOT_CONFIRM:?}"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(seq)
    }

    /// Takes a snapshot of a volume.
    pub async fn create_snapshot(
        &self,
        vol: &str,
        name: Option<String>,
        description: Option<String>,
        metadata: serde_json::Map<String, serde_json::Value>,
        force: bool,
    ) -> Result<Snapshot, OpError> {
        let (v, _) = self.get(vol).await?;
        if v.hidden {
            return Err(OpError::NotFound(format!(
                "Volume {vol} could not be found."
            )));
        }
        match v.status.as_str() {
            "available" => {}
            "in-use" if force => {}
            s => {
                return Err(OpError::State(format!(
                    "Invalid volume: Volume {vol} status must be available{}, but current status is: {s}.",
                    if s == "in-use" { " (or in-use with force)" } else { "" }
                )))
            }
        }
        let seq = self.take_snapshot(vol).await?;
        let now = now_us();
        let s = Snapshot {
            v: 1,
            id: new_uuid(),
            volume_id: vol.to_string(),
            seq,
            name,
            description,
            status: "available".into(),
            size_gb: v.size_gb,
            project_id: v.project_id.clone(),
            created_us: now,
            updated_us: now,
            metadata,
        };
        if !self.snaps.create(&s).await? {
            return Err(OpError::Failed(format!("snapshot id {} taken", s.id)));
        }
        Ok(s)
    }

    /// Deletes a snapshot record. Its preserved chunks stay until the volume is deleted
    /// (a clone made from it may still read them).
    pub async fn delete_snapshot(&self, id: &str) -> Result<(), OpError> {
        let (_, rev) = self.snapshot(id).await?;
        if !self.snaps.delete(id, rev).await? {
            return Err(OpError::State(format!(
                "Snapshot {id} changed while being deleted; try again."
            )));
        }
        Ok(())
    }

    /// Grows an available, detached volume.
    pub async fn extend(&self, vol: &str, new_gb: u64) -> Result<Volume, OpError> {
        let mut why = None;
        let r = self
            .vols
            .update(vol, |v| {
                if v.status != "available" || v.writer.is_some() {
                    why = Some(OpError::State(format!(
                        "Invalid volume: Volume {vol} status must be available to extend, but current status is: {}{}.",
                        v.status,
                        if v.writer.is_some() { " (attached)" } else { "" }
                    )));
                    return None;
                }
                if new_gb <= v.size_gb || new_gb > MAX_SIZE_GB {
                    why = Some(OpError::Invalid(format!(
                        "Invalid input received: New size for extend must be greater than current size. (current: {}, extended: {new_gb}).",
                        v.size_gb
                    )));
                    return None;
                }
                v.size_gb = new_gb;
                v.updated_us = now_us();
                Some(())
            })
            .await?;
        match (r, why) {
            (Some((v, _)), _) => Ok(v),
            (None, Some(e)) => Err(e),
            (None, None) => Err(OpError::NotFound(format!(
                "Volume {vol} could not be found."
            ))),
        }
    }

    /// Copies every chunk a clone still reads from its ancestors into it, then cuts it
    /// loose (its parent may then be deleted).
    pub async fn flatten(&self, vol: &str, writer: &str) -> Result<Volume, OpError> {
        let (v, _) = self.get(vol).await?;
        let Some(parent) = v.parent.clone() else {
            return Ok(v);
        };
        if !self.children(vol).await?.is_empty() {
            return Err(OpError::State(format!(
                "volume {vol} has clones of its own: flatten them first"
            )));
        }
        let io = VolumeIo::attach_with(self.meta.clone(), vol, writer, Attach::WriteIfFree)
            .await
            .map_err(|e| OpError::Failed(e.to_string()))?;
        let step = stratus_core::volume::CHUNK_SIZE;
        let mut at = 0;
        let r = async {
            while at < io.size() {
                let n = step.min(io.size() - at);
                let data = io.read(at, n).await?;
                // Zeros need no copy: without a parent, what was never written reads as zeros.
                if data.iter().any(|&b| b != 0) {
                    io.write(at, &data, false).await?;
                }
                at += n;
            }
            io.flush().await
        }
        .await;
        let _ = io.detach().await;
        r.map_err(|e| OpError::Failed(format!("flattening {vol}: {e}")))?;
        let (v, _) = self
            .vols
            .update(vol, |v| {
                v.parent = None;
                v.updated_us = now_us();
                Some(())
            })
            .await?
            .ok_or_else(|| OpError::NotFound(format!("Volume {vol} could not be found.")))?;
        self.reap(&parent.volume).await?;
        Ok(v)
    }

    /// Volumes whose parent is `vol`.
    async fn children(&self, vol: &str) -> Result<Vec<Volume>, OpError> {
        Ok(self
            .vols
            .list()
            .await?
            .into_iter()
            .filter(|v| v.parent.as_ref().is_some_and(|p| p.volume == vol))
            .collect())
    }

    /// Deletes a volume (and, with `cascade`, its snapshots). Refused while attached or
    /// while it has snapshots; deferred while it has clones.
    pub async fn delete(&self, vol: &str, cascade: bool) -> Result<(), OpError> {
        let (v, _) = self.get(vol).await?;
        if !matches!(
            v.status.as_str(),
            "available" | "error" | "error_deleting" | "error_restoring" | "deleting"
        ) || (v.writer.is_some() && v.status != "deleting")
        {
            return Err(OpError::State(format!(
                "Invalid volume: Volume status must be available or error or error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots or be disassociated from snapshots after volume transfer, but current status is: {}{}.",
                v.status,
                if v.writer.is_some() { " (attached)" } else { "" }
            )));
        }
        let snaps: Vec<Snapshot> = self
            .snaps
            .list()
            .await?
            .into_iter()
            .filter(|s| s.volume_id == vol)
            .collect();
        if !snaps.is_empty() && !cascade {
            return Err(OpError::State(format!(
                "Invalid volume: Volume {vol} still has {} dependent snapshots.",
                snaps.len()
            )));
        }
        for s in snaps {
            self.delete_snapshot(&s.id).await?;
        }
        self.vols
            .update(vol, |v| {
                v.status = "deleting".into();
                v.hidden = true;
                v.updated_us = now_us();
                Some(())
            })
            .await?;
        self.reap(vol).await
    }

    /// Removes a deleting volume whose last clone is gone: its chunks everywhere, then its
    /// record; then its parent, if that was waiting for it.
    async fn reap(&self, vol: &str) -> Result<(), OpError> {
        let mut next = Some(vol.to_string());
        while let Some(id) = next.take() {
            let Some((v, _)) = self.vols.get(&id).await? else {
                return Ok(());
            };
            if v.status != "deleting" || !self.children(&id).await?.is_empty() {
                return Ok(());
            }
            if let Err(e) = self.remove_chunks(&id).await {
                self.vols
                    .update(&id, |v| {
                        v.status = "error_deleting".into();
                        Some(())
                    })
                    .await?;
                return Err(e);
            }
            let (_, rev) = self.get(&id).await?;
            self.vols.delete(&id, rev).await?;
            next = v.parent.map(|p| p.volume);
        }
        Ok(())
    }

    /// Removes a volume's chunks from every device of the volume ring.
    async fn remove_chunks(&self, vol: &str) -> Result<(), OpError> {
        let (ring, _) = RingStore::new(self.meta.clone()).current("volume").await?;
        let peers = std::sync::Arc::new(Peers::default());
        let mut js = JoinSet::new();
        for d in ring.devices() {
            let (node, device, vol) = (d.node.clone(), d.name.clone(), vol.to_string());
            let peers = peers.clone();
            js.spawn(async move {
                let call = async {
                    let mut c = ChunkClient::new(peers.channel(&node)?);
                    c.remove(pb::ChunkRemove {
                        device: device.clone(),
                        volume: vol,
                    })
                    .await
                };
                let r = tokio::time::timeout(NODE_TIMEOUT, call)
                    .await
                    .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("stalled")));
                (format!("{node}/{device}"), r)
            });
        }
        let mut failed = Vec::new();
        while let Some(j) = js.join_next().await {
            let (dev, r) = j.map_err(|e| OpError::Failed(e.to_string()))?;
            if let Err(e) = r {
                failed.push(format!("{dev}: {}", e.message()));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(OpError::Failed(format!(
                "could not remove volume {vol} from {}",
                failed.join("; ")
            )))
        }
    }

    /// The image volume of `image_id`, created (empty, `creating`) if it does not exist:
    /// the caller that created it imports the bytes and calls [`Volumes::seal_image_volume`].
    /// Answers the record and whether this call created it.
    pub async fn image_volume(
        &self,
        image_id: &str,
        size_gb: u64,
        project_id: &str,
    ) -> Result<(Volume, bool), OpError> {
        let id = image_volume_id(image_id);
        if let Some((v, _)) = self.vols.get(&id).await? {
            return Ok((v, false));
        }
        let mut v = Self::blank(
            id,
            &NewVolume {
                name: Some(format!("image {image_id}")),
                description: None,
                size_gb: size_gb.max(1),
                project_id: project_id.to_string(),
                user_id: String::new(),
                metadata: Default::default(),
                source: Source::Blank,
            },
        );
        v.status = "creating".into();
        v.hidden = true;
        v.image_id = Some(image_id.to_string());
        v.bootable = true;
        if self.vols.create(&v).await? {
            Ok((v, true))
        } else {
            let (v, _) = self.get(&v.id).await?;
            Ok((v, false))
        }
    }

    /// Marks an imported image volume read-only and takes the snapshot clones are made of.
    pub async fn seal_image_volume(&self, image_id: &str) -> Result<Volume, OpError> {
        let id = image_volume_id(image_id);
        let (v, _) = self
            .vols
            .update(&id, |v| {
                v.read_only = true;
                v.writer = None;
                v.snap_seq = v.snap_seq.max(1);
                v.snap_ack = v.snap_seq;
                v.status = "available".into();
                Some(())
            })
            .await?
            .ok_or_else(|| OpError::NotFound(format!("Volume {id} could not be found.")))?;
        Ok(v)
    }
}
