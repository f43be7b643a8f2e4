//! The metadata of volumes and snapshots: `/volumes/{id}/metadata[/{key}]` and
//! `/snapshots/{id}/metadata[/{key}]` — GET the whole or one item, POST (merge), PUT
//! (replace the whole, or set one item), DELETE one item.

use axum::http::StatusCode;
use serde_json::{json, Map, Value};
use stratus_client::identity::revoke::now_us;

use super::api::{change_volume, metadata_of};
use super::{bad, no_snapshot, not_found, CinderError, CinderResult, Req};
use crate::openstack::{empty, json_response};

/// Whose metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    Volume,
    Snapshot,
}

impl Owner {
    fn noun(self) -> &'static str {
        match self {
            Owner::Volume => "Volume",
            Owner::Snapshot => "Snapshot",
        }
    }
}

/// The metadata of `id`, as the caller sees it.
async fn read_metadata(r: &Req<'_>, owner: Owner, id: &str) -> CinderResult<Map<String, Value>> {
    Ok(match owner {
        Owner::Volume => r.volume(id).await?.0.metadata,
        Owner::Snapshot => r.snapshot(id).await?.0.metadata,
    })
}

/// Changes the metadata of `id` with `f`; the metadata as written.
async fn write_metadata(
    r: &Req<'_>,
    owner: Owner,
    id: &str,
    mut f: impl FnMut(&mut Map<String, Value>) -> CinderResult<()>,
) -> CinderResult<Map<String, Value>> {
    match owner {
        Owner::Volume => Ok(change_volume(r, id, |v| f(&mut v.metadata)).await?.metadata),
        Owner::Snapshot => {
            r.snapshot(id).await?;
            let mut refused = None;
            let out = r
                .ops()
                .snaps
                .update(id, |s| match f(&mut s.metadata) {
                    Ok(()) => {
                        s.updated_us = now_us();
                        Some(())
                    }
                    Err(e) => {
                        refused = Some(e);
                        None
                    }
                })
                .await?;
            match (out, refused) {
                (Some((s, _)), _) => Ok(s.metadata),
                (None, Some(e)) => Err(e),
                (None, None) => Err(no_snapshot(id)),
            }
        }
    }
}

/// One metadata request on `id` (`key`: the item, if the path names one).
pub(super) async fn route(r: &Req<'_>, owner: Owner, id: &str, key: Option<&str>) -> CinderResult {
    let ok = |v: Value| Ok(json_response(StatusCode::OK, &v));
    let missing = |k: &str| {
        not_found(format!(
            "{} {id} has no metadata with key {k}.",
            owner.noun()
        ))
    };
    let action = match owner {
        Owner::Volume => "volume:update_volume_metadata",
        Owner::Snapshot => "volume:update_snapshot_metadata",
    };
    match (r.method.as_str(), key) {
        ("GET", None) => ok(json!({"metadata": read_metadata(r, owner, id).await?})),
        ("GET", Some(k)) => {
            let m = read_metadata(r, owner, id).await?;
            let v = m.get(k).ok_or_else(|| missing(k))?;
            ok(json!({"meta": {k: v}}))
        }
        (m @ ("POST" | "PUT"), None) => {
            r.may_change(action)?;
            let body = r.json()?;
            let items = match body.get("metadata") {
                Some(m @ Value::Object(_)) => metadata_of(Some(m))?,
                _ => return Err(bad("Malformed request body: expecting 'metadata'.")),
            };
            let replace = m == "PUT";
            let now = write_metadata(r, owner, id, |meta| {
                if replace {
                    meta.clear();
                }
                meta.extend(items.clone());
                Ok(())
            })
            .await?;
            ok(json!({ "metadata": now }))
        }
        ("PUT", Some(k)) => {
            r.may_change(action)?;
            let body = r.json()?;
            let Some(Value::Object(meta)) = body.get("meta") else {
                return Err(bad("Malformed request body: expecting 'meta'."));
            };
            if meta.len() > 1 {
                return Err(bad("Request body contains too many items."));
            }
            let item = metadata_of(Some(&Value::Object(meta.clone())))?;
            let value = item
                .get(k)
                .cloned()
                .ok_or_else(|| bad("Request body and URI mismatch"))?;
            write_metadata(r, owner, id, |m| {
                m.insert(k.to_string(), value.clone());
                Ok(())
            })
            .await?;
            ok(json!({"meta": {k: value}}))
        }
        ("DELETE", Some(k)) => {
            r.may_change(action)?;
            write_metadata(r, owner, id, |m| {
                m.remove(k).map(|_| ()).ok_or_else(|| missing(k))
            })
            .await?;
            Ok(empty(StatusCode::OK))
        }
        _ => Err(CinderError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "The method is not allowed for this resource.",
        )),
    }
}
