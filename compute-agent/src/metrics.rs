//! The agent's own metrics, beside the shared ones ([`stratus_client::service::metrics`]):
//! - `stratus_compute_passes_total{want,result}`: reconcile passes over a server, by the
//!   state it was to reach and whether the pass succeeded;
//! - `stratus_compute_boots_total`: domains started (boots and restores);
//! - `stratus_compute_exports`: volumes being served to guests over NBD.

use std::sync::LazyLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use stratus_client::service::metrics::{labels, register, Labels};

pub struct Metrics {
    passes: Family<Labels, Counter>,
    pub boots: Counter,
    pub exports: Gauge,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    passes: register(
        "stratus_compute_passes",
        "Reconcile passes over a server, by the state to reach and the result",
        Family::default(),
    ),
    boots: register(
        "stratus_compute_boots",
        "Domains started (boots and restores)",
        Counter::default(),
    ),
    exports: register(
        "stratus_compute_exports",
        "Volumes served to guests over NBD",
        Gauge::default(),
    ),
});

/// Counts one pass.
pub fn pass(want: &str, ok: bool) {
    METRICS
        .passes
        .get_or_create(&labels(&[
            ("want", want),
            ("result", if ok { "ok" } else { "error" }),
        ]))
        .inc();
}
