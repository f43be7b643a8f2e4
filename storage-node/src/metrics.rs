//! The storage node's own metrics, beside the shared RPC and fsync ones
//! ([`stratus_client::service::metrics`]):
//! - `stratus_worker_<counter>_total{worker}`: what `stratus worker list` shows (passes,
//!   items scanned, repaired, quarantined, errors, bytes), copied at each scrape;
//! - `stratus_worker_running{worker}`, `stratus_worker_progress_{done,total}{worker}`;
//! - `stratus_replication_{ring_version,partitions,handoff_partitions}{ring}`: where the
//!   last replication pass got, per ring (the record it keeps in meta);
//! - `stratus_device_io_errors_total{device}`, `stratus_device_failing{device}`: reads and
//!   writes that failed with an I/O error (never taken for corruption), and whether one
//!   did in the last 5 minutes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use stratus_client::records::Progress;
use stratus_client::service::metrics::{labels, on_scrape, register, Labels};

use crate::worker::Stats;
use crate::Node;

struct WorkerMetrics {
    counters: Vec<(&'static str, Family<Labels, Counter>)>,
    running: Family<Labels, Gauge>,
    progress_done: Family<Labels, Gauge>,
    progress_total: Family<Labels, Gauge>,
}

static WORKERS: LazyLock<WorkerMetrics> = LazyLock::new(|| {
    let counter = |name: &'static str, help: &str| {
        (
            name,
            register(
                &format!("stratus_worker_{name}"),
                help,
                Family::<Labels, Counter>::default(),
            ),
        )
    };
    WorkerMetrics {
        counters: vec![
            counter("passes", "Passes a background worker finished"),
            counter("scanned", "Items a background worker looked at"),
            counter("repaired", "Items a background worker repaired"),
            counter(
                "quarantined",
                "Copies a background worker moved to quarantine",
            ),
            counter("errors", "Errors a background worker met"),
            counter("bytes", "Bytes a background worker read or sent"),
        ],
        running: register(
            "stratus_worker_running",
            "1 while a background worker is in a pass",
            Family::default(),
        ),
        progress_done: register(
            "stratus_worker_progress_done",
            "Items done in a worker's current (or last) pass",
            Family::default(),
        ),
        progress_total: register(
            "stratus_worker_progress_total_items",
            "Items known in a worker's current (or last) pass",
            Family::default(),
        ),
    }
});

struct ReplicationMetrics {
    version: Family<Labels, Gauge>,
    parts: Family<Labels, Gauge>,
    handoffs: Family<Labels, Gauge>,
}

static REPLICATION: LazyLock<ReplicationMetrics> = LazyLock::new(|| ReplicationMetrics {
    version: register(
        "stratus_replication_ring_version",
        "Ring version the last replication pass started with",
        Family::default(),
    ),
    parts: register(
        "stratus_replication_partitions",
        "Partitions with data the node held at the end of the last pass",
        Family::default(),
    ),
    handoffs: register(
        "stratus_replication_handoff_partitions",
        "Partitions still held as handoffs (not yet moved home) after the last pass",
        Family::default(),
    ),
});

struct DeviceMetrics {
    io_errors: Family<Labels, Counter>,
    failing: Family<Labels, Gauge>,
}

static DEVICES: LazyLock<DeviceMetrics> = LazyLock::new(|| DeviceMetrics {
    io_errors: register(
        "stratus_device_io_errors",
        "I/O errors met on a device (the copy is left alone; never taken for corruption)",
        Family::default(),
    ),
    failing: register(
        "stratus_device_failing",
        "1 if the device met an I/O error in the last 5 minutes",
        Family::default(),
    ),
});

/// Registers the node's metrics and the hook that copies worker counters at each scrape.
pub fn install(node: Arc<Node>) {
    LazyLock::force(&REPLICATION);
    let w = &*WORKERS;
    let dm = &*DEVICES;
    on_scrape(move || {
        for d in node.devices.values() {
            let l = labels(&[("device", &d.name)]);
            let c = dm.io_errors.get_or_create(&l);
            let now = d.io_errors.load(Ordering::Relaxed);
            c.inc_by(now.saturating_sub(c.get()));
            dm.failing.get_or_create(&l).set(i64::from(d.failing()));
        }
        let Some(running) = node.workers.get() else {
            return;
        };
        for r in running {
            let l = labels(&[("worker", r.name)]);
            let s: &Stats = &r.stats;
            let values: [&AtomicU64; 6] = [
                &s.passes,
                &s.scanned,
                &s.repaired,
                &s.quarantined,
                &s.errors,
                &s.bytes,
            ];
            for ((_, family), v) in w.counters.iter().zip(values) {
                let c = family.get_or_create(&l);
                let now = v.load(Ordering::Relaxed);
                // The stats only grow: add what is new since the last scrape.
                c.inc_by(now.saturating_sub(c.get()));
            }
            let status = r.status();
            w.running
                .get_or_create(&l)
                .set(i64::from(status.state == "running"));
            w.progress_done
                .get_or_create(&l)
                .set(clamp(status.progress_done));
            w.progress_total
                .get_or_create(&l)
                .set(clamp(status.progress_total));
        }
    });
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Records the replication progress a pass just reported.
pub fn replication(progress: &Progress) {
    let m = &*REPLICATION;
    for (ring, p) in &progress.rings {
        let l = labels(&[("ring", ring)]);
        m.version.get_or_create(&l).set(clamp(p.version));
        m.parts.get_or_create(&l).set(clamp(p.parts));
        m.handoffs.get_or_create(&l).set(clamp(p.handoff_parts));
    }
}
