//! Access control as TempAuth does it: who may do what to an account, a container or an
//! object.
//!
//! - The **owner** of an account (a user with the `admin` role in it) and a **reseller**
//!   may do anything; so may a user the account's `X-Account-Access-Control` lists as
//!   `admin`.
//! - `X-Account-Access-Control` (JSON `{"admin": [..], "read-write": [..], "read-only": [..]}`)
//!   grants `read-write` (anything on containers and objects, reads of the account) and
//!   `read-only` (GET/HEAD of everything).
//! - A container's `X-Container-Read` governs GET/HEAD of it and its objects, and
//!   `X-Container-Write` PUT/POST/DELETE of its objects. Each is a comma-separated list of
//!   groups (`account:user`, `account`, `AUTH_account`) and referrer rules (`.r:*`,
//!   `.r:example.com`, `.r:-bad.example.com`); a referrer rule opens objects to anyone,
//!   and the listing only with `.rlistings`.
//! - Changing the container itself (PUT/POST/DELETE) or the account stays with owners.
//!
//! The decision ([`decide`]) is a pure function of the request, the identity and the ACLs,
//! so it is tested here without a cluster.

use crate::error::{bad_request, SwiftError, SwiftResult};

/// A parsed `X-Account-Access-Control`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AccountAcl {
    pub admin: Vec<String>,
    pub read_write: Vec<String>,
    pub read_only: Vec<String>,
}

impl AccountAcl {
    /// Parses the JSON form, refusing anything Swift refuses (400).
    pub fn parse(v: &str) -> SwiftResult<Self> {
        let bad = || bad_request("X-Account-Access-Control: invalid JSON ACL");
        let j: serde_json::Value = serde_json::from_str(v).map_err(|_| bad())?;
        let obj = j.as_object().ok_or_else(bad)?;
        let mut acl = AccountAcl::default();
        for (k, list) in obj {
            let names: Vec<String> = list
                .as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|n| n.as_str().map(str::to_string).ok_or_else(bad))
                .collect::<SwiftResult<_>>()?;
            match k.as_str() {
                "admin" => acl.admin = names,
                "read-write" => acl.read_write = names,
                "read-only" => acl.read_only = names,
                other => {
                    return Err(bad_request(format!(
                        "X-Account-Access-Control: unknown key {other:?}"
                    )))
                }
            }
        }
        Ok(acl)
    }

    /// Whether it grants nothing to anyone.
    pub fn is_empty(&self) -> bool {
        self.admin.is_empty() && self.read_write.is_empty() && self.read_only.is_empty()
    }
}

/// A parsed container ACL: referrer rules and groups.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ContainerAcl {
    pub referrers: Vec<String>,
    pub groups: Vec<String>,
}

impl ContainerAcl {
    /// Parses `X-Container-Read`/`-Write`, refusing malformed referrer rules (400).
    pub fn parse(v: &str) -> SwiftResult<Self> {
        let mut acl = ContainerAcl::default();
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Some(rule) = item.strip_prefix('.') {
                let (kind, value) = rule.split_once(':').unwrap_or((rule, ""));
                match kind {
                    "r" | "ref" | "referer" | "referrer" => {
                        let value = value.trim();
                        if value.is_empty() || value == "-" {
                            return Err(bad_request(format!(
                                "No host/domain value after referrer designation in ACL: {item:?}"
                            )));
                        }
                        acl.referrers.push(value.to_string());
                    }
                    "rlistings" if value.is_empty() => acl.groups.push(".rlistings".into()),
                    _ => {
                        return Err(bad_request(format!(
                            "Unknown designator {kind:?} in ACL: {item:?}"
                        )))
                    }
                }
            } else {
                acl.groups.push(item.to_string());
            }
        }
        Ok(acl)
    }

    /// Whether a request with this `Referer` passes the referrer rules (Swift's
    /// `referrer_allowed`: the last matching rule wins, `-` denies).
    pub fn referrer_allowed(&self, referer: Option<&str>) -> bool {
        let host = referer
            .and_then(|r| r.split_once("//").map(|(_, rest)| rest))
            .map(|rest| rest.split(['/', ':']).next().unwrap_or(""))
            .unwrap_or("");
        let mut allow = false;
        for rule in &self.referrers {
            let (deny, pat) = match rule.strip_prefix('-') {
                Some(p) => (true, p),
                None => (false, rule.as_str()),
            };
            let matches = pat == "*"
                || pat == host
                || (pat.starts_with('.') && host.ends_with(pat))
                || pat
                    .strip_prefix("*.")
                    .is_some_and(|d| host.ends_with(&format!(".{d}")));
            if matches {
                allow = !deny;
            }
        }
        allow
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No token.
    Anonymous,
    /// A valid token: the user's groups (TempAuth: `account:user`, `account`,
    /// `AUTH_account`; Keystone: `project:user` by ids and names, with `*` forms, and role
    /// names), whether it owns the account in the path (admin there, or a reseller), and
    /// whether it may read that account without owning it (a Keystone `reader`).
    User {
        groups: Vec<String>,
        owner: bool,
        reseller: bool,
        reader: bool,
    },
    /// A valid temp URL signed with a container's key, reading the segments of a large
    /// object it reached: everything in that container, nothing else (Swift's
    /// `authorize_same_container`).
    ContainerGrant { account: String, container: String },
}

impl Identity {
    /// Who reads the segments of a large object fetched through a valid temp URL: the
    /// URL's grant covers them (they live in the account the URL was signed for; the
    /// callers only ever read segments of that account with it).
    pub fn temp_url_segments() -> Self {
        Identity::User {
            groups: Vec::new(),
            owner: true,
            reseller: false,
            reader: false,
        }
    }
}

/// What a request asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    /// GET or HEAD.
    pub read: bool,
    /// The request names a container.
    pub container: bool,
    /// The request names an object.
    pub object: bool,
}

/// What the caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Everything, ACL headers included.
    Owner,
    /// This request.
    Allowed,
    /// 401: nobody identified.
    Unauthorized,
    /// 403: identified, not allowed.
    Forbidden,
}

/// TempAuth's decision. `container_acl` is the container's read ACL for reads and its write
/// ACL otherwise (ignored for requests on the container itself that change it).
pub fn decide(
    who: &Identity,
    want: Want,
    referer: Option<&str>,
    account_acl: Option<&AccountAcl>,
    container_acl: Option<&ContainerAcl>,
) -> Decision {
    let groups: &[String] = match who {
        Identity::User { owner: true, .. } => return Decision::Owner,
        Identity::User { reader: true, .. } if want.read => return Decision::Allowed,
        Identity::User { groups, .. } => groups,
        Identity::Anonymous => &[],
        Identity::ContainerGrant { .. } => return Decision::Unauthorized,
    };
    let member = |list: &[String]| list.iter().any(|g| groups.contains(g));
    if let Some(a) = account_acl {
        if member(&a.admin) {
            return Decision::Owner;
        }
        if member(&a.read_write) && (want.container || want.read) {
            return Decision::Allowed;
        }
        if member(&a.read_only) && want.read {
            return Decision::Allowed;
        }
    }
    // Container ACLs cover object requests and reads of the container.
    let applies = want.container && (want.object || want.read);
    if let Some(acl) = container_acl.filter(|_| applies) {
        if want.read && acl.referrer_allowed(referer.or(Some(""))) {
            if want.object || acl.groups.iter().any(|g| g == ".rlistings") {
                return Decision::Allowed;
            }
            return denied(who);
        }
        if member(&acl.groups) {
            return Decision::Allowed;
        }
    }
    denied(who)
}

fn denied(who: &Identity) -> Decision {
    match who {
        Identity::Anonymous | Identity::ContainerGrant { .. } => Decision::Unauthorized,
        Identity::User { .. } => Decision::Forbidden,
    }
}

/// The ACL headers only owners see (and set).
pub const OWNER_HEADERS: &[&str] = &[
    "x-container-read",
    "x-container-write",
    "x-container-sync-key",
    "x-container-sync-to",
    "x-account-access-control",
    "x-versions-location",
    "x-history-location",
    "x-account-meta-temp-url-key",
    "x-account-meta-temp-url-key-2",
    "x-container-meta-temp-url-key",
    "x-container-meta-temp-url-key-2",
];

/// Checks an ACL header's value on a write (400 if malformed).
pub fn validate(name: &str, value: &str) -> Result<(), SwiftError> {
    match name {
        "x-container-read" | "x-container-write" => ContainerAcl::parse(value).map(|_| ()),
        "x-account-access-control" if !value.is_empty() => AccountAcl::parse(value).map(|_| ()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(groups: &[&str]) -> Identity {
        Identity::User {
            groups: groups.iter().map(|s| s.to_string()).collect(),
            owner: false,
            reseller: false,
            reader: false,
        }
    }

    const OBJ_READ: Want = Want {
        read: true,
        container: true,
        object: true,
    };
    const OBJ_WRITE: Want = Want {
        read: false,
        container: true,
        object: true,
    };
    const LISTING: Want = Want {
        read: true,
        container: true,
        object: false,
    };
    const CONTAINER_CHANGE: Want = Want {
        read: false,
        container: true,
        object: false,
    };

    #[test]
    fn owners_do_anything_and_strangers_nothing() {
        let owner = Identity::User {
            groups: vec![],
            owner: true,
            reseller: false,
            reader: false,
        };
        assert_eq!(
            decide(&owner, CONTAINER_CHANGE, None, None, None),
            Decision::Owner
        );
        let bob = user(&["b:bob", "b", "AUTH_b"]);
        assert_eq!(
            decide(&bob, OBJ_READ, None, None, None),
            Decision::Forbidden
        );
        assert_eq!(
            decide(&Identity::Anonymous, OBJ_READ, None, None, None),
            Decision::Unauthorized
        );
    }

    #[test]
    fn readers_read_and_change_nothing() {
        let reader = Identity::User {
            groups: vec![],
            owner: false,
            reseller: false,
            reader: true,
        };
        assert_eq!(
            decide(&reader, OBJ_READ, None, None, None),
            Decision::Allowed
        );
        assert_eq!(
            decide(&reader, LISTING, None, None, None),
            Decision::Allowed
        );
        assert_eq!(
            decide(&reader, OBJ_WRITE, None, None, None),
            Decision::Forbidden
        );
        assert_eq!(
            decide(&reader, CONTAINER_CHANGE, None, None, None),
            Decision::Forbidden
        );
    }

    #[test]
    fn container_acls_grant_reads_and_writes() {
        let bob = user(&["b:bob", "b", "AUTH_b"]);
        let read = ContainerAcl::parse("b:bob").unwrap();
        assert_eq!(
            decide(&bob, OBJ_READ, None, None, Some(&read)),
            Decision::Allowed
        );
        assert_eq!(
            decide(&bob, LISTING, None, None, Some(&read)),
            Decision::Allowed
        );
        // A write ACL never lets anyone change the container itself.
        let write = ContainerAcl::parse("b").unwrap();
        assert_eq!(
            decide(&bob, OBJ_WRITE, None, None, Some(&write)),
            Decision::Allowed
        );
        assert_eq!(
            decide(&bob, CONTAINER_CHANGE, None, None, Some(&write)),
            Decision::Forbidden
        );
        let other = ContainerAcl::parse("c:carol").unwrap();
        assert_eq!(
            decide(&bob, OBJ_READ, None, None, Some(&other)),
            Decision::Forbidden
        );
    }

    #[test]
    fn referrer_rules_open_objects_and_listings_only_with_rlistings() {
        let public = ContainerAcl::parse(".r:*").unwrap();
        let anon = Identity::Anonymous;
        assert_eq!(
            decide(&anon, OBJ_READ, None, None, Some(&public)),
            Decision::Allowed
        );
        assert_eq!(
            decide(&anon, LISTING, None, None, Some(&public)),
            Decision::Unauthorized
        );
        let listed = ContainerAcl::parse(".r:*,.rlistings").unwrap();
        assert_eq!(
            decide(&anon, LISTING, None, None, Some(&listed)),
            Decision::Allowed
        );
        let site = ContainerAcl::parse(".r:.example.com,.r:-bad.example.com").unwrap();
        assert!(site.referrer_allowed(Some("http://www.example.com/page")));
        assert!(!site.referrer_allowed(Some("http://bad.example.com/page")));
        assert!(!site.referrer_allowed(None));
        assert!(ContainerAcl::parse(".r:").is_err());
        assert!(ContainerAcl::parse(".bogus:x").is_err());
    }

    #[test]
    fn account_acls_grant_by_level() {
        let bob = user(&["b:bob", "b", "AUTH_b"]);
        let ro = AccountAcl::parse(r#"{"read-only":["b"]}"#).unwrap();
        assert_eq!(
            decide(&bob, OBJ_READ, None, Some(&ro), None),
            Decision::Allowed
        );
        assert_eq!(
            decide(&bob, OBJ_WRITE, None, Some(&ro), None),
            Decision::Forbidden
        );
        let rw = AccountAcl::parse(r#"{"read-write":["b:bob"]}"#).unwrap();
        assert_eq!(
            decide(&bob, OBJ_WRITE, None, Some(&rw), None),
            Decision::Allowed
        );
        let account_post = Want {
            read: false,
            container: false,
            object: false,
        };
        assert_eq!(
            decide(&bob, account_post, None, Some(&rw), None),
            Decision::Forbidden
        );
        let admin = AccountAcl::parse(r#"{"admin":["AUTH_b"]}"#).unwrap();
        assert_eq!(
            decide(&bob, account_post, None, Some(&admin), None),
            Decision::Owner
        );
        assert!(AccountAcl::parse(r#"{"nope":[]}"#).is_err());
        assert!(AccountAcl::parse("[1]").is_err());
    }
}
