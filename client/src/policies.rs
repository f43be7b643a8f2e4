//! Storage policies: named object rings, as Swift has them.
//!
//! Policy `i` places its objects with its own ring ([`ring_name`]: `object` for 0,
//! `object-<i>` after), so a policy can have other devices or another replica count than
//! the rest. A container is given a policy when it is created (`X-Storage-Policy`, else
//! the default) and keeps it; every object of the container is placed by that policy's
//! ring and kept, on each device, in that policy's own keyspace.
//!
//! The policies themselves (index, name, aliases, which one is the default, which are
//! deprecated) are one JSON document in meta at [`POLICIES_KEY`]; without it a cluster
//! has one policy, `Policy-0`, the default. Indices are `0..MAX_POLICIES`.

use serde::{Deserialize, Serialize};
use stratus_proto::meta as pb;

use crate::meta::{ClientError, MetaClient};

/// The key of the policy list.
pub const POLICIES_KEY: &str = "/cluster/policies";
/// How many policies a cluster can have (indices `0..MAX_POLICIES`).
pub const MAX_POLICIES: u32 = 4;
/// The name of policy 0 when none is stored.
pub const DEFAULT_NAME: &str = "Policy-0";

/// The object ring of policy `index`.
pub fn ring_name(index: u32) -> String {
    match index {
        0 => "object".to_string(),
        i => format!("object-{i}"),
    }
}

/// One storage policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub index: u32,
    pub name: String,
    /// Other names it answers to (case-insensitive, as its name).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Containers created without `X-Storage-Policy` get it.
    #[serde(default)]
    pub default: bool,
    /// Existing containers keep it; new ones cannot name it.
    #[serde(default)]
    pub deprecated: bool,
}

impl Policy {
    /// Whether `name` names it (its name or an alias, any case).
    pub fn answers_to(&self, name: &str) -> bool {
        let name = name.trim();
        self.name.eq_ignore_ascii_case(name)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
}

/// Why a policy change was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Meta(#[from] ClientError),
    #[error("invalid policy: {0}")]
    Invalid(String),
    #[error("the stored policy list is damaged: {0}")]
    Damaged(String),
    #[error("the policy list kept changing under us; try again")]
    Conflict,
}

/// A cluster's policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policies(Vec<Policy>);

impl Default for Policies {
    fn default() -> Self {
        Policies(vec![Policy {
            index: 0,
            name: DEFAULT_NAME.into(),
            aliases: Vec::new(),
            default: true,
            deprecated: false,
        }])
    }
}

impl Policies {
    /// Every policy, by index.
    pub fn all(&self) -> &[Policy] {
        &self.0
    }

    /// The default policy.
    pub fn default_policy(&self) -> &Policy {
        self.0.iter().find(|p| p.default).unwrap_or(&self.0[0])
    }

    /// The policy `name` names.
    pub fn by_name(&self, name: &str) -> Option<&Policy> {
        self.0.iter().find(|p| p.answers_to(name))
    }

    /// Policy `index`.
    pub fn by_index(&self, index: u32) -> Option<&Policy> {
        self.0.iter().find(|p| p.index == index)
    }

    /// Checks the list: indices in range and unique, names (and aliases) unique and
    /// non-empty, exactly one default, which is not deprecated; policy 0 is there.
    pub fn check(list: &[Policy]) -> Result<(), PolicyError> {
        let bad = |m: String| Err(PolicyError::Invalid(m));
        if !list.iter().any(|p| p.index == 0) {
            return bad("policy 0 must exist".into());
        }
        let mut names: Vec<String> = Vec::new();
        for (i, p) in list.iter().enumerate() {
            if p.index >= MAX_POLICIES {
                return bad(format!(
                    "policy index {} is out of range (0 to {})",
                    p.index,
                    MAX_POLICIES - 1
                ));
            }
            if list[..i].iter().any(|q| q.index == p.index) {
                return bad(format!("policy index {} is used twice", p.index));
            }
            for n in std::iter::once(&p.name).chain(&p.aliases) {
                let ok = !n.is_empty()
                    && n.len() <= 64
                    && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                if !ok {
                    return bad(format!(
                        "policy name {n:?}: use 1 to 64 letters, digits or '-'"
                    ));
                }
                if names.iter().any(|m| m.eq_ignore_ascii_case(n)) {
                    return bad(format!("policy name {n:?} is used twice"));
                }
                names.push(n.clone());
            }
        }
        match list.iter().filter(|p| p.default).collect::<Vec<_>>()[..] {
            [d] if d.deprecated => bad(format!(
                "the default policy {} cannot be deprecated",
                d.name
            )),
            [_] => Ok(()),
            _ => bad("exactly one policy must be the default".into()),
        }
    }

    fn parse(raw: &[u8]) -> Result<Self, PolicyError> {
        let mut list: Vec<Policy> =
            serde_json::from_slice(raw).map_err(|e| PolicyError::Damaged(e.to_string()))?;
        Self::check(&list).map_err(|e| PolicyError::Damaged(e.to_string()))?;
        list.sort_by_key(|p| p.index);
        Ok(Policies(list))
    }
}

/// The cluster's policies (and the revision they were stored at; 0: none stored).
pub async fn load(meta: &MetaClient) -> Result<(Policies, i64), PolicyError> {
    match meta.get(POLICIES_KEY).await? {
        None => Ok((Policies::default(), 0)),
        Some(kv) => Ok((Policies::parse(&kv.value)?, kv.mod_revision)),
    }
}

/// Changes the policy list with `change` (checked before it is stored), atomically: a
/// list changed meanwhile by someone else is read again and `change` re-applied.
pub async fn edit(
    meta: &MetaClient,
    change: impl Fn(&mut Vec<Policy>) -> Result<(), PolicyError>,
) -> Result<Policies, PolicyError> {
    for _ in 0..5 {
        let (current, rev) = load(meta).await?;
        let mut list = current.0;
        change(&mut list)?;
        Policies::check(&list)?;
        list.sort_by_key(|p| p.index);
        let value = serde_json::to_vec(&list).expect("plain structs serialize");
        let stored = meta
            .put_if(POLICIES_KEY, value, pb::compare::Target::ModRevision(rev))
            .await?;
        if stored {
            return Ok(Policies(list));
        }
    }
    Err(PolicyError::Conflict)
}

/// Adds policy `name` at `index` (the lowest free one if `None`); with `default`, it
/// becomes the default. Adding a policy that is there already (same name and index) is a
/// no-op, so it can be repeated.
pub async fn add(
    meta: &MetaClient,
    name: &str,
    index: Option<u32>,
    default: bool,
) -> Result<Policy, PolicyError> {
    let out = edit(meta, |list| {
        if let Some(p) = list.iter_mut().find(|p| p.answers_to(name)) {
            if index.is_some_and(|i| i != p.index) {
                return Err(PolicyError::Invalid(format!(
                    "policy {name:?} exists with index {}",
                    p.index
                )));
            }
        } else {
            let index = match index {
                Some(i) => i,
                None => (0..MAX_POLICIES)
                    .find(|i| !list.iter().any(|p| p.index == *i))
                    .ok_or_else(|| {
                        PolicyError::Invalid(format!("all {MAX_POLICIES} policy indices are used"))
                    })?,
            };
            if let Some(p) = list.iter_mut().find(|p| p.index == index) {
                // Policy 0 as never stored is only a default name: naming it renames it.
                if index == 0 && p.name == DEFAULT_NAME && p.aliases.is_empty() {
                    p.name = name.to_string();
                } else {
                    return Err(PolicyError::Invalid(format!(
                        "policy index {index} is {}",
                        p.name
                    )));
                }
            } else {
                list.push(Policy {
                    index,
                    name: name.to_string(),
                    aliases: Vec::new(),
                    default: false,
                    deprecated: false,
                });
            }
        }
        if default {
            for p in list.iter_mut() {
                p.default = p.answers_to(name);
            }
        }
        Ok(())
    })
    .await?;
    Ok(out
        .by_name(name)
        .cloned()
        .expect("the policy was just stored"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(index: u32, name: &str, default: bool) -> Policy {
        Policy {
            index,
            name: name.into(),
            aliases: Vec::new(),
            default,
            deprecated: false,
        }
    }

    #[test]
    fn lists_are_checked() {
        assert!(Policies::check(&[p(0, "gold", true), p(1, "silver", false)]).is_ok());
        // No policy 0, two defaults, none, a name twice (any case), an index too large.
        assert!(Policies::check(&[p(1, "silver", true)]).is_err());
        assert!(Policies::check(&[p(0, "gold", true), p(1, "silver", true)]).is_err());
        assert!(Policies::check(&[p(0, "gold", false)]).is_err());
        assert!(Policies::check(&[p(0, "gold", true), p(1, "GOLD", false)]).is_err());
        assert!(Policies::check(&[p(0, "gold", true), p(MAX_POLICIES, "x", false)]).is_err());
        assert!(Policies::check(&[p(0, "a b", true)]).is_err());
        let mut dep = p(0, "gold", true);
        dep.deprecated = true;
        assert!(Policies::check(&[dep]).is_err());
    }

    #[test]
    fn names_and_rings() {
        let mut silver = p(1, "silver", false);
        silver.aliases = vec!["cheap".into()];
        let ps = Policies(vec![p(0, "gold", true), silver]);
        assert_eq!(ps.by_name("SILVER").unwrap().index, 1);
        assert_eq!(ps.by_name(" cheap ").unwrap().index, 1);
        assert!(ps.by_name("bronze").is_none());
        assert_eq!(ps.default_policy().name, "gold");
        assert_eq!(ring_name(0), "object");
        assert_eq!(ring_name(2), "object-2");
        assert_eq!(Policies::default().default_policy().name, DEFAULT_NAME);
    }
}
