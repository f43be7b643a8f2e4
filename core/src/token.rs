//! Auth tokens: self-contained, signed and expiring, so any proxy can check one without a
//! round trip to meta.
//!
//! A token is `AUTH_tk` + hex(`account\nuser\nroles\nexpires`) + `.` + hex(tag), where the tag
//! is the first 16 bytes of BLAKE3 in keyed mode (a MAC) over the payload, keyed with the
//! cluster's token secret. Tokens are ASCII, fit an HTTP header and cannot be forged or
//! extended without the secret.

/// The claims a token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The account the user belongs to (without the `AUTH_` prefix).
    pub account: String,
    /// The user name within the account.
    pub user: String,
    /// Roles, e.g. `admin` (owns the account) and `reseller` (acts on every account).
    pub roles: Vec<String>,
    /// Expiry, seconds since the Unix epoch.
    pub expires: u64,
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

const PREFIX: &str = "AUTH_tk";

fn tag(secret: &[u8; 32], payload: &[u8]) -> [u8; 16] {
    let h = blake3::keyed_hash(secret, payload);
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.as_bytes()[..16]);
    out
}

/// Signs `claims` with `secret`.
pub fn mint(secret: &[u8; 32], claims: &Claims) -> String {
    let payload = format!(
        "{}\n{}\n{}\n{}",
        claims.account,
        claims.user,
        claims.roles.join(","),
        claims.expires
    );
    format!(
        "{PREFIX}{}.{}",
        hex::encode(payload.as_bytes()),
        hex::encode(tag(secret, payload.as_bytes()))
    )
}

/// Checks a token's signature and expiry at `now` (seconds) and returns its claims.
pub fn verify(secret: &[u8; 32], token: &str, now: u64) -> Result<Claims, TokenError> {
    let body = token.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
    let (payload_hex, tag_hex) = body.split_once('.').ok_or(TokenError::Malformed)?;
    let payload = hex::decode(payload_hex).map_err(|_| TokenError::Malformed)?;
    let given = hex::decode(tag_hex).map_err(|_| TokenError::Malformed)?;
    let want = tag(secret, &payload);
    // Constant-time comparison: the tag must not leak byte by byte.
    if given.len() != want.len() || given.iter().zip(want).fold(0u8, |a, (x, y)| a | (x ^ y)) != 0 {
        return Err(TokenError::BadSignature);
    }
    let text = String::from_utf8(payload).map_err(|_| TokenError::Malformed)?;
    let parts: Vec<&str> = text.split('\n').collect();
    let [account, user, roles, expires] = parts[..] else {
        return Err(TokenError::Malformed);
    };
    let expires: u64 = expires.parse().map_err(|_| TokenError::Malformed)?;
    if now >= expires {
        return Err(TokenError::Expired);
    }
    Ok(Claims {
        account: account.to_string(),
        user: user.to_string(),
        roles: roles
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect(),
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            account: "test".into(),
            user: "tester".into(),
            roles: vec!["admin".into()],
            expires: 1_000,
        }
    }

    #[test]
    fn round_trip_expiry_and_forgery() {
        let key = [7u8; 32];
        let t = mint(&key, &claims());
        assert!(t.starts_with("AUTH_tk"));
        assert_eq!(verify(&key, &t, 999), Ok(claims()));
        assert_eq!(verify(&key, &t, 1_000), Err(TokenError::Expired));
        assert_eq!(verify(&[8u8; 32], &t, 0), Err(TokenError::BadSignature));
        // Extending the expiry without the key breaks the signature.
        let mut longer = claims();
        longer.expires = 9_999;
        let forged = mint(&[8u8; 32], &longer);
        let (payload, _) = forged.split_once('.').unwrap();
        let (_, sig) = t.split_once('.').unwrap();
        assert_eq!(
            verify(&key, &format!("{payload}.{sig}"), 0),
            Err(TokenError::BadSignature)
        );
        for bad in ["", "AUTH_tk", "AUTH_tkzz.00", "nope"] {
            assert!(verify(&key, bad, 0).is_err(), "{bad:?}");
        }
    }
}
