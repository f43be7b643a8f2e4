//! Listings of versioned containers (Swift's `object_versioning`, see
//! [`crate::ops::object_versioning`]):
//!
//! - A plain listing shows each versions link as the version it points to (its bytes and
//!   ETag, `version_symlink: true`, and `symlink_path` as `<object>?version-id=<id>`).
//! - `?versions` lists every version, JSON only (406 otherwise): the container's own
//!   unversioned objects (`version_id: null`), the versions in the hidden container
//!   (newest first for each name), and the subdirectories of both, each with `is_latest`.
//!   `version_marker` (with `marker`) pages through the versions of one name.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use stratus_proto::storage as pb;

use crate::cluster::RingKind;
use crate::container::{json_items, Listed};
use crate::error::{bad_request, SwiftError, SwiftResult};
use crate::headers::hv;
use crate::names::{decode_param, Query};
use crate::ops::link::quote;
use crate::ops::listing::{list, ListQuery};
use crate::ops::object_versioning::{
    parse_version_id, split_version_name, version_name, DELETE_MARKER,
};
use crate::proxy::Proxy;

/// 406, as Swift answers a `?versions` listing in any form but JSON.
fn not_acceptable() -> SwiftError {
    SwiftError::new(
        StatusCode::NOT_ACCEPTABLE,
        "<html><h1>Not Acceptable</h1><p>The server is unable to generate a response that matches your request.</p></html>",
    )
}

/// Whether an `Accept` header takes JSON.
fn accepts_json(accept: &str) -> bool {
    accept.split(',').any(|r| {
        let range = r.split(';').next().unwrap_or("").trim();
        matches!(range, "application/json" | "application/*" | "*/*" | "*")
    })
}

/// Checks a `?versions` listing's parameters as Swift does: JSON only (406), a
/// `version_marker` only with a `marker` and as a version id (400), no delimiter made of
/// what version ids are made of (400).
pub fn check(params: &Query, h: &HeaderMap) -> SwiftResult<()> {
    match params.get("format") {
        Some(f) if !f.is_empty() => {
            if f != "json" {
                return Err(not_acceptable());
            }
        }
        _ => {
            if hv(h, "accept").is_some_and(|a| !accepts_json(a)) {
                return Err(not_acceptable());
            }
        }
    }
    if let Some(vm) = params.get("version_marker") {
        if !params.has("marker") {
            return Err(bad_request("version_marker param requires marker"));
        }
        if vm != "null" && parse_version_id(vm).is_none() {
            return Err(bad_request("invalid version_marker param"));
        }
    }
    let delim = params.get("delimiter").unwrap_or("");
    if delim
        .chars()
        .any(|c| c.is_ascii_digit() || c == '.' || c == '\0')
    {
        return Err(bad_request("invalid delimiter param"));
    }
    Ok(())
}

/// `/v1/<account>/<container>/<object>` of a listed `symlink_path`, decoded.
fn split_path(path: &str) -> Option<(String, String, String)> {
    let decoded = decode_param(path).ok()?;
    let rest = decoded.strip_prefix("/v1/")?;
    let (a, rest) = rest.split_once('/')?;
    let (c, o) = rest.split_once('/')?;
    Some((a.to_string(), c.to_string(), o.to_string()))
}

/// A listed row that is a versions link (a link into `location`) takes the size and ETag
/// of the version it points to.
pub fn as_version(e: &mut pb::ListEntry, location: &str) {
    let l = Listed::parse(&e.content_type);
    let (Some(t), Some(etag), Some(bytes)) = (l.symlink_target, l.symlink_etag, l.symlink_bytes)
    else {
        return;
    };
    let into = decode_param(t)
        .ok()
        .and_then(|t| t.split_once('/').map(|(c, _)| c == location));
    if into == Some(true) {
        let etag = etag.to_string();
        e.bytes = bytes;
        e.etag = etag;
    }
}

/// Marks the versions links of a JSON listing page (`version_symlink`), and outside a
/// `?versions` listing shows where they point as `<object>?version-id=<id>`.
pub fn links(items: &mut [Value], container: &str, location: &str, versions: bool) {
    for item in items.iter_mut() {
        let Some(obj) = item.as_object_mut() else {
            continue;
        };
        if !["symlink_path", "symlink_etag", "symlink_bytes"]
            .iter()
            .all(|k| obj.contains_key(*k))
        {
            continue;
        }
        let Some((a, c, o)) = obj
            .get("symlink_path")
            .and_then(Value::as_str)
            .and_then(split_path)
        else {
            continue;
        };
        if c != location {
            continue;
        }
        obj.remove("symlink_bytes");
        obj.remove("symlink_etag");
        obj.insert("version_symlink".into(), true.into());
        if versions {
            continue;
        }
        if let Some((name, ts)) = split_version_name(&o) {
            let path = format!(
                "{}?version-id={ts}",
                quote(&format!("/v1/{a}/{container}/{name}"))
            );
            obj.insert("symlink_path".into(), path.into());
        }
    }
}

/// The key a listing is sorted by.
fn sort_key(v: &Value) -> &str {
    v.get("subdir")
        .or_else(|| v.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// How many rows the two listings a `?versions` page merges are read with, for a page of
/// `limit`: more than the page, since a storage node stops early on a run of deleted rows
/// (versions come and go, and leave many), and the merge needs every live one of the page.
pub fn widened(limit: u32) -> u32 {
    limit
        .saturating_mul(10)
        .clamp(1000, crate::ops::listing::LISTING_LIMIT)
        .max(limit)
}

/// One page of a `?versions` listing (`limit` entries): `primary` (the container's own
/// rows, read with `q`, its versions links marked) merged with the versions in
/// `location`.
pub async fn page(
    p: &Proxy,
    account: &str,
    location: &str,
    primary: Vec<Value>,
    params: &Query,
    q: &ListQuery,
    limit: u32,
) -> SwiftResult<Vec<Value>> {
    let mut hq = ListQuery {
        prefix: params
            .get("prefix")
            .map(|x| format!("\0{x}"))
            .unwrap_or_default(),
        marker: q.marker.clone(),
        delimiter: q.delimiter.clone(),
        limit: q.limit,
        reverse: q.reverse,
        ..Default::default()
    };
    match params.get("version_marker") {
        Some(vm) if vm != "null" => {
            if let Some(ts) = parse_version_id(vm) {
                hq.marker = version_name(&q.marker, ts);
            }
        }
        Some(_) => {}
        None if params.has("marker") => hq.marker = format!("\0{}\0:", q.marker),
        None => {}
    }
    let mut null_listing = Vec::new();
    let mut subdirs = BTreeSet::new();
    let mut current: BTreeMap<String, Value> = BTreeMap::new();
    let mut latest = BTreeSet::new();
    for item in primary {
        if let Some(s) = item.get("subdir").and_then(Value::as_str) {
            subdirs.insert(s.to_string());
        } else if item.get("version_symlink").is_some() {
            let path = item
                .get("symlink_path")
                .and_then(Value::as_str)
                .and_then(|s| decode_param(s).ok())
                .unwrap_or_default();
            current.insert(path, item);
        } else {
            let mut item = item;
            latest.insert(sort_key(&item).to_string());
            item["version_id"] = "null".into();
            item["is_latest"] = true.into();
            null_listing.push(item);
        }
    }
    let mut versions_listing = Vec::new();
    match list(p, account, location, &hq).await {
        Ok(entries) => {
            for item in json_items(RingKind::Container, account, &entries) {
                if let Some(s) = item.get("subdir").and_then(Value::as_str) {
                    let s = s.strip_prefix('\0').unwrap_or(s);
                    subdirs.insert(s.split('\0').next().unwrap_or(s).to_string());
                    continue;
                }
                let raw = sort_key(&item).to_string();
                let Some((name, ts)) = split_version_name(&raw) else {
                    continue;
                };
                let path = format!("/v1/{account}/{location}/{raw}");
                let is_marker =
                    item.get("content_type").and_then(Value::as_str) == Some(DELETE_MARKER);
                let linked = current.remove(&path).is_some();
                let is_latest = linked || (is_marker && !latest.contains(name));
                if is_latest {
                    latest.insert(name.to_string());
                }
                let mut item = item;
                item["is_latest"] = is_latest.into();
                item["name"] = name.into();
                item["version_id"] = ts.to_string().into();
                versions_listing.push(item);
            }
        }
        Err(e) if e.status == StatusCode::NOT_FOUND => {}
        Err(e) => return Err(e),
    }
    // Links whose version is not (or no longer) listed still show as their version.
    let broken = current.values().filter_map(|item| {
        let (_, _, o) = split_path(item.get("symlink_path")?.as_str()?)?;
        let (name, ts) = split_version_name(&o)?;
        let mut v = serde_json::json!({
            "name": name,
            "is_latest": true,
            "version_id": ts.to_string(),
        });
        for k in ["content_type", "bytes", "hash", "last_modified"] {
            if let Some(x) = item.get(k) {
                v[k] = x.clone();
            }
        }
        Some(v)
    });
    let broken: Vec<Value> = broken.collect();
    let mut all: Vec<Value> = null_listing
        .into_iter()
        .chain(versions_listing)
        .chain(
            subdirs
                .into_iter()
                .map(|s| serde_json::json!({ "subdir": s })),
        )
        .chain(broken)
        .collect();
    // Stable, as Python's `sorted` is (reversed too): a name's entries keep their order.
    if q.reverse {
        all.sort_by(|a, b| sort_key(b).cmp(sort_key(a)));
    } else {
        all.sort_by(|a, b| sort_key(a).cmp(sort_key(b)));
    }
    all.truncate(limit as usize);
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn status(query: &str, accept: Option<&str>) -> Option<u16> {
        let mut h = HeaderMap::new();
        if let Some(a) = accept {
            h.insert("accept", HeaderValue::from_str(a).unwrap());
        }
        check(&Query::parse(Some(query)), &h)
            .err()
            .map(|e| e.status.as_u16())
    }

    #[test]
    fn versions_listings_are_json_only() {
        assert_eq!(status("versions", None), None);
        assert_eq!(status("versions&format=json", None), None);
        assert_eq!(status("versions", Some("application/json")), None);
        assert_eq!(status("versions", Some("*/*")), None);
        assert_eq!(status("versions&format=plain", None), Some(406));
        assert_eq!(status("versions&format=xml", None), Some(406));
        for a in ["text/plain", "text/xml", "application/xml", "foo/bar"] {
            assert_eq!(status("versions", Some(a)), Some(406), "{a}");
        }
    }

    #[test]
    fn version_markers_and_delimiters_are_checked() {
        assert_eq!(status("versions&version_marker=1", None), Some(400));
        assert_eq!(
            status("versions&marker=a&version_marker=x", None),
            Some(400)
        );
        assert_eq!(status("versions&marker=a&version_marker=null", None), None);
        assert_eq!(
            status("versions&marker=a&version_marker=1700000000.12345", None),
            None
        );
        assert_eq!(status("versions&delimiter=1", None), Some(400));
        assert_eq!(status("versions&delimiter=.", None), Some(400));
        assert_eq!(status("versions&delimiter=/", None), None);
    }

    #[test]
    fn links_show_their_version() {
        let ts = stratus_core::timestamp::Timestamp::parse("1700000000.12345").unwrap();
        let target = format!(
            "/v1/AUTH_t/{}/{}",
            quote("\0versions\0c"),
            quote(&version_name("o", ts))
        );
        let mut items = vec![serde_json::json!({
            "name": "o", "bytes": 5, "hash": "h", "symlink_path": target,
            "symlink_etag": "h", "symlink_bytes": 5,
        })];
        links(&mut items, "c", "\0versions\0c", false);
        assert_eq!(
            items[0],
            serde_json::json!({
                "name": "o", "bytes": 5, "hash": "h", "version_symlink": true,
                "symlink_path": "/v1/AUTH_t/c/o?version-id=1700000000.12345",
            })
        );
    }
}
