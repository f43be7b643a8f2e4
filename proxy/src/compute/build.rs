//! The build of a new server, run in a task after `POST /servers` answered:
//!
//! 1. **Placement** (task `scheduling`): [`Compute::schedule`] picks a host for the
//!    flavor, the zone and the image's `hypervisor_type`, reserves the flavor on it and
//!    writes `host` with task `block_device_mapping`, in one meta transaction. No host →
//!    `ERROR`, fault 500 "No valid host was found. …".
//! 2. **Disks** (task `block_device_mapping`): new volumes are made (from an image by the
//!    Cinder module's [`crate::volume::import::create`], a copy-on-write clone of the
//!    image's sealed image volume; from a snapshot; blank), a volume made from an image is
//!    waited for until `available` (at most [`VOLUME_WAIT`]: the image's first import may
//!    take a while), and every volume is marked `in-use` by the server
//!    ([`reserve_volume`]).
//! 3. **Hand-off**: the disks (state `attaching`) and task `spawning` are written; the
//!    agent of the host boots the guest and writes `ACTIVE`.
//!
//! A failure in 2 or 3 leaves the server `ERROR` with a fault, unplaced (its reservation
//! given back, `host` cleared, so no agent acts on it and a delete is immediate), with
//! the volumes it reserved released and the ones it made deleted again.
//!
//! A delete during the build: while the server is unplaced the API retires it at once
//! (placement then finds it gone, or placed it a moment before: the task sees `want:
//! deleted` and retires it); once placed, the API only marks it `want: deleted` and this
//! task, seeing that between steps, cleans up and retires it. A proxy that dies
//! mid-build leaves the server in `block_device_mapping`; a delete of such a server
//! after [`super::servers::STALE_BUILD_US`] retires it (volumes the build had made then
//! stay behind, visible in the volume API).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Map;
use stratus_client::compute::{
    now_us, release_volume, reserve_volume, retire, Compute, Disk, Ratios, Request, ScheduleError,
    Want,
};
use stratus_client::identity::TokenClaims;
use stratus_client::volume_ops::{NewVolume, OpError, Source, Volumes};

use super::cinder_req;
use crate::proxy::Proxy;

/// Task state while the server is being placed.
pub const SCHEDULING: &str = "scheduling";
/// Task state while its disks are being made (placed, not yet the agent's).
pub const BLOCK_DEVICE_MAPPING: &str = "block_device_mapping";
/// Task state once the agent of its host is to boot it.
pub const SPAWNING: &str = "spawning";

/// The longest a build waits for the volumes it made from images to be `available`.
pub const VOLUME_WAIT: Duration = Duration::from_secs(300);
/// How often it looks.
const WAIT_STEP: Duration = Duration::from_millis(500);

/// Where a disk of a new server comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum DiskSource {
    /// A new volume cloned from image `image`.
    Image { image: String, size_gb: u64 },
    /// An existing volume, as it is.
    Volume(String),
    /// A new volume from a snapshot.
    Snapshot { snapshot: String, size_gb: u64 },
    /// A new blank volume.
    Blank { size_gb: u64 },
}

/// One disk of a new server, as [`super::create::plan`] worked it out.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedDisk {
    pub source: DiskSource,
    /// `vda`, `vdb`, …
    pub device: String,
    pub boot_index: Option<i32>,
    pub delete_on_termination: bool,
}

/// What a build needs.
pub struct Job {
    pub server_id: String,
    /// Who asked (volumes are made in their name, with their rights on images).
    pub caller: TokenClaims,
    pub project: String,
    pub host_url: String,
    pub request: Request,
    pub disks: Vec<PlannedDisk>,
}

/// Why a build stopped.
enum Abort {
    /// The server was deleted (or changed hands) meanwhile.
    Deleted,
    /// The build failed: the fault's message.
    Failed(String),
}

/// What a build did that a failure must undo.
#[derive(Default)]
struct Progress {
    /// Volumes it made.
    made: Vec<String>,
    /// Volumes it marked `in-use` by the server.
    reserved: Vec<String>,
}

/// Runs the build of `job` to the hand-off or to `ERROR`.
pub async fn run(p: Arc<Proxy>, job: Job) {
    let compute = p.compute.compute();
    let id = job.server_id.as_str();
    let placed = compute
        .schedule(id, &job.request, Ratios::default(), |s| {
            s.task_state = Some(BLOCK_DEVICE_MAPPING.into());
        })
        .await;
    let server = match placed {
        Ok(s) => s,
        Err(ScheduleError::Gone(_)) => {
            tracing::info!(server = id, "server deleted before it was placed");
            return;
        }
        Err(ScheduleError::NoValidHost(why)) => {
            tracing::warn!(server = id, %why, "no host for the server");
            let msg = format!("No valid host was found. {why}");
            give_up(&p, id, None, Progress::default(), Some(msg)).await;
            return;
        }
        Err(e @ ScheduleError::Record(_)) => {
            tracing::error!(server = id, error = %e, "placing the server failed");
            let msg = format!("Build of instance {id} aborted: placing it failed: {e}");
            give_up(&p, id, None, Progress::default(), Some(msg)).await;
            return;
        }
    };
    let host = server.host.clone().unwrap_or_default();
    tracing::info!(server = id, host = %host, "server placed");
    if server.want == Want::Deleted {
        give_up(&p, id, Some(&host), Progress::default(), None).await;
        return;
    }
    let mut progress = Progress::default();
    let disks = match make_disks(&p, &job, &host, &mut progress).await {
        Ok(d) => d,
        Err(Abort::Deleted) => {
            give_up(&p, id, Some(&host), progress, None).await;
            return;
        }
        Err(Abort::Failed(why)) => {
            tracing::error!(server = id, error = %why, "making the server's disks failed");
            let msg = format!("Build of instance {id} aborted: {why}");
            give_up(&p, id, Some(&host), progress, Some(msg)).await;
            return;
        }
    };
    let written = compute
        .servers
        .update(id, |s| {
            (s.want != Want::Deleted && s.task_state.as_deref() == Some(BLOCK_DEVICE_MAPPING)).then(
                || {
                    s.disks = disks.clone();
                    s.task_state = Some(SPAWNING.into());
                    s.updated_us = now_us();
                },
            )
        })
        .await;
    match written {
        Ok(Some(_)) => {
            tracing::info!(server = id, host = %host, disks = disks.len(), "server handed to its host");
        }
        Ok(None) => give_up(&p, id, Some(&host), progress, None).await,
        Err(e) => {
            let msg = format!("Build of instance {id} aborted: recording its disks failed: {e}");
            tracing::error!(server = id, error = %e, "recording the server's disks failed");
            give_up(&p, id, Some(&host), progress, Some(msg)).await;
        }
    }
}

/// `Abort::Deleted` if the server was deleted (or is no longer being built by us).
async fn still_wanted(compute: &Compute, id: &str) -> Result<(), Abort> {
    match compute.servers.get(id).await {
        Ok(Some((s, _)))
            if s.want != Want::Deleted && s.task_state.as_deref() == Some(BLOCK_DEVICE_MAPPING) =>
        {
            Ok(())
        }
        Ok(_) => Err(Abort::Deleted),
        // A meta hiccup is no reason to abandon a build; the next look decides.
        Err(e) => {
            tracing::warn!(server = id, error = %e, "reading the server during its build");
            Ok(())
        }
    }
}

/// Makes (or takes) every disk of the server, waits for them, and marks them in use.
async fn make_disks(
    p: &Arc<Proxy>,
    job: &Job,
    host: &str,
    progress: &mut Progress,
) -> Result<Vec<Disk>, Abort> {
    let compute = p.compute.compute();
    let vols = &p.compute.vols;
    let id = job.server_id.as_str();
    let cinder = cinder_req(p, job.caller.clone(), &job.project, &job.host_url);
    let new = |size_gb: u64, source: Source, name: Option<String>| NewVolume {
        name,
        description: None,
        size_gb,
        project_id: job.project.clone(),
        user_id: job.caller.user_id.clone(),
        metadata: Map::new(),
        source,
    };
    let mut volume_ids = Vec::with_capacity(job.disks.len());
    let mut from_images = Vec::new();
    for d in &job.disks {
        still_wanted(compute, id).await?;
        let vol = match &d.source {
            DiskSource::Volume(v) => v.clone(),
            DiskSource::Image { image, size_gb } => {
                let v = crate::volume::import::create(
                    &cinder,
                    new(*size_gb, Source::Image(image.clone()), None),
                    image,
                    Some(*size_gb),
                )
                .await
                .map_err(|e| {
                    Abort::Failed(format!("making a volume of image {image}: {}", e.message))
                })?;
                progress.made.push(v.id.clone());
                from_images.push(v.id.clone());
                v.id
            }
            DiskSource::Snapshot { snapshot, size_gb } => {
                let v = vols
                    .create(new(*size_gb, Source::Snapshot(snapshot.clone()), None))
                    .await
                    .map_err(|e| {
                        Abort::Failed(format!("making a volume of snapshot {snapshot}: {e}"))
                    })?;
                progress.made.push(v.id.clone());
                v.id
            }
            DiskSource::Blank { size_gb } => {
                let name = Some(format!("{id}-blank-vol"));
                let v = vols
                    .create(new(*size_gb, Source::Blank, name))
                    .await
                    .map_err(|e| Abort::Failed(format!("making a blank volume: {e}")))?;
                progress.made.push(v.id.clone());
                v.id
            }
        };
        volume_ids.push(vol);
    }
    wait_available(compute, vols, id, &from_images).await?;
    still_wanted(compute, id).await?;
    let mut disks = Vec::with_capacity(job.disks.len());
    for (d, vol) in job.disks.iter().zip(&volume_ids) {
        let attachment = reserve_volume(&vols.vols, vol, id, Some(host), &d.device)
            .await
            .map_err(|e| Abort::Failed(e.to_string()))?;
        progress.reserved.push(vol.clone());
        disks.push(Disk {
            volume_id: vol.clone(),
            device: d.device.clone(),
            boot_index: d.boot_index,
            delete_on_termination: d.delete_on_termination,
            state: "attaching".into(),
            attachment_id: attachment,
        });
    }
    Ok(disks)
}

/// Waits until every volume of `ids` is `available` (at most [`VOLUME_WAIT`] in all).
async fn wait_available(
    compute: &Compute,
    vols: &Volumes,
    server: &str,
    ids: &[String],
) -> Result<(), Abort> {
    let started = Instant::now();
    let mut attempts = 0u64;
    for vol in ids {
        loop {
            attempts += 1;
            let status = match vols.vols.get(vol).await {
                Ok(Some((v, _))) => v.status,
                Ok(None) => return Err(Abort::Failed(format!("volume {vol} vanished"))),
                Err(e) => {
                    tracing::warn!(server, volume = %vol, error = %e, "reading a new volume");
                    "unknown".into()
                }
            };
            match status.as_str() {
                "available" => break,
                "creating" | "unknown" => {}
                other => {
                    return Err(Abort::Failed(format!(
                        "Volume {vol} did not finish being created: its status is {other}."
                    )))
                }
            }
            if started.elapsed() >= VOLUME_WAIT {
                return Err(Abort::Failed(format!(
                    "Volume {vol} did not finish being created even after we waited {} seconds or {attempts} attempts. And its status is {status}.",
                    started.elapsed().as_secs()
                )));
            }
            still_wanted(compute, server).await?;
            tokio::time::sleep(WAIT_STEP).await;
        }
    }
    Ok(())
}

/// Deletes a volume a failed build made (one still `creating` is marked `error` first:
/// its import task then leaves it alone).
async fn discard(vols: &Volumes, vol: &str) {
    let marked = vols
        .vols
        .update(vol, |v| {
            (v.status == "creating").then(|| {
                v.status = "error".into();
                v.updated_us = now_us();
            })
        })
        .await;
    if let Err(e) = marked {
        tracing::warn!(volume = vol, error = %e, "marking a build's volume failed");
    }
    match vols.delete(vol, false).await {
        Ok(()) | Err(OpError::NotFound(_)) => {}
        Err(e) => tracing::warn!(volume = vol, error = %e, "deleting a failed build's volume"),
    }
}

/// Undoes a build: releases and deletes its volumes, gives the host's reservation back,
/// and either retires the server (deleted meanwhile) or leaves it `ERROR` with `fault`
/// (500), unplaced.
async fn give_up(
    p: &Arc<Proxy>,
    id: &str,
    host: Option<&str>,
    progress: Progress,
    fault: Option<String>,
) {
    let compute = p.compute.compute();
    let vols = &p.compute.vols;
    for vol in &progress.reserved {
        if let Err(e) = release_volume(&vols.vols, vol, id).await {
            tracing::warn!(server = id, volume = %vol, error = %e, "releasing a failed build's volume");
        }
    }
    for vol in &progress.made {
        discard(vols, vol).await;
    }
    let (mut deleted, mut present) = (false, false);
    let marked = compute
        .servers
        .update(id, |s| {
            present = true;
            if s.want == Want::Deleted {
                deleted = true;
                return None;
            }
            // Someone else (an admin's reset) has it now.
            if !matches!(
                s.task_state.as_deref(),
                Some(SCHEDULING | BLOCK_DEVICE_MAPPING)
            ) {
                return None;
            }
            let msg = fault
                .clone()
                .unwrap_or_else(|| format!("Build of instance {id} aborted."));
            s.set_error(500, msg);
            s.host = None;
            Some(())
        })
        .await;
    // Whether nothing holds the reservation any more: the record was made unplaced, is
    // to be retired, or is gone (the API retired it while placement committed, so its
    // retire did not see the host).
    let released = match marked {
        Ok(m) => m.is_some() || deleted || !present,
        Err(e) => {
            tracing::error!(server = id, error = %e, "could not mark a failed build ERROR");
            false
        }
    };
    if let Some(h) = host.filter(|_| released) {
        if let Err(e) = compute.release(h, id).await {
            tracing::error!(server = id, host = h, error = %e, "could not give back a failed build's reservation");
        }
    }
    if deleted {
        match retire(compute, vols, id).await {
            Ok(()) => tracing::info!(server = id, "server deleted during its build"),
            Err(e) => {
                tracing::error!(server = id, error = %e, "could not retire a server deleted during its build")
            }
        }
    }
}
