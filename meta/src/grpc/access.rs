//! Who may do what on a meta node, by the role the caller's certificate names.
//!
//! - **Raft** (the peer transport, not gRPC): `meta` only (checked in `server.rs`).
//! - **Membership** (`Initialize`, `AddLearner`, `ChangeMembership`): `admin` only
//!   ([`policy`], before the handler runs).
//! - **Keys** ([`RULES`], checked by the handlers on every key or range a call touches,
//!   compares included, since a compare on a value reveals it):
//!   - identity secrets (`/auth/`: the token-signing secret and TempAuth users;
//!     `/identity/users/`: Keystone users with their password hashes) are read by `proxy`,
//!     and by `admin` only when it asks with [`REVEAL_HEADER`] (`stratus meta get --reveal`);
//!   - TempAuth users, rings and the cluster hash key are written by `admin` only; the token
//!     secret by `proxy` (created on first use) and `admin` (rotation); worker settings
//!     (`/settings/`, which a storage node keeps for its admin service) and storage node
//!     registrations (`/nodes/`) by `storage` and `admin`;
//!   - everything else: any role.
//!
//!   A listing or watch over a range that reaches into keys the caller may not read (an
//!   admin's `range ""`) leaves those keys out ([`Caller::hidden`]); a read of one such key,
//!   a count over them, or a txn touching them is refused.
//!
//! A plain (`--insecure`) node has no roles and checks nothing.

use stratus_client::service::trace::REVEAL_HEADER;
use stratus_client::tls::Role;
use tonic::Status;

use crate::kv::{KeyRange, Op, RangeEnd, Txn};

/// One protected key prefix: which roles may read and write keys under it.
pub struct Rule {
    pub prefix: &'static [u8],
    pub read: &'static [Role],
    pub write: &'static [Role],
    /// Whether an `admin` that asks ([`REVEAL_HEADER`]) may read it too.
    pub reveal: bool,
}

const ANY: &[Role] = &Role::ALL;

/// The protected prefixes. A key is governed by the longest prefix it starts with; a range
/// by every rule it overlaps.
pub const RULES: &[Rule] = &[
    Rule {
        prefix: b"/auth/",
        read: &[Role::Proxy],
        write: &[Role::Admin],
        reveal: true,
    },
    Rule {
        prefix: b"/auth/token-secret",
        read: &[Role::Proxy],
        write: &[Role::Proxy, Role::Admin],
        reveal: true,
    },
    Rule {
        prefix: b"/identity/users/",
        read: &[Role::Proxy],
        write: &[Role::Proxy, Role::Admin],
        reveal: true,
    },
    Rule {
        prefix: b"/rings/",
        read: ANY,
        write: &[Role::Admin],
        reveal: false,
    },
    Rule {
        prefix: b"/cluster/",
        read: ANY,
        write: &[Role::Admin],
        reveal: false,
    },
    Rule {
        prefix: b"/settings/",
        read: ANY,
        write: &[Role::Storage, Role::Admin],
        reveal: false,
    },
    Rule {
        prefix: b"/nodes/",
        read: ANY,
        write: &[Role::Storage, Role::Admin],
        reveal: false,
    },
];

/// The gRPC-path policy of the `Meta` service: membership changes need `admin`.
pub fn policy(path: &str, role: Role) -> Result<(), String> {
    let method = path.rsplit('/').next().unwrap_or("");
    match method {
        "Initialize" | "AddLearner" | "ChangeMembership" if role != Role::Admin => {
            Err("admin".into())
        }
        _ => Ok(()),
    }
}

/// What the caller of one request is allowed.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// `None` on a plain node: everything is allowed.
    pub role: Option<Role>,
    pub reveal: bool,
}

impl Caller {
    /// The caller of `req`.
    pub fn of<T>(req: &tonic::Request<T>) -> Caller {
        Caller {
            role: stratus_client::tls::net::caller_role(req),
            reveal: req.metadata().contains_key(REVEAL_HEADER),
        }
    }

    /// Refuses unless the caller may read every key of `range`.
    pub fn read(&self, range: &KeyRange) -> Result<(), Status> {
        self.check(range, false)
    }

    /// The prefixes inside `range` whose keys the caller may not read: a listing or watch
    /// over `range` leaves them out.
    pub fn hidden(&self, range: &KeyRange) -> Vec<&'static [u8]> {
        let Some(role) = self.role else {
            return Vec::new();
        };
        governing(range)
            .into_iter()
            .filter(|r| !self.may_read(r, role))
            .map(|r| r.prefix)
            .collect()
    }

    /// Refuses unless the caller may write every key of `range`.
    pub fn write(&self, range: &KeyRange) -> Result<(), Status> {
        self.check(range, true)
    }

    /// Refuses unless the caller may make every compare and op of `txn`.
    pub fn txn(&self, txn: &Txn) -> Result<(), Status> {
        for c in &txn.compares {
            self.read(&KeyRange::single(c.key.clone()))?;
        }
        for op in txn.success.iter().chain(&txn.failure) {
            match op {
                Op::Range(q) => self.read(&q.range)?,
                Op::Put { key, .. } => self.write(&KeyRange::single(key.clone()))?,
                Op::Delete { range, .. } => self.write(range)?,
            }
        }
        Ok(())
    }

    /// Whether `role` may read keys under `rule`: listed, or an admin that asked to see
    /// secrets.
    fn may_read(&self, rule: &Rule, role: Role) -> bool {
        rule.read.contains(&role) || (rule.reveal && self.reveal && role == Role::Admin)
    }

    fn check(&self, range: &KeyRange, write: bool) -> Result<(), Status> {
        let Some(role) = self.role else {
            return Ok(());
        };
        for rule in governing(range) {
            let allowed = if write { rule.write } else { rule.read };
            let ok = if write {
                allowed.contains(&role)
            } else {
                self.may_read(rule, role)
            };
            if !ok {
                let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
                let mut need = names.join(" or ");
                if !write && rule.reveal {
                    need.push_str(" (or admin with --reveal)");
                }
                return Err(Status::permission_denied(format!(
                    "{} under {} needs role {need}; the caller's certificate is {role}",
                    if write { "writing" } else { "reading" },
                    String::from_utf8_lossy(rule.prefix),
                )));
            }
        }
        Ok(())
    }
}

/// The rules that govern some key of `range`: for one key, the longest matching prefix;
/// for a range, every rule whose prefix overlaps it.
fn governing(range: &KeyRange) -> Vec<&'static Rule> {
    if matches!(range.end, RangeEnd::Single) {
        return RULES
            .iter()
            .filter(|r| range.start.starts_with(r.prefix))
            .max_by_key(|r| r.prefix.len())
            .into_iter()
            .collect();
    }
    RULES.iter().filter(|r| overlaps(range, r.prefix)).collect()
}

/// Whether some key starting with `prefix` lies in `range`.
fn overlaps(range: &KeyRange, prefix: &[u8]) -> bool {
    // Keys with the prefix: [prefix, prefix_end); the range: [start, end).
    let after_start = match crate::kv::prefix_end(prefix) {
        Some(pe) => range.start.as_slice() < pe.as_slice(),
        None => true,
    };
    let before_end = match &range.end {
        RangeEnd::Single => range.start.starts_with(prefix),
        RangeEnd::Before(end) => end.as_slice() > prefix,
        RangeEnd::Unbounded => true,
    };
    after_start && before_end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, reveal: bool) -> Caller {
        Caller {
            role: Some(role),
            reveal,
        }
    }

    #[test]
    fn secrets_rings_and_membership_by_role() {
        let secret = KeyRange::single(b"/auth/token-secret".to_vec());
        let user = KeyRange::single(b"/auth/users/test/tester".to_vec());
        let ring = KeyRange::single(b"/rings/object/current".to_vec());
        let plain = KeyRange::single(b"/nodes/storage/x".to_vec());
        // Reads of secrets: proxy, or admin when it asks.
        assert!(caller(Role::Proxy, false).read(&secret).is_ok());
        assert!(caller(Role::Admin, false).read(&secret).is_err());
        assert!(caller(Role::Admin, true).read(&secret).is_ok());
        assert!(caller(Role::Storage, true).read(&secret).is_err());
        assert!(caller(Role::Compute, false).read(&user).is_err());
        // Writes: users and rings by admin only; the secret by proxy and admin.
        assert!(caller(Role::Storage, false).write(&user).is_err());
        assert!(caller(Role::Proxy, false).write(&user).is_err());
        assert!(caller(Role::Admin, false).write(&user).is_ok());
        assert!(caller(Role::Proxy, false).write(&secret).is_ok());
        assert!(caller(Role::Storage, false).write(&ring).is_err());
        assert!(caller(Role::Storage, false).read(&ring).is_ok());
        assert!(caller(Role::Storage, false).write(&plain).is_ok());
        // A range that reaches into secrets needs the secret's rule; one beside it does not.
        let all = KeyRange::prefix(Vec::new());
        assert!(caller(Role::Storage, false).read(&all).is_err());
        assert!(caller(Role::Proxy, false)
            .write(&KeyRange::single(b"/settings/storage/a/r".to_vec()))
            .is_err());
        assert!(caller(Role::Storage, false)
            .write(&KeyRange::single(b"/settings/storage/a/r".to_vec()))
            .is_ok());
        assert!(caller(Role::Proxy, false).read(&all).is_ok());
        let auth = KeyRange::prefix(b"/au".to_vec());
        assert!(caller(Role::Admin, false).read(&auth).is_err());
        let nodes = KeyRange::prefix(b"/nodes/".to_vec());
        assert!(caller(Role::Storage, false).read(&nodes).is_ok());
        // A compare on a secret's value is a read of it.
        let txn = Txn {
            compares: vec![crate::kv::Compare {
                key: b"/auth/token-secret".to_vec(),
                op: crate::kv::CompareOp::Equal,
                target: crate::kv::Target::Version(0),
            }],
            ..Default::default()
        };
        assert!(caller(Role::Storage, false).txn(&txn).is_err());
        // A listing over everything hides the secrets instead of failing.
        let hidden = caller(Role::Admin, false).hidden(&all);
        assert!(hidden.contains(&&b"/auth/"[..]) && hidden.contains(&&b"/identity/users/"[..]));
        assert!(!hidden.contains(&&b"/rings/"[..]));
        assert!(caller(Role::Admin, true).hidden(&all).is_empty());
        assert!(caller(Role::Proxy, false).hidden(&all).is_empty());
        // Plain nodes check nothing.
        let plain_caller = Caller {
            role: None,
            reveal: false,
        };
        assert!(plain_caller.write(&user).is_ok());
        // Membership.
        assert!(policy("/stratus.meta.Meta/ChangeMembership", Role::Proxy).is_err());
        assert!(policy("/stratus.meta.Meta/AddLearner", Role::Admin).is_ok());
        assert!(policy("/stratus.meta.Meta/Put", Role::Storage).is_ok());
    }
}
