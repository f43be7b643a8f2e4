//! Typed routing: the request path parsed into an [`Endpoint`] (with Swift's checks on
//! names: UTF-8, NUL, lengths, `.`/`..`), then the method dispatched to its handler, after
//! authentication and the access decision. Bulk requests, temp URLs and `/info` are told
//! apart here too.
//!
//! Handlers ([`crate::object`], [`crate::container`], [`crate::large`], [`crate::bulk`],
//! [`crate::tempurl`]) never call each other: what they share is in [`crate::ops`].

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::acl::{self, Decision, Identity};
use crate::cluster::RingKind;
use crate::error::{bad_request, not_found, precondition_failed, SwiftError, SwiftResult};
use crate::headers::{self, title_case, MAX_HEADER_SIZE};
use crate::names::{decode, Query, MAX_ACCOUNT_NAME, MAX_CONTAINER_NAME, MAX_OBJECT_NAME};
use crate::ops::link::SYMLOOP_MAX;
use crate::ops::listing::LISTING_LIMIT;
use crate::ops::manifest::MAX_MANIFEST_SIZE;
use crate::ops::object::ObjPath;
use crate::ops::store::MAX_FILE_SIZE;
use crate::ops::symlink::Reader;
use crate::ops::{database, object_versioning, quota};
use crate::proxy::Proxy;
use crate::{
    bulk, compute, container, cors, identity, image, large, object, staticweb, tempurl, versioning,
    volume,
};

/// What a request addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /info`
    Info,
    /// `GET /healthcheck`
    Healthcheck,
    /// `GET /auth/v1.0`
    Auth,
    /// `/v1/<account>`
    Account { account: String },
    /// `/v1/<account>/<container>`
    Container { account: String, container: String },
    /// `/v1/<account>/<container>/<object>`
    Object {
        account: String,
        container: String,
        object: String,
    },
}

fn check_segment(kind: &str, name: &str, max: usize) -> Result<(), SwiftError> {
    if name.len() > max {
        return Err(bad_request(format!(
            "{kind} name length of {} longer than {max}",
            name.len()
        )));
    }
    if name == "." || name == ".." {
        return Err(bad_request(format!("{kind} name cannot be . or ..")));
    }
    Ok(())
}

/// The rules a request's container and object names follow, for names that arrive
/// another way (archive members, copy destinations): no `/` in a container, no `.` or `..`
/// as a container or as an object path segment, no NUL, Swift's lengths.
pub fn check_names(container: &str, object: &str) -> Result<(), SwiftError> {
    if container.is_empty() || object.is_empty() {
        return Err(bad_request("Container and object names cannot be empty"));
    }
    if container.contains('/') {
        return Err(bad_request("Container name cannot contain /"));
    }
    if container.contains('\0') || object.contains('\0') {
        return Err(crate::error::precondition_failed(
            "Invalid UTF8 or contains NULL",
        ));
    }
    check_segment("Container", container, MAX_CONTAINER_NAME)?;
    check_segment("Object", object, MAX_OBJECT_NAME)?;
    if object.split('/').any(|s| s == "." || s == "..") {
        return Err(bad_request(
            "Object name cannot contain a . or .. path segment",
        ));
    }
    Ok(())
}

/// Swift's bulk delete: `POST` or `DELETE` with `?bulk-delete` at any path of an account
/// (the names in the body are relative to the account).
fn is_bulk_delete(m: &Method, q: &Query) -> bool {
    (*m == Method::POST || *m == Method::DELETE) && q.has("bulk-delete")
}

/// Parses the raw (still percent-encoded) path of a request.
pub fn parse(raw_path: &str) -> Result<Endpoint, SwiftError> {
    match raw_path {
        "/info" => return Ok(Endpoint::Info),
        "/healthcheck" => return Ok(Endpoint::Healthcheck),
        "/auth/v1.0" | "/auth/v1.0/" | "/auth/v1" | "/auth/v1/" => return Ok(Endpoint::Auth),
        _ => {}
    }
    if raw_path == "/v1" || raw_path == "/v1/" {
        // A version and no account, as Swift answers it.
        return Err(precondition_failed("Bad URL"));
    }
    let rest = raw_path.strip_prefix("/v1/").ok_or_else(not_found)?;
    // Swift decodes the whole path before splitting it, so an encoded `/` (`%2F`) in an
    // account or container separates names as a plain one does: `c%2Fb` is container `c`,
    // object `b`, never a container named `c/b` (whose objects would share paths, and
    // ACLs, with `c`'s).
    let rest = decode(rest)?;
    let mut it = rest.splitn(3, '/');
    let account = it.next().unwrap_or("").to_string();
    if account.is_empty() {
        return Err(not_found());
    }
    check_segment("Account", &account, MAX_ACCOUNT_NAME)?;
    let container = match it.next() {
        None | Some("") if it.clone().next().is_none() => return Ok(Endpoint::Account { account }),
        None | Some("") => return Err(SwiftError::new(StatusCode::NOT_FOUND, "Not Found")),
        Some(c) => c.to_string(),
    };
    check_segment("Container", &container, MAX_CONTAINER_NAME)?;
    let object = match it.next() {
        None | Some("") => {
            return Ok(Endpoint::Container { account, container });
        }
        Some(o) => o.to_string(),
    };
    check_names(&container, &object)?;
    Ok(Endpoint::Object {
        account,
        container,
        object,
    })
}

/// `GET /info`: the constraints this cluster enforces and the features it really has.
pub fn info_json() -> serde_json::Value {
    serde_json::json!({
        "swift": {
            "version": concat!("stratus-", env!("CARGO_PKG_VERSION")),
            "max_file_size": MAX_FILE_SIZE,
            "max_meta_name_length": headers::MAX_META_NAME,
            "max_meta_value_length": headers::MAX_META_VALUE,
            "max_meta_count": headers::MAX_META_COUNT,
            "max_header_size": MAX_HEADER_SIZE,
            "max_meta_overall_size": headers::MAX_META_OVERALL,
            "max_object_name_length": MAX_OBJECT_NAME,
            "max_account_name_length": MAX_ACCOUNT_NAME,
            "max_container_name_length": MAX_CONTAINER_NAME,
            "container_listing_limit": LISTING_LIMIT,
            "account_listing_limit": LISTING_LIMIT,
            "account_autocreate": true,
            "allow_account_management": false,
            "extra_header_count": 0,
            "policies": policies_json(&stratus_client::policies::Policies::default()),
        },
        "tempauth": {"account_acls": true},
        "slo": {
            "max_manifest_segments": large::MAX_SEGMENTS,
            "max_manifest_size": MAX_MANIFEST_SIZE,
            "min_segment_size": large::MIN_SEGMENT_SIZE,
            "yield_frequency": large::YIELD_FREQUENCY,
        },
        "dlo": {"max_segments": crate::ops::segments::DLO_MAX_SEGMENTS},
        "tempurl": {
            "methods": tempurl::METHODS,
            "allowed_digests": tempurl::DIGESTS,
            "incoming_remove_headers": ["x-timestamp"],
            "incoming_allow_headers": [],
            "outgoing_remove_headers": ["x-object-meta-*"],
            "outgoing_allow_headers": ["x-object-meta-public-*"],
        },
        "bulk_delete": {
            "max_deletes_per_request": bulk::MAX_DELETES,
            "max_failed_deletes": bulk::MAX_FAILED,
        },
        "bulk_upload": {
            "max_containers_per_extraction": bulk::MAX_CONTAINERS,
            "max_failed_extractions": bulk::MAX_FAILED,
        },
        "versioned_writes": {"allowed_flags": ["x-versions-location", "x-history-location"]},
        "object_versioning": {},
        "symlink": {"symloop_max": SYMLOOP_MAX, "static_links": true},
        "container_quotas": {},
        "account_quotas": {},
        "staticweb": {},
    })
}

/// `/info`'s storage policies, as Swift lists them: deprecated ones left out; `aliases`
/// the name and its aliases, comma-separated; `default` only on the default.
fn policies_json(policies: &stratus_client::policies::Policies) -> serde_json::Value {
    policies
        .all()
        .iter()
        .filter(|p| !p.deprecated)
        .map(|p| {
            let aliases: Vec<&str> = std::iter::once(p.name.as_str())
                .chain(p.aliases.iter().map(String::as_str))
                .collect();
            let mut v = serde_json::json!({"name": p.name, "aliases": aliases.join(", ")});
            if p.default {
                v["default"] = true.into();
            }
            v
        })
        .collect()
}

impl Proxy {
    /// `GET /info` of this proxy: [`info_json`], and what its configuration adds.
    pub fn info_json(&self) -> serde_json::Value {
        let mut info = info_json();
        info["swift"]["policies"] = policies_json(&self.policies.current());
        if self.domain_remap.is_some() {
            // As Swift registers it; the storage domains themselves are not advertised.
            info["domain_remap"] = serde_json::json!({"default_reseller_prefix": null});
        }
        info
    }
}

/// Removes the headers only owners see from an answer to someone else.
fn for_non_owner(mut r: Response) -> Response {
    for name in acl::OWNER_HEADERS {
        r.headers_mut().remove(*name);
    }
    r
}

/// Without ownership, ACL and versioning headers on a request are ignored (Swift's rule).
fn owner_headers_dropped(h: &HeaderMap, owner: bool) -> std::borrow::Cow<'_, HeaderMap> {
    if owner {
        return std::borrow::Cow::Borrowed(h);
    }
    let mut h = h.clone();
    for name in acl::OWNER_HEADERS {
        h.remove(*name);
    }
    std::borrow::Cow::Owned(h)
}

/// Answers one request: parses its path, authenticates, judges access, and hands it to
/// its handler.
pub async fn route(p: &Arc<Proxy>, req: Request) -> SwiftResult<Response> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    if path == "/identity" || path.starts_with("/identity/") {
        return Ok(identity::route(p, &parts, body).await);
    }
    if path == "/image" || path.starts_with("/image/") {
        return Ok(image::route(p, &parts, body).await);
    }
    if path == "/volume" || path.starts_with("/volume/") {
        return Ok(volume::route(p, &parts, body).await);
    }
    if path == "/compute" || path.starts_with("/compute/") {
        return Ok(compute::route(p, &parts, body).await);
    }
    let ep = parse(parts.uri.path())?;
    let realm = match &ep {
        Endpoint::Account { account }
        | Endpoint::Container { account, .. }
        | Endpoint::Object { account, .. } => swift_realm(account),
        _ => "unknown".to_string(),
    };
    swift(p, parts, body, ep).await.map_err(|mut e| {
        // TempAuth names the account the request was for as the realm, quoted.
        if e.status == StatusCode::UNAUTHORIZED {
            e.headers.retain(|(k, _)| *k != "www-authenticate");
            e.headers
                .push(("www-authenticate", format!("Swift realm=\"{realm}\"")));
        }
        e
    })
}

/// An account name as a `WWW-Authenticate` realm: percent-quoted as Python's `quote`
/// does (so a name cannot end the header or start another).
fn swift_realm(account: &str) -> String {
    const SAFE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'_')
        .remove(b'.')
        .remove(b'-')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(account, SAFE).to_string()
}

/// A request's percent-decoded path (Swift's `PATH_INFO`) and `scheme://host`, which
/// static web pages and their redirects are made of.
fn web_location(parts: &axum::http::request::Parts) -> SwiftResult<(String, String)> {
    Ok((decode(parts.uri.path())?, crate::openstack::host_url(parts)))
}

/// Answers a Swift API request (`/v1/...`, `/info`, `/auth`).
async fn swift(
    p: &Arc<Proxy>,
    parts: axum::http::request::Parts,
    body: axum::body::Body,
    ep: Endpoint,
) -> SwiftResult<Response> {
    let h = &parts.headers;
    // Swift's server refuses a header line longer than `max_header_size` (the limit
    // `/info` advertises).
    if let Some((k, _)) = h
        .iter()
        .find(|(k, v)| k.as_str().len() + 2 + v.len() > MAX_HEADER_SIZE)
    {
        return Err(bad_request(format!(
            "Header line too long: {} (at most {MAX_HEADER_SIZE} bytes)",
            title_case(k.as_str())
        )));
    }
    let m = &parts.method;
    let raw_query = parts.uri.query();
    let q = Query::parse(raw_query);
    let head = *m == Method::HEAD;
    let read = *m == Method::GET || head;
    let not_allowed = || SwiftError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    match ep {
        Endpoint::Healthcheck => Ok("OK".into_response()),
        Endpoint::Info if read => Ok((
            [("content-type", "application/json; charset=utf-8")],
            p.info_json().to_string(),
        )
            .into_response()),
        Endpoint::Auth if *m == Method::GET => {
            p.auth
                .authenticate(h, &crate::openstack::host_url(&parts))
                .await
        }
        Endpoint::Info | Endpoint::Auth => Err(not_allowed()),
        Endpoint::Account { account } if *m == Method::OPTIONS => {
            cors::options(p, h, &account, None, false).await
        }
        Endpoint::Container { account, container } if *m == Method::OPTIONS => {
            cors::options(p, h, &account, Some(&container), false).await
        }
        Endpoint::Object {
            account, container, ..
        } if *m == Method::OPTIONS => cors::options(p, h, &account, Some(&container), true).await,
        Endpoint::Account { account } => {
            let who = p.auth.identify(h, &account)?;
            // Bulk requests are judged item by item, with the requester's rights (Swift's
            // `bulk` sits before auth and sends each item through it).
            if is_bulk_delete(m, &q) {
                return bulk::delete(p, &who, &account, h, body).await;
            }
            if *m == Method::PUT && q.has("extract-archive") {
                return bulk::extract(p, &who, &account, "", "", &q, h, body).await;
            }
            let d = p.access(&who, read, &account, None, false, h).await?;
            let owner = d == Decision::Owner;
            let h = owner_headers_dropped(h, owner);
            let h = &*h;
            let r = match m.as_str() {
                "GET" | "HEAD" => {
                    container::get(p, RingKind::Account, &account, "", raw_query, h, head).await
                }
                "POST" => {
                    quota::check_account_post(&who, h)?;
                    database::put(p, RingKind::Account, &account, "", h).await
                }
                "PUT" | "DELETE" => Err(container::account_management_refused()),
                _ => Err(not_allowed()),
            }?;
            Ok(if owner { r } else { for_non_owner(r) })
        }
        Endpoint::Container { account, container } => {
            let who = p.auth.identify(h, &account)?;
            if is_bulk_delete(m, &q) {
                return bulk::delete(p, &who, &account, h, body).await;
            }
            if *m == Method::PUT && q.has("extract-archive") {
                return bulk::extract(p, &who, &account, &container, "", &q, h, body).await;
            }
            if read && staticweb::applies(&who, h, &q) {
                let (path_info, host_url) = web_location(&parts)?;
                let site = staticweb::Site {
                    p,
                    who: &who,
                    account: &account,
                    container: &container,
                    path_info: &path_info,
                    host_url: &host_url,
                    q: &q,
                    h,
                    head,
                };
                if let Some(r) = site.container().await? {
                    return Ok(r);
                }
            }
            let d = p
                .access(&who, read, &account, Some(&container), false, h)
                .await?;
            let owner = d == Decision::Owner;
            let h = owner_headers_dropped(h, owner);
            let h = &*h;
            let r = match m.as_str() {
                "GET" | "HEAD" => {
                    container::get(
                        p,
                        RingKind::Container,
                        &account,
                        &container,
                        raw_query,
                        h,
                        head,
                    )
                    .await
                }
                "PUT" | "POST" if h.contains_key(object_versioning::CLIENT_ENABLED) => {
                    let put = *m == Method::PUT;
                    object_versioning::configure(p, &account, &container, h, put).await
                }
                "PUT" => database::put(p, RingKind::Container, &account, &container, h).await,
                "POST" => database::post(p, &account, &container, h).await,
                "DELETE" => object_versioning::delete_container(p, &account, &container).await,
                _ => Err(not_allowed()),
            }?;
            Ok(if owner { r } else { for_non_owner(r) })
        }
        Endpoint::Object {
            account,
            container,
            object,
        } => {
            let who = p.auth.identify(h, &account)?;
            if is_bulk_delete(m, &q) {
                return bulk::delete(p, &who, &account, h, body).await;
            }
            if read && staticweb::applies(&who, h, &q) {
                let (path_info, host_url) = web_location(&parts)?;
                let site = staticweb::Site {
                    p,
                    who: &who,
                    account: &account,
                    container: &container,
                    path_info: &path_info,
                    host_url: &host_url,
                    q: &q,
                    h,
                    head,
                };
                return site.object(&object).await;
            }
            let path = ObjPath {
                account,
                container,
                object,
            };
            if *m == Method::PUT && q.has("extract-archive") {
                return bulk::extract(
                    p,
                    &who,
                    &path.account,
                    &path.container,
                    &path.object,
                    &q,
                    h,
                    body,
                )
                .await;
            }
            let temp = if who == Identity::Anonymous && q.has("temp_url_sig") {
                let granted = tempurl::check(p, m, &path, &q).await?;
                // As Swift's tempurl: a temp URL cannot make a manifest that would reach
                // beyond the one object it grants.
                if !read {
                    if let Some(name) = ["x-object-manifest", "x-symlink-target"]
                        .into_iter()
                        .find(|n| h.contains_key(*n))
                    {
                        return Err(bad_request(format!(
                            "The header '{}' is not allowed in this tempurl",
                            title_case(name)
                        )));
                    }
                }
                Some(granted)
            } else {
                // COPY reads its source here; the destination is checked by the copy.
                p.access(
                    &who,
                    read || m.as_str() == "COPY",
                    &path.account,
                    Some(&path.container),
                    true,
                    h,
                )
                .await?;
                None
            };
            let as_stored = q.get("multipart-manifest") == Some("get");
            // A temp URL grants its object, and (as Swift's tempurl) the reads of the large
            // object segments it is made of: those always live in the same account.
            // A container's key grants that container only, segments included.
            let segments_who = match &temp {
                Some(t) if t.account_key => Identity::temp_url_segments(),
                Some(_) => Identity::ContainerGrant {
                    account: path.account.clone(),
                    container: path.container.clone(),
                },
                None => who.clone(),
            };
            // Links are followed with the requester's rights, or within the temp URL's
            // grant (its account, or its container for a container key).
            let reader = match &temp {
                Some(t) => Reader::TempUrl {
                    account: path.account.clone(),
                    container: (!t.account_key).then(|| path.container.clone()),
                    segments: segments_who.clone(),
                },
                None => Reader::Token {
                    who: who.clone(),
                    account: path.account.clone(),
                },
            };
            let link_itself = q.get("symlink") == Some("get");
            // A temp URL grants the current object only: `version-id` is ignored (as
            // Swift's tempurl answers it today).
            let version = q
                .get("version-id")
                .filter(|v| !v.is_empty() && temp.is_none());
            let r = match m.as_str() {
                _ if version.is_some() => {
                    let v = version.unwrap_or_default();
                    versioning::with_version(p, &who, &reader, &path, &q, h, m, body, v).await
                }
                "GET" | "HEAD" => versioning::get(p, &reader, &path, &q, h, head).await,
                "PUT" if q.get("multipart-manifest") == Some("put") => {
                    let heartbeat = q.get("heartbeat").is_some_and(headers::truthy);
                    large::put_slo(p, &segments_who, &path, h, body, heartbeat).await
                }
                "PUT" => object::put(p, &who, &path, h, body, as_stored, link_itself).await,
                "POST" => versioning::post(p, &path, h).await,
                "DELETE" if q.get("multipart-manifest") == Some("delete") => {
                    large::delete_slo(p, &who, &path, h).await
                }
                "DELETE" => {
                    object::check_if_delete_at(p, &path, h).await?;
                    versioning::delete(p, &path).await
                }
                "COPY" => object::copy_verb(p, &who, &path, h, as_stored, link_itself).await,
                _ => Err(not_allowed()),
            }?;
            Ok(match temp {
                Some(t) => t.finish(r, &path, &q),
                None => r,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A realm cannot break out of its header: quoted as Swift's tests expect.
    #[test]
    fn the_realm_is_the_account_quoted() {
        assert_eq!(swift_realm("AUTH_test"), "AUTH_test");
        assert_eq!(
            swift_realm("AUTH_haxx\"\nContent-Length: 1\n\n<b>"),
            "AUTH_haxx%22%0AContent-Length%3A%201%0A%0A%3Cb%3E"
        );
        assert_eq!(swift_realm("a~b.c-d/é"), "a~b.c-d/%C3%A9");
    }

    fn obj(a: &str, c: &str, o: &str) -> Endpoint {
        Endpoint::Object {
            account: a.into(),
            container: c.into(),
            object: o.into(),
        }
    }

    #[test]
    fn parses_every_level() {
        assert_eq!(parse("/info").unwrap(), Endpoint::Info);
        assert_eq!(parse("/auth/v1.0").unwrap(), Endpoint::Auth);
        assert_eq!(
            parse("/v1/AUTH_t").unwrap(),
            Endpoint::Account {
                account: "AUTH_t".into()
            }
        );
        assert_eq!(
            parse("/v1/AUTH_t/").unwrap(),
            Endpoint::Account {
                account: "AUTH_t".into()
            }
        );
        assert_eq!(
            parse("/v1/AUTH_t/c/").unwrap(),
            Endpoint::Container {
                account: "AUTH_t".into(),
                container: "c".into()
            }
        );
        assert_eq!(
            parse("/v1/AUTH_t/c/a/b/c.txt").unwrap(),
            obj("AUTH_t", "c", "a/b/c.txt")
        );
        assert_eq!(
            parse("/v1/AUTH_t/c/sp%20ace%2Fx").unwrap(),
            obj("AUTH_t", "c", "sp ace/x")
        );
        assert_eq!(
            parse("/v1/AUTH_t/c/%E2%82%AC").unwrap(),
            obj("AUTH_t", "c", "€")
        );
    }

    #[test]
    fn an_encoded_slash_in_a_container_separates_as_in_swift() {
        // `priv%2Fb` is object `b` of `priv` (as Swift splits it), never a container
        // `priv/b` whose objects would share `priv`'s paths and be read under its ACL.
        assert_eq!(
            parse("/v1/AUTH_t/priv%2Fb").unwrap(),
            obj("AUTH_t", "priv", "b")
        );
        assert_eq!(
            parse("/v1/AUTH_t/priv%2Fb/secret").unwrap(),
            obj("AUTH_t", "priv", "b/secret")
        );
        assert_eq!(
            parse("/v1/AUTH_t%2Fc").unwrap(),
            Endpoint::Container {
                account: "AUTH_t".into(),
                container: "c".into()
            }
        );
    }

    #[test]
    fn refuses_bad_names_as_swift_does() {
        let status = |p: &str| parse(p).unwrap_err().status.as_u16();
        assert_eq!(status("/nope"), 404);
        assert_eq!(status("/v1/"), 412);
        assert_eq!(status("/v1"), 412);
        assert_eq!(status("/v1/a/c/%FF"), 412);
        assert_eq!(status("/v1/a/c/x%00y"), 412);
        assert_eq!(status("/v1/a/../o"), 400);
        assert_eq!(status("/v1/a/c/x/../y"), 400);
        assert_eq!(status(&format!("/v1/a/c/{}", "x".repeat(1025))), 400);
        assert!(parse(&format!("/v1/a/c/{}", "x".repeat(1024))).is_ok());
        assert_eq!(status(&format!("/v1/a/{}", "c".repeat(257))), 400);
        assert_eq!(status(&format!("/v1/{}", "a".repeat(257))), 400);
    }
}
