//! Account and container GET and HEAD: their info as headers, and listings in `json`, `xml`
//! and `plain` form. Their writes are in [`crate::ops::database`], their merged reads in
//! [`crate::ops::listing`].

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use stratus_core::timestamp::Timestamp;
use stratus_proto::storage as pb;

use crate::cluster::RingKind;
use crate::error::{not_found, SwiftError, SwiftResult};
use crate::headers::{http_date, iso_date, title_case};
use crate::ops::listing::{list_query, read, Format};
use crate::ops::report::xml_escape;
use crate::proxy::Proxy;

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
                    (false, _) => {
                        let (ct, slo) = split_slo_etag(&e.content_type);
                        let mut v = serde_json::json!({
                            "name": e.name, "hash": e.etag, "bytes": e.bytes,
                            "content_type": ct, "last_modified": iso_date(e.ts),
                        });
                        if let Some(slo) = slo {
                            v["slo_etag"] = format!("\"{slo}\"").into();
                        }
                        v
                    }
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
                        e.etag, e.bytes, xml_escape(split_slo_etag(&e.content_type).0), iso_date(e.ts)
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

/// A listed content type and the SLO ETag a static large object's row carries with it
/// (`type;slo_etag=...`, as Swift stores it).
pub fn split_slo_etag(ct: &str) -> (&str, Option<&str>) {
    match ct.split_once(";slo_etag=") {
        Some((t, e)) => (t, Some(e)),
        None => (ct, None),
    }
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
        // A POST of metadata counts as a change, as in Swift; object writes do not.
        (
            "last-modified".to_string(),
            http_date(i.meta.iter().map(|m| m.ts).fold(i.put_ts, u64::max)),
        ),
        ("accept-ranges".to_string(), "bytes".to_string()),
        (
            "x-storage-policy".to_string(),
            crate::ops::database::STORAGE_POLICY.to_string(),
        ),
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

/// An account PUT or DELETE: not allowed (Swift without `allow_account_management`).
pub fn account_management_refused() -> SwiftError {
    SwiftError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Account management is not allowed",
    )
    .with_header("allow", "HEAD, GET, POST".into())
}
