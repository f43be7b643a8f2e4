//! Timestamps: the version of every object, tombstone, metadata item and listing row.
//! The newest timestamp wins everywhere, so every write carries one, chosen by the proxy.
//!
//! A [`Timestamp`] counts microseconds since the Unix epoch; Swift shows it with 10 µs
//! precision as `1700000000.12345` (`X-Timestamp`), so [`Timestamp::now`] hands out
//! multiples of 10 µs that strictly increase within a process.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Timestamp(pub u64);

static LAST: AtomicU64 = AtomicU64::new(0);

impl Timestamp {
    /// Now, rounded to 10 µs and strictly greater than any earlier `now()` of this process.
    pub fn now() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0)
            / 10
            * 10;
        let mut prev = LAST.load(Ordering::Relaxed);
        loop {
            let next = wall.max(prev + 10);
            match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Timestamp(next),
                Err(p) => prev = p,
            }
        }
    }

    /// Whole seconds since the epoch.
    pub fn secs(self) -> u64 {
        self.0 / 1_000_000
    }

    /// From whole seconds.
    pub fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000))
    }

    /// Parses Swift's `1700000000.12345` form (up to 6 decimals; no sign, no exponent).
    pub fn parse(s: &str) -> Option<Self> {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() || int.len() > 12 || frac.len() > 6 {
            return None;
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let secs: u64 = int.parse().ok()?;
        let mut micros = 0u64;
        for (i, b) in frac.bytes().enumerate() {
            micros += u64::from(b - b'0') * 10u64.pow(5 - i as u32);
        }
        Some(Timestamp(secs * 1_000_000 + micros))
    }
}

/// Swift's `X-Timestamp` form: ten digits of seconds, five decimals.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:010}.{:05}",
            self.0 / 1_000_000,
            (self.0 % 1_000_000) / 10
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_strictly_increasing_in_10us_steps() {
        let mut prev = Timestamp::now();
        for _ in 0..10_000 {
            let t = Timestamp::now();
            assert!(t > prev);
            assert_eq!(t.0 % 10, 0);
            prev = t;
        }
    }

    #[test]
    fn swift_form_round_trips() {
        let t = Timestamp(1_700_000_000_123_450);
        assert_eq!(t.to_string(), "1700000000.12345");
        assert_eq!(Timestamp::parse("1700000000.12345"), Some(t));
        assert_eq!(
            Timestamp::parse("1700000000"),
            Some(Timestamp::from_secs(1_700_000_000))
        );
        assert_eq!(Timestamp::parse("1.5"), Some(Timestamp(1_500_000)));
        for bad in ["", ".5", "-1", "1e5", "1.1234567", "abc", "1.x"] {
            assert_eq!(Timestamp::parse(bad), None, "{bad:?}");
        }
    }
}
