//! TempAuth users and the secret that signs auth tokens, stored in meta.
//!
//! # Keys
//! - `/auth/users/<account>/<user>`: a [`User`] (JSON). The key itself is never stored:
//!   only a random salt and BLAKE3(salt ‖ key).
//! - `/auth/token-secret`: 32 random bytes, created on first use; every proxy signs and
//!   checks tokens with it (see `stratus_core::token`).

use serde::{Deserialize, Serialize};

use stratus_core::time::now_secs;

use crate::meta::{ClientError, MetaClient};

const USERS: &str = "/auth/users/";
const TOKEN_SECRET: &str = "/auth/token-secret";

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
    /// Hex salt.
    pub salt: String,
    /// Hex BLAKE3(salt ‖ key).
    pub key_hash: String,
    pub roles: Vec<String>,
    pub created: u64,
}

impl User {
    /// Whether `key` is this user's key.
    pub fn check_key(&self, key: &str) -> bool {
        let Ok(salt) = hex::decode(&self.salt) else {
            return false;
        };
        hex::encode(hash_key(&salt, key)) == self.key_hash
    }
}

fn hash_key(salt: &[u8], key: &str) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(salt);
    h.update(key.as_bytes());
    *h.finalize().as_bytes()
}

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
        let salt: [u8; 16] = rand::random();
        let u = User {
            v: crate::records::RECORD_VERSION,
            account: account.into(),
            user: user.into(),
            salt: hex::encode(salt),
            key_hash: hex::encode(hash_key(&salt, key)),
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
        let fresh: [u8; 32] = rand::random();
        self.client
            .get_or_create(TOKEN_SECRET, fresh.to_vec())
            .await?
            .ok_or_else(|| UserError::Damaged("token secret vanished".into()))?
            .as_slice()
            .try_into()
            .map_err(|_| UserError::Damaged("token secret is not 32 bytes".into()))
    }
}
