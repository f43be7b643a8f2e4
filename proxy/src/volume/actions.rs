//! `POST /volumes/{id}/action`: one action a request, named by the body's only key.
//!
//! - `os-extend` grows an available, detached volume (202).
//! - The legacy attach steps as Nova before the attachments API (and tempest at 3.0) call
//!   them, each a compare-and-swap of the volume's status: `os-reserve` (available →
//!   attaching), `os-unreserve` (back), `os-attach` (→ in-use, with an `attachments[]`
//!   entry), `os-begin_detaching` (in-use → detaching), `os-roll_detaching` (back),
//!   `os-detach` (the attachment removed; available when none is left). These record what
//!   the API shows; the one writer of the data is whoever holds the volume's epoch
//!   ([`stratus_client::volume_io`]).
//! - `os-initialize_connection` (200) answers how to reach the data: an NBD export named by
//!   the volume's id; `os-terminate_connection` has nothing to undo.
//! - `os-set_bootable` (200), `os-update_readonly_flag` (202, available volumes only; a
//!   read-only volume attaches read-only), and for admins `os-reset_status` and
//!   `os-force_detach` (202).
//!
//! Statuses that do not allow an action are 400, as Cinder answers them.

use axum::http::StatusCode;
use serde_json::{json, Map, Value};
use stratus_client::identity::revoke::now_us;
use stratus_client::volumes::Attachment;

use super::api::{change_volume, flag, id_field, size_gb};
use super::{bad, not_found, CinderError, CinderResult, Req};
use crate::openstack::{empty, json_response};

/// Statuses `os-reset_status` may set.
const STATUSES: &[&str] = &[
    "creating",
    "available",
    "reserved",
    "attaching",
    "in-use",
    "detaching",
    "extending",
    "deleting",
    "error",
    "error_deleting",
    "error_extending",
    "maintenance",
];

pub(super) async fn route(r: &Req<'_>, id: &str) -> CinderResult {
    let body = r.json()?;
    let Some((action, args)) = body.as_object().and_then(|o| o.iter().next()) else {
        return Err(bad("Malformed request body: expecting one action."));
    };
    let none = Map::new();
    let args = args.as_object().unwrap_or(&none);
    let accepted = || Ok(empty(StatusCode::ACCEPTED));
    match action.as_str() {
        "os-extend" => {
            r.may_change("volume:extend")?;
            let new_size = size_gb("new_size", args.get("new_size").unwrap_or(&Value::Null))?;
            r.volume(id).await?;
            r.ops().extend(id, new_size).await?;
            accepted()
        }
        "os-reserve" => {
            r.may_change("volume:reserve_volume")?;
            change_volume(r, id, |v| {
                if v.status != "available" {
                    return Err(bad(format!(
                        "Invalid volume: Volume status must be available to reserve, but the status is {}.",
                        v.status
                    )));
                }
                v.status = "attaching".into();
                Ok(())
            })
            .await?;
            accepted()
        }
        "os-unreserve" => {
            r.may_change("volume:unreserve_volume")?;
            change_volume(r, id, |v| {
                if v.status == "attaching" {
                    v.status = "available".into();
                }
                Ok(())
            })
            .await?;
            accepted()
        }
        "os-begin_detaching" => {
            r.may_change("volume:begin_detaching")?;
            change_volume(r, id, |v| {
                if v.status != "in-use" || v.attachments.is_empty() {
                    return Err(bad(format!(
                        "Invalid volume: Unable to detach volume. Volume status must be 'in-use' and attach_status must be 'attached' to detach. Currently: status: '{}'.",
                        v.status
                    )));
                }
                v.status = "detaching".into();
                Ok(())
            })
            .await?;
            accepted()
        }
        "os-roll_detaching" => {
            r.may_change("volume:roll_detaching")?;
            change_volume(r, id, |v| {
                if v.status == "detaching" {
                    v.status = "in-use".into();
                }
                Ok(())
            })
            .await?;
            accepted()
        }
        "os-attach" => {
            r.may_change("volume:attach")?;
            attach(r, id, args).await?;
            accepted()
        }
        "os-detach" => {
            r.may_change("volume:detach")?;
            detach(r, id, args).await?;
            accepted()
        }
        "os-force_detach" => {
            if !r.is_admin() {
                return Err(super::forbidden(
                    "volume_extension:volume_admin_actions:force_detach",
                ));
            }
            detach(r, id, args).await?;
            accepted()
        }
        "os-initialize_connection" => {
            r.may_change("volume:initialize_connection")?;
            if !args.get("connector").is_some_and(Value::is_object) {
                return Err(bad("Must specify 'connector'"));
            }
            let (v, _) = r.volume(id).await?;
            let info = json!({"connection_info": {
                "driver_volume_type": "nbd",
                "data": {
                    "export": v.id,
                    "volume_id": v.id,
                    "access_mode": if v.read_only { "ro" } else { "rw" },
                },
            }});
            Ok(json_response(StatusCode::OK, &info))
        }
        "os-terminate_connection" => {
            r.may_change("volume:terminate_connection")?;
            if !args.get("connector").is_some_and(Value::is_object) {
                return Err(bad("Must specify 'connector'"));
            }
            r.volume(id).await?;
            accepted()
        }
        "os-set_bootable" => {
            r.may_change("volume:update")?;
            let bootable = flag("bootable", args.get("bootable").unwrap_or(&Value::Null))?;
            change_volume(r, id, |v| {
                v.bootable = bootable;
                Ok(())
            })
            .await?;
            Ok(empty(StatusCode::OK))
        }
        "os-update_readonly_flag" => {
            r.may_change("volume:update_readonly_flag")?;
            let ro = flag("readonly", args.get("readonly").unwrap_or(&Value::Null))?;
            change_volume(r, id, |v| {
                if v.status != "available" {
                    return Err(bad(format!(
                        "Invalid volume: Volume status must be available to update readonly flag, but current status is: {}.",
                        v.status
                    )));
                }
                v.read_only = ro;
                Ok(())
            })
            .await?;
            accepted()
        }
        "os-reset_status" => {
            if !r.is_admin() {
                return Err(super::forbidden(
                    "volume_extension:volume_admin_actions:reset_status",
                ));
            }
            reset_status(r, id, args).await?;
            accepted()
        }
        other => Err(bad(format!("There is no such action: {other}"))),
    }
}

/// `os-attach {"instance_uuid" | "host_name", "mountpoint", "mode"?}`.
async fn attach(r: &Req<'_>, id: &str, args: &Map<String, Value>) -> CinderResult<()> {
    let server = id_field(args, "instance_uuid")?.map(str::to_string);
    let host = id_field(args, "host_name")?.map(str::to_string);
    if server.is_none() && host.is_none() {
        return Err(bad("Invalid request to attach volume to an invalid target"));
    }
    let mountpoint = args
        .get("mountpoint")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Must specify 'mountpoint'"))?
        .to_string();
    let mode = match args.get("mode") {
        None | Some(Value::Null) => "rw",
        Some(Value::String(m)) if m == "rw" || m == "ro" => m.as_str(),
        Some(_) => {
            return Err(bad(
                "Invalid request to attach volume with an invalid mode. Attaching mode should be 'rw' or 'ro'",
            ))
        }
    };
    change_volume(r, id, |v| {
        if !matches!(v.status.as_str(), "available" | "attaching" | "reserved") {
            return Err(bad(format!(
                "Invalid volume: Volume {id} status must be available or attaching to attach, but current status is: {}.",
                v.status
            )));
        }
        if v.read_only && mode == "rw" {
            return Err(bad(format!(
                "Invalid attaching mode 'rw' for volume {id}."
            )));
        }
        v.attachments.push(Attachment {
            id: stratus_core::id::new_uuid(),
            server_id: server.clone(),
            host_name: host.clone(),
            device: Some(mountpoint.clone()),
            attached_us: now_us(),
        });
        v.status = "in-use".into();
        Ok(())
    })
    .await?;
    Ok(())
}

/// `os-detach {"attachment_id"?}`: that attachment, or the only one.
async fn detach(r: &Req<'_>, id: &str, args: &Map<String, Value>) -> CinderResult<()> {
    let which = id_field(args, "attachment_id")?.map(str::to_string);
    change_volume(r, id, |v| {
        if v.attachments.is_empty() {
            return Err(bad(format!(
                "Invalid volume: Volume {id} must be attached in order to detach."
            )));
        }
        match &which {
            Some(a) => {
                let at = v
                    .attachments
                    .iter()
                    .position(|x| &x.id == a)
                    .ok_or_else(|| {
                        not_found(format!("Volume attachment {a} could not be found."))
                    })?;
                v.attachments.remove(at);
            }
            None if v.attachments.len() > 1 => {
                return Err(bad(format!(
                    "Invalid volume: Volume {id} has more than one attachment; give attachment_id."
                )))
            }
            None => v.attachments.clear(),
        }
        v.status = if v.attachments.is_empty() {
            "available"
        } else {
            "in-use"
        }
        .into();
        Ok(())
    })
    .await?;
    Ok(())
}

/// `os-reset_status {"status", "attach_status"?}` (admin): the status set as given;
/// `attach_status: detached` drops the attachments.
async fn reset_status(r: &Req<'_>, id: &str, args: &Map<String, Value>) -> CinderResult<()> {
    let status = args.get("status").and_then(Value::as_str);
    if let Some(s) = status {
        if !STATUSES.contains(&s) {
            return Err(bad(format!("Invalid input received: invalid status {s}.")));
        }
    }
    let detached = match args.get("attach_status").and_then(Value::as_str) {
        None => false,
        Some("detached") => true,
        Some("attached") => false,
        Some(other) => {
            return Err(CinderError::new(
                StatusCode::BAD_REQUEST,
                format!("Invalid input received: invalid attach_status {other}."),
            ))
        }
    };
    if status.is_none() && !detached {
        return Err(bad("Must specify 'status' or 'attach_status'."));
    }
    change_volume(r, id, |v| {
        if let Some(s) = status {
            v.status = s.to_string();
        }
        if detached {
            v.attachments.clear();
        }
        Ok(())
    })
    .await?;
    Ok(())
}
