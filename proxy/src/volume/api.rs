//! The routes, and volumes: create, list (filters, sorting, paging), show, update, delete;
//! and the request parsing the handlers share (sizes, names, metadata, flags, list
//! parameters).

use std::cmp::Ordering;

use axum::http::StatusCode;
use serde_json::{json, Map, Value};
use stratus_client::identity::revoke::now_us;
use stratus_client::volume_ops::{NewVolume, Source, MAX_SIZE_GB};
use stratus_client::volumes::Volume;

use super::metadata::{self, Owner};
use super::render::{self, View};
use super::{
    actions, bad, import, no_volume, not_found, snapshots, CinderError, CinderResult, Req,
};
use crate::names::Query;
use crate::openstack::{empty, json_response};

/// Largest page of a list (Cinder's `osapi_max_limit`), and the page without `limit`.
const MAX_LIMIT: usize = 1000;
/// Longest name and description.
const MAX_TEXT: usize = 255;
/// Longest metadata key and value.
const MAX_META: usize = 255;

pub(super) async fn route(r: &Req<'_>) -> CinderResult {
    let segs: Vec<&str> = r.segs.iter().map(String::as_str).collect();
    match (r.method.as_str(), &segs[..]) {
        ("POST", ["volumes"]) => create(r).await,
        ("GET", ["volumes"]) => list(r, false).await,
        ("GET", ["volumes", "detail"]) => list(r, true).await,
        ("GET", ["volumes", id]) => {
            let (v, _) = r.volume(id).await?;
            let doc = render::volume(&r.links(), &v, View::Detail);
            Ok(json_response(StatusCode::OK, &json!({ "volume": doc })))
        }
        ("PUT", ["volumes", id]) => update(r, id).await,
        ("DELETE", ["volumes", id]) => delete(r, id).await,
        ("POST", ["volumes", id, "action"]) => actions::route(r, id).await,
        (_, ["volumes", id, "metadata", rest @ ..]) if rest.len() <= 1 => {
            metadata::route(r, Owner::Volume, id, rest.first().copied()).await
        }
        ("POST", ["snapshots"]) => snapshots::create(r).await,
        ("GET", ["snapshots"]) => snapshots::list(r, false).await,
        ("GET", ["snapshots", "detail"]) => snapshots::list(r, true).await,
        ("GET", ["snapshots", id]) => snapshots::show(r, id).await,
        ("PUT", ["snapshots", id]) => snapshots::update(r, id).await,
        ("DELETE", ["snapshots", id]) => snapshots::delete(r, id).await,
        (_, ["snapshots", id, "metadata", rest @ ..]) if rest.len() <= 1 => {
            metadata::route(r, Owner::Snapshot, id, rest.first().copied()).await
        }
        ("GET", ["os-availability-zone"]) => Ok(json_response(
            StatusCode::OK,
            &json!({"availabilityZoneInfo": [{"zoneName": "nova", "zoneState": {"available": true}}]}),
        )),
        (
            _,
            ["volumes" | "snapshots"] | ["volumes" | "snapshots", _] | ["volumes", _, "action"],
        ) => Err(CinderError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "The method is not allowed for this resource.",
        )),
        _ => Err(not_found("The resource could not be found.")),
    }
}

// ---------------------------------------------------------------------------------------
// Request parsing

/// A size in GiB as Cinder takes it: an integer, or a string of digits, of at least 1.
/// Above [`MAX_SIZE_GB`] it is 413, Cinder's `VolumeSizeExceedsLimit`.
pub(super) fn size_gb(field: &str, v: &Value) -> CinderResult<u64> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            // A string of digits too long for u64 is over any limit.
            Some(s.parse().unwrap_or(u64::MAX))
        }
        _ => None,
    };
    match n {
        Some(0) | None => Err(bad(format!(
            "Invalid input for field/attribute {field}. Value: {v}. It must be an integer of at least 1."
        ))),
        Some(n) if n > MAX_SIZE_GB => Err(CinderError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "VolumeSizeExceedsLimit: Requested volume size {n}G is larger than maximum allowed limit {MAX_SIZE_GB}G."
            ),
        )),
        Some(n) => Ok(n),
    }
}

/// The first of `keys` present in `body` as a string of at most 255 characters: `None`
/// when absent, `Some(None)` when null.
pub(super) fn text(
    body: &Map<String, Value>,
    keys: &[&str],
) -> CinderResult<Option<Option<String>>> {
    let Some((key, v)) = keys.iter().find_map(|k| body.get(*k).map(|v| (k, v))) else {
        return Ok(None);
    };
    match v {
        Value::Null => Ok(Some(None)),
        Value::String(s) if s.chars().count() <= MAX_TEXT => Ok(Some(Some(s.clone()))),
        _ => Err(bad(format!(
            "Invalid input for field/attribute {key}: a string of at most {MAX_TEXT} characters."
        ))),
    }
}

/// A string-valued id field (`snapshot_id`, `imageRef`, …): `None` when absent or null.
pub(super) fn id_field<'b>(
    body: &'b Map<String, Value>,
    key: &str,
) -> CinderResult<Option<&'b str>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
        Some(v) => Err(bad(format!(
            "Invalid input for field/attribute {key}. Value: {v}."
        ))),
    }
}

/// Metadata as Cinder takes it: an object of strings (keys of 1 to 255 characters, values
/// of at most 255); null is none.
pub(super) fn metadata_of(v: Option<&Value>) -> CinderResult<Map<String, Value>> {
    let m = match v {
        None | Some(Value::Null) => return Ok(Map::new()),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(bad("Invalid input: metadata must be an object.")),
    };
    for (k, v) in m {
        if k.is_empty() || k.chars().count() > MAX_META {
            return Err(bad(format!(
                "Invalid metadata key {k:?}: 1 to {MAX_META} characters."
            )));
        }
        if v.as_str().is_none_or(|s| s.chars().count() > MAX_META) {
            return Err(bad(format!(
                "Invalid metadata value for {k:?}: a string of at most {MAX_META} characters."
            )));
        }
    }
    Ok(m.clone())
}

/// A boolean as oslo's strict `bool_from_string` reads it (JSON booleans too).
pub(super) fn flag(field: &str, v: &Value) -> CinderResult<bool> {
    let parsed = match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "1" | "t" | "true" | "on" | "y" | "yes" => Some(true),
            "0" | "f" | "false" | "off" | "n" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    };
    parsed.ok_or_else(|| {
        bad(format!(
            "Invalid value {v} for {field}: expecting a boolean."
        ))
    })
}

/// A boolean query parameter (absent: false).
pub(super) fn flag_param(q: &Query, name: &str) -> CinderResult<bool> {
    q.get(name)
        .map(|v| flag(name, &Value::String(v.to_string())))
        .transpose()
        .map(|b| b.unwrap_or(false))
}

/// The `metadata` list filter: a JSON object, or the Python dict the SDK sends
/// (`{'k': 'v'}`).
pub(super) fn metadata_filter(q: &Query) -> CinderResult<Option<Map<String, Value>>> {
    let Some(raw) = q.get("metadata") else {
        return Ok(None);
    };
    let parsed: Option<Value> = serde_json::from_str(raw)
        .ok()
        .or_else(|| serde_json::from_str(&raw.replace('\'', "\"")).ok());
    match parsed {
        Some(Value::Object(m)) => Ok(Some(m)),
        _ => Err(bad(format!("Invalid metadata filter: {raw}"))),
    }
}

/// How a list is sorted and cut into pages.
#[derive(Debug, PartialEq)]
pub(super) struct Listing {
    /// Keys and whether ascending.
    pub order: Vec<(String, bool)>,
    pub limit: usize,
    pub offset: usize,
    pub marker: Option<String>,
}

/// Reads `sort` (`k1:asc,k2`) or `sort_key`/`sort_dir`, `limit`, `offset` and `marker`;
/// newest first by default, as Cinder lists.
pub(super) fn listing(q: &Query, sort_keys: &[&str]) -> CinderResult<Listing> {
    let mut order = Vec::new();
    if let Some(s) = q.get("sort") {
        for item in s.split(',').filter(|s| !s.is_empty()) {
            let (k, d) = item.split_once(':').unwrap_or((item, "desc"));
            order.push((k.trim().to_string(), d.trim().to_ascii_lowercase()));
        }
    } else if let Some(k) = q.get("sort_key") {
        let dir = q.get("sort_dir").unwrap_or("desc").to_ascii_lowercase();
        order.push((k.to_string(), dir));
    }
    if order.is_empty() {
        order.push(("created_at".into(), "desc".into()));
    }
    let order = order
        .into_iter()
        .map(|(k, d)| {
            if !sort_keys.contains(&k.as_str()) {
                return Err(bad(format!("Invalid input received: Invalid sort key {k}")));
            }
            match d.as_str() {
                "asc" => Ok((k, true)),
                "desc" => Ok((k, false)),
                _ => Err(bad(format!("Invalid input received: Invalid sort dir {d}"))),
            }
        })
        .collect::<CinderResult<_>>()?;
    let number = |name: &str| -> CinderResult<Option<usize>> {
        q.get(name)
            .map(|v| {
                v.parse::<usize>()
                    .map_err(|_| bad(format!("{name} param must be an integer")))
            })
            .transpose()
    };
    Ok(Listing {
        order,
        limit: number("limit")?.unwrap_or(MAX_LIMIT).min(MAX_LIMIT),
        offset: number("offset")?.unwrap_or(0),
        marker: q.get("marker").map(str::to_string),
    })
}

fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

/// Sorts `items` and cuts the page out; whether more follow it.
pub(super) fn page<T>(
    items: &mut Vec<T>,
    l: &Listing,
    id: impl Fn(&T) -> &str,
    field: impl Fn(&T, &str) -> Value,
) -> CinderResult<bool> {
    items.sort_by(|a, b| {
        for (k, asc) in &l.order {
            let o = cmp_values(&field(a, k), &field(b, k));
            let o = if *asc { o } else { o.reverse() };
            if o != Ordering::Equal {
                return o;
            }
        }
        // Ties newest-id-first, as Cinder's default `id desc` does.
        id(b).cmp(id(a))
    });
    if let Some(marker) = &l.marker {
        let at = items
            .iter()
            .position(|i| id(i) == marker)
            .ok_or_else(|| not_found(format!("Marker {marker} could not be found.")))?;
        items.drain(..=at);
    }
    items.drain(..l.offset.min(items.len()));
    let more = items.len() > l.limit;
    items.truncate(l.limit);
    Ok(more)
}

/// `[{"rel": "next", "href": …}]`: the same list from after `last`.
pub(super) fn next_links(r: &Req<'_>, path: &str, last: &str, l: &Listing) -> Value {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut q: Vec<String> = r
        .query
        .pairs()
        .iter()
        .filter(|(k, _)| k != "marker" && k != "offset" && k != "limit")
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    q.push(format!("limit={}", l.limit));
    q.push(format!("marker={}", enc(last)));
    json!([{"rel": "next", "href": format!("{}/{path}?{}", r.links().base, q.join("&"))}])
}

// ---------------------------------------------------------------------------------------
// Volumes

/// Changes volume `id` (as the caller sees it) by compare-and-swap with `f`, which may
/// refuse; the volume as written.
pub(super) async fn change_volume(
    r: &Req<'_>,
    id: &str,
    mut f: impl FnMut(&mut Volume) -> CinderResult<()>,
) -> CinderResult<Volume> {
    r.volume(id).await?;
    let mut refused = None;
    let out = r
        .ops()
        .vols
        .update(id, |v| {
            if v.hidden {
                return None;
            }
            match f(v) {
                Ok(()) => {
                    v.updated_us = now_us();
                    Some(())
                }
                Err(e) => {
                    refused = Some(e);
                    None
                }
            }
        })
        .await?;
    match (out, refused) {
        (Some((v, _)), _) => Ok(v),
        (None, Some(e)) => Err(e),
        (None, None) => Err(no_volume(id)),
    }
}

/// `POST /volumes`.
async fn create(r: &Req<'_>) -> CinderResult {
    r.may_change("volume:create")?;
    let body = r.entity("volume")?;
    let name = text(&body, &["name", "display_name"])?.flatten();
    let description = text(&body, &["description", "display_description"])?.flatten();
    let metadata = metadata_of(body.get("metadata"))?;
    match body.get("availability_zone") {
        None | Some(Value::Null) => {}
        Some(Value::String(z)) if z == "nova" => {}
        Some(z) => {
            return Err(bad(format!(
                "Invalid input received: Availability zone {z} is invalid."
            )))
        }
    }
    match body.get("volume_type") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "__DEFAULT__" => {}
        Some(Value::String(t)) => {
            return Err(not_found(format!(
                "Volume type with name {t} could not be found."
            )))
        }
        Some(t) => return Err(bad(format!("Invalid volume type {t}."))),
    }
    if let Some(b) = id_field(&body, "backup_id")? {
        return Err(not_found(format!("Backup {b} could not be found.")));
    }
    for key in ["consistencygroup_id", "group_id"] {
        if let Some(g) = id_field(&body, key)? {
            return Err(not_found(format!("Group {g} could not be found.")));
        }
    }
    if body
        .get("multiattach")
        .is_some_and(|m| m.as_bool() == Some(true))
    {
        return Err(bad(
            "Invalid input received: multiattach volumes are not supported.",
        ));
    }
    let image = match id_field(&body, "imageRef")? {
        Some(i) => Some(i),
        None => id_field(&body, "image_id")?,
    };
    let snapshot = id_field(&body, "snapshot_id")?;
    let source_volid = id_field(&body, "source_volid")?;
    let sources = [image.is_some(), snapshot.is_some(), source_volid.is_some()];
    if sources.iter().filter(|s| **s).count() > 1 {
        return Err(bad(
            "Invalid input received: give at most one of imageRef, snapshot_id and source_volid.",
        ));
    }
    let size = match body.get("size") {
        None | Some(Value::Null) => None,
        Some(v) => Some(size_gb("size", v)?),
    };
    let mut new = NewVolume {
        name,
        description,
        size_gb: size.unwrap_or(0),
        project_id: r.project.clone(),
        user_id: r.caller.user_id.clone(),
        metadata,
        source: Source::Blank,
    };
    if let Some(sid) = snapshot {
        let (s, _) = r.snapshot(sid).await?;
        new.size_gb = size.unwrap_or(s.size_gb);
        new.source = Source::Snapshot(s.id);
    } else if let Some(vid) = source_volid {
        let (v, _) = r.volume(vid).await?;
        new.size_gb = size.unwrap_or(v.size_gb);
        new.source = Source::Volume(v.id);
    } else if let Some(image) = image {
        let v = import::create(r, new, image, size).await?;
        return Ok(created(r, &v));
    } else if size.is_none() {
        return Err(bad(
            "Invalid input received: size is required for a volume from no source.",
        ));
    }
    let v = r.ops().create(new).await?;
    Ok(created(r, &v))
}

/// The 202 answer of a create.
fn created(r: &Req<'_>, v: &Volume) -> axum::response::Response {
    let doc = render::volume(&r.links(), v, View::Change);
    json_response(StatusCode::ACCEPTED, &json!({ "volume": doc }))
}

const VOLUME_SORT_KEYS: &[&str] = &[
    "created_at",
    "updated_at",
    "id",
    "name",
    "size",
    "status",
    "availability_zone",
    "bootable",
];

fn volume_field(v: &Volume, key: &str) -> Value {
    match key {
        "updated_at" => json!(v.updated_us),
        "id" => json!(v.id),
        "name" => json!(v.name),
        "size" => json!(v.size_gb),
        "status" => json!(v.status),
        "availability_zone" => json!(v.availability_zone),
        "bootable" => json!(v.bootable),
        _ => json!(v.created_us),
    }
}

/// `GET /volumes` (brief) and `/volumes/detail`.
async fn list(r: &Req<'_>, detail: bool) -> CinderResult {
    let q = &r.query;
    let l = listing(q, VOLUME_SORT_KEYS)?;
    let every_project = r.is_admin() && flag_param(q, "all_tenants")?;
    let meta = metadata_filter(q)?;
    let bootable = q
        .get("bootable")
        .map(|b| flag("bootable", &json!(b)))
        .transpose()?;
    let name = q.get("name").or_else(|| q.get("display_name"));
    let matches = |key: &str, val: &str| q.get(key).is_none_or(|want| want == val);
    let mut vols: Vec<Volume> = r
        .ops()
        .vols
        .list()
        .await?
        .into_iter()
        .filter(|v| !v.hidden)
        .filter(|v| every_project || v.project_id == r.project)
        .filter(|v| {
            name.is_none_or(|n| v.name.as_deref() == Some(n))
                && matches("status", &v.status)
                && matches("availability_zone", &v.availability_zone)
                && matches("user_id", &v.user_id)
                && matches("project_id", &v.project_id)
                && bootable.is_none_or(|b| b == v.bootable)
                && meta
                    .as_ref()
                    .is_none_or(|m| m.iter().all(|(k, val)| v.metadata.get(k) == Some(val)))
        })
        .collect();
    let more = page(&mut vols, &l, |v| &v.id, volume_field)?;
    let links = r.links();
    let items: Vec<Value> = vols
        .iter()
        .map(|v| {
            if detail {
                render::volume(&links, v, View::Detail)
            } else {
                render::volume_brief(&links, v)
            }
        })
        .collect();
    let mut doc = json!({ "volumes": items });
    if let (true, Some(last)) = (more, vols.last()) {
        let path = if detail { "volumes/detail" } else { "volumes" };
        doc["volumes_links"] = next_links(r, path, &last.id, &l);
    }
    Ok(json_response(StatusCode::OK, &doc))
}

/// `PUT /volumes/{id}`: name, description, metadata (replaced whole).
async fn update(r: &Req<'_>, id: &str) -> CinderResult {
    r.may_change("volume:update")?;
    let body = r.entity("volume")?;
    let name = text(&body, &["name", "display_name"])?;
    let description = text(&body, &["description", "display_description"])?;
    let metadata = match body.get("metadata") {
        None => None,
        m => Some(metadata_of(m)?),
    };
    let v = change_volume(r, id, |v| {
        if let Some(n) = &name {
            v.name = n.clone();
        }
        if let Some(d) = &description {
            v.description = d.clone();
        }
        if let Some(m) = &metadata {
            v.metadata = m.clone();
        }
        Ok(())
    })
    .await?;
    let doc = render::volume(&r.links(), &v, View::Change);
    Ok(json_response(StatusCode::OK, &json!({ "volume": doc })))
}

/// `DELETE /volumes/{id}?cascade=…&force=…`: 400 while attached or while it has
/// snapshots (unless `cascade`). `force` means something from microversion 3.23 on only.
async fn delete(r: &Req<'_>, id: &str) -> CinderResult {
    r.may_change("volume:delete")?;
    let cascade = flag_param(&r.query, "cascade")?;
    flag_param(&r.query, "force")?;
    let (v, _) = r.volume(id).await?;
    if !v.attachments.is_empty() {
        return Err(bad(format!(
            "Invalid volume: Volume {id} is attached; detach it first."
        )));
    }
    r.ops().delete(id, cascade).await?;
    Ok(empty(StatusCode::ACCEPTED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_positive_integers_and_bounded() {
        assert_eq!(size_gb("size", &json!(1)).unwrap(), 1);
        assert_eq!(size_gb("size", &json!("12")).unwrap(), 12);
        let status = |v: Value| size_gb("size", &v).unwrap_err().status.as_u16();
        for v in [
            json!(0),
            json!(-1),
            json!("x"),
            json!(1.5),
            json!(""),
            json!("-1"),
            json!(true),
        ] {
            assert_eq!(status(v.clone()), 400, "{v}");
        }
        assert_eq!(status(json!(MAX_SIZE_GB + 1)), 413);
        assert_eq!(status(json!("99999999999999999999999")), 413);
        assert_eq!(size_gb("size", &json!(MAX_SIZE_GB)).unwrap(), MAX_SIZE_GB);
    }

    #[test]
    fn metadata_and_flags_are_checked() {
        assert!(metadata_of(Some(&json!({"a": "b"}))).is_ok());
        assert!(metadata_of(None).unwrap().is_empty());
        assert!(metadata_of(Some(&json!({"a": 1}))).is_err());
        assert!(metadata_of(Some(&json!({"": "b"}))).is_err());
        assert!(metadata_of(Some(&json!(["a"]))).is_err());
        assert!(flag("f", &json!("True")).unwrap());
        assert!(!flag("f", &json!(false)).unwrap());
        assert!(flag("f", &json!("maybe")).is_err());
        let q = Query::parse(Some("metadata=%7B%27k%27%3A+%27v%27%7D"));
        assert_eq!(metadata_filter(&q).unwrap().unwrap()["k"], "v");
    }

    #[test]
    fn pages_are_sorted_newest_first_and_cut_after_the_marker() {
        let q = Query::parse(Some("limit=2"));
        let l = listing(&q, VOLUME_SORT_KEYS).unwrap();
        // (id, created)
        let mut items = vec![("a", 1), ("b", 3), ("c", 2), ("d", 3)];
        let field = |i: &(&str, i32), _: &str| json!(i.1);
        let more = page(&mut items, &l, |i| i.0, field).unwrap();
        assert!(more);
        assert_eq!(items, [("d", 3), ("b", 3)]);
        let q = Query::parse(Some("marker=b&sort=created_at:asc"));
        let l = listing(&q, VOLUME_SORT_KEYS).unwrap();
        let mut items = vec![("a", 1), ("b", 3), ("c", 2)];
        let more = page(&mut items, &l, |i| i.0, field).unwrap();
        assert!(!more);
        assert!(items.is_empty());
        let q = Query::parse(Some("marker=zz"));
        let l = listing(&q, VOLUME_SORT_KEYS).unwrap();
        let mut items = vec![("a", 1)];
        assert_eq!(
            page(&mut items, &l, |i| i.0, field).unwrap_err().status,
            404
        );
        assert!(listing(&Query::parse(Some("sort_key=evil")), VOLUME_SORT_KEYS).is_err());
        assert!(listing(&Query::parse(Some("limit=x")), VOLUME_SORT_KEYS).is_err());
        let q = Query::parse(Some("offset=1&limit=1"));
        let l = listing(&q, VOLUME_SORT_KEYS).unwrap();
        let mut items = vec![("a", 1), ("b", 2), ("c", 3)];
        assert!(page(&mut items, &l, |i| i.0, field).unwrap());
        assert_eq!(items, [("b", 2)]);
    }
}
