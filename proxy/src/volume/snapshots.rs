//! Snapshots: create (O(1), see [`stratus_client::volume_ops`]), list (filters, sorting,
//! paging), show, update, delete. A snapshot belongs to its volume's project.

use axum::http::StatusCode;
use serde_json::{json, Value};
use stratus_client::identity::revoke::now_us;
use stratus_client::volumes::Snapshot;

use super::api::{
    flag, flag_param, id_field, listing, metadata_filter, metadata_of, next_links, page, text,
};
use super::render;
use super::{bad, no_snapshot, CinderResult, Req};
use crate::openstack::{empty, json_response};

/// `POST /snapshots {"snapshot": {"volume_id", "name", "description", "force", "metadata"}}`.
pub(super) async fn create(r: &Req<'_>) -> CinderResult {
    r.may_change("volume:create_snapshot")?;
    let body = r.entity("snapshot")?;
    let volume = id_field(&body, "volume_id")?
        .ok_or_else(|| bad("Invalid input received: 'volume_id' is a required property"))?;
    let name = text(&body, &["name", "display_name"])?.flatten();
    let description = text(&body, &["description", "display_description"])?.flatten();
    let metadata = metadata_of(body.get("metadata"))?;
    let force = match body.get("force") {
        None | Some(Value::Null) => false,
        Some(f) => flag("force", f)?,
    };
    r.volume(volume).await?;
    let s = r
        .ops()
        .create_snapshot(volume, name, description, metadata, force)
        .await?;
    let doc = render::snapshot(&s, false);
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({ "snapshot": doc }),
    ))
}

const SORT_KEYS: &[&str] = &[
    "created_at",
    "updated_at",
    "id",
    "name",
    "size",
    "status",
    "volume_id",
];

fn field(s: &Snapshot, key: &str) -> Value {
    match key {
        "updated_at" => json!(s.updated_us),
        "id" => json!(s.id),
        "name" => json!(s.name),
        "size" => json!(s.size_gb),
        "status" => json!(s.status),
        "volume_id" => json!(s.volume_id),
        _ => json!(s.created_us),
    }
}

/// `GET /snapshots` (summary) and `/snapshots/detail`.
pub(super) async fn list(r: &Req<'_>, detail: bool) -> CinderResult {
    let q = &r.query;
    let l = listing(q, SORT_KEYS)?;
    let every_project = r.is_admin() && flag_param(q, "all_tenants")?;
    let meta = metadata_filter(q)?;
    let name = q.get("name").or_else(|| q.get("display_name"));
    let matches = |key: &str, val: &str| q.get(key).is_none_or(|want| want == val);
    let mut snaps: Vec<Snapshot> = r
        .ops()
        .snaps
        .list()
        .await?
        .into_iter()
        .filter(|s| every_project || s.project_id == r.project)
        .filter(|s| {
            name.is_none_or(|n| s.name.as_deref() == Some(n))
                && matches("volume_id", &s.volume_id)
                && matches("status", &s.status)
                && matches("project_id", &s.project_id)
                && meta
                    .as_ref()
                    .is_none_or(|m| m.iter().all(|(k, v)| s.metadata.get(k) == Some(v)))
        })
        .collect();
    let more = page(&mut snaps, &l, |s| &s.id, field)?;
    let items: Vec<Value> = snaps.iter().map(|s| render::snapshot(s, detail)).collect();
    let mut doc = json!({ "snapshots": items });
    if let (true, Some(last)) = (more, snaps.last()) {
        let path = if detail {
            "snapshots/detail"
        } else {
            "snapshots"
        };
        doc["snapshots_links"] = next_links(r, path, &last.id, &l);
    }
    Ok(json_response(StatusCode::OK, &doc))
}

/// `GET /snapshots/{id}`.
pub(super) async fn show(r: &Req<'_>, id: &str) -> CinderResult {
    let (s, _) = r.snapshot(id).await?;
    let doc = render::snapshot(&s, true);
    Ok(json_response(StatusCode::OK, &json!({ "snapshot": doc })))
}

/// `PUT /snapshots/{id} {"snapshot": {"name", "description"}}`.
pub(super) async fn update(r: &Req<'_>, id: &str) -> CinderResult {
    r.may_change("volume:update_snapshot")?;
    let body = r.entity("snapshot")?;
    let name = text(&body, &["name", "display_name"])?;
    let description = text(&body, &["description", "display_description"])?;
    r.snapshot(id).await?;
    let (s, _) = r
        .ops()
        .snaps
        .update(id, |s| {
            if let Some(n) = &name {
                s.name = n.clone();
            }
            if let Some(d) = &description {
                s.description = d.clone();
            }
            s.updated_us = now_us();
            Some(())
        })
        .await?
        .ok_or_else(|| no_snapshot(id))?;
    let doc = render::snapshot(&s, false);
    Ok(json_response(StatusCode::OK, &json!({ "snapshot": doc })))
}

/// `DELETE /snapshots/{id}`: an available or failed snapshot.
pub(super) async fn delete(r: &Req<'_>, id: &str) -> CinderResult {
    r.may_change("volume:delete_snapshot")?;
    let (s, _) = r.snapshot(id).await?;
    if !matches!(s.status.as_str(), "available" | "error" | "error_deleting") {
        return Err(bad(format!(
            "Invalid snapshot: Volume Snapshot status must be available or error or error_restoring, but current status is: {}.",
            s.status
        )));
    }
    r.ops().delete_snapshot(id).await?;
    Ok(empty(StatusCode::ACCEPTED))
}
