//! Following symlinks (see [`crate::ops::link`] for what one stores), as Swift's
//! `symlink` middleware does for GET, HEAD and the sources of copies.
//!
//! - A GET or HEAD of a link reads its target instead, link after link, at most
//!   [`SYMLOOP_MAX`] of them (409 past that). Each target is judged anew with the
//!   requester's rights in its own account (a temp URL reaches only its own account, or
//!   its own container for a container key: 401 beyond). Every answer after the first hop,
//!   errors included, names the last target in `Content-Location`.
//! - A static link (one with a target ETag) fails with 409 when what it leads to no longer
//!   carries that ETag; a static link's checks chain through the static links it targets.
//! - A Range or a conditional header applies to the object finally read, never to a link
//!   on the way.

use axum::http::{HeaderMap, StatusCode};

use crate::acl::Identity;
use crate::error::{conflict, SwiftError, SwiftResult};
use crate::headers::meta_value;
use crate::ops::fetch::{fetch, Found};
use crate::ops::link::{Link, Requested, SYMLOOP_MAX, TARGET_BYTES, TARGET_ETAG, TARGET_SLO_ETAG};
use crate::ops::manifest::{SLO_ETAG, SLO_SIZE};
use crate::ops::object::ObjPath;
use crate::ops::object_versioning::{acl_container, is_versions_link};
use crate::proxy::Proxy;

/// Who follows links, and so whose rights each target is read with.
#[derive(Debug, Clone)]
pub enum Reader {
    /// A requester with a token (or none): `who` as identified for `account`, the account
    /// of the request; in another account the token is identified anew.
    Token { who: Identity, account: String },
    /// A valid temp URL: it reaches `account` (an account key), or only `container` of it
    /// (a container key). `segments` reads the segments of large objects it reaches.
    TempUrl {
        account: String,
        container: Option<String>,
        segments: Identity,
    },
}

/// 401, as a temp URL's grant answers a path beyond it.
fn beyond_grant() -> SwiftError {
    SwiftError::new(
        StatusCode::UNAUTHORIZED,
        "<html><h1>Unauthorized</h1><p>This server could not verify that you are authorized to access the document you requested.</p></html>",
    )
}

impl Reader {
    /// Who may read `target` (an object), or why not: the identity its large-object
    /// segments are then read with.
    pub async fn check(&self, p: &Proxy, target: &ObjPath, h: &HeaderMap) -> SwiftResult<Identity> {
        match self {
            Reader::Token { who, account } => {
                let who = if target.account == *account {
                    who.clone()
                } else {
                    p.auth.identify(h, &target.account)?
                };
                // A version is read with the rights its versioned container grants.
                p.access(
                    &who,
                    true,
                    &target.account,
                    Some(acl_container(&target.container)),
                    true,
                    h,
                )
                .await?;
                Ok(who)
            }
            Reader::TempUrl {
                account,
                container,
                segments,
            } => {
                let inside = target.account == *account
                    && container
                        .as_ref()
                        .is_none_or(|c| c == acl_container(&target.container));
                if !inside {
                    return Err(beyond_grant());
                }
                Ok(segments.clone())
            }
        }
    }

    /// Who reads the segments of a large object reached without following a link.
    pub fn segments_who(&self) -> Identity {
        match self {
            Reader::Token { who, .. } => who.clone(),
            Reader::TempUrl { segments, .. } => segments.clone(),
        }
    }
}

/// An object reached through the links that led to it.
pub struct Followed {
    /// Where it is.
    pub path: ObjPath,
    /// What was read of it.
    pub found: Found,
    /// `Content-Location` of the answer: the last target, if a link was followed.
    pub location: Option<String>,
    /// Who reads its large-object segments.
    pub who: Identity,
}

/// One more link followed, or 409 past [`SYMLOOP_MAX`].
fn hop(hops: &mut usize) -> SwiftResult<()> {
    if *hops >= SYMLOOP_MAX {
        return Err(conflict(format!(
            "Too many levels of symbolic links, maximum allowed is {SYMLOOP_MAX}"
        )));
    }
    *hops += 1;
    Ok(())
}

/// 409: a static link's target is not the object it was made for.
fn links_disagree(location: &Option<String>) -> SwiftError {
    located(
        conflict("X-Symlink-Target-Etag headers do not match"),
        location,
    )
}

/// `e` with the `Content-Location` of the last target followed, if any.
pub fn located(e: SwiftError, location: &Option<String>) -> SwiftError {
    match location {
        Some(l) => e.with_header("content-location", l.clone()),
        None => e,
    }
}

/// 409 for a static link whose target no longer carries its ETag.
fn etag_mismatch(found: &str, want: &str) -> SwiftError {
    conflict(format!(
        "Object Etag '{found}' does not match X-Symlink-Target-Etag header '{want}'"
    ))
}

/// Reads `path` for a GET or HEAD (`head`), following links to what they lead to.
/// `h` carries the request's Range, applied only to the object finally read.
pub async fn follow(
    p: &Proxy,
    reader: &Reader,
    path: &ObjPath,
    h: &HeaderMap,
    head: bool,
) -> SwiftResult<Followed> {
    let mut cur = path.clone();
    let mut who = reader.segments_who();
    let mut location: Option<String> = None;
    let mut expect: Option<String> = None;
    let mut hops = 0;
    loop {
        let found = fetch(p, &cur, h, head)
            .await
            .map_err(|e| located(e, &location))?;
        let Some(link) = Link::of(&found.meta, &cur.account) else {
            if let Some(want) = &expect {
                if found.meta.etag != *want {
                    return Err(located(etag_mismatch(&found.meta.etag, want), &location));
                }
            }
            return Ok(Followed {
                path: cur,
                found,
                location,
                who,
            });
        };
        let seen = link.etag.clone().unwrap_or(found.meta.etag.clone());
        if expect.as_ref().is_some_and(|want| *want != seen) {
            return Err(links_disagree(&location));
        }
        // The link a versioned write leaves is not counted (Swift's `SYMLOOP_EXTEND`).
        if !is_versions_link(&found.meta) {
            hop(&mut hops)?;
        }
        location = Some(link.location.clone());
        who = reader
            .check(p, &link.target, h)
            .await
            .map_err(|e| located(e, &location))?;
        expect = link.etag;
        cur = link.target;
    }
}

/// What a static link records of its target, checked when the link is made.
pub struct Checked {
    /// The target's size (an SLO's total).
    pub bytes: u64,
    /// The target's content type.
    pub content_type: String,
    /// The target's SLO ETag, if it is an SLO manifest.
    pub slo_etag: Option<String>,
}

impl Checked {
    /// The system metadata a static link `etag` keeps of its target.
    pub fn sysmeta(&self, etag: &str) -> Vec<(String, String)> {
        let mut out = vec![
            (TARGET_ETAG.to_string(), etag.to_string()),
            (TARGET_BYTES.to_string(), self.bytes.to_string()),
        ];
        if let Some(s) = &self.slo_etag {
            out.push((TARGET_SLO_ETAG.to_string(), s.clone()));
        }
        out
    }
}

/// Checks the target of static link `r` (its ETag `etag`) as Swift does on the PUT: the
/// target must exist (409) and be readable by `reader` (with the request's headers `h`); a dynamic link on the way is the
/// target itself (its ETag is that of an empty object), a static one is followed with its
/// own ETag checked too. An SLO manifest's ETag is the manifest's own.
pub async fn check_static(
    p: &Proxy,
    reader: &Reader,
    r: &Requested,
    etag: &str,
    h: &HeaderMap,
) -> SwiftResult<Checked> {
    let none = HeaderMap::new();
    let mut location = Some(r.location());
    let mut cur = r.target.clone();
    let mut expect = etag.to_string();
    let mut hops = 0;
    loop {
        reader
            .check(p, &cur, h)
            .await
            .map_err(|e| located(e, &location))?;
        let found = match fetch(p, &cur, &none, true).await {
            Ok(f) => f,
            Err(e) if e.status == StatusCode::NOT_FOUND => {
                return Err(located(
                    conflict("X-Symlink-Target does not exist"),
                    &location,
                ))
            }
            Err(e) => return Err(e),
        };
        let m = &found.meta;
        let link = Link::of(m, &cur.account).filter(|l| l.etag.is_some());
        let Some(link) = link else {
            if m.etag != expect {
                return Err(located(etag_mismatch(&m.etag, &expect), &location));
            }
            return Ok(Checked {
                bytes: meta_value(&m.meta, SLO_SIZE)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(m.size),
                content_type: m.content_type.clone(),
                slo_etag: meta_value(&m.meta, SLO_ETAG).map(str::to_string),
            });
        };
        if link.etag.as_deref() != Some(expect.as_str()) {
            return Err(links_disagree(&location));
        }
        hop(&mut hops)?;
        location = Some(link.location.clone());
        expect = link.etag.unwrap_or_default();
        cur = link.target;
    }
}
