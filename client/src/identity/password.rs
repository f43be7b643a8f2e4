//! Password hashing: argon2id with its default cost (19 MiB, 2 passes), stored as a PHC
//! string; verification compares in constant time (the argon2 crate's own check).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use super::IdentityError;

/// The longest password accepted (Keystone's `max_password_length`).
pub const MAX_PASSWORD: usize = 4096;

/// Hashes `password` with a fresh random salt.
pub fn hash(password: &str) -> Result<String, IdentityError> {
    if password.is_empty() || password.len() > MAX_PASSWORD {
        return Err(IdentityError::Invalid(format!(
            "Invalid input for field 'password': a password has 1 to {MAX_PASSWORD} bytes."
        )));
    }
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| IdentityError::Invalid(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| IdentityError::Invalid(e.to_string()))
}

/// How many hashes run at once: one per core. Each takes 19 MiB and tens of milliseconds
/// of CPU; more at once only queue on the cores and multiply the memory (16 concurrent
/// logins once left a proxy at 2 GB RSS, the allocator keeping every thread's blocks).
fn permits() -> &'static tokio::sync::Semaphore {
    static SEM: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SEM.get_or_init(|| {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(n)
    })
}

/// Runs `f` (a hash or a check) off the async threads, at most one per core at a time.
pub async fn off_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, IdentityError> {
    let _permit = permits()
        .acquire()
        .await
        .map_err(|e| IdentityError::Invalid(format!("hashing failed: {e}")))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| IdentityError::Invalid(format!("hashing failed: {e}")))
}

/// [`hash`] off the async threads (it takes tens of milliseconds by design).
pub async fn hash_async(password: String) -> Result<String, IdentityError> {
    off_thread(move || hash(&password)).await?
}

/// Whether `password` matches the stored `phc` string (false for a damaged one).
pub fn verify(phc: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// A hash that matches nothing, checked when a user does not exist so that a wrong user
/// name costs as much time as a wrong password.
pub fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash(&super::new_id()).expect("a fresh id hashes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_salts_differ() {
        let a = hash("s3cret").unwrap();
        let b = hash("s3cret").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b);
        assert!(verify(&a, "s3cret"));
        assert!(!verify(&a, "s3cret "));
        assert!(!verify("not a hash", "s3cret"));
        assert!(!verify(decoy(), "s3cret"));
        assert!(hash("").is_err());
    }
}
