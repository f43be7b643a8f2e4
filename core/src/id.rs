//! Request ids: 16 random bytes chosen once per logical write and reused on every retry, so
//! the metadata state machine can apply the write exactly once.

use std::fmt;

/// A random UUID (v4) in its usual text form, as OpenStack services name things.
pub fn new_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Whether `s` has the text form of a UUID.
pub fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A 128-bit id naming one logical client request.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct RequestId(pub [u8; 16]);

/// A request id of the wrong length.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("request id must be 16 bytes, got {0}")]
pub struct BadRequestId(pub usize);

impl RequestId {
    /// A fresh random id.
    pub fn random() -> Self {
        RequestId(rand::random())
    }

    /// Parse from wire bytes; empty means "no id" (the write is not deduplicated).
    pub fn from_wire(bytes: &[u8]) -> Result<Option<Self>, BadRequestId> {
        match bytes.len() {
            0 => Ok(None),
            16 => {
                let mut id = [0u8; 16];
                id.copy_from_slice(bytes);
                Ok(Some(RequestId(id)))
            }
            n => Err(BadRequestId(n)),
        }
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_round_trip_and_errors() {
        let id = RequestId::random();
        assert_eq!(RequestId::from_wire(&id.0).unwrap(), Some(id));
        assert_eq!(RequestId::from_wire(&[]).unwrap(), None);
        assert_eq!(RequestId::from_wire(&[1, 2, 3]), Err(BadRequestId(3)));
        assert_eq!(format!("{}", RequestId([0xab; 16])).len(), 32);
    }
}
