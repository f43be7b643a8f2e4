//! Listing a database's rows with Swift's query parameters.
//!
//! Rows are keyed by name under their database's row prefix, so a listing is one ordered
//! scan (forwards, or backwards for `reverse`) that seeks past every name under a subdir
//! once the subdir is listed. Deleted rows met on the way come back flagged, but no more
//! than ten times `limit` of them, so a container full of tombstones cannot stall a listing.

use stratus_proto::storage as pb;

use super::records::{dec, ContRow, ObjRow};
use super::target::{Kind, Target};
use crate::device::{Device, DeviceError};

/// Lists a database's rows in name order (or reverse) with Swift's `prefix`, `delimiter`,
/// `marker`, `end_marker` and `limit`. `limit` counts live entries; deleted rows met on the
/// way are returned too (flagged), so a proxy merging replicas can honour deletions.
pub fn list(
    dev: &Device,
    t: &Target,
    q: &pb::ListRequest,
) -> Result<Vec<pb::ListEntry>, DeviceError> {
    let base = t.row_prefix();
    let mut scan_prefix = base.clone();
    scan_prefix.extend_from_slice(q.prefix.as_bytes());
    let limit = q.limit.max(1) as usize;
    // Lower and upper bounds on names, exclusive, from marker/end_marker.
    let (after, before) = if q.reverse {
        (&q.end_marker, &q.marker)
    } else {
        (&q.marker, &q.end_marker)
    };
    let mut start = base.clone();
    if q.reverse {
        // Start from the top of the prefix range, or just below `before`.
        if before.is_empty() {
            start = scan_prefix.clone();
            start.extend_from_slice(&[0xff; 8]);
        } else {
            start.extend_from_slice(before.as_bytes());
        }
    } else if !after.is_empty() && after.as_bytes() > q.prefix.as_bytes() {
        start.extend_from_slice(after.as_bytes());
        start.push(0);
    } else {
        start = scan_prefix.clone();
    }
    let mut out = Vec::new();
    let mut live = 0usize;
    let mut tombstones = 0usize;
    let mut seek: Option<Vec<u8>> = Some(start);
    // Rows under a subdir already listed (walking down, the seek can land inside it).
    let mut skip: Option<Vec<u8>> = None;
    'outer: while let Some(from) = seek.take() {
        for item in dev.scan(t.cf(), &from, q.reverse) {
            let (k, v) = item?;
            // (A `path` listing keeps the directory's own marker, met last walking down.)
            if skip
                .as_ref()
                .is_some_and(|s| k.starts_with(s) && !(q.path && k.len() == s.len()))
            {
                continue;
            }
            if !k.starts_with(&scan_prefix) {
                if q.reverse && k.as_ref() > scan_prefix.as_slice() {
                    continue; // above the prefix range while walking down
                }
                break 'outer;
            }
            let name = String::from_utf8_lossy(&k[base.len()..]).into_owned();
            if !after.is_empty() && name.as_str() <= after.as_str() {
                if q.reverse {
                    break 'outer;
                }
                continue;
            }
            if !before.is_empty() && name.as_str() >= before.as_str() {
                if q.reverse {
                    continue;
                }
                break 'outer;
            }
            if q.path && name == q.prefix {
                continue; // the path's own marker
            }
            let entry = row_entry(dev, t, &name, &v)?;
            if !q.delimiter.is_empty() {
                let rest = &name[q.prefix.len()..];
                let found = rest.find(q.delimiter.as_str());
                // A `path` listing shows a directory's marker (`a/b/` under `a/`) as the
                // object it is, and nothing deeper.
                let deeper = found.filter(|i| !q.path || i + q.delimiter.len() < rest.len());
                if let Some(i) = deeper {
                    if entry.deleted || q.path {
                        if q.path {
                            let mut next = base.clone();
                            next.extend_from_slice(q.prefix.as_bytes());
                            next.extend_from_slice(&rest.as_bytes()[..i + q.delimiter.len()]);
                            skip = Some(next.clone());
                            if !q.reverse {
                                next.extend_from_slice(&[0xff; 8]);
                            }
                            seek = Some(next);
                            continue 'outer;
                        }
                        continue;
                    }
                    let dir = format!("{}{}", q.prefix, &rest[..i + q.delimiter.len()]);
                    let mut next = base.clone();
                    next.extend_from_slice(dir.as_bytes());
                    skip = Some(next.clone());
                    if !q.reverse {
                        // Skip past every name under `dir`.
                        next.extend_from_slice(&[0xff; 8]);
                    }
                    let subdir_after_marker = after.is_empty() || dir.as_str() > after.as_str();
                    if subdir_after_marker {
                        out.push(pb::ListEntry {
                            name: dir,
                            subdir: true,
                            ..Default::default()
                        });
                        live += 1;
                        if live >= limit {
                            break 'outer;
                        }
                    }
                    seek = Some(next);
                    continue 'outer;
                }
            }
            if entry.deleted {
                tombstones += 1;
                if tombstones > 10 * limit {
                    break 'outer;
                }
            } else {
                live += 1;
            }
            out.push(entry);
            if live >= limit {
                break 'outer;
            }
        }
    }
    Ok(out)
}

/// The listing entry of a stored row.
fn row_entry(dev: &Device, t: &Target, name: &str, v: &[u8]) -> Result<pb::ListEntry, DeviceError> {
    Ok(match t.kind {
        Kind::Container => {
            let r = ObjRow::decode(dev, v)?;
            pb::ListEntry {
                name: name.to_string(),
                subdir: false,
                deleted: r.deleted,
                ts: r.last_modified(),
                bytes: r.size,
                count: 0,
                data_ts: r.ts,
                ct_ts: r.ct_ts,
                content_type: r.content_type,
                etag: r.etag,
            }
        }
        Kind::Account => {
            let r: ContRow = dec(dev, v)?;
            pb::ListEntry {
                name: name.to_string(),
                subdir: false,
                deleted: !r.live(),
                ts: r.put_ts.max(r.delete_ts),
                bytes: r.bytes,
                count: r.object_count,
                content_type: String::new(),
                etag: String::new(),
                ..Default::default()
            }
        }
    })
}
