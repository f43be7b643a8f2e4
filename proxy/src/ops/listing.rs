//! Reading accounts and containers: their info and listings, merged across replicas.
//!
//! Reads ask every primary and merge: the newest row for each name wins (deleted rows
//! included), so after a write acknowledged by a quorum every listing shows it
//! (read-your-writes), even though each replica was updated separately.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use stratus_proto::storage as pb;

use crate::cluster::{Placement, RingKind};
use crate::error::{not_found, precondition_failed, unavailable, SwiftResult};
use crate::headers::hv;
use crate::names::decode_param;
use crate::proxy::Proxy;

/// Largest listing page (Swift's `container_listing_limit` / `account_listing_limit`).
pub const LISTING_LIMIT: u32 = 10_000;

/// Listing parameters from the query string.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    /// Only names starting with this.
    pub prefix: String,
    /// Roll names up to the first occurrence of this after the prefix (one character).
    pub delimiter: String,
    /// Only names after this.
    pub marker: String,
    /// Only names before this.
    pub end_marker: String,
    /// Most entries in the page.
    pub limit: u32,
    /// Names in reverse order.
    pub reverse: bool,
    /// Swift's `path=`: one level under `prefix` (set from it), without subdirs.
    pub path: bool,
    /// How the page is rendered.
    pub format: Format,
}

/// Listing output format.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One name a line.
    #[default]
    Plain,
    /// A JSON array.
    Json,
    /// An XML document.
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
    let mut path = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = decode_param(&v.replace('+', " "))?;
        match k {
            "prefix" => q.prefix = v,
            // Any string, as in Swift (multi-character delimiters included).
            "delimiter" => q.delimiter = v,
            "marker" => q.marker = v,
            "end_marker" => q.end_marker = v,
            "path" => path = Some(v),
            // As Swift: a limit that is not all digits is ignored (the default applies).
            "limit" if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                let n: u64 = v.parse().unwrap_or(u64::MAX);
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
    // As Swift's container server: `path` overrides `prefix` and `delimiter`.
    if let Some(path) = path {
        q.prefix = if path.is_empty() {
            path
        } else {
            format!("{}/", path.trim_end_matches('/'))
        };
        q.delimiter = "/".into();
        q.path = true;
    }
    Ok(q)
}

/// The merged view of a database's replicas.
pub struct Merged {
    /// The merged info.
    pub info: pb::DbInfo,
    /// The merged listing page (empty unless one was asked for).
    pub entries: Vec<pb::ListEntry>,
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

/// Merges replicas' entries per name: the newest row wins, an object row's data (size,
/// etag, deletion) and content type each by their own timestamp (a POST may have changed
/// the type on one replica and a newer PUT reached another), as the storage nodes merge
/// rows.
fn merge_entries(lists: Vec<Vec<pb::ListEntry>>, q: &ListQuery) -> Vec<pb::ListEntry> {
    let data_ts = |e: &pb::ListEntry| if e.data_ts == 0 { e.ts } else { e.data_ts };
    let ct_ts = |e: &pb::ListEntry| if e.ct_ts == 0 { data_ts(e) } else { e.ct_ts };
    let mut by_name: BTreeMap<String, pb::ListEntry> = BTreeMap::new();
    for e in lists.into_iter().flatten() {
        match by_name.get_mut(&e.name) {
            Some(old) if old.subdir => {}
            Some(old) => {
                let newer_type = ct_ts(&e) > ct_ts(old);
                let (ct, ct_at) = if newer_type {
                    (e.content_type.clone(), ct_ts(&e))
                } else {
                    (std::mem::take(&mut old.content_type), ct_ts(old))
                };
                if data_ts(&e) > data_ts(old) {
                    *old = e;
                }
                old.content_type = ct;
                old.data_ts = data_ts(old);
                old.ct_ts = ct_at;
                old.ts = old.ts.max(old.data_ts).max(ct_at);
            }
            None => {
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

/// The database target of `account`/`container` on the device `dev_name` of `p`.
pub fn db_target(p: &Placement, dev_name: &str, account: &str, container: &str) -> pb::DbTarget {
    pb::DbTarget {
        device: dev_name.to_string(),
        part: p.part,
        account: account.to_string(),
        container: container.to_string(),
    }
}

/// Whether a storage node ended a listing page early on deleted rows: it returns at most
/// `10 × limit` of them and stops at the next, so a page holding that many may have been
/// cut short (at worst, one more page is read to find it was not).
fn cut_short(entries: &[pb::ListEntry], limit: u32) -> bool {
    entries.iter().filter(|e| e.deleted).count() >= 10 * limit.max(1) as usize
}

/// Most pages one listing reads on past runs of deleted rows.
const MAX_ROUNDS: usize = 20;

/// The infos and listing pages of every replica that answered.
async fn read_round(
    p: &Proxy,
    kind: RingKind,
    account: &str,
    container: &str,
    q: Option<&ListQuery>,
) -> SwiftResult<(Vec<pb::DbInfo>, Vec<Vec<pb::ListEntry>>)> {
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
                            path: q.path,
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
    Ok((infos, lists))
}

/// Reads info (and a listing, if `q` is given) from every replica and merges them. A page
/// a replica cut short on a run of deleted rows is read on from where it stopped, until
/// the page is full or no replica has more.
pub async fn read(
    p: &Proxy,
    kind: RingKind,
    account: &str,
    container: &str,
    q: Option<&ListQuery>,
) -> SwiftResult<Merged> {
    let (infos, mut lists) = read_round(p, kind, account, container, q).await?;
    let info = merge_info(&infos);
    let Some(q) = q.filter(|_| info.exists) else {
        return Ok(Merged {
            info,
            entries: Vec::new(),
        });
    };
    let mut page = q.clone();
    let mut round = lists.clone();
    for _ in 1..MAX_ROUNDS {
        let stops = round
            .iter()
            .filter(|l| cut_short(l, page.limit))
            .filter_map(|l| l.last().map(|e| e.name.clone()));
        // Read on from the replica that got least far.
        let next = if q.reverse { stops.max() } else { stops.min() };
        let Some(next) = next else {
            break;
        };
        if merge_entries(lists.clone(), q).len() >= q.limit as usize || next == page.marker {
            break;
        }
        page.marker = next;
        // Read on in large pages: a run of deleted rows can be long (an account after many
        // containers came and went), and each page only goes 10 × its limit into one.
        page.limit = LISTING_LIMIT;
        round = read_round(p, kind, account, container, Some(&page))
            .await?
            .1;
        lists.extend(round.iter().cloned());
    }
    let entries = merge_entries(lists, q);
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

/// The objects under `prefix`, in name order, reading page after page, and stopping once
/// more than `max` are read (a caller that finds more than `max` knows there are too many,
/// without holding them all).
pub async fn list_upto(
    p: &Proxy,
    account: &str,
    container: &str,
    prefix: &str,
    max: usize,
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
        if !full || out.len() > max {
            return Ok(out);
        }
    }
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

    /// A replica that got a POSTed type and one that got a newer PUT's data merge field
    /// by field, in either order; a deletion still hides the row whatever its type's age.
    #[test]
    fn merge_takes_data_and_content_type_by_their_own_timestamps() {
        let q = ListQuery {
            limit: 10,
            ..Default::default()
        };
        let row = |data_ts, ct_ts, ct: &str, bytes, deleted| pb::ListEntry {
            name: "o".into(),
            ts: u64::max(data_ts, ct_ts),
            data_ts,
            ct_ts,
            content_type: ct.into(),
            bytes,
            deleted,
            ..Default::default()
        };
        let posted = row(10, 20, "image/b", 5, false);
        let put = row(15, 15, "text/x", 8, false);
        // An old node's entry: no data_ts/ct_ts.
        let mut old_node = row(10, 10, "text/a", 5, false);
        (old_node.data_ts, old_node.ct_ts) = (0, 0);
        for lists in [
            vec![
                vec![posted.clone()],
                vec![put.clone()],
                vec![old_node.clone()],
            ],
            vec![
                vec![old_node.clone()],
                vec![put.clone()],
                vec![posted.clone()],
            ],
        ] {
            let m = merge_entries(lists, &q);
            assert_eq!(
                (m[0].content_type.as_str(), m[0].bytes, m[0].ts),
                ("image/b", 8, 20)
            );
        }
        let deleted = row(15, 15, "", 0, true);
        for lists in [
            vec![vec![posted.clone()], vec![deleted.clone()]],
            vec![vec![deleted], vec![posted]],
        ] {
            assert!(merge_entries(lists, &q).is_empty());
        }
    }

    #[test]
    fn pages_cut_short_by_deleted_rows_are_told_apart() {
        let dead: Vec<_> = (0..30).map(|i| e(&format!("d{i:02}"), 1, true)).collect();
        assert!(cut_short(&dead, 3));
        assert!(!cut_short(&dead[..29], 3));
        assert!(!cut_short(&[e("a", 1, false)], 1));
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
        // Not all digits: ignored, as Swift ignores it (Python clients send `5000.0`).
        for q in ["limit=abc", "limit=5000.0", "limit=-1"] {
            let lq = list_query(Some(q), &HeaderMap::new()).unwrap();
            assert_eq!(lq.limit, LISTING_LIMIT, "{q}");
        }
        assert_eq!(
            list_query(Some("delimiter=-%26"), &HeaderMap::new())
                .unwrap()
                .delimiter,
            "-&",
            "a delimiter of several characters is taken as Swift takes it"
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
