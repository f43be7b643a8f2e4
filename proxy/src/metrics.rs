//! The proxy's metrics (served on its admin port with the process-wide ones, see
//! [`stratus_client::service::metrics`]):
//! - `stratus_http_requests_total{method,status}` and
//!   `stratus_http_request_duration_seconds{method}` (time to the answer's headers);
//! - `stratus_http_bytes_in_total`: request body bytes read;
//! - `stratus_http_bytes_out_total`: answer body bytes, as their `Content-Length` declares.

use std::sync::LazyLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use stratus_client::service::metrics::{
    histogram_family, labels, register, HistogramFamily, Labels,
};

struct HttpMetrics {
    requests: Family<Labels, Counter>,
    duration: HistogramFamily,
    bytes_in: Counter,
    bytes_out: Counter,
}

static HTTP: LazyLock<HttpMetrics> = LazyLock::new(|| HttpMetrics {
    requests: register(
        "stratus_http_requests",
        "HTTP requests answered, by method and status",
        Family::default(),
    ),
    duration: register(
        "stratus_http_request_duration_seconds",
        "Time to answer an HTTP request (to the answer's headers), by method",
        histogram_family(),
    ),
    bytes_in: register(
        "stratus_http_bytes_in",
        "Request body bytes read",
        Counter::default(),
    ),
    bytes_out: register(
        "stratus_http_bytes_out",
        "Answer body bytes, as declared by Content-Length",
        Counter::default(),
    ),
});

/// Registers the proxy's metrics (so they are listed before the first request).
pub fn init() {
    LazyLock::force(&HTTP);
}

/// Records one answered request.
pub fn request(method: &str, status: u16, seconds: f64, bytes_out: u64) {
    let status = status.to_string();
    HTTP.requests
        .get_or_create(&labels(&[("method", method), ("status", &status)]))
        .inc();
    HTTP.duration
        .get_or_create(&labels(&[("method", method)]))
        .observe(seconds);
    HTTP.bytes_out.inc_by(bytes_out);
}

/// Counts request body bytes as they are read.
pub fn bytes_in(n: u64) {
    HTTP.bytes_in.inc_by(n);
}
