//! What marks a large object's manifest, and what an SLO manifest stores.
//!
//! A **DLO** manifest carries `X-Object-Manifest: container/prefix`; an **SLO** manifest
//! carries `X-Static-Large-Object: True`, its total size and ETag as system metadata, and a
//! JSON list of [`Entry`] as its body. Both are ordinary objects to the storage nodes: only
//! the proxy reads them as large objects (see [`crate::ops::segments`]).

use serde::{Deserialize, Serialize};
use stratus_proto::storage as pb;

use crate::headers::{self, meta_value};
use crate::ops::object::ObjPath;

/// Largest SLO manifest body (Swift's `max_manifest_size`).
pub const MAX_MANIFEST_SIZE: usize = 8 * 1024 * 1024;

/// Deepest nesting of SLOs within SLOs.
pub const MAX_NESTING: usize = 10;

/// The metadata that marks an SLO manifest (`True`).
pub const SLO_FLAG: &str = "x-static-large-object";
/// An SLO's ETag, kept as system metadata of its manifest.
pub const SLO_ETAG: &str = "x-object-sysmeta-slo-etag";
/// An SLO's total size, kept as system metadata of its manifest.
pub const SLO_SIZE: &str = "x-object-sysmeta-slo-size";
/// The metadata that makes an object a DLO manifest: `container/prefix`.
pub const DLO_HEADER: &str = "x-object-manifest";

/// Whether an object is an SLO manifest.
pub fn is_slo(m: &pb::ObjectMeta) -> bool {
    meta_value(&m.meta, SLO_FLAG).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Whether an object is a DLO or SLO manifest.
pub fn is_manifest(m: &pb::ObjectMeta) -> bool {
    is_slo(m) || meta_value(&m.meta, DLO_HEADER).is_some()
}

/// One stored SLO segment: an object (or a range of it), or inline data.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
pub struct Entry {
    /// `/container/object` of the segment (empty for inline data).
    #[serde(default)]
    pub name: String,
    /// Bytes the segment contributes (its range's length, if ranged; for inline data the
    /// decoded length, filled in by [`parse_entries`]).
    #[serde(default)]
    pub bytes: u64,
    /// The segment's ETag (an SLO's own ETag if nested; the MD5 of inline data).
    #[serde(default)]
    pub hash: String,
    /// The segment's content type.
    #[serde(default)]
    pub content_type: String,
    /// When the segment was last modified, as listings show it.
    #[serde(default)]
    pub last_modified: String,
    /// The byte range of the segment used, `first-last`.
    #[serde(default)]
    pub range: Option<String>,
    /// Whether the segment is itself an SLO.
    #[serde(default)]
    pub sub_slo: bool,
    /// Inline data, base64 (stored as Swift stores it: `{"data": "..."}` alone).
    #[serde(default)]
    pub data: Option<String>,
    /// The inline data decoded, once, by [`parse_entries`] (never stored).
    #[serde(skip)]
    pub raw: Option<bytes::Bytes>,
}

impl Serialize for Entry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if let Some(d) = &self.data {
            let mut m = s.serialize_map(Some(1))?;
            m.serialize_entry("data", d)?;
            return m.end();
        }
        #[derive(Serialize)]
        struct Stored<'a> {
            name: &'a str,
            bytes: u64,
            hash: &'a str,
            content_type: &'a str,
            last_modified: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            range: Option<&'a str>,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            sub_slo: bool,
        }
        Stored {
            name: &self.name,
            bytes: self.bytes,
            hash: &self.hash,
            content_type: &self.content_type,
            last_modified: &self.last_modified,
            range: self.range.as_deref(),
            sub_slo: self.sub_slo,
        }
        .serialize(s)
    }
}

/// Base64 as Swift's `strict_b64decode` takes it: the standard alphabet, padding optional.
const B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Decodes inline segment data (`None` if it is not base64).
pub fn decode_data(d: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    B64.decode(d.trim()).ok()
}

/// Encodes inline segment data as it is stored (padded).
pub fn encode_data(raw: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Reads a stored manifest: its entries, inline data decoded and sized by its length.
pub fn parse_entries(raw: &[u8]) -> Result<Vec<Entry>, String> {
    let mut v: Vec<Entry> = serde_json::from_slice(raw).map_err(|e| e.to_string())?;
    for e in &mut v {
        if let Some(d) = &e.data {
            let raw = decode_data(d).ok_or("inline data is not base64")?;
            e.bytes = raw.len() as u64;
            e.raw = Some(raw.into());
        }
    }
    Ok(v)
}

/// `/container/object` of a manifest entry, in `account`.
pub fn entry_path(account: &str, name: &str) -> Option<ObjPath> {
    let (c, o) = name.trim_start_matches('/').split_once('/')?;
    (!c.is_empty() && !o.is_empty()).then(|| ObjPath {
        account: account.to_string(),
        container: c.to_string(),
        object: o.to_string(),
    })
}

/// `a-b`, `a-` or `-n` of a segment of `size` bytes, as `[start, end)`.
pub fn segment_range(r: &str, size: u64) -> Option<(u64, u64)> {
    let b = headers::parse_range(r)?.resolve(size).ok()?;
    Some((b.start, b.end))
}

/// Whether metadata belongs to a manifest (and is not carried over to a copy of the
/// assembled object).
pub fn is_manifest_meta(key: &str) -> bool {
    key == DLO_HEADER || key == SLO_FLAG || key.starts_with("x-object-sysmeta-slo-")
}
