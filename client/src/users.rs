//! TempAuth users and the secret that signs auth tokens, stored in meta.
//!
//! # Keys
//! - `/auth/users/<account>/<user>`: a [`User`] (JSON). The key itself is never stored:
//!   only its argon2id PHC string (records written before version 2: a random salt and
//!   BLAKE3(salt ‖ key), still checked, in constant time).
//! - `/auth/token-secret`: 32 random bytes, created on first use; every proxy signs and
//!   checks tokens with it (see `stratus_core::token`).
//! - `/auth/token-secret-previous`: the secret before the last rotation and until when
//!   tokens it signed are still accepted ([`PreviousSecret`]; `stratus auth rotate-secret`).
//!
//! Only the `proxy` role reads these keys (and an `admin` that asks to; see meta's access
//! rules).

use serde::{Deserialize, Serialize};

use stratus_core::time::now_secs;

use crate::meta::{ClientError, MetaClient};

const USERS: &str = "/auth/users/";
/// The current token-signing secret.
pub const TOKEN_SECRET: &str = "/auth/token-secret";
/// The secret before the last rotation, while its grace period lasts.
pub const TOKEN_SECRET_PREVIOUS: &str = "/auth/token-secret-previous";

/// The secret a rotation replaced, and until when tokens it signed are accepted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PreviousSecret {
    #[serde(default = "crate::records::v1")]
    pub v: u32,
    /// Hex of the 32 bytes.
    pub secret: String,
    /// Seconds since the epoch.
    pub until: u64,
}

/// The secrets tokens are checked with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSecrets {
    /// Signs new tokens; checks every token.
    pub current: [u8; 32],
    /// Still checks tokens it signed until the given time (seconds since the epoch).
    pub previous: Option<([u8; 32], u64)>,
}

/// Role that owns its account.
pub const ROLE_ADMIN: &str = "admin";
/// Role that may act on every account.
pub const ROLE_RESELLER: &str = "reseller";

/// A stored user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    /// Format version (records written before the field existed read as 1).
    #[serde(default = "crate::records::v1")]
    pub v: u32,
    pub account: String,
    pub user: String,
    /// Hex salt (records before version 2; empty after).
    #[serde(default)]
    pub salt: String,
    /// The key's argon2id PHC string (before version 2: hex BLAKE3(salt ‖ key)).
    pub key_hash: String,
    pub roles: Vec<String>,
    pub created: u64,
}

impl User {
    /// Whether `key` is this user's key (argon2id: tens of milliseconds by design; use
    /// [`User::check_key_async`] on async threads). Compares in constant time.
    pub fn check_key(&self, key: &str) -> bool {
        if self.key_hash.starts_with("$argon2") {
            return crate::identity::password::verify(&self.key_hash, key);
        }
        let Ok(salt) = hex::decode(&self.salt) else {
            return false;
        };
        let want = hex::encode(hash_key(&salt, key));
        let (a, b) = (want.as_bytes(), self.key_hash.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// [`User::check_key`] off the async threads.
    pub async fn check_key_async(self: std::sync::Arc<Self>, key: String) -> bool {
        crate::identity::password::off_thread(move || self.check_key(&key))
            .await
            .unwrap_or(false)
    }
}

/// Costs a wrong user name as much time as a wrong key.
pub async fn check_decoy(key: String) -> bool {
    crate::identity::password::off_thread(move || {
        crate::identity::password::verify(crate::identity::password::decoy(), &key)
    })
    .await
    .unwrap_or(false)
}

fn hash_key(salt: &[u8], key: &str) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(salt);
    h.update(key.as_bytes());
    *h.finalize().as_bytes()
}

/// Version of user records written now (2: the key as an argon2id PHC string).
pub const USER_VERSION: u32 = 2;

/// Why a user operation failed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("bad account name {0:?}: 1..=64 characters, no ':' or '/'")]
    BadAccount(String),
    #[error("bad user name {0:?}: 1..=64 characters, no ':' or '/'")]
    BadUser(String),
    #[error("the key must not be empty")]
    EmptyKey,
    #[error("stored user record is damaged: {0}")]
    Damaged(String),
    #[error(transparent)]
    Meta(#[from] ClientError),
}

fn check_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && !s.contains([':', '/', '\0']) && !s.starts_with('.')
}

fn user_key(account: &str, user: &str) -> String {
    format!("{USERS}{account}/{user}")
}

/// Users in meta.
#[derive(Clone)]
pub struct UserStore {
    client: MetaClient,
}

impl UserStore {
    /// User access over a meta client.
    pub fn new(client: MetaClient) -> Self {
        Self { client }
    }

    /// The meta client underneath.
    pub fn client(&self) -> &MetaClient {
        &self.client
    }

    /// Adds (or replaces) `account:user` with `key` and `roles`.
    pub async fn add(
        &self,
        account: &str,
        user: &str,
        key: &str,
        roles: &[&str],
    ) -> Result<User, UserError> {
        if !check_name(account) {
            return Err(UserError::BadAccount(account.into()));
        }
        if !check_name(user) {
            return Err(UserError::BadUser(user.into()));
        }
        if key.is_empty() {
            return Err(UserError::EmptyKey);
        }
        let key_hash = crate::identity::password::hash_async(key.to_string())
            .await
            .map_err(|e| UserError::Damaged(e.to_string()))?;
        let u = User {
            v: USER_VERSION,
            account: account.into(),
            user: user.into(),
            salt: String::new(),
            key_hash,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            created: now_secs(),
        };
        let body = serde_json::to_vec(&u).expect("plain struct serializes");
        self.client.put(user_key(account, user), body).await?;
        Ok(u)
    }

    /// The user `account:user`, if it exists.
    pub async fn get(&self, account: &str, user: &str) -> Result<Option<User>, UserError> {
        if !check_name(account) || !check_name(user) {
            return Ok(None);
        }
        match self.client.get(user_key(account, user)).await? {
            None => Ok(None),
            Some(kv) => serde_json::from_slice(&kv.value)
                .map(Some)
                .map_err(|e| UserError::Damaged(e.to_string())),
        }
    }

    /// Every user.
    pub async fn list(&self) -> Result<Vec<User>, UserError> {
        let r = self.client.range_prefix(USERS, 0).await?;
        r.kvs
            .iter()
            .map(|kv| {
                serde_json::from_slice(&kv.value).map_err(|e| UserError::Damaged(e.to_string()))
            })
            .collect()
    }

    /// Deletes `account:user`; false if there was no such user.
    pub async fn delete(&self, account: &str, user: &str) -> Result<bool, UserError> {
        let r = self.client.delete(user_key(account, user), false).await?;
        Ok(r.deleted > 0)
    }

    /// The token-signing secret, created on first use.
    pub async fn token_secret(&self) -> Result<[u8; 32], UserError> {
        Ok(self.token_secrets().await?.current)
    }

    /// The current secret (created on first use) and the previous one, if a rotation's
    /// grace period still lasts.
    pub async fn token_secrets(&self) -> Result<TokenSecrets, UserError> {
        let fresh: [u8; 32] = rand::random();
        let current = self
            .client
            .get_or_create(TOKEN_SECRET, fresh.to_vec())
            .await?
            .ok_or_else(|| UserError::Damaged("token secret vanished".into()))?;
        let current = secret_bytes(&current)?;
        let previous = match self.client.get(TOKEN_SECRET_PREVIOUS).await? {
            None => None,
            Some(kv) => {
                let p: PreviousSecret = serde_json::from_slice(&kv.value)
                    .map_err(|e| UserError::Damaged(format!("previous token secret: {e}")))?;
                let bytes = hex::decode(&p.secret)
                    .map_err(|e| UserError::Damaged(format!("previous token secret: {e}")))?;
                Some((secret_bytes(&bytes)?, p.until))
            }
        };
        Ok(TokenSecrets { current, previous })
    }

    /// Replaces the token secret with a fresh one; tokens signed with the old one are
    /// accepted for `grace` more seconds (0: refused at once). Atomic: a rotation that
    /// races another fails rather than losing one.
    pub async fn rotate_token_secret(&self, grace: u64) -> Result<TokenSecrets, UserError> {
        use stratus_proto::meta as pb;
        let old = self.token_secrets().await?;
        let kv = self
            .client
            .get(TOKEN_SECRET)
            .await?
            .ok_or_else(|| UserError::Damaged("token secret vanished".into()))?;
        let fresh: [u8; 32] = rand::random();
        let until = now_secs() + grace;
        let prev = PreviousSecret {
            v: crate::records::RECORD_VERSION,
            secret: hex::encode(old.current),
            until,
        };
        let put = |key: &str, value: Vec<u8>| pb::RequestOp {
            request: Some(pb::request_op::Request::Put(pb::PutRequest {
                key: key.as_bytes().to_vec(),
                value,
                ..Default::default()
            })),
        };
        let r = self
            .client
            .txn(pb::TxnRequest {
                compare: vec![pb::Compare {
                    result: pb::compare::Result::Equal as i32,
                    key: TOKEN_SECRET.as_bytes().to_vec(),
                    target: Some(pb::compare::Target::ModRevision(kv.mod_revision)),
                }],
                success: vec![
                    put(TOKEN_SECRET, fresh.to_vec()),
                    put(
                        TOKEN_SECRET_PREVIOUS,
                        serde_json::to_vec(&prev).expect("plain struct serializes"),
                    ),
                ],
                ..Default::default()
            })
            .await?;
        if !r.succeeded {
            return Err(UserError::Damaged(
                "the token secret changed during the rotation (another rotation?): try again"
                    .into(),
            ));
        }
        Ok(TokenSecrets {
            current: fresh,
            previous: Some((old.current, until)),
        })
    }
}

fn secret_bytes(b: &[u8]) -> Result<[u8; 32], UserError> {
    b.try_into()
        .map_err(|_| UserError::Damaged("token secret is not 32 bytes".into()))
}
