//! [`SwiftError`]: every failure a request can meet, turned into Swift's status and body in
//! one place.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// An HTTP error answer (status + short text body), as Swift gives it.
#[derive(Debug, Clone)]
pub struct SwiftError {
    pub status: StatusCode,
    pub body: String,
    /// Extra headers (e.g. `Content-Range` on a 416).
    pub headers: Vec<(&'static str, String)>,
}

impl SwiftError {
    /// An error with `status` and `body`.
    pub fn new(status: StatusCode, body: impl Into<String>) -> Self {
        Self {
            status,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header to the answer.
    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// 400 with Swift's wording in `msg`.
pub fn bad_request(msg: impl Into<String>) -> SwiftError {
    SwiftError::new(StatusCode::BAD_REQUEST, msg)
}

/// 404.
pub fn not_found() -> SwiftError {
    SwiftError::new(
        StatusCode::NOT_FOUND,
        "<html><h1>Not Found</h1><p>The resource could not be found.</p></html>",
    )
}

/// 503: no quorum.
pub fn unavailable(why: impl std::fmt::Display) -> SwiftError {
    tracing::warn!(%why, "answering 503");
    SwiftError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "<html><h1>Service Unavailable</h1><p>The server is currently unavailable. Please try again at a later time.</p></html>",
    )
}

/// 409, with why.
pub fn conflict(msg: impl Into<String>) -> SwiftError {
    SwiftError::new(StatusCode::CONFLICT, msg)
}

/// Swift's default 409 page, for conflicts it does not explain.
pub const CONFLICT_PAGE: &str =
    "<html><h1>Conflict</h1><p>There was a conflict when trying to complete your request.</p></html>";

/// 412.
pub fn precondition_failed(msg: impl Into<String>) -> SwiftError {
    SwiftError::new(StatusCode::PRECONDITION_FAILED, msg)
}

impl IntoResponse for SwiftError {
    fn into_response(self) -> Response {
        let len = self.body.len();
        let mut r = Response::new(Body::from(self.body));
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=UTF-8"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        for (k, v) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(k, v);
            }
        }
        r
    }
}

/// Result of a handler.
pub type SwiftResult<T = Response> = Result<T, SwiftError>;

/// `404 Not Found` and the like, as Swift's reports word a status.
pub fn status_line(s: StatusCode) -> String {
    format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or(""))
}
