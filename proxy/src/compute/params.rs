//! Request parsing the handlers share, with Nova's rules: integers given as numbers or
//! strings of digits, oslo's strict booleans, names, metadata, and `limit`/`marker`
//! paging.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{bad, invalid, NovaError, NovaResult};
use crate::names::Query;

/// Largest page of a list (Nova's `max_limit`), and the page without `limit`.
pub const MAX_LIMIT: usize = 1000;
/// Most metadata items on a server (Nova's default `metadata_items` quota).
pub const MAX_METADATA: usize = 128;
/// Longest name, metadata key or value.
pub const MAX_TEXT: usize = 255;

/// An integer as Nova's schemas take it (a number, or a string of digits with an
/// optional sign), within `min..=max`.
pub fn int(field: &str, v: &Value, min: i64, max: i64) -> NovaResult<i64> {
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let digits = s.strip_prefix('-').unwrap_or(s);
            (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<i64>().ok())
                .flatten()
        }
        _ => None,
    };
    match n {
        None => Err(invalid(field, v, "It must be an integer.")),
        Some(n) if n < min => Err(invalid(
            field,
            v,
            &format!("It must be greater than or equal to {min}."),
        )),
        Some(n) if n > max => Err(invalid(
            field,
            v,
            &format!("It must be less than or equal to {max}."),
        )),
        Some(n) => Ok(n),
    }
}

/// A boolean as oslo's strict `bool_from_string` reads it (JSON booleans too).
pub fn boolean(field: &str, v: &Value) -> NovaResult<bool> {
    let parsed = match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => parse_bool(s),
        _ => None,
    };
    parsed.ok_or_else(|| invalid(field, v, "It must be a boolean."))
}

/// oslo's strict boolean words.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "on" | "y" | "yes" => Some(true),
        "0" | "f" | "false" | "off" | "n" | "no" => Some(false),
        _ => None,
    }
}

/// A name: 1 to 255 characters, no leading or trailing white space (Nova's `name`).
pub fn name(field: &str, v: &Value) -> NovaResult<String> {
    match v {
        Value::String(s)
            if !s.is_empty()
                && s.chars().count() <= MAX_TEXT
                && s.trim() == s
                && !s.chars().any(char::is_control) =>
        {
            Ok(s.clone())
        }
        _ => Err(invalid(
            field,
            v,
            "It must be a string of 1 to 255 characters without leading or trailing white space.",
        )),
    }
}

/// Server metadata: an object of strings (keys of 1 to 255 characters, values of at most
/// 255), at most [`MAX_METADATA`] items.
pub fn metadata(v: &Value) -> NovaResult<BTreeMap<String, String>> {
    let Value::Object(m) = v else {
        return Err(invalid("metadata", v, "It must be an object."));
    };
    let mut out = BTreeMap::new();
    for (k, val) in m {
        if k.is_empty() || k.chars().count() > MAX_TEXT {
            return Err(invalid(
                "metadata",
                v,
                "Keys must be strings of 1 to 255 characters.",
            ));
        }
        match val {
            Value::String(s) if s.chars().count() <= MAX_TEXT => {
                out.insert(k.clone(), s.clone());
            }
            _ => {
                return Err(invalid(
                    "metadata",
                    v,
                    "Values must be strings of at most 255 characters.",
                ))
            }
        }
    }
    check_metadata_count(out.len())?;
    Ok(out)
}

/// 403 past [`MAX_METADATA`] items (Nova's quota answer).
pub fn check_metadata_count(n: usize) -> NovaResult<()> {
    if n > MAX_METADATA {
        return Err(NovaError::new(
            axum::http::StatusCode::FORBIDDEN,
            format!("Quota exceeded for metadata_items: at most {MAX_METADATA} are allowed."),
        ));
    }
    Ok(())
}

/// An id given as itself or as a URL ending in it (`flavorRef`, `imageRef`, filters).
pub fn id_of(r: &str) -> &str {
    r.trim_end_matches('/').rsplit('/').next().unwrap_or(r)
}

/// `limit` and `marker` of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Paging {
    pub limit: usize,
    pub marker: Option<String>,
}

impl Paging {
    /// Reads `limit` (a non-negative integer, at most [`MAX_LIMIT`]) and `marker`.
    pub fn from_query(q: &Query) -> NovaResult<Self> {
        let limit = match q.get("limit") {
            None => MAX_LIMIT,
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| bad(format!("Invalid input for query parameters limit. Value: {v}. It must be a non-negative integer.")))?
                .min(MAX_LIMIT),
        };
        Ok(Self {
            limit,
            marker: q.get("marker").map(str::to_string),
        })
    }

    /// Cuts the page out of `items` (already sorted): after the marker (400 if it is not
    /// among them, as Nova answers), at most `limit`; whether more follow.
    pub fn page<T>(&self, items: &mut Vec<T>, id: impl Fn(&T) -> &str) -> NovaResult<bool> {
        if let Some(marker) = &self.marker {
            let at = items
                .iter()
                .position(|i| id(i) == marker)
                .ok_or_else(|| bad(format!("marker [{marker}] not found")))?;
            items.drain(..=at);
        }
        let more = items.len() > self.limit;
        items.truncate(self.limit);
        Ok(more)
    }
}

/// `[{"rel": "next", "href": …}]`: the same list from after `last`.
pub fn next_link(base: &str, query: &Query, limit: usize, last: &str) -> Value {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut q: Vec<String> = query
        .pairs()
        .iter()
        .filter(|(k, _)| k != "marker" && k != "limit")
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    q.push(format!("limit={limit}"));
    q.push(format!("marker={}", enc(last)));
    serde_json::json!([{"rel": "next", "href": format!("{base}?{}", q.join("&"))}])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn integers_booleans_and_names_as_nova_takes_them() {
        assert_eq!(int("ram", &json!(512), 1, 100_000).unwrap(), 512);
        assert_eq!(int("ram", &json!("512"), 1, 100_000).unwrap(), 512);
        assert_eq!(int("length", &json!("-1"), -1, 100).unwrap(), -1);
        for v in [json!(0), json!("x"), json!(1.5), json!(null), json!("")] {
            assert_eq!(int("ram", &v, 1, 10).unwrap_err().status, 400, "{v}");
        }
        assert!(boolean("b", &json!("True")).unwrap());
        assert!(!boolean("b", &json!(false)).unwrap());
        assert!(boolean("b", &json!("maybe")).is_err());
        assert_eq!(name("name", &json!("s 1")).unwrap(), "s 1");
        for v in [json!(""), json!(" s"), json!("s "), json!(7), json!("a\nb")] {
            assert!(name("name", &v).is_err(), "{v}");
        }
        assert!(name("name", &json!("x".repeat(256))).is_err());
    }

    #[test]
    fn metadata_and_ids() {
        let m = metadata(&json!({"k": "v"})).unwrap();
        assert_eq!(m["k"], "v");
        assert!(metadata(&json!({"k": 1})).is_err());
        assert!(metadata(&json!({"": "v"})).is_err());
        assert!(metadata(&json!(["k"])).is_err());
        let many: serde_json::Map<String, Value> =
            (0..129).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert_eq!(metadata(&Value::Object(many)).unwrap_err().status, 403);
        assert_eq!(id_of("1"), "1");
        assert_eq!(id_of("http://h/compute/v2.1/flavors/1"), "1");
        assert_eq!(id_of("http://h/compute/flavors/abc/"), "abc");
    }

    #[test]
    fn pages_start_after_the_marker() {
        let q = Query::parse(Some("limit=2&marker=b"));
        let p = Paging::from_query(&q).unwrap();
        let mut items = vec!["a", "b", "c", "d", "e"];
        assert!(p.page(&mut items, |s| s).unwrap());
        assert_eq!(items, ["c", "d"]);
        let mut items = vec!["a"];
        assert_eq!(p.page(&mut items, |s| s).unwrap_err().status, 400);
        assert!(Paging::from_query(&Query::parse(Some("limit=-1"))).is_err());
        let link = next_link("http://h/compute/v2.1/servers", &q, 2, "d");
        assert_eq!(
            link[0]["href"],
            "http://h/compute/v2.1/servers?limit=2&marker=d"
        );
    }
}
