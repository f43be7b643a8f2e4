//! Identity (Keystone v3) kept in meta: domains, projects, users, groups, roles, role
//! assignments and implied roles, the signed tokens users carry, and the revocation list
//! every proxy follows.
//!
//! # Keys
//! - `/identity/<kind>/<id>`: one record (JSON, versioned), `kind` ∈ `domains`, `projects`,
//!   `users`, `groups`, `roles`.
//! - `/identity/names/<kind>/<domain_id>/<name>` → id: names are unique per domain (roles
//!   without a domain use `-`). A create or rename is one transaction over the record and its
//!   name, so two racing creates cannot both win.
//! - `/identity/assign/<scope>/<actor>/<role_id>`, scope `project:<id>` or `domain:<id>`,
//!   actor `user:<id>` or `group:<id>`: a role assignment.
//! - `/identity/members/<user_id>/<group_id>` and `/identity/group-users/<group_id>/<user_id>`:
//!   group membership, both ways, written together.
//! - `/identity/implies/<prior_role_id>/<implied_role_id>`: an implied role.
//! - `/identity/revoked/<id>`: a [`Revocation`] (see [`revoke`]).
//!
//! Passwords are stored as argon2id PHC strings ([`password`]); tokens are signed with a key
//! derived from the cluster's token secret ([`token`]) so any proxy checks any token without
//! asking meta.

use serde::{Deserialize, Serialize};

use crate::meta::ClientError;

pub mod password;
pub mod revoke;
pub mod store;
pub mod token;

pub use revoke::{Revocation, Revocations};
pub use store::IdentityStore;
pub use token::{Scope, TokenClaims, TokenKey};

/// The id of the domain every cluster has.
pub const DEFAULT_DOMAIN_ID: &str = "default";
/// Its name.
pub const DEFAULT_DOMAIN_NAME: &str = "Default";
/// The roles bootstrap creates; each implies the next.
pub const BOOTSTRAP_ROLES: [&str; 3] = ["admin", "member", "reader"];
/// The role that may manage identity.
pub const ADMIN_ROLE: &str = "admin";

/// A domain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Domain {
    #[serde(default = "crate::records::v1")]
    pub v: u32,
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub enabled: bool,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A project.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Project {
    #[serde(default = "crate::records::v1")]
    pub v: u32,
    pub id: String,
    pub name: String,
    pub domain_id: String,
    #[serde(default)]
    pub description: String,
    pub enabled: bool,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A user. `extra` holds the free-form attributes Keystone keeps (`email`, `description`,
/// anything else a client sends), returned as they were given.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    #[serde(default = "crate::records::v1")]
    pub v: u32,
    pub id: String,
    pub name: String,
    pub domain_id: String,
    pub enabled: bool,
    #[serde(default)]
    pub default_project_id: Option<String>,
    /// argon2id PHC string; `None`: the user cannot authenticate with a password.
    #[serde(default)]
    pub password_hash: Option<String>,
    #[serde(default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A group of users.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Group {
    #[serde(default = "crate::records::v1")]
    pub v: u32,
    pub id: String,
    pub name: String,
    pub domain_id: String,
    #[serde(default)]
    pub description: String,
}

/// A role; global unless it names a domain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Role {
    #[serde(default = "crate::records::v1")]
    pub v: u32,
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub domain_id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// Where a role is granted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Project(String),
    Domain(String),
}

/// Who is granted a role.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Actor {
    User(String),
    Group(String),
}

/// One role assignment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Assignment {
    pub target: Target,
    pub actor: Actor,
    pub role_id: String,
}

impl Target {
    fn key(&self) -> String {
        match self {
            Target::Project(id) => format!("project:{id}"),
            Target::Domain(id) => format!("domain:{id}"),
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s.split_once(':')? {
            ("project", id) => Some(Target::Project(id.into())),
            ("domain", id) => Some(Target::Domain(id.into())),
            _ => None,
        }
    }
}

impl Actor {
    fn key(&self) -> String {
        match self {
            Actor::User(id) => format!("user:{id}"),
            Actor::Group(id) => format!("group:{id}"),
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s.split_once(':')? {
            ("user", id) => Some(Actor::User(id.into())),
            ("group", id) => Some(Actor::Group(id.into())),
            _ => None,
        }
    }
}

impl Assignment {
    /// Its key in meta.
    pub fn key(&self) -> String {
        format!(
            "{}{}/{}/{}",
            store::ASSIGN,
            self.target.key(),
            self.actor.key(),
            self.role_id
        )
    }

    /// Parses a key made by [`Assignment::key`].
    pub fn from_key(key: &str) -> Option<Self> {
        let rest = key.strip_prefix(store::ASSIGN)?;
        let mut it = rest.splitn(3, '/');
        Some(Self {
            target: Target::parse(it.next()?)?,
            actor: Actor::parse(it.next()?)?,
            role_id: it.next()?.to_string(),
        })
    }
}

/// Why an identity operation failed; each maps to one Keystone status.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// 404.
    #[error("Could not find {kind}: {id}.")]
    NotFound { kind: &'static str, id: String },
    /// 409.
    #[error(
        "Conflict occurred attempting to store {kind} - Duplicate entry found with name {name}."
    )]
    Duplicate { kind: &'static str, name: String },
    /// 400.
    #[error("{0}")]
    Invalid(String),
    /// 403.
    #[error("{0}")]
    Forbidden(String),
    /// 500: a stored record does not decode.
    #[error("stored identity record is damaged: {0}")]
    Damaged(String),
    /// 503.
    #[error(transparent)]
    Meta(#[from] ClientError),
}

/// A fresh id: 32 lowercase hex digits, as Keystone's.
pub fn new_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Checks a name given by a client: 1..=255 characters, no control characters.
pub fn check_name(kind: &str, name: &str) -> Result<(), IdentityError> {
    if name.trim().is_empty() || name.chars().count() > 255 || name.chars().any(char::is_control) {
        return Err(IdentityError::Invalid(format!(
            "Invalid input for field 'name': {kind} names must be 1 to 255 printable characters."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_keys_round_trip() {
        let a = Assignment {
            target: Target::Domain("default".into()),
            actor: Actor::Group("g1".into()),
            role_id: "r1".into(),
        };
        assert_eq!(a.key(), "/identity/assign/domain:default/group:g1/r1");
        assert_eq!(Assignment::from_key(&a.key()), Some(a));
        assert_eq!(Assignment::from_key("/identity/assign/x:1/user:2/r"), None);
    }

    #[test]
    fn records_without_a_version_read_as_version_1() {
        let p: Project =
            serde_json::from_str(r#"{"id":"p","name":"n","domain_id":"default","enabled":true}"#)
                .unwrap();
        assert_eq!(p.v, 1);
        assert_eq!(p.description, "");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("project", "demo").is_ok());
        assert!(check_name("project", " ").is_err());
        assert!(check_name("project", "a\nb").is_err());
        assert!(check_name("project", &"x".repeat(256)).is_err());
    }
}
