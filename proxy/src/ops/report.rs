//! The report of a request that acts on many objects (a bulk delete or extraction, an SLO's
//! deletion), worded as Swift words it: plain text by default, JSON or XML by `Accept`,
//! whose `Response Status` says whether all went well.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::status_line;
use crate::headers::hv;

/// What a bulk request did.
#[derive(Debug, Default)]
pub struct Report {
    /// Objects or containers deleted.
    pub deleted: u64,
    /// Paths that named nothing.
    pub not_found: u64,
    /// Files created from an archive.
    pub created: u64,
    /// Whether this reports an extraction (else a deletion).
    pub extract: bool,
    /// Each failure: the path and its status line.
    pub errors: Vec<(String, String)>,
}

impl Report {
    /// Records a failure on `name`.
    pub fn error(&mut self, name: String, status: StatusCode) {
        self.errors.push((name, status_line(status)));
    }
}

pub use stratus_core::xml::escape as xml_escape;

/// Renders a report in the client's format; `ok` is the status reported when nothing
/// failed.
pub fn render(r: Report, h: &HeaderMap, ok: StatusCode) -> Response {
    let status = if r.errors.is_empty() {
        status_line(ok)
    } else {
        "400 Bad Request".to_string()
    };
    let mut fields: Vec<(&str, serde_json::Value)> = if r.extract {
        vec![("Number Files Created", r.created.into())]
    } else {
        vec![
            ("Number Deleted", r.deleted.into()),
            ("Number Not Found", r.not_found.into()),
        ]
    };
    fields.push(("Response Body", "".into()));
    fields.push(("Response Status", status.into()));
    let root = if r.extract { "extract" } else { "delete" };
    let (body, ctype) = body(fields, &r.errors, h, root);
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static(ctype));
    resp
}

/// A report's body in the format the client `Accept`s (Swift's `get_response_body`): its
/// `fields` sorted by name, then its `errors` (path and status line); with `root` as the
/// XML root element. Gives the body and its content type.
pub fn body(
    mut fields: Vec<(&str, serde_json::Value)>,
    errors: &[(String, String)],
    h: &HeaderMap,
    root: &str,
) -> (String, &'static str) {
    fields.sort_by(|a, b| a.0.cmp(b.0));
    let accept = hv(h, "accept").unwrap_or("");
    if accept.contains("application/json") {
        let mut m = serde_json::Map::new();
        for (k, v) in fields {
            m.insert(k.to_string(), v);
        }
        let errs = errors
            .iter()
            .map(|(n, s)| serde_json::json!([n, s]))
            .collect();
        m.insert("Errors".into(), serde_json::Value::Array(errs));
        (serde_json::Value::Object(m).to_string(), "application/json")
    } else if accept.contains("xml") {
        let tag = |k: &str| k.to_lowercase().replace(' ', "_");
        let mut s = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root}>\n");
        for (k, v) in &fields {
            let v = v.as_str().map(str::to_string).unwrap_or(v.to_string());
            s.push_str(&format!("<{0}>{1}</{0}>\n", tag(k), xml_escape(&v)));
        }
        s.push_str("<errors>\n");
        for (n, st) in errors {
            s.push_str(&format!(
                "<object><name>{}</name><status>{}</status></object>\n",
                xml_escape(n),
                xml_escape(st)
            ));
        }
        s.push_str(&format!("</errors>\n</{root}>\n"));
        (s, "application/xml")
    } else {
        let mut s = String::new();
        for (k, v) in &fields {
            let v = v.as_str().map(str::to_string).unwrap_or(v.to_string());
            s.push_str(&format!("{k}: {v}\n"));
        }
        s.push_str("Errors:\n");
        for (n, st) in errors {
            s.push_str(&format!("{n}, {st}\n"));
        }
        (s, "text/plain")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn xml_reports_escape_names() {
        let mut r = Report::default();
        r.error("/c/<a&b>".into(), StatusCode::BAD_REQUEST);
        let mut h = HeaderMap::new();
        h.insert("accept", "application/xml".parse().unwrap());
        let resp = render(r, &h, StatusCode::OK);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("<name>/c/&lt;a&amp;b&gt;</name>"), "{text}");
        assert!(!text.contains("<a&b>"), "{text}");
    }

    #[test]
    fn reports_read_as_swift_writes_them() {
        let mut r = Report {
            deleted: 2,
            ..Default::default()
        };
        r.error("/c".into(), StatusCode::CONFLICT);
        let resp = render(r, &HeaderMap::new(), StatusCode::OK);
        assert_eq!(resp.status(), StatusCode::OK);
    }
}
