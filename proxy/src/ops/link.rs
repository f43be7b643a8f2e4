//! What marks a symlink (Swift's `symlink` middleware), and what one stores.
//!
//! A symlink is a zero-byte object whose system metadata names its target, as Swift keeps
//! it: `X-Object-Sysmeta-Symlink-Target` (`container/object`, percent-quoted as Python's
//! `quote` does), `-Target-Account` (only when the link was made with
//! `X-Symlink-Target-Account`; otherwise the target lives in the link's own account),
//! and for a static link `-Target-Etag` and `-Target-Bytes` (the target's, checked when the
//! link was made), plus `-Target-Slo-Etag` when that target is an SLO manifest. Like the
//! large-object markers it is an ordinary object to the storage nodes, which keep the
//! sysmeta across POSTs and list it with the row (see `listed_type` there); only the
//! proxy follows it (see [`crate::ops::symlink`]).

use axum::http::HeaderMap;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use stratus_proto::storage as pb;

use crate::error::{bad_request, precondition_failed, SwiftResult};
use crate::headers::{hv, meta_value};
use crate::names::{decode, decode_param};
use crate::ops::object::ObjPath;

/// The target, `container/object` quoted.
pub const TARGET: &str = "x-object-sysmeta-symlink-target";
/// The target's account, quoted (absent: the link's own account).
pub const TARGET_ACCOUNT: &str = "x-object-sysmeta-symlink-target-account";
/// A static link's target ETag.
pub const TARGET_ETAG: &str = "x-object-sysmeta-symlink-target-etag";
/// A static link's target size.
pub const TARGET_BYTES: &str = "x-object-sysmeta-symlink-target-bytes";
/// The SLO ETag of a static link's target, when that is an SLO manifest (for listings).
pub const TARGET_SLO_ETAG: &str = "x-object-sysmeta-symlink-target-slo-etag";

/// Most links one GET or HEAD follows (Swift's default `symloop_max`).
pub const SYMLOOP_MAX: usize = 2;

/// The content type of a dynamic link made without one.
pub const LINK_TYPE: &str = "application/symlink";

/// What Python's `urllib.parse.quote(s, safe='/')` leaves alone.
const QUOTE_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~')
    .remove(b'/');

/// A name percent-quoted as Swift stores and shows link targets.
pub fn quote(s: &str) -> String {
    utf8_percent_encode(s, QUOTE_SAFE).to_string()
}

/// Whether an object is a symlink.
pub fn is_symlink(m: &pb::ObjectMeta) -> bool {
    meta_value(&m.meta, TARGET).is_some()
}

/// A stored link: where it points.
#[derive(Debug, Clone)]
pub struct Link {
    /// The target object.
    pub target: ObjPath,
    /// `/v1/<account>/<container>/<object>` of the target, quoted (Swift's
    /// `Content-Location` and `Location`).
    pub location: String,
    /// A static link's target ETag.
    pub etag: Option<String>,
}

impl Link {
    /// The link `m` holds, if it is one; `account` is the link's own.
    pub fn of(m: &pb::ObjectMeta, account: &str) -> Option<Link> {
        let quoted = meta_value(&m.meta, TARGET)?;
        let quoted_account = meta_value(&m.meta, TARGET_ACCOUNT)
            .map(str::to_string)
            .unwrap_or_else(|| quote(account));
        let (c, o) = decode_param(quoted)
            .ok()?
            .split_once('/')
            .map(|(c, o)| (c.to_string(), o.to_string()))?;
        Some(Link {
            target: ObjPath {
                account: decode_param(&quoted_account).ok()?,
                container: c,
                object: o,
            },
            location: format!("/v1/{quoted_account}/{quoted}"),
            etag: meta_value(&m.meta, TARGET_ETAG).map(str::to_string),
        })
    }
}

/// The client-facing headers of a link's system metadata (`?symlink=get`).
pub fn client_headers(m: &pb::ObjectMeta) -> Vec<(&'static str, String)> {
    [
        (TARGET, "x-symlink-target"),
        (TARGET_ACCOUNT, "x-symlink-target-account"),
        (TARGET_ETAG, "x-symlink-target-etag"),
        (TARGET_BYTES, "x-symlink-target-bytes"),
    ]
    .into_iter()
    .filter_map(|(k, name)| meta_value(&m.meta, k).map(|v| (name, v.to_string())))
    .collect()
}

/// The link a PUT asks for with `X-Symlink-Target`.
#[derive(Debug, Clone)]
pub struct Requested {
    /// The target object.
    pub target: ObjPath,
    /// `container/object`, quoted, as stored.
    pub quoted: String,
    /// The account, quoted, if the request named one.
    pub quoted_account: Option<String>,
    /// The ETag of a static link (unquoted).
    pub etag: Option<String>,
}

impl Requested {
    /// `/v1/<account>/<container>/<object>` of the target, quoted.
    pub fn location(&self) -> String {
        let a = self
            .quoted_account
            .clone()
            .unwrap_or_else(|| quote(&self.target.account));
        format!("/v1/{a}/{}", self.quoted)
    }

    /// The system metadata that makes the link (the static part is added once checked).
    pub fn sysmeta(&self) -> Vec<(String, String)> {
        let mut out = vec![(TARGET.to_string(), self.quoted.clone())];
        if let Some(a) = &self.quoted_account {
            out.push((TARGET_ACCOUNT.to_string(), a.clone()));
        }
        out
    }
}

const TARGET_FORM: &str =
    "X-Symlink-Target header must be of the form <container name>/<object name>";

/// Checks `X-Symlink-Target` (and `-Account`, `-Etag`) of a PUT to `path` as Swift does:
/// 412 for a target not of the form `container/object` or a bad account, 400 for a link
/// to itself or an ETag with `;`, `"` or `\`.
pub fn requested(h: &HeaderMap, path: &ObjPath) -> SwiftResult<Option<Requested>> {
    let Some(raw) = hv(h, "x-symlink-target") else {
        return Ok(None);
    };
    let target = decode(raw).map_err(|_| precondition_failed(TARGET_FORM))?;
    let (c, o) = match target.split_once('/') {
        Some((c, o)) if !target.starts_with('/') && !c.is_empty() && !o.is_empty() => (c, o),
        _ => return Err(precondition_failed(TARGET_FORM)),
    };
    let account = match hv(h, "x-symlink-target-account") {
        None => None,
        Some(a) => {
            let a = decode(a)?;
            if a.is_empty() {
                return Err(precondition_failed("Account name cannot be empty"));
            }
            if a.contains('/') {
                return Err(precondition_failed("Account name cannot contain slashes"));
            }
            Some(a)
        }
    };
    let target = ObjPath {
        account: account.clone().unwrap_or_else(|| path.account.clone()),
        container: c.to_string(),
        object: o.to_string(),
    };
    if (&target.account, &target.container, &target.object)
        == (&path.account, &path.container, &path.object)
    {
        return Err(bad_request("Symlink cannot target itself"));
    }
    let etag = hv(h, "x-symlink-target-etag")
        .map(|e| {
            let e = e.trim();
            e.strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(e)
        })
        .filter(|e| !e.is_empty())
        .map(str::to_string);
    if etag.as_ref().is_some_and(|e| e.contains([';', '"', '\\'])) {
        return Err(bad_request("Bad X-Symlink-Target-Etag format"));
    }
    Ok(Some(Requested {
        quoted: format!("{}/{}", quote(c), quote(o)),
        quoted_account: account.map(|a| quote(&a)),
        target,
        etag,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn path() -> ObjPath {
        ObjPath {
            account: "AUTH_a".into(),
            container: "links".into(),
            object: "l".into(),
        }
    }

    fn put(pairs: &[(&'static str, &str)]) -> SwiftResult<Option<Requested>> {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        requested(&h, &path())
    }

    /// A target is decoded once and stored quoted, as Swift normalises it: `%2F` in the
    /// header is a `/` of the name.
    #[test]
    fn targets_are_normalised_as_swift_stores_them() {
        let r = put(&[("x-symlink-target", "c/dealde%2Fl04 011e%204c8df/flash.png")])
            .unwrap()
            .unwrap();
        assert_eq!(r.quoted, "c/dealde/l04%20011e%204c8df/flash.png");
        assert_eq!(r.target.object, "dealde/l04 011e 4c8df/flash.png");
        assert_eq!(
            r.location(),
            "/v1/AUTH_a/c/dealde/l04%20011e%204c8df/flash.png"
        );
        assert_eq!(r.sysmeta(), vec![(TARGET.to_string(), r.quoted.clone())]);
    }

    #[test]
    fn bad_targets_are_refused_with_swifts_words() {
        let e = |pairs: &[(&'static str, &str)]| {
            let e = put(pairs).unwrap_err();
            (e.status.as_u16(), e.body)
        };
        assert_eq!(e(&[("x-symlink-target", "obj")]), (412, TARGET_FORM.into()));
        assert_eq!(
            e(&[("x-symlink-target", "/c/o")]),
            (412, TARGET_FORM.into())
        );
        assert_eq!(e(&[("x-symlink-target", "c/")]), (412, TARGET_FORM.into()));
        assert_eq!(
            e(&[("x-symlink-target", "links/l")]),
            (400, "Symlink cannot target itself".into())
        );
        assert_eq!(
            e(&[
                ("x-symlink-target", "c/o"),
                ("x-symlink-target-etag", "a;b")
            ]),
            (400, "Bad X-Symlink-Target-Etag format".into())
        );
        assert_eq!(
            e(&[
                ("x-symlink-target", "c/o"),
                ("x-symlink-target-account", "a/b")
            ])
            .0,
            412
        );
        // The same name in another account is another object.
        let r = put(&[
            ("x-symlink-target", "links/l"),
            ("x-symlink-target-account", "AUTH_b"),
            ("x-symlink-target-etag", "\"abc\""),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(r.etag.as_deref(), Some("abc"));
        assert_eq!(r.location(), "/v1/AUTH_b/links/l");
    }

    #[test]
    fn a_stored_link_reads_back() {
        let meta = |pairs: &[(&str, &str)]| pb::ObjectMeta {
            meta: pairs
                .iter()
                .map(|(k, v)| pb::MetaItem {
                    key: k.to_string(),
                    value: v.to_string(),
                    ts: 0,
                })
                .collect(),
            ..Default::default()
        };
        assert!(Link::of(&meta(&[]), "AUTH_a").is_none());
        let l = Link::of(&meta(&[(TARGET, "c/a%20b")]), "AUTH_a").unwrap();
        assert_eq!(
            (l.target.account.as_str(), l.target.object.as_str()),
            ("AUTH_a", "a b")
        );
        assert_eq!(l.location, "/v1/AUTH_a/c/a%20b");
        let m = meta(&[
            (TARGET, "c/o"),
            (TARGET_ACCOUNT, "AUTH_b"),
            (TARGET_ETAG, "e"),
            (TARGET_BYTES, "3"),
        ]);
        let l = Link::of(&m, "AUTH_a").unwrap();
        assert_eq!(
            (l.location.as_str(), l.etag.as_deref()),
            ("/v1/AUTH_b/c/o", Some("e"))
        );
        assert_eq!(client_headers(&m).len(), 4);
    }
}
