//! TempAuth v1: `GET /auth/v1.0` with `X-Auth-User: account:user` and `X-Auth-Key` answers
//! with a signed, expiring token and the account's storage URL; every API request must then
//! carry a valid token for its account (or a reseller's token).
//!
//! Users live in meta ([`stratus_client::users`]); tokens are checked locally with the
//! cluster's token secret, so any proxy accepts a token any other proxy issued.
//!
//! Keystone tokens ([`stratus_client::identity::token`]) are accepted beside TempAuth ones,
//! with Swift's `keystoneauth` semantics: the account is `AUTH_<project_id>`, a token
//! scoped to that project with `admin` or `member` owns it, one with only `reader` reads
//! it, `ResellerAdmin` acts on every account, and ACLs name `project:user` (ids or names,
//! `*` for either) or a role. A Keystone token is checked against its signature, its
//! expiry and the revocation list this proxy follows, without a meta call.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use stratus_client::identity::revoke::Revocations;
use stratus_client::identity::token::{TokenClaims, TokenError, TokenKey};
use stratus_client::users::{UserStore, ROLE_ADMIN, ROLE_RESELLER};
use stratus_core::time::now_secs;
use stratus_core::token::{self, Claims};

use crate::acl::Identity;
use crate::error::{unavailable, SwiftError, SwiftResult};
use crate::headers::hv;

/// Prefix of account names in storage URLs (Swift's `reseller_prefix`).
pub const RESELLER_PREFIX: &str = "AUTH_";

/// Token lifetime by default (Swift's `token_life`).
pub const DEFAULT_TOKEN_TTL: u64 = 86_400;

/// Keystone roles that own their project's account (Swift's `operator_roles`).
pub const OPERATOR_ROLES: &[&str] = &["admin", "member"];
/// Keystone role that reads its project's account.
pub const READER_ROLE: &str = "reader";
/// Keystone role that acts on every account (Swift's `reseller_admin_role`).
pub const RESELLER_ADMIN_ROLE: &str = "ResellerAdmin";

/// The authority of a proxy: TempAuth, and Keystone token checks.
pub struct Auth {
    users: UserStore,
    secret: [u8; 32],
    ttl: u64,
    keystone: TokenKey,
    revocations: Arc<Revocations>,
}

/// Why a Keystone token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeystoneTokenError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("token revoked")]
    Revoked,
}

/// 401, as TempAuth answers it.
pub fn unauthorized() -> SwiftError {
    SwiftError::new(
        StatusCode::UNAUTHORIZED,
        "<html><h1>Unauthorized</h1><p>This server could not verify that you are authorized to access the document you requested.</p></html>",
    )
    .with_header("www-authenticate", "Swift realm=\"unknown\"".into())
}

/// 403, as TempAuth answers it.
pub fn forbidden() -> SwiftError {
    SwiftError::new(
        StatusCode::FORBIDDEN,
        "<html><h1>Forbidden</h1><p>Access was denied to this resource.</p></html>",
    )
}

impl Auth {
    /// Loads the token secret (created on first use); Keystone tokens are checked against
    /// `revocations`.
    pub async fn new(
        users: UserStore,
        ttl: u64,
        revocations: Arc<Revocations>,
    ) -> Result<Self, stratus_client::users::UserError> {
        let secret = users.token_secret().await?;
        Ok(Self {
            users,
            secret,
            ttl,
            keystone: TokenKey::derive(&secret),
            revocations,
        })
    }

    /// The Keystone token key.
    pub fn keystone_key(&self) -> &TokenKey {
        &self.keystone
    }

    /// The revocation list this proxy follows.
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// The claims of a valid Keystone token: signed, unexpired, not revoked.
    pub fn keystone(&self, token: &str) -> Result<TokenClaims, KeystoneTokenError> {
        let c = self.keystone.verify(token, now_secs())?;
        if self.revocations.is_revoked(&c) {
            return Err(KeystoneTokenError::Revoked);
        }
        Ok(c)
    }

    /// Answers `GET /auth/v1.0`.
    pub async fn authenticate(&self, h: &HeaderMap) -> SwiftResult<Response> {
        let user = hv(h, "x-auth-user").or_else(|| hv(h, "x-storage-user"));
        let key = hv(h, "x-auth-key").or_else(|| hv(h, "x-storage-pass"));
        let (Some(user), Some(key)) = (user, key) else {
            return Err(unauthorized());
        };
        let Some((account, name)) = user.split_once(':') else {
            return Err(unauthorized());
        };
        let stored = self
            .users
            .get(account, name)
            .await
            .map_err(|e| unavailable(format!("reading user from meta: {e}")))?;
        let Some(u) = stored.filter(|u| u.check_key(key)) else {
            return Err(unauthorized());
        };
        let claims = Claims {
            account: u.account.clone(),
            user: u.user.clone(),
            roles: u.roles.clone(),
            expires: now_secs() + self.ttl,
        };
        let tok = token::mint(&self.secret, &claims);
        let host = hv(h, "host").unwrap_or("127.0.0.1");
        let url = format!("http://{host}/v1/{RESELLER_PREFIX}{}", u.account);
        let mut r = StatusCode::OK.into_response();
        let hs = r.headers_mut();
        for (k, v) in [
            ("x-auth-token", tok.as_str()),
            ("x-storage-token", tok.as_str()),
            ("x-storage-url", url.as_str()),
            ("x-auth-token-expires", &self.ttl.to_string()),
            ("content-type", "text/plain; charset=UTF-8"),
        ] {
            if let Ok(v) = HeaderValue::from_str(v) {
                hs.insert(k, v);
            }
        }
        Ok(r)
    }

    /// Who the request comes from, for `account` (as it appears in the path): anonymous
    /// without a token, 401 with a bad or expired one.
    pub fn identify(&self, h: &HeaderMap, account: &str) -> SwiftResult<Identity> {
        let Some(tok) = hv(h, "x-auth-token").or_else(|| hv(h, "x-storage-token")) else {
            return Ok(Identity::Anonymous);
        };
        if !tok.starts_with("AUTH_tk") {
            let c = self.keystone(tok).map_err(|_| unauthorized())?;
            return Ok(keystone_identity(&c, account));
        }
        let claims = token::verify(&self.secret, tok, now_secs()).map_err(|_| unauthorized())?;
        Ok(identity(&claims, account))
    }
}

/// Swift's `keystoneauth` view of a Keystone token for `account`.
pub fn keystone_identity(c: &TokenClaims, account: &str) -> Identity {
    let reseller = c.has_role(RESELLER_ADMIN_ROLE);
    let own = match (account.strip_prefix(RESELLER_PREFIX), c.project_id()) {
        (Some(a), Some(p)) => a == p,
        _ => false,
    };
    let owner = reseller || (own && OPERATOR_ROLES.iter().any(|r| c.has_role(r)));
    let reader = own && c.has_role(READER_ROLE);
    let (pid, pname) = match &c.scope {
        stratus_client::identity::Scope::Project { id, name, .. } => (id.as_str(), name.as_str()),
        _ => ("", ""),
    };
    let mut groups = vec![
        format!("*:{}", c.user_id),
        format!("*:{}", c.user_name),
        "*:*".to_string(),
    ];
    if !pid.is_empty() {
        groups.extend([
            format!("{pid}:{}", c.user_id),
            format!("{pname}:{}", c.user_name),
            format!("{pid}:*"),
            format!("{pname}:*"),
        ]);
    }
    groups.extend(c.roles.iter().map(|(_, n)| n.to_lowercase()));
    Identity::User {
        groups,
        owner,
        reseller,
        reader,
    }
}

/// The groups of a user (`account:user`, `account`, `AUTH_account`) and whether it owns
/// `account`: a reseller owns every account, an admin its own.
pub fn identity(c: &Claims, account: &str) -> Identity {
    let reseller = c.roles.iter().any(|r| r == ROLE_RESELLER);
    let own = account
        .strip_prefix(RESELLER_PREFIX)
        .is_some_and(|a| a == c.account);
    let owner = reseller || (own && c.roles.iter().any(|r| r == ROLE_ADMIN));
    Identity::User {
        groups: vec![
            format!("{}:{}", c.account, c.user),
            c.account.clone(),
            format!("{RESELLER_PREFIX}{}", c.account),
        ],
        owner,
        reseller,
        reader: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratus_client::identity::Scope;

    fn claims(roles: &[&str]) -> TokenClaims {
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
            roles: roles
                .iter()
                .map(|r| (format!("id-{r}"), r.to_string()))
                .collect(),
            issued_us: 1,
            expires: u64::MAX,
            audit_ids: vec!["a".into()],
        }
    }

    fn flags(i: &Identity) -> (bool, bool, bool) {
        match i {
            Identity::User {
                owner,
                reseller,
                reader,
                ..
            } => (*owner, *reseller, *reader),
            Identity::Anonymous => panic!("anonymous"),
        }
    }

    #[test]
    fn keystone_roles_map_to_swift_rights_on_the_own_project_only() {
        let own = "AUTH_p1";
        assert_eq!(
            flags(&keystone_identity(&claims(&["member"]), own)),
            (true, false, false)
        );
        assert_eq!(
            flags(&keystone_identity(&claims(&["admin"]), own)),
            (true, false, false)
        );
        assert_eq!(
            flags(&keystone_identity(&claims(&["reader"]), own)),
            (false, false, true)
        );
        assert_eq!(
            flags(&keystone_identity(&claims(&["member"]), "AUTH_p2")),
            (false, false, false)
        );
        assert_eq!(
            flags(&keystone_identity(&claims(&["ResellerAdmin"]), "AUTH_p2")),
            (true, true, false)
        );
        let Identity::User { groups, .. } = keystone_identity(&claims(&["member"]), "AUTH_p2")
        else {
            unreachable!()
        };
        for g in ["p1:u1", "demo:alice", "*:alice", "p1:*", "member"] {
            assert!(groups.contains(&g.to_string()), "{g} in {groups:?}");
        }
    }
}
