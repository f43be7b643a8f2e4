//! Account and container GET and HEAD: their info as headers, and listings in `json`, `xml`
//! and `plain` form. Their writes are in [`crate::ops::database`], their merged reads in
//! [`crate::ops::listing`].

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use stratus_core::timestamp::Timestamp;
use stratus_proto::storage as pb;

use crate::cluster::RingKind;
use crate::error::{not_found, SwiftError, SwiftResult};
use crate::headers::meta_value;
use crate::headers::{http_date, iso_date, title_case};
use crate::names::Query;
use crate::ops::link::quote;
use crate::ops::listing::{list_query, read, Format, ListQuery};
use crate::ops::object_versioning::{
    is_reserved, parent_of, versions_container, Versioning, SYSMETA_ENABLED,
};
use crate::ops::report::xml_escape;
use crate::proxy::Proxy;
use crate::version_listing;

/// The JSON items of a listing page, as Swift's listing shows them.
pub(crate) fn json_items(
    kind: RingKind,
    account: &str,
    entries: &[pb::ListEntry],
) -> Vec<serde_json::Value> {
    let quoted_account = quote(account);
    entries
        .iter()
        .map(|e| match (e.subdir, kind) {
            (true, _) => serde_json::json!({ "subdir": e.name }),
            (false, RingKind::Account) => serde_json::json!({
                "name": e.name, "count": e.count, "bytes": e.bytes,
                "last_modified": iso_date(e.ts),
            }),
            (false, _) => {
                let l = Listed::parse(&e.content_type);
                let mut v = serde_json::json!({
                    "name": e.name, "hash": e.etag, "bytes": e.bytes,
                    "content_type": l.content_type, "last_modified": iso_date(e.ts),
                });
                if let Some(slo) = l.slo_etag {
                    v["slo_etag"] = format!("\"{slo}\"").into();
                }
                if let Some(t) = l.symlink_target {
                    let a = l.symlink_account.unwrap_or(&quoted_account);
                    v["symlink_path"] = format!("/v1/{a}/{t}").into();
                }
                if let Some(etag) = l.symlink_etag {
                    v["symlink_etag"] = etag.into();
                }
                if let Some(b) = l.symlink_bytes {
                    v["symlink_bytes"] = b.into();
                }
                v
            }
        })
        .collect()
}

fn render(
    kind: RingKind,
    account: &str,
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
        Format::Json => (
            serde_json::Value::Array(json_items(kind, account, entries)).to_string(),
            "application/json; charset=utf-8",
        ),
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
                        e.etag, e.bytes, xml_escape(Listed::parse(&e.content_type).content_type), iso_date(e.ts)
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

/// A listed content type and what a row carries after it (`type;slo_etag=...`, a
/// symlink's `;symlink_target=...` and the rest, as the storage nodes keep them).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Listed<'a> {
    pub(crate) content_type: &'a str,
    pub(crate) slo_etag: Option<&'a str>,
    /// `container/object`, quoted.
    pub(crate) symlink_target: Option<&'a str>,
    /// Quoted.
    pub(crate) symlink_account: Option<&'a str>,
    pub(crate) symlink_etag: Option<&'a str>,
    pub(crate) symlink_bytes: Option<u64>,
}

impl<'a> Listed<'a> {
    pub(crate) fn parse(ct: &'a str) -> Self {
        let start = [";slo_etag=", ";symlink_target="]
            .iter()
            .filter_map(|m| ct.find(m))
            .min();
        let Some(start) = start else {
            return Listed {
                content_type: ct,
                ..Default::default()
            };
        };
        let mut l = Listed {
            content_type: &ct[..start],
            ..Default::default()
        };
        for param in ct[start + 1..].split(';') {
            let Some((k, v)) = param.split_once('=') else {
                continue;
            };
            match k {
                "slo_etag" => l.slo_etag = Some(v),
                "symlink_target" => l.symlink_target = Some(v),
                "symlink_target_account" => l.symlink_account = Some(v),
                "symlink_target_etag" => l.symlink_etag = Some(v),
                "symlink_target_bytes" => l.symlink_bytes = v.parse().ok(),
                _ => {}
            }
        }
        l
    }
}

/// The content type a listing shows for a stored row's (without what the row carries after
/// it: an SLO's ETag, a symlink's target).
pub fn listed_content_type(ct: &str) -> &str {
    Listed::parse(ct).content_type
}

/// Swift's headers of an account's or container's info; `policy` is a container's
/// storage policy, by name.
fn info_headers(kind: RingKind, i: &pb::DbInfo, policy: Option<String>) -> Vec<(String, String)> {
    let mut out = vec![
        (
            "x-timestamp".to_string(),
            Timestamp(i.created_ts).to_string(),
        ),
        (
            "x-put-timestamp".to_string(),
            Timestamp(i.put_ts).to_string(),
        ),
        // A POST of metadata counts as a change, as in Swift; object writes do not.
        (
            "last-modified".to_string(),
            http_date(i.meta.iter().map(|m| m.ts).fold(i.put_ts, u64::max)),
        ),
        ("accept-ranges".to_string(), "bytes".to_string()),
    ];
    if let Some(name) = policy {
        out.push(("x-storage-policy".to_string(), name));
    }
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
    // System metadata is the proxy's own, never shown.
    for m in i
        .meta
        .iter()
        .filter(|m| !m.key.contains("-sysmeta-") && !m.key.starts_with("x-backend-"))
    {
        out.push((title_case(&m.key), m.value.clone()));
    }
    out
}

/// GET or HEAD of an account or container. Versioned containers show their flag
/// (`X-Versions-Enabled`) and the bytes of their versions, and list their versions links
/// as the versions they point to; `?versions` lists every version
/// ([`crate::version_listing`]). Hidden (reserved) containers are never listed: their
/// bytes count with the container they belong to.
pub async fn get(
    p: &Proxy,
    kind: RingKind,
    account: &str,
    container: &str,
    query: Option<&str>,
    h: &HeaderMap,
    head: bool,
) -> SwiftResult<Response> {
    let mut q = list_query(query, h)?;
    let params = Query::parse(query);
    let versions = kind == RingKind::Container && !head && params.has("versions");
    let page_limit = q.limit;
    if versions {
        version_listing::check(&params, h)?;
        q.format = Format::Json;
        q.limit = version_listing::widened(q.limit);
    }
    if kind == RingKind::Account && !q.reverse && q.marker.as_str() < HIDDEN_END {
        // Reserved names sort first: the page starts after them.
        q.marker = HIDDEN_END.to_string();
    }
    let m = read(p, kind, account, container, (!head).then_some(&q)).await?;
    let mut info = m.info;
    let mut entries = m.entries;
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
    let versioning = match kind {
        RingKind::Container => Versioning::of(&info),
        _ => None,
    };
    let policy =
        (kind == RingKind::Container).then(|| p.policy_name(crate::ops::info::policy_of(&info)));
    let mut hdrs = info_headers(kind, &info, policy);
    if let Some(v) = &versioning {
        let hidden = crate::ops::listing::info(p, account, &v.container).await?;
        if hidden.exists {
            for (k, val) in hdrs.iter_mut() {
                if k == "x-container-bytes-used" {
                    *val = (info.bytes + hidden.bytes).to_string();
                }
            }
        }
    }
    if let Some(flag) = meta_value(&info.meta, SYSMETA_ENABLED) {
        hdrs.push(("x-versions-enabled".into(), flag.to_string()));
    }
    if head {
        return Ok(with_headers(StatusCode::NO_CONTENT.into_response(), hdrs));
    }
    if kind == RingKind::Account {
        entries.retain(|e| !is_reserved(&e.name));
        add_versions_bytes(p, account, &mut entries).await?;
    }
    let location = match &versioning {
        Some(v) => v.container.clone(),
        None => versions_container(container),
    };
    if kind == RingKind::Container {
        for e in entries.iter_mut() {
            version_listing::as_version(e, &location);
        }
    }
    let (body, ctype) = if kind == RingKind::Container && q.format == Format::Json {
        let mut items = json_items(kind, account, &entries);
        version_listing::links(&mut items, container, &location, versions);
        if versions {
            items = version_listing::page(p, account, &location, items, &params, &q, page_limit)
                .await?;
        }
        (
            serde_json::Value::Array(items).to_string(),
            "application/json; charset=utf-8",
        )
    } else {
        render(kind, account, name, &entries, q.format)
    };
    let status = if entries.is_empty() && q.format == Format::Plain {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::OK
    };
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static(ctype));
    Ok(with_headers(r, hdrs))
}

/// Just past every reserved name (`\0...`): where an account's visible listing starts.
const HIDDEN_END: &str = "\u{0}\u{10FFFF}";

/// Adds to each listed container the bytes its hidden versions container holds (as
/// Swift's account listing shows them).
async fn add_versions_bytes(
    p: &Proxy,
    account: &str,
    entries: &mut [pb::ListEntry],
) -> SwiftResult<()> {
    if entries.iter().all(|e| e.subdir) {
        return Ok(());
    }
    let q = ListQuery {
        prefix: versions_container(""),
        limit: crate::ops::listing::LISTING_LIMIT,
        ..Default::default()
    };
    let hidden = read(p, RingKind::Account, account, "", Some(&q)).await?;
    for h in hidden.entries {
        let Some(parent) = parent_of(&h.name) else {
            continue;
        };
        if let Some(e) = entries.iter_mut().find(|e| !e.subdir && e.name == parent) {
            e.bytes += h.bytes;
        }
    }
    Ok(())
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

    /// What the storage nodes append to a row's content type comes back as listing keys.
    #[test]
    fn listed_types_split_as_stored() {
        assert_eq!(
            Listed::parse("text/plain; charset=utf-8").content_type,
            "text/plain; charset=utf-8"
        );
        let l = Listed::parse("application/json;slo_etag=abc");
        assert_eq!(
            (l.content_type, l.slo_etag),
            ("application/json", Some("abc"))
        );
        let l = Listed::parse(
            "a/b;slo_etag=s;symlink_target=c/o%3Bx;symlink_target_account=AUTH_b;symlink_target_etag=e;symlink_target_bytes=12",
        );
        assert_eq!(
            l,
            Listed {
                content_type: "a/b",
                slo_etag: Some("s"),
                symlink_target: Some("c/o%3Bx"),
                symlink_account: Some("AUTH_b"),
                symlink_etag: Some("e"),
                symlink_bytes: Some(12),
            }
        );
        let l = Listed::parse("application/symlink;symlink_target=c/o");
        assert_eq!(
            (l.content_type, l.symlink_target),
            ("application/symlink", Some("c/o"))
        );
    }
}
