//! `/servers/{id}/os-volume_attachments`: a server's volumes, one added (`server add
//! volume`) or taken away (`server remove volume`).
//!
//! Attaching marks the volume `in-use` by the server first
//! ([`stratus_client::compute::reserve_volume`]: it must be `available`, else 400 with
//! Cinder's reason), then adds a disk in state `attaching` on the next free device, by a
//! compare-and-swap that checks the server's state again; the agent plugs it into the
//! guest and writes `attached`. Detaching sets the disk (and the volume) `detaching`; the
//! agent unplugs it, removes the disk and releases the volume. The root disk never
//! leaves (400). Both need a settled server (active, paused, suspended or stopped, no
//! task: else 409) whose host's agent is alive (else 409).

use axum::http::StatusCode;
use serde_json::{json, Value};
use stratus_client::compute::{now_us, release_volume, reserve_volume, Disk, Server};

use super::{bad, conflict, invalid, not_found, render, NovaResult, Req};
use crate::openstack::{empty, json_response};

/// 409 unless volumes may come to or go from `s` now.
pub fn check_settled(s: &Server, method: &str) -> NovaResult<()> {
    if !matches!(
        s.vm_state.as_str(),
        // Nova's states for attach and detach: not a suspended server (its saved memory
        // holds the old set of disks).
        "active" | "paused" | "stopped"
    ) {
        return Err(conflict(format!(
            "Cannot '{method}' instance {} while it is in vm_state {}",
            s.id, s.vm_state
        )));
    }
    if let Some(t) = &s.task_state {
        return Err(conflict(format!(
            "Cannot '{method}' instance {} while it is in task_state {t}",
            s.id
        )));
    }
    if s.host.is_none() {
        return Err(conflict(format!("Instance {} is not ready", s.id)));
    }
    Ok(())
}

/// Adds volume `vol` to `s` as `device` (state `attaching`), or says why not.
pub fn add_disk(s: &mut Server, vol: &str, device: &str, attachment: &str) -> NovaResult<()> {
    check_settled(s, "attach_volume")?;
    if s.disks.iter().any(|d| d.volume_id == vol) {
        return Err(bad(format!(
            "Invalid volume: volume {vol} is already attached to instance {}.",
            s.id
        )));
    }
    if s.disks.iter().any(|d| d.device == device) {
        return Err(conflict(format!(
            "Device /dev/{device} of instance {} was taken meanwhile; try again.",
            s.id
        )));
    }
    s.disks.push(Disk {
        volume_id: vol.to_string(),
        device: device.to_string(),
        boot_index: None,
        delete_on_termination: false,
        state: "attaching".into(),
        attachment_id: attachment.to_string(),
    });
    Ok(())
}

/// Asks volume `vol` to leave `s` (state `detaching`), or says why not.
pub fn detach_disk(s: &mut Server, vol: &str) -> NovaResult<()> {
    let id = s.id.clone();
    let Some(at) = s.disks.iter().position(|d| d.volume_id == vol) else {
        return Err(not_found(format!("volume_id not found: {vol}")));
    };
    if s.disks[at].boot_index == Some(0) {
        return Err(bad("Can't detach root device volume"));
    }
    check_settled(s, "detach_volume")?;
    let d = &mut s.disks[at];
    match d.state.as_str() {
        "attached" | "error" => {
            d.state = "detaching".into();
            Ok(())
        }
        st => Err(bad(format!(
            "Invalid volume: volume {vol} of instance {id} is {st}."
        ))),
    }
}

/// `GET …/os-volume_attachments`.
pub(super) async fn list(r: &Req<'_>, id: &str) -> NovaResult {
    let (s, _) = r.server(id).await?;
    let items: Vec<Value> = s
        .disks
        .iter()
        .map(|d| render::attachment(&s.id, d))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"volumeAttachments": items}),
    ))
}

/// `GET …/os-volume_attachments/{volume_id}`.
pub(super) async fn show(r: &Req<'_>, id: &str, vol: &str) -> NovaResult {
    let (s, _) = r.server(id).await?;
    let d = s
        .disks
        .iter()
        .find(|d| d.volume_id == vol)
        .ok_or_else(|| not_found(format!("Instance {id} is not attached to volume {vol}.")))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"volumeAttachment": render::attachment(&s.id, d)}),
    ))
}

/// `POST …/os-volume_attachments` `{"volumeAttachment": {"volumeId", "device"}}`: 200.
pub(super) async fn attach(r: &Req<'_>, id: &str) -> NovaResult {
    r.may_change("os_compute_api:os-volumes-attachments:create")?;
    let body = r.entity("volumeAttachment")?;
    if let Some(k) = body
        .keys()
        .find(|k| !matches!(k.as_str(), "volumeId" | "device"))
    {
        return Err(bad(format!(
            "Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    let vol = match body.get("volumeId") {
        Some(Value::String(v)) if !v.is_empty() => v.clone(),
        Some(v) => return Err(invalid("volumeId", v, "It must be a volume id.")),
        None => return Err(bad("'volumeId' is a required property")),
    };
    // The device asked for is a hint Nova's libvirt driver ignores too.
    match body.get("device") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(v) => return Err(invalid("device", v, "It must be a string or null.")),
    }
    let (s, _) = r.server(id).await?;
    check_settled(&s, "attach_volume")?;
    super::actions::live_host(r, &s).await?;
    r.cinder().volume(&vol).await?;
    let device = s.next_device();
    if device.len() > 3 {
        return Err(bad(format!(
            "Instance {id} has no free device: a server has at most {} disks.",
            super::create::MAX_DISKS
        )));
    }
    let attachment = reserve_volume(&r.vols().vols, &vol, id, s.host.as_deref(), &device).await?;
    let added = r
        .change_server(id, |s| add_disk(s, &vol, &device, &attachment))
        .await;
    let s = match added {
        Ok(s) => s,
        Err(e) => {
            if let Err(re) = release_volume(&r.vols().vols, &vol, id).await {
                tracing::error!(server = id, volume = %vol, error = %re, "could not release a volume after a failed attach");
            }
            return Err(e);
        }
    };
    tracing::info!(server = id, volume = %vol, device = %device, "volume to be attached");
    let d = s
        .disks
        .iter()
        .find(|d| d.volume_id == vol)
        .map(|d| render::attachment(id, d))
        .unwrap_or(Value::Null);
    Ok(json_response(
        StatusCode::OK,
        &json!({"volumeAttachment": d}),
    ))
}

/// `DELETE …/os-volume_attachments/{volume_id}`: 202.
pub(super) async fn detach(r: &Req<'_>, id: &str, vol: &str) -> NovaResult {
    r.may_change("os_compute_api:os-volumes-attachments:delete")?;
    let (s, _) = r.server(id).await?;
    detach_disk(&mut s.clone(), vol)?;
    super::actions::live_host(r, &s).await?;
    r.change_server(id, |s| detach_disk(s, vol)).await?;
    // The Cinder side shows the volume leaving until the agent releases it.
    let shown = r
        .vols()
        .vols
        .update(vol, |v| {
            (v.status == "in-use").then(|| {
                v.status = "detaching".into();
                v.updated_us = now_us();
            })
        })
        .await;
    if let Err(e) = shown {
        tracing::warn!(server = id, volume = vol, error = %e, "could not mark a volume detaching");
    }
    tracing::info!(server = id, volume = vol, "volume to be detached");
    Ok(empty(StatusCode::ACCEPTED))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::render::test_server;

    fn settled() -> Server {
        let mut s = test_server();
        s.vm_state = "active".into();
        s.status = "ACTIVE".into();
        s.task_state = None;
        s.host = Some("h1".into());
        s.disks.push(Disk {
            volume_id: "root".into(),
            device: "vda".into(),
            boot_index: Some(0),
            delete_on_termination: true,
            state: "attached".into(),
            attachment_id: "a0".into(),
        });
        s
    }

    #[test]
    fn a_volume_comes_on_the_next_device_and_leaves_unless_root() {
        let mut s = settled();
        let dev = s.next_device();
        assert_eq!(dev, "vdb");
        add_disk(&mut s, "v2", &dev, "a1").unwrap();
        assert_eq!(s.disks[1].state, "attaching");
        assert_eq!(render::attachment(&s.id, &s.disks[1])["device"], "/dev/vdb");
        // Twice, or on a taken device: refused.
        assert_eq!(add_disk(&mut s, "v2", "vdc", "a2").unwrap_err().status, 400);
        assert_eq!(add_disk(&mut s, "v3", "vdb", "a2").unwrap_err().status, 409);
        // Still attaching: cannot leave yet.
        assert_eq!(detach_disk(&mut s, "v2").unwrap_err().status, 400);
        s.disks[1].state = "attached".into();
        detach_disk(&mut s, "v2").unwrap();
        assert_eq!(s.disks[1].state, "detaching");
        let e = detach_disk(&mut s, "root").unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.message.as_str()),
            (400, "Can't detach root device volume")
        );
        assert_eq!(detach_disk(&mut s, "nope").unwrap_err().status, 404);
    }

    #[test]
    fn only_settled_servers_change_volumes() {
        let mut s = settled();
        s.task_state = Some("pausing".into());
        assert_eq!(add_disk(&mut s, "v", "vdb", "a").unwrap_err().status, 409);
        for (vm, ok) in [
            ("active", true),
            ("stopped", true),
            ("paused", true),
            ("suspended", false),
            ("building", false),
            ("error", false),
        ] {
            let mut s = settled();
            s.vm_state = vm.into();
            assert_eq!(add_disk(&mut s, "v", "vdb", "a").is_ok(), ok, "{vm}");
        }
        let mut s = settled();
        s.host = None;
        assert_eq!(check_settled(&s, "attach_volume").unwrap_err().status, 409);
    }
}
