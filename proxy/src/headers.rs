//! Header rules shared by handlers: metadata (Swift's constraints), ranges, conditional
//! requests, dates.

use std::time::{Duration, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use bytes::Bytes;
use stratus_proto::storage as pb;

use crate::error::{bad_request, precondition_failed, SwiftError, SwiftResult};

/// Longest metadata name after the prefix (Swift's `max_meta_name_length`).
pub const MAX_META_NAME: usize = 128;
/// Longest metadata value.
pub const MAX_META_VALUE: usize = 256;
/// Most metadata items on one entity.
pub const MAX_META_COUNT: usize = 90;
/// Most bytes of metadata (names + values) on one entity.
pub const MAX_META_OVERALL: usize = 4096;

/// A header's value as text, if present and UTF-8. Swift takes UTF-8 in header values
/// (metadata, content types, names in `Destination`), which `HeaderValue::to_str`, being
/// ASCII only, would refuse.
pub fn hv<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(utf8)
}

/// A header value as UTF-8 text, if it is.
pub fn utf8(v: &HeaderValue) -> Option<&str> {
    std::str::from_utf8(v.as_bytes()).ok()
}

/// Starts a stored object metadata value whose bytes are not UTF-8 (a header value can
/// hold no NUL, so no UTF-8 value starts with it); the bytes follow in hex. Swift keeps
/// such values as they came (py3 Swift's `surrogateescape`); so do we, through stores
/// whose values are strings.
const RAW_MARK: &str = "\0";

/// An object metadata value as stored: its text, or [`RAW_MARK`] and its bytes in hex.
fn stored_object_value(v: &HeaderValue) -> String {
    match utf8(v) {
        Some(s) => s.to_string(),
        None => format!("{RAW_MARK}{}", hex::encode(v.as_bytes())),
    }
}

/// The header bytes of a stored metadata value (see [`RAW_MARK`]).
pub fn stored_value_bytes(stored: &str) -> std::borrow::Cow<'_, [u8]> {
    match stored
        .strip_prefix(RAW_MARK)
        .and_then(|h| hex::decode(h).ok())
    {
        Some(raw) => std::borrow::Cow::Owned(raw),
        None => std::borrow::Cow::Borrowed(stored.as_bytes()),
    }
}

/// `x-object-meta-color` → `X-Object-Meta-Color`.
pub fn title_case(name: &str) -> String {
    name.split('-')
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// User metadata of a request for `kind` (`object`, `container`, `account`): every
/// `X-<Kind>-Meta-*` header (lower-cased names; `X-Remove-<Kind>-Meta-*` as empty values),
/// plus `extra` headers stored verbatim. Checked against Swift's constraints (400).
pub fn metadata(h: &HeaderMap, kind: &str, extra: &[&str]) -> SwiftResult<Vec<(String, String)>> {
    let prefix = format!("x-{kind}-meta-");
    let remove = format!("x-remove-{kind}-meta-");
    let mut out = Vec::new();
    let (mut count, mut size) = (0, 0);
    for (k, v) in h {
        let name = k.as_str();
        let (key, value) = if let Some(short) = name.strip_prefix(&prefix) {
            // Objects keep values that are not UTF-8, as Swift does; the databases of
            // accounts and containers do not.
            let stored = match kind {
                "object" => stored_object_value(v),
                _ => utf8(v)
                    .ok_or_else(|| bad_request("Metadata must be valid UTF-8"))?
                    .to_string(),
            };
            if short.is_empty() {
                return Err(bad_request("Metadata name cannot be empty"));
            }
            if short.len() > MAX_META_NAME {
                return Err(bad_request(format!("Metadata name too long: {name}")));
            }
            let len = v.as_bytes().len();
            if len > MAX_META_VALUE {
                return Err(bad_request(format!(
                    "Metadata value longer than {MAX_META_VALUE}: {name}"
                )));
            }
            count += 1;
            size += short.len() + len;
            (name.to_string(), stored)
        } else if let Some(short) = name.strip_prefix(&remove) {
            (format!("{prefix}{short}"), String::new())
        } else if name
            .strip_prefix("x-remove-")
            .is_some_and(|short| extra.contains(&format!("x-{short}").as_str()))
        {
            // X-Remove-Container-Read and the like clear a stored header.
            (format!("x-{}", &name["x-remove-".len()..]), String::new())
        } else if extra.contains(&name) {
            let v = utf8(v).ok_or_else(|| bad_request(format!("{name} must be valid UTF-8")))?;
            (name.to_string(), v.to_string())
        } else {
            continue;
        };
        out.push((key, value));
    }
    check_meta_totals(count, size)?;
    // A value set in the same request wins over its removal (Swift's rule for
    // `X-Versions-Location` with `X-Remove-Versions-Location`), whatever the header order.
    let set: Vec<String> = out
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, _)| k.clone())
        .collect();
    out.retain(|(k, v)| !v.is_empty() || !set.contains(k));
    Ok(out)
}

/// Swift's limits on an account's or container's metadata as stored: `new` (a write's
/// items; an empty value removes) merged over `stored`, counting every `X-<Kind>-Meta-*`
/// item with a value (400 over a limit). A write within the limits by itself may still
/// take the total over them.
pub fn check_merged_metadata(
    stored: &[pb::MetaItem],
    new: &[(String, String)],
    kind: &str,
) -> SwiftResult<()> {
    let prefix = format!("x-{kind}-meta-");
    let mut merged: std::collections::BTreeMap<&str, &str> = stored
        .iter()
        .map(|i| (i.key.as_str(), i.value.as_str()))
        .collect();
    for (k, v) in new {
        merged.insert(k, v);
    }
    let (mut count, mut size) = (0, 0);
    for (k, v) in merged {
        if let Some(short) = k.strip_prefix(&prefix).filter(|_| !v.is_empty()) {
            count += 1;
            size += short.len() + v.len();
        }
    }
    check_meta_totals(count, size)
}

/// Swift's limits on metadata items and their total size (names without their prefix).
fn check_meta_totals(count: usize, size: usize) -> SwiftResult<()> {
    if count > MAX_META_COUNT {
        return Err(bad_request(format!(
            "Too many metadata items; max {MAX_META_COUNT}"
        )));
    }
    if size > MAX_META_OVERALL {
        return Err(bad_request(format!(
            "Total metadata too large; max {MAX_META_OVERALL}"
        )));
    }
    Ok(())
}

/// A non-empty metadata value of an object, account or container (`key` lower-case).
pub fn meta_value<'a>(items: &'a [pb::MetaItem], key: &str) -> Option<&'a str> {
    items
        .iter()
        .find(|m| m.key == key && !m.value.is_empty())
        .map(|m| m.value.as_str())
}

/// Swift's `Last-Modified`: the timestamp rounded up to the second, as an HTTP date.
pub fn http_date(ts_micros: u64) -> String {
    let secs = ts_micros.div_ceil(1_000_000);
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Swift's listing `last_modified`: `2024-01-02T03:04:05.678900`.
pub fn iso_date(ts_micros: u64) -> String {
    let secs = ts_micros / 1_000_000;
    let micros = ts_micros % 1_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant), valid for every date after 1970.
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A satisfiable byte range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// A parsed single `Range: bytes=…` request, before the object's size is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `bytes=S-`
    From(u64),
    /// `bytes=S-E` (inclusive)
    FromTo(u64, u64),
    /// `bytes=-N`: the last N bytes
    Suffix(u64),
}

/// Parses a `Range` of one range. `None`: serve the whole object (no header, a malformed
/// one, or several ranges: see [`range_specs`]).
pub fn range_spec(h: &HeaderMap) -> Option<RangeSpec> {
    match range_specs(h).as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// Most ranges one request may ask for; with more, the header is ignored (Swift's limit).
pub const MAX_RANGES: usize = 50;

/// Parses `Range` into its ranges, in the order asked. Empty: serve the whole object (no
/// header, or one with any malformed range, which Swift ignores whole).
pub fn range_specs(h: &HeaderMap) -> Vec<RangeSpec> {
    // As Swift reads it: `bytes` in any case, white space allowed around `=` and `-`.
    let Some(v) = hv(h, "range").map(str::trim) else {
        return Vec::new();
    };
    let Some(list) = v
        .get(..5)
        .filter(|u| u.eq_ignore_ascii_case("bytes"))
        .and_then(|_| v[5..].trim_start().strip_prefix('='))
    else {
        return Vec::new();
    };
    list.split(',')
        .map(parse_range)
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default()
}

/// The satisfiable ranges of several asked of an object of `size`: `None` to serve the
/// whole object instead (more than [`MAX_RANGES`], or ranges out of order or overlapping,
/// which RFC 9110 lets a server answer so); 416 when none is satisfiable.
pub fn resolve_ranges(specs: &[RangeSpec], size: u64) -> SwiftResult<Option<Vec<ByteRange>>> {
    let mut parts = Vec::new();
    let mut unsatisfiable = None;
    for s in specs {
        match s.resolve(size) {
            Ok(r) => parts.push(r),
            Err(e) => unsatisfiable = Some(e),
        }
    }
    if parts.is_empty() {
        return Err(
            unsatisfiable.unwrap_or_else(|| RangeSpec::From(size).resolve(size).unwrap_err())
        );
    }
    let ordered = parts.windows(2).all(|w| w[0].end <= w[1].start);
    Ok((parts.len() <= MAX_RANGES && ordered).then_some(parts))
}

/// A `multipart/byteranges` body made of `parts` of an object (RFC 9110 §14.6): each part
/// is a head (boundary, `Content-Type`, `Content-Range`), its bytes and a CRLF; the body
/// ends with the closing boundary.
#[derive(Debug, Clone)]
pub struct Multipart {
    pub boundary: String,
    pub parts: Vec<ByteRange>,
    /// The head of each part.
    pub heads: Vec<Bytes>,
}

impl Multipart {
    pub fn new(parts: Vec<ByteRange>, content_type: &str, size: u64) -> Self {
        let boundary = format!("{:032x}", rand::random::<u128>());
        let heads = parts
            .iter()
            .map(|p| {
                Bytes::from(format!(
                    "--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {}-{}/{size}\r\n\r\n",
                    p.start,
                    p.end - 1
                ))
            })
            .collect();
        Multipart {
            boundary,
            parts,
            heads,
        }
    }

    /// The answer's `Content-Type`.
    pub fn content_type(&self) -> String {
        format!("multipart/byteranges;boundary={}", self.boundary)
    }

    /// The closing boundary.
    pub fn closing(&self) -> Bytes {
        Bytes::from(format!("--{}--", self.boundary))
    }

    /// The whole body's length.
    pub fn body_len(&self) -> u64 {
        let parts: u64 = self
            .parts
            .iter()
            .zip(&self.heads)
            .map(|(p, h)| h.len() as u64 + (p.end - p.start) + 2)
            .sum();
        parts + self.closing().len() as u64
    }

    /// The bytes `[first.start, last.end)` of the object, read in order.
    pub fn span(&self) -> ByteRange {
        ByteRange {
            start: self.parts.first().map_or(0, |p| p.start),
            end: self.parts.last().map_or(0, |p| p.end),
        }
    }

    /// Cuts the parts out of the span read in order: `chunk` holds the object's bytes from
    /// `*pos`; `*next` is the part being written and `*open` whether its head is out.
    /// Appends what the body gets next to `out`.
    pub fn cut(
        &self,
        chunk: &Bytes,
        pos: &mut u64,
        next: &mut usize,
        open: &mut bool,
        out: &mut Vec<Bytes>,
    ) {
        let (from, to) = (*pos, *pos + chunk.len() as u64);
        *pos = to;
        while let Some(p) = self.parts.get(*next) {
            if p.start >= to {
                break;
            }
            let (s, e) = (p.start.max(from), p.end.min(to));
            if s < e {
                if !*open {
                    out.push(self.heads[*next].clone());
                    *open = true;
                }
                out.push(chunk.slice((s - from) as usize..(e - from) as usize));
            }
            if p.end > to {
                break;
            }
            out.push(Bytes::from_static(b"\r\n"));
            *open = false;
            *next += 1;
        }
    }
}

/// Parses one range `S-E`, `S-` or `-N` (what follows `bytes=`; also an SLO segment's
/// `range`).
pub fn parse_range(spec: &str) -> Option<RangeSpec> {
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.trim().split_once('-')?;
    let num = |s: &str| s.trim().parse::<u64>().ok();
    match (a.trim().is_empty(), b.trim().is_empty()) {
        (false, true) => num(a).map(RangeSpec::From),
        (false, false) => match (num(a), num(b)) {
            (Some(s), Some(e)) if e >= s => Some(RangeSpec::FromTo(s, e)),
            _ => None,
        },
        (true, false) => num(b).map(RangeSpec::Suffix),
        (true, true) => None,
    }
}

impl RangeSpec {
    /// (offset, length) a node can serve without knowing the size; `None` for suffixes.
    pub fn hint(self) -> Option<(u64, Option<u64>)> {
        match self {
            RangeSpec::From(s) => Some((s, None)),
            RangeSpec::FromTo(s, e) => Some((s, Some((e - s).saturating_add(1)))),
            RangeSpec::Suffix(_) => None,
        }
    }

    /// The bytes this range selects of an object of `size`; unsatisfiable → 416 with
    /// `Content-Range: bytes */size`.
    pub fn resolve(self, size: u64) -> SwiftResult<ByteRange> {
        let (start, end) = match self {
            RangeSpec::From(s) => (s, size),
            RangeSpec::FromTo(s, e) => (s, e.saturating_add(1).min(size)),
            RangeSpec::Suffix(n) => (size.saturating_sub(n), size),
        };
        if start >= size || start >= end {
            return Err(SwiftError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "<html><h1>Requested Range Not Satisfiable</h1><p>The Range requested is not available.</p></html>",
            )
            .with_header("content-range", format!("bytes */{size}")));
        }
        Ok(ByteRange { start, end })
    }
}

fn etag_list_matches(list: &str, etag: &str) -> bool {
    list.split(',').any(|t| {
        let t = t.trim().trim_start_matches("W/").trim_matches('"');
        t == "*" || t == etag
    })
}

fn parse_date(h: &HeaderMap, name: &str) -> Option<u64> {
    hv(h, name)
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

/// The outcome of conditional headers on a GET or HEAD.
#[derive(Debug, PartialEq, Eq)]
pub enum Condition {
    Proceed,
    NotModified,
}

/// Evaluates `If-Match`, `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since`
/// against an object's ETag and timestamp, as Swift does: a failed `If-Match` or
/// `If-Unmodified-Since` is 412; then `If-None-Match` (or, without it,
/// `If-Modified-Since`) may make it 304.
pub fn conditions(h: &HeaderMap, etag: &str, ts_micros: u64) -> SwiftResult<Condition> {
    let modified = ts_micros.div_ceil(1_000_000);
    // Swift checks both (RFC 9110 would skip If-Unmodified-Since after an If-Match).
    let failed = hv(h, "if-match").is_some_and(|m| !etag_list_matches(m, etag))
        || parse_date(h, "if-unmodified-since").is_some_and(|since| modified > since);
    if failed {
        return Err(precondition_failed("<html><h1>Precondition Failed</h1><p>A precondition for this request was not met.</p></html>"));
    }
    if let Some(m) = hv(h, "if-none-match") {
        if etag_list_matches(m, etag) {
            return Ok(Condition::NotModified);
        }
    } else if let Some(since) = parse_date(h, "if-modified-since") {
        if modified <= since {
            return Ok(Condition::NotModified);
        }
    }
    Ok(Condition::Proceed)
}

/// The type Python's `mimetypes` gives a name's extension (what Swift guesses a type
/// by when a PUT names none), for the common extensions.
pub fn guess_type(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    if ext.contains('/') {
        return None;
    }
    Some(match ext.as_str() {
        "txt" | "text" | "log" | "conf" | "bat" | "c" | "h" | "ksh" | "pl" => "text/plain",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "csv" => "text/csv",
        "xml" => "text/xml",
        "js" | "mjs" => "text/javascript",
        "py" => "text/x-python",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "bin" | "exe" | "so" | "dll" | "obj" | "o" | "a" => "application/octet-stream",
        "doc" | "dot" => "application/msword",
        "xls" => "application/vnd.ms-excel",
        "ppt" => "application/vnd.ms-powerpoint",
        "rtf" => "application/rtf",
        "sh" => "application/x-sh",
        "wasm" => "application/wasm",
        "png" => "image/png",
        "jpg" | "jpeg" | "jpe" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "ico" => "image/vnd.microsoft.icon",
        "bmp" => "image/bmp",
        "tif" | "tiff" => "image/tiff",
        "webp" => "image/webp",
        "wav" => "audio/x-wav",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "mp4" => "video/mp4",
        "mpeg" | "mpg" => "video/mpeg",
        "mov" | "qt" => "video/quicktime",
        "webm" => "video/webm",
        "avi" => "video/x-msvideo",
        _ => return None,
    })
}

/// Swift's `config_true_value`: `true`, `1`, `yes`, `on`, `t` or `y`, in any case.
pub fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "on" | "t" | "y"
    )
}

/// Longest request header line (name, `: ` and value), Swift's `max_header_size`.
pub const MAX_HEADER_SIZE: usize = 8192;

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    fn range(h: &HeaderMap, size: u64) -> SwiftResult<Option<ByteRange>> {
        range_spec(h).map(|s| s.resolve(size)).transpose()
    }

    #[test]
    fn ranges() {
        let r = |v: &str| range(&h(&[("range", v)]), 10);
        assert_eq!(
            r("bytes=0-3").unwrap(),
            Some(ByteRange { start: 0, end: 4 })
        );
        assert_eq!(
            r("bytes=5-").unwrap(),
            Some(ByteRange { start: 5, end: 10 })
        );
        assert_eq!(
            r("bytes=-3").unwrap(),
            Some(ByteRange { start: 7, end: 10 })
        );
        assert_eq!(
            r("bytes=-30").unwrap(),
            Some(ByteRange { start: 0, end: 10 })
        );
        assert_eq!(
            r("bytes=8-100").unwrap(),
            Some(ByteRange { start: 8, end: 10 })
        );
        assert_eq!(r("bytes=0-1,3-4").unwrap(), None);
        assert_eq!(r("items=0-1").unwrap(), None);
        assert_eq!(r("bytes=3-1").unwrap(), None);
        assert_eq!(r("bytes=10-").unwrap_err().status.as_u16(), 416);
        assert_eq!(r("bytes=-0").unwrap_err().status.as_u16(), 416);
    }

    #[test]
    fn conditionals() {
        let e = "abc";
        let ts = 1_700_000_000_500_000; // Last-Modified rounds up to ...001
        let c = |pairs: &[(&'static str, &str)]| {
            conditions(&h(pairs), e, ts).map_err(|e| e.status.as_u16())
        };
        assert_eq!(c(&[]), Ok(Condition::Proceed));
        assert_eq!(c(&[("if-match", "\"abc\"")]), Ok(Condition::Proceed));
        assert_eq!(c(&[("if-match", "\"x\"")]), Err(412));
        assert_eq!(
            c(&[("if-none-match", "\"abc\"")]),
            Ok(Condition::NotModified)
        );
        assert_eq!(c(&[("if-none-match", "*")]), Ok(Condition::NotModified));
        let later = http_date(ts);
        assert_eq!(
            c(&[("if-modified-since", &later)]),
            Ok(Condition::NotModified)
        );
        assert_eq!(
            c(&[("if-unmodified-since", "Tue, 14 Nov 2023 22:13:00 GMT")]),
            Err(412)
        );
        assert_eq!(
            c(&[("if-unmodified-since", &later)]),
            Ok(Condition::Proceed)
        );
        // Swift checks If-Unmodified-Since even when If-Match matched.
        assert_eq!(
            c(&[
                ("if-match", "\"abc\""),
                ("if-unmodified-since", "Tue, 14 Nov 2023 22:13:00 GMT")
            ]),
            Err(412)
        );
    }

    #[test]
    fn metadata_constraints() {
        let ok = metadata(
            &h(&[
                ("x-object-meta-color", "blue"),
                ("x-remove-object-meta-old", "x"),
            ]),
            "object",
            &[],
        )
        .unwrap();
        assert!(ok.contains(&("x-object-meta-color".into(), "blue".into())));
        assert!(ok.contains(&("x-object-meta-old".into(), String::new())));
        // Setting wins over removing in one request.
        let both = metadata(
            &h(&[
                ("x-remove-versions-location", "v"),
                ("x-versions-location", "v"),
                ("x-remove-container-meta-a", "x"),
                ("x-container-meta-a", "1"),
            ]),
            "container",
            &["x-versions-location"],
        )
        .unwrap();
        assert_eq!(both.len(), 2, "{both:?}");
        assert!(both.contains(&("x-versions-location".into(), "v".into())));
        assert!(both.contains(&("x-container-meta-a".into(), "1".into())));
        // Bytes that are not UTF-8 (a character cut short): kept for objects, byte for
        // byte, and counted as bytes; refused for containers.
        let mut raw = HeaderMap::new();
        raw.insert(
            "x-object-meta-cut",
            HeaderValue::from_bytes(b"ab\xe2\x82").unwrap(),
        );
        let stored = metadata(&raw, "object", &[]).unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(&*stored_value_bytes(&stored[0].1), b"ab\xe2\x82");
        assert_eq!(&*stored_value_bytes("plain"), b"plain");
        let mut raw_c = HeaderMap::new();
        raw_c.insert(
            "x-container-meta-cut",
            HeaderValue::from_bytes(b"ab\xe2\x82").unwrap(),
        );
        assert_eq!(
            metadata(&raw_c, "container", &[])
                .unwrap_err()
                .status
                .as_u16(),
            400
        );
        let mut long_raw = HeaderMap::new();
        let mut v = vec![b'a'; 255];
        v.push(0xe2);
        long_raw.insert("x-object-meta-long", HeaderValue::from_bytes(&v).unwrap());
        assert!(metadata(&long_raw, "object", &[]).is_ok());
        v.push(0x82);
        long_raw.insert("x-object-meta-long", HeaderValue::from_bytes(&v).unwrap());
        assert_eq!(
            metadata(&long_raw, "object", &[])
                .unwrap_err()
                .status
                .as_u16(),
            400
        );
        let long_name = format!("x-object-meta-{}", "n".repeat(129));
        let mut m = HeaderMap::new();
        m.insert(
            axum::http::HeaderName::from_bytes(long_name.as_bytes()).unwrap(),
            HeaderValue::from_static("v"),
        );
        assert_eq!(
            metadata(&m, "object", &[]).unwrap_err().status.as_u16(),
            400
        );
        assert_eq!(
            metadata(&h(&[("x-object-meta-v", &"v".repeat(257))]), "object", &[])
                .unwrap_err()
                .status
                .as_u16(),
            400
        );
        let mut many = HeaderMap::new();
        for i in 0..91 {
            many.insert(
                axum::http::HeaderName::from_bytes(format!("x-object-meta-k{i}").as_bytes())
                    .unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        assert_eq!(
            metadata(&many, "object", &[]).unwrap_err().status.as_u16(),
            400
        );
    }

    #[test]
    fn dates() {
        assert_eq!(
            iso_date(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123456"
        );
        assert_eq!(iso_date(0), "1970-01-01T00:00:00.000000");
        assert_eq!(title_case("x-object-meta-color"), "X-Object-Meta-Color");
    }

    #[test]
    fn types_are_guessed_as_python_guesses_them() {
        assert_eq!(guess_type("a.wav"), Some("audio/x-wav"));
        assert_eq!(guess_type("x/y.TXT"), Some("text/plain"));
        assert_eq!(guess_type("z.zip"), Some("application/zip"));
        assert_eq!(guess_type("noext"), None);
        assert_eq!(guess_type("dir.d/noext"), None);
        assert!(truthy("True") && truthy(" yes") && !truthy("false") && !truthy(""));
    }

    #[test]
    fn several_ranges_are_served_in_order_or_not_at_all() {
        let specs = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("range", v.parse().unwrap());
            range_specs(&h)
        };
        let br = |start, end| ByteRange { start, end };
        assert_eq!(specs("bytes=0-1,4-5,-2").len(), 3);
        assert!(
            specs("bytes=0-1,x").is_empty(),
            "one bad range voids the header"
        );
        assert!(range_spec(&{
            let mut h = HeaderMap::new();
            h.insert("range", "bytes=0-1,4-5".parse().unwrap());
            h
        })
        .is_none());
        // Unsatisfiable ranges are dropped; none left is 416.
        assert_eq!(
            resolve_ranges(&specs("bytes=0-1,4-5,10-12"), 10).unwrap(),
            Some(vec![br(0, 2), br(4, 6)])
        );
        let e = resolve_ranges(&specs("bytes=10-12,20-"), 10).unwrap_err();
        assert_eq!(e.status, StatusCode::RANGE_NOT_SATISFIABLE);
        // Out of order or overlapping: the whole object.
        assert_eq!(resolve_ranges(&specs("bytes=4-5,0-1"), 10).unwrap(), None);
        assert_eq!(resolve_ranges(&specs("bytes=0-4,4-5"), 10).unwrap(), None);

        // The body, cut from the span read in uneven chunks, parses back to its parts.
        let data: Vec<u8> = (0u8..100).collect();
        let m = Multipart::new(vec![br(3, 10), br(20, 21), br(50, 60)], "a/b", 100);
        let span = m.span();
        let (mut pos, mut next, mut open, mut out) = (span.start, 0, false, Vec::new());
        for c in data[span.start as usize..span.end as usize].chunks(7) {
            m.cut(
                &Bytes::copy_from_slice(c),
                &mut pos,
                &mut next,
                &mut open,
                &mut out,
            );
        }
        assert_eq!(next, 3, "every part written");
        out.push(m.closing());
        let body: Vec<u8> = out.concat();
        assert_eq!(body.len() as u64, m.body_len());
        let text = String::from_utf8_lossy(&body).into_owned();
        let b = &m.boundary;
        let mut want = String::new();
        for (s, e) in [(3usize, 10usize), (20, 21), (50, 60)] {
            want += &format!(
                "--{b}\r\nContent-Type: a/b\r\nContent-Range: bytes {s}-{}/100\r\n\r\n",
                e - 1
            );
            want += &String::from_utf8_lossy(&data[s..e]);
            want += "\r\n";
        }
        want += &format!("--{b}--");
        assert_eq!(text, want);
        assert!(m
            .content_type()
            .starts_with("multipart/byteranges;boundary="));
    }

    #[test]
    fn stored_metadata_counts_against_the_limits() {
        let item = |k: &str, v: &str| pb::MetaItem {
            key: k.into(),
            value: v.into(),
            ts: 0,
        };
        let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
        let big = "v".repeat(MAX_META_OVERALL - 10);
        let stored = vec![
            item("x-container-meta-a", &big),
            item("x-container-read", &big),
        ];
        // 1 + 4,086 + 2 + 8 = 4,097: over by one only with what is stored.
        let new = [kv("x-container-meta-bb", "bbbbbbbb")];
        let e = check_merged_metadata(&stored, &new, "container").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.body.contains("Total metadata too large"));
        // Replacing or removing the stored item frees its room; other headers never count.
        check_merged_metadata(&stored, &[kv("x-container-meta-a", "x")], "container").unwrap();
        check_merged_metadata(
            &stored,
            &[kv("x-container-meta-a", ""), kv("x-container-meta-b", &big)],
            "container",
        )
        .unwrap();
        let many: Vec<_> = (0..MAX_META_COUNT)
            .map(|i| item(&format!("x-account-meta-{i}"), "1"))
            .collect();
        assert!(check_merged_metadata(&many, &[kv("x-account-meta-0", "2")], "account").is_ok());
        let e =
            check_merged_metadata(&many, &[kv("x-account-meta-new", "2")], "account").unwrap_err();
        assert!(e.body.contains("Too many metadata items"));
    }

    #[test]
    fn ranges_take_swifts_spelling() {
        for r in [
            "BYTES=0-999",
            "bytes = 0-999",
            "BYTES = 0 - 999",
            "bytes=0 - 999",
            "bytes=0-999 ",
        ] {
            let mut h = HeaderMap::new();
            h.insert("range", r.parse().unwrap());
            assert!(
                matches!(range_spec(&h), Some(RangeSpec::FromTo(0, 999))),
                "{r}"
            );
        }
        let mut h = HeaderMap::new();
        h.insert("range", "bits=0-9".parse().unwrap());
        assert!(range_spec(&h).is_none());
    }
}
