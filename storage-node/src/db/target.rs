//! Which database a request names, and where its records are kept.
//!
//! A [`Target`] (kind, partition, account, container) maps to one info key and one row
//! prefix in the column family of its [`Kind`]; every other file of [`crate::db`] reaches
//! the stored bytes through these keys, so the key layout described in [`crate::db`] is
//! written here and nowhere else. Keys parse back ([`parse_container_key`]) for the
//! workers that walk every database of a device.

use stratus_proto::storage as pb;

use crate::device::{Space, CF_ACCOUNTS, CF_CONTAINERS};

/// Which of the two database kinds a target names.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// A container database (object rows).
    Container,
    /// An account database (container rows).
    Account,
}

impl Kind {
    /// The database kind a keyspace holds (`None` for objects).
    pub fn of(space: Space) -> Option<Kind> {
        match space {
            Space::Object(_) => None,
            Space::Container => Some(Kind::Container),
            Space::Account => Some(Kind::Account),
        }
    }

    /// The column family holding databases of this kind.
    pub(super) fn cf(self) -> &'static str {
        match self {
            Kind::Container => CF_CONTAINERS,
            Kind::Account => CF_ACCOUNTS,
        }
    }
}

/// The hashes space of a database kind.
pub fn space(kind: Kind) -> Space {
    match kind {
        Kind::Container => Space::Container,
        Kind::Account => Space::Account,
    }
}

/// The database a request names.
#[derive(Debug, Clone)]
pub struct Target {
    /// Container or account database.
    pub kind: Kind,
    /// The partition that holds it.
    pub part: u32,
    /// The account.
    pub account: String,
    /// The container (empty for an account database).
    pub container: String,
}

impl Target {
    /// From the wire: an empty container names the account database.
    pub fn from_pb(t: &pb::DbTarget) -> Self {
        Target {
            kind: if t.container.is_empty() {
                Kind::Account
            } else {
                Kind::Container
            },
            part: t.part,
            account: t.account.clone(),
            container: t.container.clone(),
        }
    }

    /// The column family holding it.
    pub(super) fn cf(&self) -> &'static str {
        self.kind.cf()
    }

    fn base(&self, tag: u8) -> Vec<u8> {
        let mut k = vec![tag];
        k.extend_from_slice(&self.part.to_be_bytes());
        k.extend_from_slice(self.account.as_bytes());
        if self.kind == Kind::Container {
            k.push(0);
            k.extend_from_slice(self.container.as_bytes());
        }
        k
    }

    /// Key of the info record.
    pub fn info_key(&self) -> Vec<u8> {
        self.base(b'I')
    }

    /// Prefix of every row (followed by the row's name).
    pub(super) fn row_prefix(&self) -> Vec<u8> {
        let mut k = self.base(b'R');
        k.push(0);
        k
    }
}

/// Parses a container info key back into (part, account, container).
pub fn parse_container_key(k: &[u8]) -> Option<(u32, String, String)> {
    let rest = k.strip_prefix(b"I")?;
    let part = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    let s = std::str::from_utf8(&rest[4..]).ok()?;
    let (a, c) = s.split_once('\0')?;
    Some((part, a.to_string(), c.to_string()))
}

/// Parses an info key of a `kind` database back into (account, container).
pub(super) fn parse_info_key(kind: Kind, k: &[u8]) -> Option<(String, String)> {
    let s = std::str::from_utf8(k.get(5..)?).ok()?;
    match kind {
        Kind::Account => Some((s.to_string(), String::new())),
        Kind::Container => {
            let (a, c) = s.split_once('\0')?;
            Some((a.to_string(), c.to_string()))
        }
    }
}
