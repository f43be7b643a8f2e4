//! TempAuth v1: `GET /auth/v1.0` with `X-Auth-User: account:user` and `X-Auth-Key` answers
//! with a signed, expiring token and the account's storage URL; every API request must then
//! carry a valid token for its account (or a reseller's token).
//!
//! Users live in meta ([`stratus_client::users`]); tokens are checked locally with the
//! cluster's token secret, so any proxy accepts a token any other proxy issued.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
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

/// The TempAuth authority of a proxy.
pub struct Auth {
    users: UserStore,
    secret: [u8; 32],
    ttl: u64,
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
    /// Loads the token secret (created on first use).
    pub async fn new(users: UserStore, ttl: u64) -> Result<Self, stratus_client::users::UserError> {
        let secret = users.token_secret().await?;
        Ok(Self { users, secret, ttl })
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
        let claims = token::verify(&self.secret, tok, now_secs()).map_err(|_| unauthorized())?;
        Ok(identity(&claims, account))
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
    }
}
