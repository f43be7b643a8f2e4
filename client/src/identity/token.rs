//! Keystone tokens: self-contained and signed, so any proxy validates one without a round
//! trip to meta (revocations arrive by watch, see [`super::revoke`]).
//!
//! A token is base64url(JSON claims) `.` base64url(tag), where the tag is the first 16
//! bytes of keyed BLAKE3 over the JSON, keyed with a key derived from the cluster's token
//! secret for this purpose only (TempAuth tokens use the secret differently, so one kind
//! can never pass for the other). The claims carry what every service needs to decide
//! access — the user, the scope, the role names — and what the token body shows.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// What a token is scoped to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Scope {
    /// No project or domain: the token only proves who the user is.
    Unscoped,
    Project {
        id: String,
        name: String,
        domain_id: String,
        domain_name: String,
    },
    Domain {
        id: String,
        name: String,
    },
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// Format version.
    pub v: u32,
    pub user_id: String,
    pub user_name: String,
    pub user_domain_id: String,
    pub user_domain_name: String,
    /// How the user authenticated (`password`, `token`).
    pub methods: Vec<String>,
    pub scope: Scope,
    /// `(id, name)` of every effective role on the scope (implied roles included).
    pub roles: Vec<(String, String)>,
    /// Microseconds since the epoch (finer than seconds, so a revocation "before now" never
    /// catches a token issued a moment later).
    pub issued_us: u64,
    /// Seconds since the epoch.
    pub expires: u64,
    /// This token's audit id, then that of the token it was re-scoped from, if any.
    pub audit_ids: Vec<String>,
}

impl TokenClaims {
    /// The project id, when project-scoped.
    pub fn project_id(&self) -> Option<&str> {
        match &self.scope {
            Scope::Project { id, .. } => Some(id),
            _ => None,
        }
    }

    /// Whether the token carries role `name`.
    pub fn has_role(&self, name: &str) -> bool {
        self.roles.iter().any(|(_, n)| n == name)
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("token signature does not match")]
    BadSignature,
    #[error("token expired")]
    Expired,
}

/// Signs and checks Keystone tokens.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

/// Longest token accepted (larger ones are refused before any work).
pub const MAX_TOKEN_LEN: usize = 8192;

impl TokenKey {
    /// The Keystone token key derived from the cluster's token secret.
    pub fn derive(secret: &[u8; 32]) -> Self {
        Self(blake3::derive_key("stratus keystone token v1", secret))
    }

    fn tag(&self, payload: &[u8]) -> [u8; 16] {
        let h = blake3::keyed_hash(&self.0, payload);
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.as_bytes()[..16]);
        out
    }

    /// The token for `claims`.
    pub fn mint(&self, claims: &TokenClaims) -> String {
        let payload = serde_json::to_vec(claims).expect("plain struct serializes");
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(self.tag(&payload))
        )
    }

    /// Checks `token`'s signature and expiry at `now` (seconds) and returns its claims.
    pub fn verify(&self, token: &str, now: u64) -> Result<TokenClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (payload, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let given = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        let want = self.tag(&payload);
        // Constant time: the tag must not leak byte by byte.
        if given.len() != want.len()
            || given.iter().zip(want).fold(0u8, |a, (x, y)| a | (x ^ y)) != 0
        {
            return Err(TokenError::BadSignature);
        }
        let claims: TokenClaims =
            serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if now >= claims.expires {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn claims() -> TokenClaims {
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
            issued_us: 5,
            expires: 1_000,
            audit_ids: vec!["a1".into()],
        }
    }

    #[test]
    fn round_trip_expiry_and_forgery() {
        let k = TokenKey::derive(&[7; 32]);
        let t = k.mint(&claims());
        assert_eq!(k.verify(&t, 999), Ok(claims()));
        assert!(t.len() < 1024, "a token fits a header easily: {}", t.len());
        assert_eq!(k.verify(&t, 1_000), Err(TokenError::Expired));
        let other = TokenKey::derive(&[8; 32]);
        assert_eq!(other.verify(&t, 0), Err(TokenError::BadSignature));
        // A longer life or another role, signed with the wrong key, fails.
        let mut c = claims();
        c.roles.push(("r0".into(), "admin".into()));
        let forged = other.mint(&c);
        let (payload, _) = forged.split_once('.').unwrap();
        let (_, tag) = t.split_once('.').unwrap();
        assert_eq!(
            k.verify(&format!("{payload}.{tag}"), 0),
            Err(TokenError::BadSignature)
        );
        assert_eq!(k.verify("nope", 0), Err(TokenError::Malformed));
        assert_eq!(k.verify("AUTH_tk00.00", 0), Err(TokenError::Malformed));
        assert_eq!(claims().project_id(), Some("p1"));
        assert!(claims().has_role("member") && !claims().has_role("admin"));
    }
}
