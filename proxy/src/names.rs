//! Names as Swift takes them off the wire: percent-decoding that refuses bad UTF-8 and NUL
//! (412), the longest account, container and object names, and the decoded query string.

use percent_encoding::percent_decode_str;

use crate::error::{precondition_failed, SwiftError};

/// Longest account name (Swift's `max_account_name_length`).
pub const MAX_ACCOUNT_NAME: usize = 256;
/// Longest container name.
pub const MAX_CONTAINER_NAME: usize = 256;
/// Longest object name.
pub const MAX_OBJECT_NAME: usize = 1024;

/// A request's query string, decoded (`+` is a space).
#[derive(Debug, Default, Clone)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses a raw query string; undecodable pairs are skipped.
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                Some((
                    decode(&k.replace('+', " ")).ok()?,
                    decode(&v.replace('+', " ")).ok()?,
                ))
            })
            .collect();
        Self(pairs)
    }

    /// The value of `name` (empty if given without one).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Every pair, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// Whether `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// A percent-decoded query value: UTF-8, NUL allowed (a listing marker like `name\0` is
/// how a client asks for what follows `name`).
pub fn decode_param(s: &str) -> Result<String, SwiftError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|d| d.into_owned())
        .map_err(|_| precondition_failed("Invalid UTF8"))
}

/// Percent-decodes a path or query component, refusing bad UTF-8 and NUL as Swift does (412).
pub fn decode(s: &str) -> Result<String, SwiftError> {
    let d = percent_decode_str(s)
        .decode_utf8()
        .map_err(|_| precondition_failed("Invalid UTF8 or contains NULL"))?;
    if d.contains('\0') {
        return Err(precondition_failed("Invalid UTF8 or contains NULL"));
    }
    Ok(d.into_owned())
}
