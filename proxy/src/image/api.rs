//! Image records: create, list, show, JSON-patch, tags, deactivate/reactivate, delete, and
//! the schemas.

use std::cmp::Ordering;
use stratus_core::id::{is_uuid, new_uuid};

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::{json, Map, Value};
use stratus_client::identity::revoke::now_us;
use stratus_client::images::{Image, IMAGE_ACCOUNT, IMAGE_CONTAINER};
use stratus_client::records::RECORD_VERSION;

use super::render::{self, CONTAINER_FORMATS, DISK_FORMATS, VISIBILITIES};
use super::{bad, conflict, empty, forbidden, json_response, no_image, ImgError, ImgResult, Req};
use crate::names::Query;
use crate::ops::object::ObjPath;

/// Largest request body of the JSON calls.
pub const MAX_BODY: usize = 256 * 1024;
/// Default and largest page of `GET /v2/images` (Glance's `limit_param_default`,
/// `api_limit_max`).
const DEFAULT_LIMIT: usize = 25;
const MAX_LIMIT: usize = 1000;
/// The JSON-patch media type Glance takes.
const PATCH_TYPE: &str = "application/openstack-images-v2.1-json-patch";

/// Properties a client never sets.
const READ_ONLY: &[&str] = &[
    "status",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "size",
    "virtual_size",
    "created_at",
    "updated_at",
    "self",
    "file",
    "schema",
    "direct_url",
    "locations",
];

/// The core properties (everything else is an extra string property).
const CORE: &[&str] = &[
    "id",
    "name",
    "visibility",
    "protected",
    "os_hidden",
    "disk_format",
    "container_format",
    "min_disk",
    "min_ram",
    "tags",
    "owner",
];

pub(super) async fn route(r: &Req<'_>, m: &str, segs: &[&str], body: Bytes) -> ImgResult {
    match (m, segs) {
        ("POST", ["images"]) => create(r, &body).await,
        ("GET", ["images"]) => list(r).await,
        ("GET", ["images", id]) => {
            let (img, _) = r.image(id).await?;
            Ok(json_response(StatusCode::OK, &render::image(&img)))
        }
        ("PATCH", ["images", id]) => patch(r, id, &body).await,
        ("DELETE", ["images", id]) => delete(r, id).await,
        ("PUT", ["images", id, "tags", tag]) => tag_op(r, id, tag, true).await,
        ("DELETE", ["images", id, "tags", tag]) => tag_op(r, id, tag, false).await,
        ("POST", ["images", id, "actions", action @ ("deactivate" | "reactivate")]) => {
            activation(r, id, action).await
        }
        ("GET", ["schemas", "image"]) => Ok(json_response(StatusCode::OK, &render::image_schema())),
        ("GET", ["schemas", "images"]) => {
            Ok(json_response(StatusCode::OK, &render::images_schema()))
        }
        (_, ["images"] | ["images", _] | ["images", _, "tags", _] | ["schemas", _]) => {
            Err(ImgError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "The method is not allowed for this resource.",
            ))
        }
        _ => Err(ImgError::new(
            StatusCode::NOT_FOUND,
            "The resource could not be found.",
        )),
    }
}

fn json_body(body: &Bytes) -> ImgResult<Value> {
    serde_json::from_slice(body).map_err(|e| bad(format!("Malformed JSON in request body: {e}")))
}

/// Sets one property on `img` from a client value, with Glance's checks.
fn set_prop(r: &Req<'_>, img: &mut Image, key: &str, v: &Value) -> ImgResult<()> {
    let int = |v: &Value| {
        v.as_u64().filter(|n| *n <= i32::MAX as u64).ok_or_else(|| {
            bad(format!(
                "Invalid value for '{key}': expecting a non-negative integer."
            ))
        })
    };
    let boolean = |v: &Value| {
        v.as_bool()
            .ok_or_else(|| bad(format!("Invalid value for '{key}': expecting a boolean.")))
    };
    if READ_ONLY.contains(&key) {
        return Err(forbidden(format!("Attribute '{key}' is read-only.")));
    }
    if key.starts_with("os_glance") {
        return Err(forbidden(format!("Attribute '{key}' is reserved.")));
    }
    match key {
        "id" => return Err(forbidden("Attribute 'id' is read-only.")),
        "name" => {
            img.name = match v {
                Value::Null => None,
                Value::String(s) if s.chars().count() <= 255 => Some(s.clone()),
                _ => {
                    return Err(bad(
                        "Invalid value for 'name': a string of at most 255 characters.",
                    ))
                }
            }
        }
        "visibility" => {
            let s = v
                .as_str()
                .filter(|s| VISIBILITIES.contains(s))
                .ok_or_else(|| {
                    bad(format!(
                        "Invalid value for 'visibility': {v} (expecting one of {VISIBILITIES:?})."
                    ))
                })?;
            if s == "public" && !r.is_admin() {
                return Err(forbidden("Only an admin may make an image public."));
            }
            img.visibility = s.to_string();
        }
        "protected" => img.protected = boolean(v)?,
        "os_hidden" => img.os_hidden = boolean(v)?,
        "disk_format" | "container_format" => {
            if img.status != "queued" {
                return Err(forbidden(format!(
                    "Attribute {key} can be only replaced for a queued image."
                )));
            }
            let allowed = if key == "disk_format" {
                DISK_FORMATS
            } else {
                CONTAINER_FORMATS
            };
            let s = match v {
                Value::Null => None,
                Value::String(s) if allowed.contains(&s.as_str()) => Some(s.clone()),
                _ => {
                    return Err(bad(format!(
                        "Invalid value for '{key}': {v} (expecting one of {allowed:?})."
                    )))
                }
            };
            if key == "disk_format" {
                img.disk_format = s;
            } else {
                img.container_format = s;
            }
        }
        "min_disk" => img.min_disk = int(v)?,
        "min_ram" => img.min_ram = int(v)?,
        "tags" => {
            let tags = v
                .as_array()
                .ok_or_else(|| bad("Invalid value for 'tags': expecting a list."))?;
            let mut out: Vec<String> = Vec::new();
            for t in tags {
                let t = t.as_str().filter(|t| t.len() <= 255).ok_or_else(|| {
                    bad("Invalid value for 'tags': strings of at most 255 characters.")
                })?;
                if !out.iter().any(|x| x == t) {
                    out.push(t.to_string());
                }
            }
            img.tags = out;
        }
        "owner" => {
            if !r.is_admin() {
                return Err(forbidden("Only an admin may change an image's owner."));
            }
            img.owner = v.as_str().map(str::to_string);
        }
        extra => {
            if extra.is_empty() || extra.len() > 255 {
                return Err(bad("Invalid property name."));
            }
            match v {
                Value::String(_) => {
                    img.properties.insert(extra.to_string(), v.clone());
                }
                _ => {
                    return Err(bad(format!(
                        "Invalid value for '{extra}': extra properties are strings."
                    )))
                }
            }
        }
    }
    Ok(())
}

/// `POST /v2/images`.
async fn create(r: &Req<'_>, body: &Bytes) -> ImgResult {
    if !r.caller.has_role("member") || r.project().is_none() {
        return Err(forbidden("You are not authorized to create images."));
    }
    let v = json_body(body)?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("Expecting a JSON object of image properties."))?;
    let now = now_us();
    let id = match obj.get("id") {
        Some(Value::String(s)) if is_uuid(s) => s.to_lowercase(),
        Some(_) => return Err(bad("Invalid value for 'id': expecting a UUID.")),
        None => new_uuid(),
    };
    let mut img = Image {
        v: RECORD_VERSION,
        id: id.clone(),
        name: None,
        status: "queued".into(),
        visibility: "shared".into(),
        protected: false,
        os_hidden: false,
        checksum: None,
        os_hash_algo: None,
        os_hash_value: None,
        size: None,
        virtual_size: None,
        disk_format: None,
        container_format: None,
        min_disk: 0,
        min_ram: 0,
        owner: r.project().map(str::to_string),
        tags: Vec::new(),
        created_us: now,
        updated_us: now,
        properties: Map::new(),
        object: None,
    };
    for (k, val) in obj {
        if k != "id" {
            set_prop(r, &mut img, k, val)?;
        }
    }
    if !r.store().create(&img).await? {
        return Err(conflict(format!(
            "Image with identifier {id} already exists!"
        )));
    }
    let mut resp = json_response(StatusCode::CREATED, &render::image(&img));
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("/v2/images/{id}")) {
        resp.headers_mut().insert("location", v);
    }
    Ok(resp)
}

/// `in:a,b` → [a, b]; a plain value → [value].
fn values(v: &str) -> Vec<&str> {
    match v.strip_prefix("in:") {
        Some(list) => list.split(',').filter(|s| !s.is_empty()).collect(),
        None => vec![v],
    }
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on")
}

fn field(img: &Image, key: &str) -> Value {
    match key {
        "name" => json!(img.name),
        "status" => json!(img.status),
        "size" => json!(img.size),
        "disk_format" => json!(img.disk_format),
        "container_format" => json!(img.container_format),
        "visibility" => json!(img.visibility),
        "min_disk" => json!(img.min_disk),
        "min_ram" => json!(img.min_ram),
        "owner" => json!(img.owner),
        "id" => json!(img.id),
        "updated_at" => json!(img.updated_us),
        _ => json!(img.created_us),
    }
}

fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

const SORT_KEYS: &[&str] = &[
    "name",
    "status",
    "container_format",
    "disk_format",
    "size",
    "id",
    "created_at",
    "updated_at",
    "visibility",
    "owner",
    "min_disk",
    "min_ram",
];

/// The sort order of a list request: `sort=k:dir,…` or `sort_key`/`sort_dir` (repeatable).
fn sort_order(q: &Query) -> ImgResult<Vec<(String, bool)>> {
    let mut order = Vec::new();
    if let Some(s) = q.get("sort") {
        for item in s.split(',').filter(|s| !s.is_empty()) {
            let (k, d) = item.split_once(':').unwrap_or((item, "desc"));
            order.push((k.to_string(), d.to_string()));
        }
    } else if let Some(k) = q.get("sort_key") {
        order.push((
            k.to_string(),
            q.get("sort_dir").unwrap_or("desc").to_string(),
        ));
    }
    if order.is_empty() {
        order.push(("created_at".into(), "desc".into()));
    }
    order
        .into_iter()
        .map(|(k, d)| {
            if !SORT_KEYS.contains(&k.as_str()) {
                return Err(bad(format!("Invalid sort key: {k}.")));
            }
            match d.as_str() {
                "asc" => Ok((k, true)),
                "desc" => Ok((k, false)),
                _ => Err(bad(format!("Invalid sort direction: {d}."))),
            }
        })
        .collect()
}

/// Known list parameters (everything else filters on an extra property).
const LIST_PARAMS: &[&str] = &[
    "limit",
    "marker",
    "sort",
    "sort_key",
    "sort_dir",
    "name",
    "status",
    "visibility",
    "owner",
    "container_format",
    "disk_format",
    "size_min",
    "size_max",
    "tag",
    "os_hidden",
    "id",
    "member_status",
    "protected",
];

/// `GET /v2/images`.
async fn list(r: &Req<'_>) -> ImgResult {
    let q = &r.query;
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| bad("limit param must be an integer"))?
            .min(MAX_LIMIT),
    };
    let size_bound = |k: &str| -> ImgResult<Option<u64>> {
        q.get(k)
            .map(|v| {
                v.parse()
                    .map_err(|_| bad(format!("{k} must be an integer")))
            })
            .transpose()
    };
    let (size_min, size_max) = (size_bound("size_min")?, size_bound("size_max")?);
    let visibility = q.get("visibility");
    if let Some(v) = visibility {
        if v != "all" && !VISIBILITIES.contains(&v) {
            return Err(bad(format!("Invalid visibility value: {v}")));
        }
    }
    let hidden = q.get("os_hidden").is_some_and(truthy);
    let tags: Vec<&str> = q.all("tag");
    let order = sort_order(q)?;
    let mut imgs: Vec<Image> = r
        .store()
        .list()
        .await?
        .into_iter()
        .filter(|i| r.sees(i))
        .filter(|i| match visibility {
            None => i.visibility != "community" || i.owner.as_deref() == r.project(),
            Some("all") => true,
            Some(v) => i.visibility == v,
        })
        .filter(|i| i.os_hidden == hidden)
        .filter(|i| {
            let matches = |k: &str, val: Option<&str>| {
                q.get(k)
                    .is_none_or(|want| values(want).iter().any(|w| Some(*w) == val))
            };
            matches("name", i.name.as_deref())
                && matches("status", Some(&i.status))
                && matches("owner", i.owner.as_deref())
                && matches("container_format", i.container_format.as_deref())
                && matches("disk_format", i.disk_format.as_deref())
                && matches("id", Some(&i.id))
                && q.get("protected").is_none_or(|p| truthy(p) == i.protected)
                && size_min.is_none_or(|m| i.size.is_some_and(|s| s >= m))
                && size_max.is_none_or(|m| i.size.is_some_and(|s| s <= m))
                && tags.iter().all(|t| i.tags.iter().any(|x| x == t))
                && q.pairs().iter().all(|(k, v)| {
                    LIST_PARAMS.contains(&k.as_str())
                        || i.properties.get(k).and_then(Value::as_str) == Some(v.as_str())
                })
        })
        .collect();
    imgs.sort_by(|a, b| {
        for (k, asc) in &order {
            let o = cmp_values(&field(a, k), &field(b, k));
            let o = if *asc { o } else { o.reverse() };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.id.cmp(&b.id)
    });
    if let Some(marker) = q.get("marker") {
        let at = imgs
            .iter()
            .position(|i| i.id == marker)
            .ok_or_else(|| bad(format!("marker {marker} not found")))?;
        imgs.drain(..=at);
    }
    let more = imgs.len() > limit;
    imgs.truncate(limit);
    let mut doc = json!({
        "images": imgs.iter().map(render::image).collect::<Vec<_>>(),
        "schema": "/v2/schemas/images",
        "first": format!("/v2/images{}", first_query(q)),
    });
    if more {
        if let Some(last) = imgs.last() {
            let mut next: Vec<String> = q
                .pairs()
                .iter()
                .filter(|(k, _)| k != "marker")
                .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
                .collect();
            next.push(format!("marker={}", last.id));
            if q.get("limit").is_none() {
                next.push(format!("limit={limit}"));
            }
            doc["next"] = json!(format!("/v2/images?{}", next.join("&")));
        }
    }
    Ok(json_response(StatusCode::OK, &doc))
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn first_query(q: &Query) -> String {
    let kept: Vec<String> = q
        .pairs()
        .iter()
        .filter(|(k, _)| k != "marker")
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    }
}

/// Retries a read-modify-write of image `id` on a concurrent change.
async fn change(
    r: &Req<'_>,
    id: &str,
    mut f: impl FnMut(&mut Image) -> ImgResult<()>,
) -> ImgResult<Image> {
    for _ in 0..8 {
        let (mut img, rev) = r.owned(id).await?;
        f(&mut img)?;
        img.updated_us = now_us();
        if r.store().swap(&img, rev).await? {
            return Ok(img);
        }
    }
    Err(conflict(format!(
        "Image {id} is changing too often; try again."
    )))
}

/// Decodes a JSON-pointer path of one level (`/name`, `/tags`, `/k~1v`).
fn pointer(path: &str) -> ImgResult<String> {
    let p = path
        .strip_prefix('/')
        .filter(|p| !p.is_empty() && !p.contains('/'))
        .ok_or_else(|| bad(format!("Invalid JSON pointer for this resource: '{path}'")))?;
    Ok(p.replace("~1", "/").replace("~0", "~"))
}

/// `PATCH /v2/images/{id}` with Glance's JSON-patch media type.
async fn patch(r: &Req<'_>, id: &str, body: &Bytes) -> ImgResult {
    let ct = crate::headers::hv(&r.parts.headers, "content-type").unwrap_or("");
    if !ct.starts_with(PATCH_TYPE) {
        return Err(ImgError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Unsupported Content-Type {ct:?}: expecting {PATCH_TYPE}"),
        ));
    }
    let ops = json_body(body)?;
    let ops = ops
        .as_array()
        .ok_or_else(|| bad("A JSON-patch document is a list of operations."))?;
    // Check the document's shape before touching anything.
    let mut parsed = Vec::new();
    for op in ops {
        let kind = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("Every patch operation needs 'op'."))?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("Every patch operation needs 'path'."))?;
        let key = pointer(path)?;
        let value = op.get("value").cloned();
        match kind {
            "add" | "replace" if value.is_none() => {
                return Err(bad(format!("Operation '{kind}' needs a 'value'.")))
            }
            "add" | "replace" | "remove" => {}
            other => return Err(bad(format!("Invalid operation: '{other}'."))),
        }
        parsed.push((kind.to_string(), key, value));
    }
    let img = change(r, id, |img| {
        for (kind, key, value) in &parsed {
            if READ_ONLY.contains(&key.as_str()) {
                return Err(forbidden(format!("Attribute '{key}' is read-only.")));
            }
            if key.starts_with("os_glance") {
                return Err(forbidden(format!("Attribute '{key}' is reserved.")));
            }
            let exists = CORE.contains(&key.as_str()) || img.properties.contains_key(key);
            match kind.as_str() {
                "replace" if !exists => {
                    return Err(conflict(format!("Property {key} does not exist.")))
                }
                "remove" if CORE.contains(&key.as_str()) || READ_ONLY.contains(&key.as_str()) => {
                    return Err(forbidden(format!("Property '{key}' cannot be removed.")))
                }
                "remove" => {
                    if img.properties.remove(key).is_none() {
                        return Err(conflict(format!("Property {key} does not exist.")));
                    }
                }
                _ => set_prop(r, img, key, value.as_ref().unwrap_or(&Value::Null))?,
            }
        }
        Ok(())
    })
    .await?;
    Ok(json_response(StatusCode::OK, &render::image(&img)))
}

async fn tag_op(r: &Req<'_>, id: &str, tag: &str, add: bool) -> ImgResult {
    if tag.is_empty() || tag.len() > 255 {
        return Err(bad("A tag has 1 to 255 characters."));
    }
    let mut missing = false;
    change(r, id, |img| {
        if add {
            if !img.tags.iter().any(|t| t == tag) {
                img.tags.push(tag.to_string());
            }
        } else {
            let before = img.tags.len();
            img.tags.retain(|t| t != tag);
            missing = img.tags.len() == before;
        }
        Ok(())
    })
    .await?;
    if missing {
        return Err(ImgError::new(
            StatusCode::NOT_FOUND,
            format!("Tag {tag} not found"),
        ));
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `POST /v2/images/{id}/actions/deactivate|reactivate` (admin only).
async fn activation(r: &Req<'_>, id: &str, action: &str) -> ImgResult {
    if !r.is_admin() {
        r.image(id).await?;
        return Err(forbidden(format!(
            "You are not authorized to {action} images."
        )));
    }
    change(r, id, |img| {
        match (action, img.status.as_str()) {
            ("deactivate", "active" | "deactivated") => img.status = "deactivated".into(),
            ("reactivate", "active" | "deactivated") => img.status = "active".into(),
            (_, s) => {
                return Err(forbidden(format!(
                    "Not allowed to {action} image in status '{s}'"
                )))
            }
        }
        Ok(())
    })
    .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `DELETE /v2/images/{id}`: the record, then the bytes.
async fn delete(r: &Req<'_>, id: &str) -> ImgResult {
    for _ in 0..8 {
        let (img, rev) = r.owned(id).await?;
        if img.protected {
            return Err(forbidden(format!(
                "Image {id} is protected and cannot be deleted."
            )));
        }
        if !r.store().delete(id, rev).await? {
            continue;
        }
        if let Some(obj) = img.object {
            let path = ObjPath {
                account: IMAGE_ACCOUNT.into(),
                container: IMAGE_CONTAINER.into(),
                object: obj,
            };
            if let Err(e) = crate::ops::object::delete(r.p, &path).await {
                tracing::warn!(image = id, error = %e.body, "image deleted; its bytes could not be yet");
            }
        }
        return Ok(empty(StatusCode::NO_CONTENT));
    }
    Err(no_image(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_look_like_glance_ids() {
        let u = new_uuid();
        assert!(is_uuid(&u), "{u}");
        assert_eq!(&u[14..15], "4");
        assert!(!is_uuid("nope"));
        assert!(!is_uuid("1bea47ed-f6a9-463b-b423-14b9cca9ad2"));
    }

    #[test]
    fn sort_orders_parse_both_forms() {
        let q = Query::parse(Some("sort=name:asc,size:desc"));
        assert_eq!(
            sort_order(&q).unwrap(),
            vec![("name".to_string(), true), ("size".to_string(), false)]
        );
        let q = Query::parse(Some("sort_key=size&sort_dir=asc"));
        assert_eq!(sort_order(&q).unwrap(), vec![("size".to_string(), true)]);
        assert!(sort_order(&Query::parse(Some("sort_key=evil"))).is_err());
        assert!(sort_order(&Query::parse(Some("sort=name:up"))).is_err());
        assert_eq!(values("in:a,b"), ["a", "b"]);
        assert_eq!(pointer("/k~1v").unwrap(), "k/v");
        assert!(pointer("/a/b").is_err());
    }
}
