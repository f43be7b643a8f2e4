//! Domain remap (Swift's `domain_remap`): with a storage domain configured (say
//! `example.net`), a request whose `Host` is `<account>.example.net` or
//! `<container>.<account>.example.net` means the path under that account or container, so
//! `GET http://c.AUTH_test.example.net/index.html` is `GET /v1/AUTH_test/c/index.html`.
//!
//! As in Swift:
//! - an account given with a dash for the reseller prefix's underscore (`auth-test`, DNS
//!   names cannot hold `_`) is read as `AUTH_test`, whatever the prefix's case;
//! - an account without one of the reseller prefixes is left alone (the request goes on
//!   unchanged), as Swift does without a `default_reseller_prefix`;
//! - more than two names before the domain is `400 Bad domain in host header`;
//! - `Location` and `Content-Location` in the answer that point into the rewritten path are
//!   pointed back at the path the client asked for (Swift's `RewriteContext`), so a static
//!   web redirect stays on the client's host.
//!
//! The rewrite happens before routing, so everything after it (auth, ACLs, static web,
//! temp URLs) sees the `/v1/...` path, as Swift's pipeline does.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use percent_encoding::percent_decode_str;

use crate::error::SwiftError;

/// The first segment of the paths requests are rewritten to (Swift's `path_root`).
const PATH_ROOT: &str = "v1";

/// A storage domain configuration.
#[derive(Debug, Clone)]
pub struct DomainRemap {
    /// The storage domains, each with its leading dot (`.example.net`).
    domains: Vec<String>,
    /// The reseller prefixes an account name may start with (`AUTH`).
    prefixes: Vec<String>,
}

/// A request rewritten by [`DomainRemap::remap`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remapped {
    /// The path the client sent (raw, as on the wire).
    pub requested: String,
    /// The `/v1/<account>[/<container>]<requested>` path it stands for (raw).
    pub path: String,
}

impl DomainRemap {
    /// The storage domains in `csv` (`example.net, .example.org`); `None` when it names none.
    pub fn new(csv: &str, prefixes: &[&str]) -> Option<Self> {
        let domains: Vec<String> = csv
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty() && *d != ".")
            .map(|d| {
                let d = d.to_ascii_lowercase();
                if d.starts_with('.') {
                    d
                } else {
                    format!(".{d}")
                }
            })
            .collect();
        (!domains.is_empty()).then(|| Self {
            domains,
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
        })
    }

    /// What a request for `host` (the `Host` header, port and all) and raw `path` stands
    /// for: `Ok(None)` when the host is not under a storage domain (or names an account
    /// without a reseller prefix).
    pub fn remap(&self, host: &str, path: &str) -> Result<Option<Remapped>, SwiftError> {
        let name = match host.rsplit_once(':') {
            Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => host,
        };
        let lower = name.to_ascii_lowercase();
        let Some(domain) = self.domains.iter().find(|d| lower.ends_with(d.as_str())) else {
            return Ok(None);
        };
        let labels: Vec<&str> = name[..name.len() - domain.len()]
            .trim_matches('.')
            .split('.')
            .collect();
        let (container, account) = match labels[..] {
            [account] => (None, account),
            [container, account] => (Some(container), account),
            _ => {
                return Err(
                    SwiftError::new(StatusCode::BAD_REQUEST, "Bad domain in host header")
                        .with_header("content-type", "text/plain".into()),
                )
            }
        };
        let Some(account) = self.account(account) else {
            return Ok(None);
        };
        let mut new = format!("/{PATH_ROOT}/{account}");
        if let Some(c) = container {
            new.push('/');
            new.push_str(c);
        }
        new.push_str(if path.is_empty() { "/" } else { path });
        Ok(Some(Remapped {
            requested: path.to_string(),
            path: new,
        }))
    }

    /// The account a host label names, with its reseller prefix as configured
    /// (`auth-test` → `AUTH_test`); `None` without a known prefix.
    fn account(&self, label: &str) -> Option<String> {
        let label = if !label.contains('_') && label.contains('-') {
            label.replacen('-', "_", 1)
        } else {
            label.to_string()
        };
        let (prefix, rest) = label.split_once('_')?;
        let real = self
            .prefixes
            .iter()
            .find(|p| p.eq_ignore_ascii_case(prefix))?;
        Some(format!("{real}_{rest}"))
    }
}

impl Remapped {
    /// Points `Location` and `Content-Location` that lead into the rewritten path back at
    /// the path the client asked for (`http://host/v1/AUTH_a/c/d/` → `http://host/d/`).
    pub fn rewrite_locations(&self, headers: &mut HeaderMap) {
        for name in ["location", "content-location"] {
            let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            if let Some(new) = self.rewritten(v) {
                if let Ok(v) = HeaderValue::from_str(&new) {
                    headers.insert(name, v);
                }
            }
        }
    }

    /// `value` (`scheme://host/path...`) with the rewritten path it starts with replaced
    /// by the requested one; `None` unless it is such a URL.
    fn rewritten(&self, value: &str) -> Option<String> {
        let rest = value
            .strip_prefix("http://")
            .or_else(|| value.strip_prefix("https://"))?;
        let (origin, path) = value.split_at(value.len() - rest.len() + rest.find('/')?);
        // Compared decoded: the answer may quote the path differently from the client.
        let want = decoded(&self.path);
        if !decoded(path).starts_with(&want) {
            return None;
        }
        let cut = path
            .char_indices()
            .map(|(i, _)| i)
            .chain([path.len()])
            .find(|&i| decoded(&path[..i]) == want)?;
        Some(format!("{origin}{}{}", self.requested, &path[cut..]))
    }
}

fn decoded(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dr() -> DomainRemap {
        DomainRemap::new("example.net, .example.org", &["AUTH", "SERVICE"]).unwrap()
    }

    #[test]
    fn hosts_under_the_domain_name_an_account_or_a_container() {
        let d = dr();
        let r = d.remap("AUTH_test.example.net", "/c/o").unwrap().unwrap();
        assert_eq!(r.path, "/v1/AUTH_test/c/o");
        assert_eq!(r.requested, "/c/o");
        let r = d
            .remap("c.AUTH_test.example.net:8080", "/o%20x")
            .unwrap()
            .unwrap();
        assert_eq!(r.path, "/v1/AUTH_test/c/o%20x");
        let r = d.remap("c.auth-test.EXAMPLE.org", "/").unwrap().unwrap();
        assert_eq!(r.path, "/v1/AUTH_test/c/");
        let r = d.remap("service_x.example.net", "").unwrap().unwrap();
        assert_eq!(r.path, "/v1/SERVICE_x/");
    }

    #[test]
    fn other_hosts_and_unknown_prefixes_are_left_alone() {
        let d = dr();
        assert_eq!(d.remap("127.0.0.1:8080", "/v1/AUTH_a").unwrap(), None);
        assert_eq!(d.remap("example.net", "/v1/AUTH_a").unwrap(), None);
        assert_eq!(d.remap("notexample.net", "/x").unwrap(), None);
        assert_eq!(d.remap("c.KEY_a.example.net", "/x").unwrap(), None);
        assert!(DomainRemap::new(" , ", &["AUTH"]).is_none());
    }

    #[test]
    fn three_names_before_the_domain_is_a_bad_request() {
        let e = dr().remap("a.b.AUTH_c.example.net", "/").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn locations_into_the_rewritten_path_point_back_at_the_asked_one() {
        let r = dr()
            .remap("c.AUTH_a.example.net", "/d%20x")
            .unwrap()
            .unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "location",
            HeaderValue::from_static("http://c.AUTH_a.example.net/v1/AUTH_a/c/d%20x/"),
        );
        h.insert(
            "content-location",
            HeaderValue::from_static("/v1/AUTH_a/c/other"),
        );
        r.rewrite_locations(&mut h);
        assert_eq!(h["location"], "http://c.AUTH_a.example.net/d%20x/");
        // Not an absolute URL: left as it is, as Swift's pattern does.
        assert_eq!(h["content-location"], "/v1/AUTH_a/c/other");

        let r = dr().remap("AUTH_a.example.net", "/c").unwrap().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "location",
            HeaderValue::from_static("https://AUTH_a.example.net/v1/AUTH_a/c/"),
        );
        r.rewrite_locations(&mut h);
        assert_eq!(h["location"], "https://AUTH_a.example.net/c/");
        // Elsewhere: untouched.
        let mut h = HeaderMap::new();
        h.insert(
            "location",
            HeaderValue::from_static("http://h/v1/AUTH_b/c/"),
        );
        r.rewrite_locations(&mut h);
        assert_eq!(h["location"], "http://h/v1/AUTH_b/c/");
    }
}
