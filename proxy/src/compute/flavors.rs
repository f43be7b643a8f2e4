//! Flavors: list (brief and detailed, with Nova's filters and paging), show, and for
//! admins create and delete. A server keeps a copy of its flavor, so deleting a flavor
//! changes no server.
//!
//! Who sees which flavor (Nova's rules, without per-project access lists, which Stratus
//! does not have): everyone sees the public, enabled ones; an admin also sees private
//! and disabled ones, and chooses with `is_public` (`true` by default, `false`, or `none`
//! for all). A flavor the caller cannot see is 404.
//!
//! Names are unique (checked against the stored flavors before the create; two admins
//! creating the same name at the same instant could both succeed), ids are unique by the
//! create's compare-and-swap.

use std::cmp::Ordering;

use axum::http::StatusCode;
use serde_json::{json, Map, Value};
use stratus_client::compute::Flavor;
use stratus_core::id::new_uuid;

use super::params::{self, next_link, parse_bool, Paging};
use super::render;
use super::{bad, conflict, invalid, no_flavor, NovaResult, Req};
use crate::openstack::{empty, json_response};

/// Largest RAM, vCPU count, disk, swap and ephemeral size (Nova's `db.MAX_INT`).
const MAX_INT: i64 = 0x7FFF_FFFF;

/// Keys `POST /flavors` takes at 2.1.
const CREATE_KEYS: &[&str] = &[
    "name",
    "id",
    "ram",
    "vcpus",
    "disk",
    "swap",
    "OS-FLV-EXT-DATA:ephemeral",
    "rxtx_factor",
    "os-flavor-access:is_public",
];

/// The sort keys of a flavor list (Nova's, for the fields Stratus has).
const SORT_KEYS: &[&str] = &[
    "flavorid",
    "id",
    "name",
    "memory_mb",
    "vcpus",
    "root_gb",
    "swap",
    "ephemeral_gb",
    "rxtx_factor",
];

/// Whether the caller may see flavor `f` at all.
pub(super) fn visible(r: &Req<'_>, f: &Flavor) -> bool {
    r.is_admin() || (f.is_public && !f.disabled)
}

/// The flavor `id` as the caller sees it, or 404.
pub(super) async fn get(r: &Req<'_>, id: &str) -> NovaResult<Flavor> {
    match r.compute().flavors.get(id).await? {
        Some((f, _)) if visible(r, &f) => Ok(f),
        _ => Err(no_flavor(id)),
    }
}

/// `GET /flavors[/detail]`.
pub(super) async fn list(r: &Req<'_>, detail: bool) -> NovaResult {
    let q = &r.query;
    // `is_public`: `None` is every flavor (admins only choose; others see public ones).
    let is_public = match q.get("is_public") {
        _ if !r.is_admin() => Some(true),
        None => Some(true),
        Some(v) if v.eq_ignore_ascii_case("none") => None,
        Some(v) => {
            Some(parse_bool(v).ok_or_else(|| bad(format!("Invalid is_public filter [{v}]")))?)
        }
    };
    let min = |name: &str| -> NovaResult<u64> {
        q.get(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| bad(format!("Invalid {name} filter [{v}]")))
            })
            .transpose()
            .map(|m| m.unwrap_or(0))
    };
    let (min_ram, min_disk) = (min("minRam")?, min("minDisk")?);
    let sort_key = q.get("sort_key").unwrap_or("flavorid");
    let asc = match q.get("sort_dir").unwrap_or("asc") {
        "asc" => true,
        "desc" => false,
        d => return Err(bad(format!("Invalid sort_dir {d}"))),
    };
    let paging = Paging::from_query(q)?;
    let mut flavors: Vec<Flavor> = r
        .compute()
        .flavors
        .list()
        .await?
        .into_iter()
        .filter(|f| visible(r, f))
        .filter(|f| is_public.is_none_or(|p| f.is_public == p))
        .filter(|f| r.is_admin() || !f.disabled)
        .filter(|f| f.ram_mb >= min_ram && f.disk_gb >= min_disk)
        .collect();
    if !SORT_KEYS.contains(&sort_key) {
        return Err(bad(format!("Invalid sort_key {sort_key}")));
    }
    flavors.sort_by(|a, b| {
        let o = compare(a, b, sort_key).then_with(|| a.id.cmp(&b.id));
        if asc {
            o
        } else {
            o.reverse()
        }
    });
    let more = paging.page(&mut flavors, |f| &f.id)?;
    let links = r.links();
    let items: Vec<Value> = flavors
        .iter()
        .map(|f| render::flavor(&links, f, detail))
        .collect();
    let mut doc = json!({ "flavors": items });
    if more {
        if let Some(last) = flavors.last() {
            let path = if detail { "flavors/detail" } else { "flavors" };
            doc["flavors_links"] =
                next_link(&format!("{}/{path}", links.base), q, paging.limit, &last.id);
        }
    }
    Ok(json_response(StatusCode::OK, &doc))
}

/// Orders two flavors by a Nova sort key.
fn compare(a: &Flavor, b: &Flavor, key: &str) -> Ordering {
    match key {
        "name" => a.name.cmp(&b.name),
        "memory_mb" => a.ram_mb.cmp(&b.ram_mb),
        "vcpus" => a.vcpus.cmp(&b.vcpus),
        "root_gb" => a.disk_gb.cmp(&b.disk_gb),
        "swap" => a.swap_mb.cmp(&b.swap_mb),
        "ephemeral_gb" => a.ephemeral_gb.cmp(&b.ephemeral_gb),
        "rxtx_factor" => a.rxtx_factor.total_cmp(&b.rxtx_factor),
        _ => a.id.cmp(&b.id),
    }
}

/// `GET /flavors/{id}`.
pub(super) async fn show(r: &Req<'_>, id: &str) -> NovaResult {
    let f = get(r, id).await?;
    let doc = render::flavor(&r.links(), &f, true);
    Ok(json_response(StatusCode::OK, &json!({ "flavor": doc })))
}

/// `GET /flavors/{id}/os-extra_specs`: none (Stratus keeps no extra specs).
pub(super) async fn extra_specs(r: &Req<'_>, id: &str) -> NovaResult {
    get(r, id).await?;
    Ok(json_response(StatusCode::OK, &json!({"extra_specs": {}})))
}

/// `GET /flavors/{id}/os-flavor-access`: public flavors have no list; private ones an
/// empty one (there are no per-project grants).
pub(super) async fn access(r: &Req<'_>, id: &str) -> NovaResult {
    let f = get(r, id).await?;
    if f.is_public {
        return Err(super::not_found(
            "Access list not available for public flavors.",
        ));
    }
    Ok(json_response(StatusCode::OK, &json!({"flavor_access": []})))
}

/// A flavor id given in a create: a string of letters, digits, `.`, `_`, `-` and inner
/// spaces (Nova's pattern), or a number.
fn flavor_id(v: &Value) -> NovaResult<Option<String>> {
    let id = match v {
        Value::Null => return Ok(None),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(invalid("id", v, "It must be a string or null.")),
    };
    let ok = !id.is_empty()
        && id.len() <= params::MAX_TEXT
        && id.trim() == id
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ' '));
    if !ok {
        return Err(invalid(
            "id",
            v,
            "It must be 1 to 255 letters, digits, '.', '_', '-' or inner spaces.",
        ));
    }
    Ok(Some(id))
}

/// The flavor a create body describes (its id `None`: to be generated).
pub(super) fn parse_flavor(body: &Map<String, Value>) -> NovaResult<(Option<String>, Flavor)> {
    if let Some(k) = body.keys().find(|k| !CREATE_KEYS.contains(&k.as_str())) {
        return Err(bad(format!(
            "Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    let need = |k: &str| {
        body.get(k)
            .ok_or_else(|| bad(format!("'{k}' is a required property")))
    };
    let num = |k: &str, min: i64, default: i64| -> NovaResult<u64> {
        match body.get(k) {
            None => Ok(default as u64),
            Some(v) => Ok(params::int(k, v, min, MAX_INT)? as u64),
        }
    };
    let name = params::name("name", need("name")?)?;
    let ram_mb = params::int("ram", need("ram")?, 1, MAX_INT)? as u64;
    let vcpus = params::int("vcpus", need("vcpus")?, 1, MAX_INT)? as u64;
    let disk_gb = params::int("disk", need("disk")?, 0, MAX_INT)? as u64;
    let swap_mb = num("swap", 0, 0)?;
    let ephemeral_gb = num("OS-FLV-EXT-DATA:ephemeral", 0, 0)?;
    let rxtx_factor = match body.get("rxtx_factor") {
        None => 1.0,
        Some(v) => match v
            .as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        {
            Some(x) if x > 0.0 && x.is_finite() => x,
            _ => return Err(invalid("rxtx_factor", v, "It must be a number above 0.")),
        },
    };
    let is_public = match body.get("os-flavor-access:is_public") {
        None => true,
        Some(v) => params::boolean("os-flavor-access:is_public", v)?,
    };
    let id = flavor_id(body.get("id").unwrap_or(&Value::Null))?;
    let f = Flavor {
        v: 1,
        id: id.clone().unwrap_or_default(),
        name,
        ram_mb,
        vcpus,
        disk_gb,
        swap_mb,
        ephemeral_gb,
        is_public,
        disabled: false,
        rxtx_factor,
    };
    Ok((id, f))
}

/// `POST /flavors` (admins): 200 with the flavor; `"id": null` generates one.
pub(super) async fn create(r: &Req<'_>) -> NovaResult {
    r.admin_only("os_compute_api:os-flavor-manage:create")?;
    let body = r.entity("flavor")?;
    let (id, mut f) = parse_flavor(&body)?;
    let existing = r.compute().flavors.list().await?;
    if existing.iter().any(|x| x.name == f.name) {
        return Err(conflict(format!(
            "Flavor with name {} already exists.",
            f.name
        )));
    }
    f.id = id.unwrap_or_else(new_uuid);
    if !r.compute().flavors.create(&f).await? {
        return Err(conflict(format!("Flavor with ID {} already exists.", f.id)));
    }
    tracing::info!(flavor = %f.id, name = %f.name, "flavor created");
    let doc = render::flavor(&r.links(), &f, true);
    Ok(json_response(StatusCode::OK, &json!({ "flavor": doc })))
}

/// `DELETE /flavors/{id}` (admins): 202.
pub(super) async fn delete(r: &Req<'_>, id: &str) -> NovaResult {
    r.admin_only("os_compute_api:os-flavor-manage:delete")?;
    let Some((_, rev)) = r.compute().flavors.get(id).await? else {
        return Err(no_flavor(id));
    };
    if !r.compute().flavors.delete(id, rev).await? {
        return Err(conflict(format!(
            "Flavor {id} changed while it was being deleted; try again."
        )));
    }
    tracing::info!(flavor = %id, "flavor deleted");
    Ok(empty(StatusCode::ACCEPTED))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_create_body_as_openstack_flavor_create_sends_it() {
        let (id, f) = parse_flavor(&body(json!({
            "name": "m1.small", "ram": 1024, "vcpus": 1, "disk": 2, "swap": 0,
            "OS-FLV-EXT-DATA:ephemeral": 0, "os-flavor-access:is_public": true, "id": null
        })))
        .unwrap();
        assert_eq!(id, None);
        assert_eq!((f.ram_mb, f.vcpus, f.disk_gb, f.swap_mb), (1024, 1, 2, 0));
        assert!(f.is_public);
        let (id, f) = parse_flavor(&body(json!({
            "name": "big", "ram": "2048", "vcpus": "2", "disk": "0", "id": "2",
            "os-flavor-access:is_public": "false", "rxtx_factor": 2.0
        })))
        .unwrap();
        assert_eq!(id.as_deref(), Some("2"));
        assert!(!f.is_public);
        assert_eq!(f.rxtx_factor, 2.0);
        assert_eq!(
            parse_flavor(&body(
                json!({"name": "n", "ram": 1, "vcpus": 1, "disk": 0, "id": 7})
            ))
            .unwrap()
            .0
            .as_deref(),
            Some("7")
        );
    }

    #[test]
    fn bad_create_bodies_are_400() {
        for b in [
            json!({"ram": 1, "vcpus": 1, "disk": 1}),
            json!({"name": "n", "ram": 0, "vcpus": 1, "disk": 1}),
            json!({"name": "n", "ram": 1, "vcpus": 0, "disk": 1}),
            json!({"name": "n", "ram": 1, "vcpus": 1, "disk": -1}),
            json!({"name": "n", "ram": 1, "vcpus": 1}),
            json!({"name": "n", "ram": 1, "vcpus": 1, "disk": 1, "id": "a/b"}),
            json!({"name": "n", "ram": 1, "vcpus": 1, "disk": 1, "id": ""}),
            json!({"name": "n", "ram": 1, "vcpus": 1, "disk": 1, "rxtx_factor": 0}),
            json!({"name": "n", "ram": 1, "vcpus": 1, "disk": 1, "extra_specs": {}}),
            json!({"name": " n", "ram": 1, "vcpus": 1, "disk": 1}),
        ] {
            assert_eq!(
                parse_flavor(&body(b.clone())).unwrap_err().status,
                400,
                "{b}"
            );
        }
    }

    #[test]
    fn sort_keys_order_flavors() {
        let fl = stratus_client::compute::default_flavors();
        assert_eq!(compare(&fl[0], &fl[1], "memory_mb"), Ordering::Less);
        assert_eq!(compare(&fl[4], &fl[1], "flavorid"), Ordering::Greater);
        assert_eq!(compare(&fl[2], &fl[3], "vcpus"), Ordering::Equal);
    }
}
