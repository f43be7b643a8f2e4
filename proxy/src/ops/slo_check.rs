//! Checking an SLO manifest's segments, as Swift's `slo` does before it stores one: each
//! exists and is readable by the writer, and matches the size, ETag and range the manifest
//! gives. Used by a manifest PUT and by a copy of a manifest as it is stored.

use axum::http::HeaderMap;
use futures::StreamExt;
use md5::{Digest, Md5};

use crate::acl::Identity;
use crate::error::{bad_request, conflict, status_line, SwiftResult};
use crate::headers::{iso_date, meta_value};
use crate::ops::link;
use crate::ops::manifest::{
    encode_data, entry_path, is_slo, parse_entries, segment_range, Entry, DLO_HEADER, SLO_ETAG,
    SLO_SIZE,
};
use crate::ops::object::ObjPath;
use crate::ops::symlink::{follow, Reader};
use crate::proxy::Proxy;

/// Smallest segment (Swift's `min_segment_size`).
pub const MIN_SEGMENT_SIZE: u64 = 1;

/// A checked entry, before its segment is looked at.
#[derive(Debug)]
pub struct Wanted {
    /// `/container/object`, as the stored manifest names it.
    pub name: String,
    /// How reports name it: as the manifest did, quoted (Swift's).
    pub shown: String,
    pub path: ObjPath,
    pub etag: Option<String>,
    pub size: Option<u64>,
    pub range: Option<String>,
    /// An inline data segment's bytes (then nothing else is set).
    pub data: Option<Vec<u8>>,
}

/// Looks at one segment: its stored entry, or why it cannot be one.
async fn check_segment(
    p: &Proxy,
    who: &Identity,
    w: &Wanted,
    h: &HeaderMap,
) -> Result<Entry, String> {
    if let Some(raw) = &w.data {
        // As Swift: inline data counts in the ETag as the MD5 of its bytes.
        return Ok(Entry {
            bytes: raw.len() as u64,
            hash: hex::encode(Md5::digest(raw)),
            data: Some(encode_data(raw)),
            ..Default::default()
        });
    }
    if let Err(e) = p
        .access(who, true, &w.path.account, Some(&w.path.container), true, h)
        .await
    {
        return Err(status_line(e.status));
    }
    // A segment that is a symlink stands for its target (Swift's `slo` reads segments
    // through `symlink`); the manifest keeps the link's name.
    let reader = Reader::Token {
        who: who.clone(),
        account: w.path.account.clone(),
    };
    let found = match follow(p, &reader, &w.path, &HeaderMap::new(), true).await {
        Ok(f) => f.found,
        Err(e) => return Err(status_line(e.status)),
    };
    let m = found.meta;
    let sub_slo = is_slo(&m);
    if meta_value(&m.meta, DLO_HEADER).is_some() {
        return Err("Dynamic large objects cannot be segments".into());
    }
    let (etag, size) = if sub_slo {
        (
            meta_value(&m.meta, SLO_ETAG)
                .unwrap_or_default()
                .to_string(),
            meta_value(&m.meta, SLO_SIZE)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        )
    } else {
        (m.etag.clone(), m.size)
    };
    let mut problems = Vec::new();
    if w.size.is_some_and(|s| s != size) {
        problems.push("Size Mismatch");
    }
    if w.etag.as_ref().is_some_and(|e| *e != etag) {
        problems.push("Etag Mismatch");
    }
    let bytes = match &w.range {
        Some(r) => match segment_range(r, size) {
            Some((a, b)) => b - a,
            None => {
                problems.push("Unsatisfiable Range");
                0
            }
        },
        None => size,
    };
    if problems.is_empty() && bytes < MIN_SEGMENT_SIZE {
        problems.push("Too small; each segment must be at least 1 byte.");
    }
    if !problems.is_empty() {
        return Err(problems.join(", "));
    }
    Ok(Entry {
        name: w.name.clone(),
        bytes,
        hash: etag,
        content_type: m.content_type.clone(),
        last_modified: iso_date(m.meta_ts.max(m.ts)),
        range: w
            .range
            .as_ref()
            .and_then(|r| segment_range(r, size).map(|(a, b)| format!("{a}-{}", b - 1))),
        sub_slo,
        data: None,
        raw: None,
    })
}

/// Checks every segment of `wanted` with `who`'s rights: their entries, or each problem.
pub async fn check_all(
    p: &Proxy,
    who: &Identity,
    wanted: &[Wanted],
    h: &HeaderMap,
) -> Result<Vec<Entry>, Vec<(String, String)>> {
    let lookups: Vec<_> = wanted
        .iter()
        .map(|w| Box::pin(check_segment(p, who, w, h)))
        .collect();
    let checks = futures::stream::iter(lookups)
        .buffered(10)
        .collect::<Vec<_>>()
        .await;
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (w, r) in wanted.iter().zip(checks) {
        match r {
            Ok(e) => entries.push(e),
            Err(why) => errors.push((w.shown.clone(), why)),
        }
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

/// Before an SLO manifest is copied as stored (`?multipart-manifest=get`): its segments are
/// checked again, in the destination's `account` and with the writer's rights, since Swift's
/// copy of a manifest is a manifest PUT there (400 naming each problem otherwise). Its
/// segment names are relative to the account they are read in.
pub async fn check_copied_manifest(
    p: &Proxy,
    who: &Identity,
    account: &str,
    manifest: &[u8],
    h: &HeaderMap,
) -> SwiftResult<()> {
    let entries = parse_entries(manifest).map_err(conflict)?;
    let mut wanted = Vec::with_capacity(entries.len());
    for e in entries {
        if let Some(raw) = e.raw {
            wanted.push(Wanted {
                name: String::new(),
                shown: String::new(),
                path: ObjPath::default(),
                etag: None,
                size: None,
                range: None,
                data: Some(raw.to_vec()),
            });
            continue;
        }
        let path = entry_path(account, &e.name).ok_or_else(|| conflict("bad manifest entry"))?;
        wanted.push(Wanted {
            shown: link::quote(&e.name),
            name: e.name,
            path,
            etag: Some(e.hash),
            // A ranged entry keeps the range's length, not the segment's size.
            size: e.range.is_none().then_some(e.bytes),
            range: e.range,
            data: None,
        });
    }
    let errors = check_all(p, who, &wanted, h)
        .await
        .err()
        .unwrap_or_default();
    if errors.is_empty() {
        return Ok(());
    }
    let (text, ctype) = crate::ops::report::body(Vec::new(), &errors, h, "upload");
    Err(bad_request(text).with_header("content-type", ctype.into()))
}
