//! Token revocation. Tokens are never stored, so revoking one writes a [`Revocation`] to
//! meta: "tokens matching this, issued up to then, are void". Every proxy holds all of them
//! in memory ([`Revocations`]), loaded at start and kept current by a watch, so checking a
//! token costs a few hash lookups and no meta call.
//!
//! Events are written when a token is deleted (by audit id), when a user is disabled,
//! deleted or changes password (by user), when a project is disabled or deleted (by
//! project), when an assignment is removed (by user and project, or by group members), and
//! when a role is deleted (by role). An event outlives every token it can match by
//! [`MAX_TOKEN_TTL`]; after that it is dropped.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stratus_proto::meta as pb;
use tokio_stream::StreamExt;

use super::token::TokenClaims;
use crate::meta::{ClientError, MetaClient};

/// Where revocation events live in meta.
pub const REVOKED: &str = "/identity/revoked/";

/// The longest token life a proxy may be configured with; events older than this match
/// nothing that has not expired anyway.
pub const MAX_TOKEN_TTL: u64 = 7 * 86_400;

/// "Tokens matching every field given, issued at or before `issued_before_us`, are void."
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    #[serde(default = "crate::records::v1")]
    pub v: u32,
    #[serde(default)]
    pub audit_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub role_id: Option<String>,
    pub issued_before_us: u64,
}

impl Revocation {
    /// Whether this event voids the token with `c`.
    pub fn matches(&self, c: &TokenClaims) -> bool {
        c.issued_us <= self.issued_before_us
            && self
                .audit_id
                .as_ref()
                .is_none_or(|a| c.audit_ids.contains(a))
            && self.user_id.as_ref().is_none_or(|u| *u == c.user_id)
            && self
                .project_id
                .as_ref()
                .is_none_or(|p| c.project_id() == Some(p.as_str()))
            && self
                .role_id
                .as_ref()
                .is_none_or(|r| c.roles.iter().any(|(id, _)| id == r))
    }

    /// The one id an event is filed under (audit, user, project, then role).
    fn index_key(&self) -> Option<&str> {
        self.audit_id
            .as_deref()
            .or(self.user_id.as_deref())
            .or(self.project_id.as_deref())
            .or(self.role_id.as_deref())
    }

    /// Whether it can still match an unexpired token at `now_us`.
    pub fn live(&self, now_us: u64) -> bool {
        self.issued_before_us + MAX_TOKEN_TTL * 1_000_000 > now_us
    }
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Every live revocation, indexed by the id it names.
#[derive(Default)]
pub struct Revocations {
    by_id: RwLock<HashMap<String, Vec<Revocation>>>,
    seen: RwLock<HashSet<Vec<u8>>>,
}

impl Revocations {
    /// An empty list (for tests and for proxies without meta).
    pub fn empty() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Loads every event from meta, then follows new ones in the background for as long as
    /// the returned handle lives.
    pub async fn follow(client: MetaClient) -> Result<Arc<Self>, ClientError> {
        let me = Self::empty();
        let rev = me.load(&client).await?;
        let weak = Arc::downgrade(&me);
        tokio::spawn(async move {
            let mut start = rev + 1;
            let mut backoff = Duration::from_millis(50);
            loop {
                let mut events = client.watch(REVOKED, start, false);
                while let Some(item) = events.next().await {
                    let Some(me) = weak.upgrade() else { return };
                    let resp = match item {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!(error = %e, "revocation watch ended; re-reading");
                            break;
                        }
                    };
                    for ev in resp.events {
                        if ev.r#type != pb::event::EventType::Put as i32 {
                            continue;
                        }
                        if let Some(kv) = ev.kv {
                            me.insert_kv(&kv.key, &kv.value);
                            start = start.max(kv.mod_revision + 1);
                        }
                    }
                }
                let Some(me) = weak.upgrade() else { return };
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                // Re-read everything: the watch may have missed events while it was down.
                match me.load(&client).await {
                    Ok(rev) => {
                        start = rev + 1;
                        backoff = Duration::from_millis(50);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot re-read revocations"),
                }
            }
        });
        Ok(me)
    }

    async fn load(&self, client: &MetaClient) -> Result<i64, ClientError> {
        let r = client.range_prefix(REVOKED, 0).await?;
        for kv in &r.kvs {
            self.insert_kv(&kv.key, &kv.value);
        }
        Ok(r.header.map(|h| h.revision).unwrap_or(0))
    }

    fn insert_kv(&self, key: &[u8], value: &[u8]) {
        if !self.seen.write().expect("lock").insert(key.to_vec()) {
            return;
        }
        match serde_json::from_slice::<Revocation>(value) {
            Ok(r) => self.insert(r),
            Err(e) => tracing::error!(error = %e, "undecodable revocation event ignored"),
        }
    }

    /// Adds an event (the proxy that wrote it adds it at once, before the watch brings it).
    pub fn insert(&self, r: Revocation) {
        let Some(id) = r.index_key().map(str::to_string) else {
            return;
        };
        let now = now_us();
        if !r.live(now) {
            return;
        }
        let mut m = self.by_id.write().expect("lock");
        let list = m.entry(id).or_default();
        list.retain(|e| e.live(now));
        if !list.contains(&r) {
            list.push(r);
        }
    }

    /// Whether a token with these claims has been revoked.
    pub fn is_revoked(&self, c: &TokenClaims) -> bool {
        let m = self.by_id.read().expect("lock");
        if m.is_empty() {
            return false;
        }
        let hit = |id: &str| m.get(id).is_some_and(|l| l.iter().any(|e| e.matches(c)));
        c.audit_ids.iter().any(|a| hit(a))
            || hit(&c.user_id)
            || c.project_id().is_some_and(hit)
            || c.roles.iter().any(|(id, _)| hit(id))
    }

    /// How many events are held.
    pub fn len(&self) -> usize {
        self.by_id
            .read()
            .expect("lock")
            .values()
            .map(Vec::len)
            .sum()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::token::Scope;

    fn claims(issued_us: u64) -> TokenClaims {
        TokenClaims {
            v: 1,
            user_id: "u1".into(),
            user_name: "alice".into(),
            user_domain_id: "default".into(),
            user_domain_name: "Default".into(),
            methods: vec!["password".into()],
            scope: Scope::Project {
                id: "p1".into(),
                name: "demo".into(),
                domain_id: "default".into(),
                domain_name: "Default".into(),
            },
            roles: vec![("r1".into(), "member".into())],
            issued_us,
            expires: u64::MAX,
            audit_ids: vec!["a1".into()],
        }
    }

    #[test]
    fn events_void_only_what_they_name_and_only_earlier_tokens() {
        let now = now_us();
        let rs = Revocations::default();
        assert!(!rs.is_revoked(&claims(now)));
        rs.insert(Revocation {
            user_id: Some("u1".into()),
            project_id: Some("p2".into()),
            issued_before_us: now,
            ..Default::default()
        });
        assert!(!rs.is_revoked(&claims(now)), "another project");
        rs.insert(Revocation {
            user_id: Some("u1".into()),
            issued_before_us: now,
            ..Default::default()
        });
        assert!(rs.is_revoked(&claims(now)));
        assert!(!rs.is_revoked(&claims(now + 1)), "issued after the event");

        let rs = Revocations::default();
        for (field, hit) in [("audit", true), ("role", true), ("project", true)] {
            let mut r = Revocation {
                issued_before_us: now,
                ..Default::default()
            };
            match field {
                "audit" => r.audit_id = Some("a1".into()),
                "role" => r.role_id = Some("r1".into()),
                _ => r.project_id = Some("p1".into()),
            }
            let one = Revocations::default();
            one.insert(r);
            assert_eq!(one.is_revoked(&claims(now - 5)), hit, "{field}");
        }
        rs.insert(Revocation {
            role_id: Some("r9".into()),
            issued_before_us: now,
            ..Default::default()
        });
        assert!(!rs.is_revoked(&claims(now - 5)));
        // An event so old it can only match expired tokens is dropped on the next insert.
        rs.insert(Revocation {
            role_id: Some("r9".into()),
            issued_before_us: 1,
            ..Default::default()
        });
        rs.insert(Revocation {
            role_id: Some("r9".into()),
            issued_before_us: now + 1,
            ..Default::default()
        });
        assert_eq!(rs.len(), 2);
    }
}
