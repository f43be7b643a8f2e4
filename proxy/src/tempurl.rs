//! Temporary URLs (Swift's `tempurl` middleware): a link that lets anyone without a token
//! GET, HEAD, PUT, POST or DELETE one object (or any object under a prefix) until it
//! expires.
//!
//! The signature is an HMAC of `METHOD\nEXPIRES\nPATH` (or `…\nprefix:/v1/a/c/PREFIX`) with
//! one of the account's (`X-Account-Meta-Temp-URL-Key`, `-Key-2`) or the container's
//! (`X-Container-Meta-Temp-URL-Key`, `-Key-2`) keys. SHA-1, SHA-256 and SHA-512 are
//! accepted, as hex or as `sha1:`/`sha256:`/`sha512:` followed by URL-safe base64. A HEAD
//! may use a signature made for GET, HEAD or PUT. Anything wrong answers 401, saying only
//! that the temp URL is invalid.

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use base64::Engine;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use stratus_core::time::now_secs;

use crate::error::{SwiftError, SwiftResult};
use crate::headers::meta_value;
use crate::names::Query;
use crate::ops::object::ObjPath;
use crate::proxy::Proxy;

/// Methods a temp URL may grant (Swift's default `methods`).
pub const METHODS: &[&str] = &["GET", "HEAD", "PUT", "POST", "DELETE"];

pub use stratus_core::tempurl::{hmac, sign, DIGESTS};

fn invalid() -> SwiftError {
    SwiftError::new(
        StatusCode::UNAUTHORIZED,
        "401 Unauthorized: Temp URL invalid\n",
    )
    .with_header("www-authenticate", "Swift realm=\"unknown\"".into())
}

/// A request let through by a temp URL; [`Granted::finish`] dresses its answer.
/// (`X-Timestamp` on the request is never honoured anyway: the proxy stamps every write.)
pub struct Granted {
    method: Method,
    /// Signed with the account's key (not a container's): the grant reaches the account.
    pub account_key: bool,
}

/// `temp_url_expires`: seconds since the epoch, or ISO 8601 `YYYY-MM-DDThh:mm:ssZ`.
pub fn parse_expires(v: &str) -> Option<u64> {
    v.parse::<u64>().ok().or_else(|| httpdate_from_iso(v))
}

fn httpdate_from_iso(v: &str) -> Option<u64> {
    let v = v.strip_suffix('Z')?;
    let (date, time) = v.split_once('T')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<i64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if d.len() != 3 || t.len() != 3 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    // Out-of-range fields (a year of 10^15) would overflow the arithmetic below.
    let ok = |v: i64, lo: i64, hi: i64| (lo..=hi).contains(&v);
    let fields_ok = ok(d[0], 0, 9999)
        && ok(d[1], 1, 12)
        && ok(d[2], 1, 31)
        && ok(t[0], 0, 23)
        && ok(t[1], 0, 59)
        && ok(t[2], 0, 60);
    if !fields_ok {
        return None;
    }
    let (y, m, day) = (d[0] - i64::from(d[1] <= 2), d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]).ok()
}

/// The signature's digest and raw bytes.
fn parse_sig(sig: &str) -> Option<(&'static str, Vec<u8>)> {
    if let Some((alg, b64)) = sig.split_once(':') {
        let alg = DIGESTS.iter().find(|d| **d == alg)?;
        let b64 = b64.trim_end_matches('=');
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b64)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64))
            .ok()?;
        return Some((alg, raw));
    }
    let raw = hex::decode(sig).ok()?;
    let alg = match raw.len() {
        20 => "sha1",
        32 => "sha256",
        64 => "sha512",
        _ => return None,
    };
    Some((alg, raw))
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks a temp URL request (401 unless valid).
pub async fn check(p: &Proxy, method: &Method, path: &ObjPath, q: &Query) -> SwiftResult<Granted> {
    if !METHODS.contains(&method.as_str()) || q.has("temp_url_ip_range") {
        return Err(invalid());
    }
    let sig = q.get("temp_url_sig").ok_or_else(invalid)?;
    let expires = q
        .get("temp_url_expires")
        .and_then(parse_expires)
        .ok_or_else(invalid)?;
    if expires < now_secs() {
        return Err(invalid());
    }
    let (alg, raw) = parse_sig(sig).ok_or_else(invalid)?;
    let signed_path = match q.get("temp_url_prefix") {
        Some(prefix) if path.object.starts_with(prefix) => {
            format!("prefix:/v1/{}/{}/{prefix}", path.account, path.container)
        }
        Some(_) => return Err(invalid()),
        None => format!("/v1/{}/{}/{}", path.account, path.container, path.object),
    };
    let acct = p.db_info(&path.account, "").await?;
    let cont = p.db_info(&path.account, &path.container).await?;
    // (key, whether it is the account's: a container's key grants that container only).
    let keys: Vec<(&str, bool)> = [
        (meta_value(&acct.meta, "x-account-meta-temp-url-key"), true),
        (
            meta_value(&acct.meta, "x-account-meta-temp-url-key-2"),
            true,
        ),
        (
            meta_value(&cont.meta, "x-container-meta-temp-url-key"),
            false,
        ),
        (
            meta_value(&cont.meta, "x-container-meta-temp-url-key-2"),
            false,
        ),
    ]
    .into_iter()
    .filter_map(|(k, a)| Some((k?, a)))
    .collect();
    let methods: &[&str] = if *method == Method::HEAD {
        &["HEAD", "GET", "PUT"]
    } else {
        &[method.as_str()]
    };
    let signed_by = keys.iter().find(|(k, _)| {
        methods.iter().any(|m| {
            let body = format!("{m}\n{expires}\n{signed_path}");
            same(&hmac(alg, k.as_bytes(), body.as_bytes()), &raw)
        })
    });
    let Some(&(_, account_key)) = signed_by else {
        return Err(invalid());
    };
    Ok(Granted {
        method: method.clone(),
        account_key,
    })
}

fn quoted(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| if c == '"' || !c.is_ascii() { '_' } else { c })
        .collect();
    format!(
        "filename=\"{ascii}\"; filename*=UTF-8''{}",
        utf8_percent_encode(name, NON_ALPHANUMERIC)
    )
}

impl Granted {
    /// A GET through a temp URL downloads as an attachment named after the object (or
    /// `filename`), or displays `inline`.
    pub fn finish(self, mut r: Response, path: &ObjPath, q: &Query) -> Response {
        // Object metadata stays private, except `X-Object-Meta-Public-*` (Swift's default
        // `outgoing_remove_headers` / `outgoing_allow_headers`).
        let private: Vec<_> = r
            .headers()
            .keys()
            .filter(|k| {
                let k = k.as_str();
                k.starts_with("x-object-meta-") && !k.starts_with("x-object-meta-public-")
            })
            .cloned()
            .collect();
        for k in private {
            r.headers_mut().remove(k);
        }
        if self.method != Method::GET || !r.status().is_success() {
            return r;
        }
        let filename = q.get("filename").filter(|f| !f.is_empty());
        let value = if q.has("inline") {
            match filename {
                Some(f) => format!("inline; {}", quoted(f)),
                None => "inline".to_string(),
            }
        } else if let Some(f) = filename {
            format!("attachment; {}", quoted(f))
        } else if r.headers().contains_key("content-disposition") {
            return r;
        } else {
            let base = path.object.rsplit('/').next().unwrap_or(&path.object);
            format!("attachment; {}", quoted(base))
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().insert("content-disposition", v);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_in_every_form_parse() {
        let key = "k";
        let hex256 = sign("sha256", key, "GET", 100, "/v1/AUTH_a/c/o");
        let (alg, raw) = parse_sig(&hex256).unwrap();
        assert_eq!(alg, "sha256");
        assert_eq!(raw, hmac("sha256", b"k", b"GET\n100\n/v1/AUTH_a/c/o"));
        let sha1 = sign("sha1", key, "GET", 100, "/v1/AUTH_a/c/o");
        assert_eq!(parse_sig(&sha1).unwrap().0, "sha1");
        let raw512 = hmac("sha512", b"k", b"x");
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw512);
        assert_eq!(
            parse_sig(&format!("sha512:{b64}")).unwrap(),
            ("sha512", raw512)
        );
        assert!(parse_sig("md5:abc").is_none());
        assert!(parse_sig("abcd").is_none());
    }

    #[test]
    fn expiry_in_both_forms() {
        assert_eq!(parse_expires("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_expires("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(parse_expires("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_expires("tomorrow"), None);
        assert_eq!(parse_expires("999999999999999-01-01T00:00:00Z"), None);
        assert_eq!(parse_expires("2023-13-01T00:00:00Z"), None);
        assert_eq!(parse_expires("18446744073709551615"), Some(u64::MAX));
    }
}
