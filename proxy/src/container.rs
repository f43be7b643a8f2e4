//! Account and container requests, and listings in `json`, `xml` and `plain` form.
//!
//! Reads ask every primary and merge: the newest row for each name wins (deleted rows
//! included), so after a write acknowledged by a quorum every listing shows it
//! (read-your-writes), even though each replica was updated separately.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use stratus_core::timestamp::Timestamp;
use stratus_proto::storage as pb;

use crate::cluster::{Placement, RingKind};
use crate::error::{
    bad_request, not_found, precondition_failed, unavailable, SwiftError, SwiftResult,
};
use crate::headers::{self, http_date, hv, iso_date, title_case};
use crate::router::decode;
use crate::Proxy;

/// Largest listing page (Swift's `container_listing_limit` / `account_listing_limit`).
pub const LISTING_LIMIT: u32 = 10_000;

/// Listing parameters from the query string.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    pub prefix: String,
    pub delimiter: String,
    pub marker: String,
    pub end_marker: String,
    pub limit: u32,
    pub reverse: bool,
    pub format: Format,
}

/// Listing output format.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    #[default]
    Plain,
    Json,
    Xml,
}

/// Parses the query string and `Accept` header of a listing.
pub fn list_query(query: Option<&str>, h: &HeaderMap) -> SwiftResult<ListQuery> {
    let mut q = ListQuery {
        limit: LISTING_LIMIT,
        ..Default::default()
    };
    if let Some(accept) = hv(h, "accept") {
        if accept.contains("application/json") {
            q.format = Format::Json;
        } else if accept.contains("application/xml") || accept.contains("text/xml") {
            q.format = Format::Xml;
        }
    }
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = decode(&v.replace('+', " "))?;
        match k {
            "prefix" => q.prefix = v,
            "delimiter" => {
                if v.chars().count() > 1 {
                    return Err(precondition_failed("Bad delimiter"));
                }
                q.delimiter = v
            }
            "marker" => q.marker = v,
            "end_marker" => q.end_marker = v,
            "limit" => {
                let n: u64 = v.parse().map_err(|_| {
                    precondition_failed("Value of limit must be a positive integer")
                })?;
                if n > u64::from(LISTING_LIMIT) {
                    return Err(precondition_failed(format!(
                        "Maximum limit is {LISTING_LIMIT}"
                    )));
                }
                q.limit = n as u32;
            }
            "reverse" => {
                q.reverse = matches!(
                    v.to_ascii_lowercase().as_str(),
                    "true" | "1" | "yes" | "on" | "t" | "y"
                )
            }
            "format" => {
                q.format = match v.as_str() {
                    "json" => Format::Json,
                    "xml" => Format::Xml,
                    "plain" => Format::Plain,
                    _ => q.format,
                }
            }
            _ => {}
        }
    }
    Ok(q)
}

/// The merged view of a database's replicas.
struct Merged {
    info: pb::DbInfo,
    entries: Vec<pb::ListEntry>,
}

fn merge_info(infos: &[pb::DbInfo]) -> pb::DbInfo {
    let put = infos.iter().map(|i| i.put_ts).max().unwrap_or(0);
    let del = infos.iter().map(|i| i.delete_ts).max().unwrap_or(0);
    let mut best = infos
        .iter()
        .filter(|i| i.exists)
        .max_by_key(|i| (i.object_count, i.bytes, i.container_count))
        .cloned()
        .unwrap_or_default();
    best.put_ts = put;
    best.delete_ts = del;
    best.exists = put > del;
    best.created_ts = infos
        .iter()
        .filter(|i| i.exists)
        .map(|i| i.created_ts)
        .max()
        .unwrap_or(0);
    let mut meta: BTreeMap<String, pb::MetaItem> = BTreeMap::new();
    for it in infos.iter().flat_map(|i| &i.meta) {
        let k = it.key.to_ascii_lowercase();
        if !matches!(meta.get(&k), Some(m) if m.ts >= it.ts) {
            meta.insert(k, it.clone());
        }
    }
    best.meta = meta.into_values().filter(|m| !m.value.is_empty()).collect();
    best
}

fn merge_entries(lists: Vec<Vec<pb::ListEntry>>, q: &ListQuery) -> Vec<pb::ListEntry> {
    let mut by_name: BTreeMap<String, pb::ListEntry> = BTreeMap::new();
    for e in lists.into_iter().flatten() {
        match by_name.get(&e.name) {
            Some(old) if old.subdir || old.ts >= e.ts => {}
            _ => {
                by_name.insert(e.name.clone(), e);
            }
        }
    }
    let live = by_name.into_values().filter(|e| !e.deleted);
    let mut out: Vec<_> = if q.reverse {
        live.rev().collect()
    } else {
        live.collect()
    };
    out.truncate(q.limit as usize);
    out
}

fn db_target(p: &Placement, dev_name: &str, account: &str, container: &str) -> pb::DbTarget {
    pb::DbTarget {
        device: dev_name.to_string(),
        part: p.part,
        account: account.to_string(),
        container: container.to_string(),
    }
}

/// Reads info (and a listing, if `q` is given) from every replica and merges them.
async fn read(
    p: &Proxy,
    kind: RingKind,
    account: &str,
    container: &str,
    q: Option<&ListQuery>,
) -> SwiftResult<Merged> {
    let c = (!container.is_empty()).then_some(container);
    let place = p.cluster.place(kind, account, c, None)?;
    let results = p
        .cluster
        .read_all(&place, |dev| {
            let target = db_target(&place, &dev.name, account, container);
            async move {
                let mut cl = p.cluster.peers.db(&dev.node)?;
                match q {
                    Some(q) => {
                        let req = pb::ListRequest {
                            target: Some(target),
                            prefix: q.prefix.clone(),
                            delimiter: q.delimiter.clone(),
                            marker: q.marker.clone(),
                            end_marker: q.end_marker.clone(),
                            limit: q.limit.max(1),
                            reverse: q.reverse,
                        };
                        let r = cl.list(req).await?.into_inner();
                        Ok((r.info.unwrap_or_default(), r.entries))
                    }
                    None => {
                        let r = cl.info(target).await?.into_inner();
                        Ok((r.info.unwrap_or_default(), Vec::new()))
                    }
                }
            }
        })
        .await;
    let mut infos = Vec::new();
    let mut lists = Vec::new();
    for r in results {
        match r {
            Ok((i, e)) => {
                infos.push(i);
                lists.push(e);
            }
            Err(e) => tracing::info!(error = %e.message(), "database replica failed a read"),
        }
    }
    if infos.is_empty() {
        return Err(unavailable("no database replica answered"));
    }
    let info = merge_info(&infos);
    let entries = match q {
        Some(q) if info.exists => merge_entries(lists, q),
        _ => Vec::new(),
    };
    Ok(Merged { info, entries })
}

/// The merged info of an account (`container` empty) or container (503 if no replica
/// answers).
pub async fn info(p: &Proxy, account: &str, container: &str) -> SwiftResult<pb::DbInfo> {
    let kind = if container.is_empty() {
        RingKind::Account
    } else {
        RingKind::Container
    };
    Ok(read(p, kind, account, container, None).await?.info)
}

/// One page of a container's listing (404 if the container does not exist).
pub async fn list(
    p: &Proxy,
    account: &str,
    container: &str,
    q: &ListQuery,
) -> SwiftResult<Vec<pb::ListEntry>> {
    let m = read(p, RingKind::Container, account, container, Some(q)).await?;
    if !m.info.exists {
        return Err(not_found());
    }
    Ok(m.entries)
}

/// Every object under `prefix`, in name order, reading page after page.
pub async fn list_all(
    p: &Proxy,
    account: &str,
    container: &str,
    prefix: &str,
) -> SwiftResult<Vec<pb::ListEntry>> {
    let mut q = ListQuery {
        prefix: prefix.to_string(),
        limit: LISTING_LIMIT,
        ..Default::default()
    };
    let mut out = Vec::new();
    loop {
        let page = list(p, account, container, &q).await?;
        let full = page.len() == LISTING_LIMIT as usize;
        if let Some(last) = page.last() {
            q.marker = last.name.clone();
        }
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

fn render(
    kind: RingKind,
    name: &str,
    entries: &[pb::ListEntry],
    f: Format,
) -> (String, &'static str) {
    match f {
        Format::Plain => {
            let mut s = String::new();
            for e in entries {
                s.push_str(&e.name);
                s.push('\n');
            }
            (s, "text/plain; charset=utf-8")
        }
        Format::Json => {
            let items: Vec<serde_json::Value> = entries
                .iter()
                .map(|e| match (e.subdir, kind) {
                    (true, _) => serde_json::json!({ "subdir": e.name }),
                    (false, RingKind::Account) => serde_json::json!({
                        "name": e.name, "count": e.count, "bytes": e.bytes,
                        "last_modified": iso_date(e.ts),
                    }),
                    (false, _) => serde_json::json!({
                        "name": e.name, "hash": e.etag, "bytes": e.bytes,
                        "content_type": e.content_type, "last_modified": iso_date(e.ts),
                    }),
                })
                .collect();
            (
                serde_json::Value::Array(items).to_string(),
                "application/json; charset=utf-8",
            )
        }
        Format::Xml => {
            let (root, item) = match kind {
                RingKind::Account => ("account", "container"),
                _ => ("container", "object"),
            };
            let mut s = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root} name=\"{}\">",
                xml_escape(name)
            );
            for e in entries {
                let n = xml_escape(&e.name);
                if e.subdir {
                    s.push_str(&format!("<subdir name=\"{n}\"><name>{n}</name></subdir>"));
                } else if matches!(kind, RingKind::Account) {
                    s.push_str(&format!(
                        "<{item}><name>{n}</name><count>{}</count><bytes>{}</bytes><last_modified>{}</last_modified></{item}>",
                        e.count, e.bytes, iso_date(e.ts)
                    ));
                } else {
                    s.push_str(&format!(
                        "<{item}><name>{n}</name><hash>{}</hash><bytes>{}</bytes><content_type>{}</content_type><last_modified>{}</last_modified></{item}>",
                        e.etag, e.bytes, xml_escape(&e.content_type), iso_date(e.ts)
                    ));
                }
            }
            s.push_str(&format!("</{root}>"));
            (s, "application/xml; charset=utf-8")
        }
    }
}

fn with_headers(mut r: Response, pairs: Vec<(String, String)>) -> Response {
    let h = r.headers_mut();
    for (k, v) in pairs {
        if let (Ok(k), Ok(v)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            h.insert(k, v);
        }
    }
    r
}

fn info_headers(kind: RingKind, i: &pb::DbInfo) -> Vec<(String, String)> {
    let mut out = vec![
        (
            "x-timestamp".to_string(),
            Timestamp(i.created_ts).to_string(),
        ),
        (
            "x-put-timestamp".to_string(),
            Timestamp(i.put_ts).to_string(),
        ),
        ("last-modified".to_string(), http_date(i.put_ts)),
        ("accept-ranges".to_string(), "bytes".to_string()),
        ("x-storage-policy".to_string(), "Policy-0".to_string()),
    ];
    match kind {
        RingKind::Account => {
            out.push((
                "x-account-container-count".into(),
                i.container_count.to_string(),
            ));
            out.push(("x-account-object-count".into(), i.object_count.to_string()));
            out.push(("x-account-bytes-used".into(), i.bytes.to_string()));
        }
        _ => {
            out.push((
                "x-container-object-count".into(),
                i.object_count.to_string(),
            ));
            out.push(("x-container-bytes-used".into(), i.bytes.to_string()));
        }
    }
    for m in &i.meta {
        out.push((title_case(&m.key), m.value.clone()));
    }
    out
}

/// GET or HEAD of an account or container.
pub async fn get(
    p: &Proxy,
    kind: RingKind,
    account: &str,
    container: &str,
    query: Option<&str>,
    h: &HeaderMap,
    head: bool,
) -> SwiftResult<Response> {
    let q = list_query(query, h)?;
    let m = read(p, kind, account, container, (!head).then_some(&q)).await?;
    let mut info = m.info;
    if !info.exists {
        match kind {
            // Accounts exist implicitly (Swift's account_autocreate).
            RingKind::Account => {
                info = pb::DbInfo {
                    exists: true,
                    ..Default::default()
                }
            }
            _ => return Err(not_found()),
        }
    }
    let name = if container.is_empty() {
        account
    } else {
        container
    };
    let hdrs = info_headers(kind, &info);
    if head {
        return Ok(with_headers(StatusCode::NO_CONTENT.into_response(), hdrs));
    }
    let (body, ctype) = render(kind, name, &m.entries, q.format);
    let status = if m.entries.is_empty() && q.format == Format::Plain {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::OK
    };
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static(ctype));
    Ok(with_headers(r, hdrs))
}

/// Headers an account or container stores besides its `X-*-Meta-*`: ACLs and versioning.
const CONTAINER_HEADERS: &[&str] = &[
    "x-container-read",
    "x-container-write",
    "x-versions-location",
    "x-history-location",
];
const ACCOUNT_HEADERS: &[&str] = &["x-account-access-control"];

/// The metadata of an account or container write, with its ACL and versioning headers
/// checked (400 when malformed).
fn system_metadata(h: &HeaderMap, what: &str) -> SwiftResult<Vec<(String, String)>> {
    let extra = if what == "account" {
        ACCOUNT_HEADERS
    } else {
        CONTAINER_HEADERS
    };
    let meta = headers::metadata(h, what, extra)?;
    let set = |k: &str| meta.iter().any(|(n, v)| n == k && !v.is_empty());
    if set("x-versions-location") && set("x-history-location") {
        return Err(bad_request(
            "Only one of X-Versions-Location or X-History-Location may be specified",
        ));
    }
    for (k, v) in &meta {
        crate::acl::validate(k, v)?;
        crate::quota::validate_container_meta(k, v)?;
        if (k == "x-versions-location" || k == "x-history-location") && v.contains('/') {
            return Err(precondition_failed(format!(
                "{} container name cannot contain slashes",
                title_case(k)
            )));
        }
    }
    Ok(meta)
}

fn items(meta: Vec<(String, String)>, ts: u64) -> Vec<pb::MetaItem> {
    meta.into_iter()
        .map(|(key, value)| pb::MetaItem { key, value, ts })
        .collect()
}

/// PUT of a container, or POST of an account (which creates it): Db.Put on every replica.
pub async fn put(
    p: &Proxy,
    kind: RingKind,
    account: &str,
    container: &str,
    h: &HeaderMap,
) -> SwiftResult<Response> {
    let ts = Timestamp::now().0;
    let what = if container.is_empty() {
        "account"
    } else {
        "container"
    };
    let meta = items(system_metadata(h, what)?, ts);
    let c = (!container.is_empty()).then_some(container);
    let place = p.cluster.place(kind, account, c, None)?;
    let results = p
        .cluster
        .write_all(&place, |dev, _| {
            let req = pb::DbPutRequest {
                target: Some(db_target(&place, &dev.name, account, container)),
                ts,
                meta: meta.clone(),
            };
            async move { Ok(p.cluster.peers.db(&dev.node)?.put(req).await?.into_inner()) }
        })
        .await;
    let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    if ok.len() < place.quorum() {
        return Err(unavailable(format!("{what} PUT reached no quorum")));
    }
    p.forget(account, container);
    if kind == RingKind::Account {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let status = if ok.iter().any(|r| r.changed) {
        StatusCode::CREATED
    } else {
        StatusCode::ACCEPTED
    };
    Ok(SwiftError::new(status, "").into_response())
}

/// POST of a container: metadata.
pub async fn post(
    p: &Proxy,
    account: &str,
    container: &str,
    h: &HeaderMap,
) -> SwiftResult<Response> {
    let ts = Timestamp::now().0;
    let meta = items(system_metadata(h, "container")?, ts);
    let place = p
        .cluster
        .place(RingKind::Container, account, Some(container), None)?;
    let results = p
        .cluster
        .write_all(&place, |dev, _| {
            let req = pb::DbPostRequest {
                target: Some(db_target(&place, &dev.name, account, container)),
                meta: meta.clone(),
            };
            async move { Ok(p.cluster.peers.db(&dev.node)?.post(req).await?.into_inner()) }
        })
        .await;
    p.forget(account, container);
    let ok = results.iter().filter(|r| r.is_ok()).count();
    if ok >= place.quorum() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if results
        .iter()
        .any(|r| matches!(r, Err(s) if s.code() == tonic::Code::NotFound))
    {
        return Err(not_found());
    }
    Err(unavailable("container POST reached no quorum"))
}

/// DELETE of an empty container.
pub async fn delete(p: &Proxy, account: &str, container: &str) -> SwiftResult<Response> {
    let ts = Timestamp::now().0;
    let place = p
        .cluster
        .place(RingKind::Container, account, Some(container), None)?;
    p.forget(account, container);
    let results = p
        .cluster
        .write_all(&place, |dev, _| {
            let req = pb::DbDeleteRequest {
                target: Some(db_target(&place, &dev.name, account, container)),
                ts,
            };
            async move {
                Ok(p.cluster
                    .peers
                    .db(&dev.node)?
                    .delete(req)
                    .await?
                    .into_inner())
            }
        })
        .await;
    if results
        .iter()
        .any(|r| matches!(r, Err(s) if s.code() == tonic::Code::FailedPrecondition))
    {
        return Err(SwiftError::new(
            StatusCode::CONFLICT,
            "<html><h1>Conflict</h1><p>There was a conflict when trying to complete your request.</p></html>",
        ));
    }
    let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    if ok.len() < place.quorum() {
        return Err(unavailable("container DELETE reached no quorum"));
    }
    if !ok.iter().any(|r| r.changed) {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// An account PUT or DELETE: not allowed (Swift without `allow_account_management`).
pub fn account_management_refused() -> SwiftError {
    SwiftError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Account management is not allowed",
    )
    .with_header("allow", "HEAD, GET, POST".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate_query(query: Option<&str>) -> SwiftResult<()> {
        list_query(query, &HeaderMap::new()).map(|_| ())
    }

    fn e(name: &str, ts: u64, deleted: bool) -> pb::ListEntry {
        pb::ListEntry {
            name: name.into(),
            ts,
            deleted,
            ..Default::default()
        }
    }

    #[test]
    fn merge_honours_newest_rows_and_deletions() {
        let q = ListQuery {
            limit: 10,
            ..Default::default()
        };
        let a = vec![e("a", 1, false), e("b", 5, false), e("c", 1, false)];
        let b = vec![e("b", 6, true), e("c", 1, false), e("d", 2, false)];
        let names: Vec<_> = merge_entries(vec![a.clone(), b.clone()], &q)
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["a", "c", "d"]);
        let q = ListQuery {
            limit: 2,
            reverse: true,
            ..Default::default()
        };
        let names: Vec<_> = merge_entries(vec![a, b], &q)
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["d", "c"]);
    }

    #[test]
    fn query_validation() {
        assert_eq!(
            validate_query(Some("limit=10001"))
                .unwrap_err()
                .status
                .as_u16(),
            412
        );
        assert_eq!(
            validate_query(Some("limit=abc"))
                .unwrap_err()
                .status
                .as_u16(),
            412
        );
        assert_eq!(
            validate_query(Some("delimiter=ab"))
                .unwrap_err()
                .status
                .as_u16(),
            412
        );
        let q = list_query(
            Some("prefix=a%2Fb&format=json&reverse=true&limit=5"),
            &HeaderMap::new(),
        )
        .unwrap();
        assert_eq!(
            (q.prefix.as_str(), q.format, q.reverse, q.limit),
            ("a/b", Format::Json, true, 5)
        );
    }
}
