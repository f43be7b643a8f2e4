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
//!
//! Both kinds of token are signed with the cluster's token secret, which this proxy
//! follows in meta: after `stratus auth rotate-secret`, new tokens are signed with the new
//! secret at once, and tokens signed with the old one are accepted until the grace period
//! the rotation chose ends. A token whose expiry lies further ahead than the longest
//! lifetime any proxy issues ([`MAX_TOKEN_TTL`], 7 days, plus a minute for clocks) is
//! refused, whoever signed it: proxies with different lifetimes accept each other's
//! tokens, and a stolen secret cannot mint one that lives for ever.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_stream::StreamExt;

use stratus_client::identity::revoke::Revocations;
use stratus_client::identity::token::{TokenClaims, TokenError, TokenKey};
use stratus_client::users::{TokenSecrets, UserStore, ROLE_ADMIN, ROLE_RESELLER, TOKEN_SECRET};
use stratus_core::time::now_secs;
use stratus_core::token::{self, Claims};

use crate::acl::Identity;
use crate::error::{unavailable, SwiftError, SwiftResult};
use crate::headers::hv;

/// Prefix of account names in storage URLs (Swift's `reseller_prefix`).
pub const RESELLER_PREFIX: &str = "AUTH_";

/// The second reseller prefix: a user's `SERVICE_<account>` is where services (an image
/// service, a backup service) keep data for that user. It is reached only with the
/// user's token *and* an `X-Service-Token` of a user in [`SERVICE_GROUP`] (TempAuth's
/// `reseller_prefix = AUTH, SERVICE` with `SERVICE_require_group = service`).
pub const SERVICE_PREFIX: &str = "SERVICE_";

/// The group that a request on a [`SERVICE_PREFIX`] account needs among its tokens' groups.
pub const SERVICE_GROUP: &str = "service";

/// Every reseller prefix, and the group each requires of the requester.
pub const RESELLER_PREFIXES: &[(&str, Option<&str>)] = &[
    (RESELLER_PREFIX, None),
    (SERVICE_PREFIX, Some(SERVICE_GROUP)),
];

/// Token lifetime by default (Swift's `token_life`).
pub const DEFAULT_TOKEN_TTL: u64 = 86_400;

/// Keystone roles that own their project's account (Swift's `operator_roles`).
pub const OPERATOR_ROLES: &[&str] = &["admin", "member"];
/// Keystone role that reads its project's account.
pub const READER_ROLE: &str = "reader";
/// Keystone role that acts on every account (Swift's `reseller_admin_role`).
pub const RESELLER_ADMIN_ROLE: &str = "ResellerAdmin";

/// How far a token's expiry may lie beyond [`MAX_TOKEN_TTL`] (other proxies' clocks).
pub const CLOCK_SKEW: u64 = 60;

/// The longest lifetime a proxy gives a token, TempAuth or Keystone (`--token-ttl` and
/// `--identity-token-ttl` are bounded by it).
pub use stratus_client::identity::revoke::MAX_TOKEN_TTL;

/// The secrets this proxy checks tokens with (see [`TokenSecrets`]).
struct Keys {
    current: [u8; 32],
    keystone: TokenKey,
    /// The previous secret, its Keystone key, and until when they are accepted.
    previous: Option<([u8; 32], TokenKey, u64)>,
}

impl Keys {
    fn new(s: &TokenSecrets) -> Self {
        Keys {
            current: s.current,
            keystone: TokenKey::derive(&s.current),
            previous: s
                .previous
                .map(|(p, until)| (p, TokenKey::derive(&p), until)),
        }
    }

    /// The previous secret, if its grace period lasts at `now`.
    fn previous(&self, now: u64) -> Option<&([u8; 32], TokenKey, u64)> {
        self.previous.as_ref().filter(|(_, _, until)| now < *until)
    }
}

/// The authority of a proxy: TempAuth, and Keystone token checks.
pub struct Auth {
    users: UserStore,
    keys: Arc<RwLock<Arc<Keys>>>,
    ttl: u64,
    revocations: Arc<Revocations>,
}

/// Why a Keystone token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeystoneTokenError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("token revoked")]
    Revoked,
    #[error("token expiry lies beyond the longest lifetime this proxy issues")]
    TooLong,
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
    /// Loads the token secrets (created on first use) and follows their rotations; TempAuth
    /// tokens live `ttl` seconds; Keystone tokens are checked against `revocations`.
    pub async fn new(
        users: UserStore,
        ttl: u64,
        revocations: Arc<Revocations>,
    ) -> Result<Self, stratus_client::users::UserError> {
        let keys = Arc::new(RwLock::new(Arc::new(Keys::new(
            &users.token_secrets().await?,
        ))));
        tokio::spawn(follow_secrets(users.clone(), Arc::downgrade(&keys)));
        Ok(Self {
            users,
            keys,
            ttl,
            revocations,
        })
    }

    fn keys(&self) -> Arc<Keys> {
        self.keys.read().expect("keys lock").clone()
    }

    /// The Keystone token key new tokens are signed with.
    pub fn keystone_key(&self) -> TokenKey {
        self.keys().keystone.clone()
    }

    /// The revocation list this proxy follows.
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// The claims of a valid Keystone token: signed, unexpired, not revoked.
    pub fn keystone(&self, token: &str) -> Result<TokenClaims, KeystoneTokenError> {
        let (keys, now) = (self.keys(), now_secs());
        let c = match keys.keystone.verify(token, now) {
            Err(TokenError::BadSignature) => match keys.previous(now) {
                Some((_, key, _)) => key.verify(token, now)?,
                None => return Err(TokenError::BadSignature.into()),
            },
            r => r?,
        };
        if c.expires > now + MAX_TOKEN_TTL + CLOCK_SKEW {
            return Err(KeystoneTokenError::TooLong);
        }
        if self.revocations.is_revoked(&c) {
            return Err(KeystoneTokenError::Revoked);
        }
        Ok(c)
    }

    /// Answers `GET /auth/v1.0`; the storage URL starts with `base` (`https://host:port`,
    /// as the client reached this proxy).
    pub async fn authenticate(&self, h: &HeaderMap, base: &str) -> SwiftResult<Response> {
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
        // argon2 off the async threads; an unknown user costs as much as a wrong key.
        let u = match stored {
            Some(u) => {
                let u = Arc::new(u);
                if !u.clone().check_key_async(key.to_string()).await {
                    return Err(unauthorized());
                }
                u
            }
            None => {
                stratus_client::users::check_decoy(key.to_string()).await;
                return Err(unauthorized());
            }
        };
        let claims = Claims {
            account: u.account.clone(),
            user: u.user.clone(),
            roles: u.roles.clone(),
            expires: now_secs() + self.ttl,
        };
        let tok = token::mint(&self.keys().current, &claims);
        let url = format!("{base}/v1/{RESELLER_PREFIX}{}", u.account);
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
    /// without a token, 401 with a bad or expired one. A valid TempAuth `X-Service-Token`
    /// beside a TempAuth token adds its user's groups, as TempAuth does (an invalid one
    /// adds nothing).
    pub fn identify(&self, h: &HeaderMap, account: &str) -> SwiftResult<Identity> {
        let Some(tok) = hv(h, "x-auth-token").or_else(|| hv(h, "x-storage-token")) else {
            return Ok(Identity::Anonymous);
        };
        if !tok.starts_with("AUTH_tk") {
            let c = self.keystone(tok).map_err(|_| unauthorized())?;
            return Ok(keystone_identity(&c, account));
        }
        let user = self.tempauth(tok)?;
        let service = hv(h, "x-service-token")
            .filter(|t| t.starts_with("AUTH_tk"))
            .and_then(|t| self.tempauth(t).ok());
        Ok(identity(&user, service.as_ref(), account))
    }

    /// The claims of a valid TempAuth token: signed with the current secret (or the
    /// previous one in its grace period), unexpired, and not expiring further ahead than
    /// any proxy's token lifetime.
    fn tempauth(&self, tok: &str) -> SwiftResult<Claims> {
        let (keys, now) = (self.keys(), now_secs());
        let claims = match token::verify(&keys.current, tok, now) {
            Err(token::TokenError::BadSignature) => match keys.previous(now) {
                Some((old, _, _)) => token::verify(old, tok, now),
                None => Err(token::TokenError::BadSignature),
            },
            r => r,
        }
        .map_err(|_| unauthorized())?;
        if claims.expires > now + MAX_TOKEN_TTL + CLOCK_SKEW {
            return Err(unauthorized());
        }
        Ok(claims)
    }
}

/// Reloads the token secrets whenever they change in meta (a rotation), until the
/// [`Auth`] is dropped; the watch resumes by itself after failures.
async fn follow_secrets(users: UserStore, keys: std::sync::Weak<RwLock<Arc<Keys>>>) {
    let mut events = users.client().watch(TOKEN_SECRET, 0, false);
    while let Some(ev) = events.next().await {
        let Some(keys) = keys.upgrade() else {
            return;
        };
        if let Err(e) = ev {
            tracing::warn!(error = %e, "watching the token secret");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        match users.token_secrets().await {
            Ok(s) => {
                *keys.write().expect("keys lock") = Arc::new(Keys::new(&s));
                tracing::info!("token secret rotated: new tokens use the new secret");
            }
            Err(e) => tracing::warn!(error = %e, "reloading the token secret"),
        }
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

/// TempAuth's view of a user's token, with the groups of a service token (`service`) added,
/// for `account`: the groups (`account:user`, `account`, the user's own groups, and for an
/// admin `AUTH_account` and `SERVICE_account`), and whether they own `account`. A reseller
/// owns every account; an admin owns its own, but a `SERVICE_` account only when the
/// groups hold [`SERVICE_GROUP`] too. A user without admin acts only through ACLs, even in
/// its own account.
pub fn identity(c: &Claims, service: Option<&Claims>, account: &str) -> Identity {
    let mut groups = tempauth_groups(c);
    if let Some(s) = service {
        groups.extend(tempauth_groups(s));
    }
    let reseller = std::iter::once(c)
        .chain(service)
        .any(|x| x.roles.iter().any(|r| r == ROLE_RESELLER));
    let required = RESELLER_PREFIXES
        .iter()
        .find(|(p, _)| account.starts_with(p))
        .map(|(_, g)| *g);
    let owner = reseller
        || match required {
            Some(group) => {
                groups.iter().any(|g| g == account)
                    && group.is_none_or(|want| groups.iter().any(|g| g == want))
            }
            None => false,
        };
    Identity::User {
        groups,
        owner,
        reseller,
        reader: false,
    }
}

/// The groups TempAuth gives a user: `account:user`, `account`, its own groups (roles
/// other than admin and reseller), and for an admin the account under every reseller
/// prefix.
fn tempauth_groups(c: &Claims) -> Vec<String> {
    let mut groups = vec![format!("{}:{}", c.account, c.user), c.account.clone()];
    groups.extend(
        c.roles
            .iter()
            .filter(|r| *r != ROLE_ADMIN && *r != ROLE_RESELLER)
            .cloned(),
    );
    if c.roles.iter().any(|r| r == ROLE_ADMIN) {
        groups.extend(
            RESELLER_PREFIXES
                .iter()
                .map(|(p, _)| format!("{p}{}", c.account)),
        );
    }
    groups
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
            other => panic!("not a user: {other:?}"),
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

    /// TempAuth: an admin owns its account and is in its `AUTH_` group; a user without
    /// admin is neither, so only ACLs grant it anything.
    #[test]
    fn tempauth_admins_own_their_account_and_members_act_through_acls() {
        let c = |roles: &[&str]| Claims {
            account: "test".into(),
            user: "tester3".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            expires: u64::MAX,
        };
        let Identity::User { groups, owner, .. } = identity(&c(&[]), None, "AUTH_test") else {
            unreachable!()
        };
        assert!(!owner);
        assert_eq!(groups, ["test:tester3", "test"]);
        let Identity::User { groups, owner, .. } = identity(&c(&[ROLE_ADMIN]), None, "AUTH_test")
        else {
            unreachable!()
        };
        assert!(owner);
        assert!(groups.contains(&"AUTH_test".to_string()));
    }

    /// A `SERVICE_` account is owned only with the owner's token and a service token of a
    /// user in the `service` group: neither token alone, nor the service user alone.
    #[test]
    fn service_accounts_need_the_owner_and_a_service_token() {
        let claims = |account: &str, user: &str, roles: &[&str]| Claims {
            account: account.into(),
            user: user.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            expires: u64::MAX,
        };
        let owner = |i: Identity| matches!(i, Identity::User { owner: true, .. });
        let user = claims("test", "tester", &[ROLE_ADMIN]);
        let glance = claims("test5", "tester5", &[SERVICE_GROUP]);
        let stranger = claims("test2", "tester2", &[ROLE_ADMIN]);
        assert!(owner(identity(&user, None, "AUTH_test")));
        assert!(!owner(identity(&user, None, "SERVICE_test")));
        assert!(owner(identity(&user, Some(&glance), "SERVICE_test")));
        assert!(!owner(identity(&glance, None, "SERVICE_test")));
        assert!(!owner(identity(&glance, Some(&glance), "SERVICE_test")));
        assert!(!owner(identity(&stranger, Some(&glance), "SERVICE_test")));
        assert!(!owner(identity(&user, Some(&stranger), "SERVICE_test")));
        // An account under no reseller prefix is nobody's but a reseller's.
        assert!(!owner(identity(&user, Some(&glance), "test")));
        let Identity::User { groups, .. } = identity(&glance, None, "AUTH_test5") else {
            unreachable!()
        };
        assert_eq!(groups, ["test5:tester5", "test5", "service"]);
    }
}
