//! Request ids: 16 random bytes chosen once per logical write and reused on every retry, so
//! the metadata state machine can apply the write exactly once.

use std::fmt;

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
