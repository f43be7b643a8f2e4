//! Typed routing: method-independent parsing of a request path into an [`Endpoint`], with
//! Swift's checks on names (UTF-8, NUL, lengths, `.`/`..`).

use axum::http::StatusCode;
use percent_encoding::percent_decode_str;

use crate::error::{bad_request, not_found, precondition_failed, SwiftError};

/// Longest account name (Swift's `max_account_name_length`).
pub const MAX_ACCOUNT_NAME: usize = 256;
/// Longest container name.
pub const MAX_CONTAINER_NAME: usize = 256;
/// Longest object name.
pub const MAX_OBJECT_NAME: usize = 1024;

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

/// A request's query string, decoded (`+` is a space).
#[derive(Debug, Default, Clone)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses a raw query string; undecodable pairs are skipped.
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                Some((
                    decode(&k.replace('+', " ")).ok()?,
                    decode(&v.replace('+', " ")).ok()?,
                ))
            })
            .collect();
        Self(pairs)
    }

    /// The value of `name` (empty if given without one).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Percent-decodes a path or query component, refusing bad UTF-8 and NUL as Swift does (412).
pub fn decode(s: &str) -> Result<String, SwiftError> {
    let d = percent_decode_str(s)
        .decode_utf8()
        .map_err(|_| precondition_failed("Invalid UTF8 or contains NULL"))?;
    if d.contains('\0') {
        return Err(precondition_failed("Invalid UTF8 or contains NULL"));
    }
    Ok(d.into_owned())
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

/// Parses the raw (still percent-encoded) path of a request.
pub fn parse(raw_path: &str) -> Result<Endpoint, SwiftError> {
    match raw_path {
        "/info" => return Ok(Endpoint::Info),
        "/healthcheck" => return Ok(Endpoint::Healthcheck),
        "/auth/v1.0" | "/auth/v1.0/" | "/auth/v1" | "/auth/v1/" => return Ok(Endpoint::Auth),
        _ => {}
    }
    let rest = raw_path.strip_prefix("/v1/").ok_or_else(not_found)?;
    let mut it = rest.splitn(3, '/');
    let account = decode(it.next().unwrap_or(""))?;
    if account.is_empty() {
        return Err(not_found());
    }
    check_segment("Account", &account, MAX_ACCOUNT_NAME)?;
    let container = match it.next() {
        None | Some("") if it.clone().next().is_none() => return Ok(Endpoint::Account { account }),
        None | Some("") => return Err(SwiftError::new(StatusCode::NOT_FOUND, "Not Found")),
        Some(c) => decode(c)?,
    };
    check_segment("Container", &container, MAX_CONTAINER_NAME)?;
    let object = match it.next() {
        None | Some("") => {
            return Ok(Endpoint::Container { account, container });
        }
        Some(o) => decode(o)?,
    };
    check_segment("Object", &object, MAX_OBJECT_NAME)?;
    if object.split('/').any(|s| s == "." || s == "..") {
        return Err(bad_request(
            "Object name cannot contain a . or .. path segment",
        ));
    }
    Ok(Endpoint::Object {
        account,
        container,
        object,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn refuses_bad_names_as_swift_does() {
        let status = |p: &str| parse(p).unwrap_err().status.as_u16();
        assert_eq!(status("/nope"), 404);
        assert_eq!(status("/v1/"), 404);
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
