//! What a `stratus bench` run measured, and the ways it is shown: latency histograms per
//! operation type and per second of the run ([`OpStats`]), the JSON report that everything
//! else is drawn from (the table, `--save`, `--compare`, the SVG plot), and the live
//! progress line.
//!
//! The JSON report is the one stable format: `--compare` reads two saved reports back, so
//! its keys (`ops.<op>.ops_per_s`, `latency_ms.p50`, `timeline[].p99_ms`, …) must not
//! change.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Measurements of one operation type.
pub(super) struct OpStats {
    lat: Histogram<u64>,
    ttfb: Histogram<u64>,
    bytes: u64,
    errors: BTreeMap<String, u64>,
    /// Per second of the run: (ops, bytes, latency histogram).
    timeline: Vec<(u64, u64, Histogram<u64>)>,
}

/// Measurements of a run, by operation type.
pub(super) type Stats = BTreeMap<&'static str, OpStats>;

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

impl OpStats {
    /// No measurements yet.
    pub(super) fn new() -> Self {
        Self {
            lat: hist(),
            ttfb: hist(),
            bytes: 0,
            errors: BTreeMap::new(),
            timeline: Vec::new(),
        }
    }

    /// Records one successful operation that took `micros`, `second`s into the run.
    pub(super) fn record(&mut self, second: usize, micros: u64, bytes: u64, ttfb: Option<u64>) {
        let us = micros.max(1);
        let _ = self.lat.record(us);
        if let Some(t) = ttfb {
            let _ = self.ttfb.record(t.max(1));
        }
        self.bytes += bytes;
        while self.timeline.len() <= second {
            self.timeline.push((0, 0, hist()));
        }
        let slot = &mut self.timeline[second];
        slot.0 += 1;
        slot.1 += bytes;
        let _ = slot.2.record(us);
    }

    /// Records one failed operation, by kind (an HTTP status, `timeout`, `connect`, …).
    pub(super) fn record_error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// What the report says about a run besides its measurements.
pub(super) struct RunInfo<'a> {
    /// The workload's name (`put`, `mixed`, …).
    pub workload: &'a str,
    /// The storage URL the run used.
    pub endpoint: &'a str,
    /// `--size` as given.
    pub size: &'a str,
    /// Concurrent clients.
    pub concurrency: usize,
    /// Containers the objects were spread over.
    pub containers: usize,
    /// Seconds the measured part of the run took.
    pub elapsed: f64,
    /// Whether Ctrl-C ended the run.
    pub interrupted: bool,
}

/// The JSON report of a run.
pub(super) fn report(stats: &Stats, info: &RunInfo) -> Value {
    let elapsed = info.elapsed;
    let mut ops = serde_json::Map::new();
    let mut timeline = Vec::new();
    for (op, s) in stats.iter() {
        let n = s.lat.len();
        let q = |h: &Histogram<u64>, p: f64| {
            if h.is_empty() {
                0.0
            } else {
                ms(h.value_at_quantile(p))
            }
        };
        let mut v = json!({
            "count": n,
            "errors": s.errors,
            "error_count": s.errors.values().sum::<u64>(),
            "bytes": s.bytes,
            "ops_per_s": n as f64 / elapsed,
            "mb_per_s": s.bytes as f64 / elapsed / 1e6,
            "latency_ms": {
                "p50": q(&s.lat, 0.5), "p90": q(&s.lat, 0.9), "p99": q(&s.lat, 0.99),
                "p999": q(&s.lat, 0.999), "max": if n == 0 { 0.0 } else { ms(s.lat.max()) },
            },
        });
        if !s.ttfb.is_empty() {
            v["ttfb_ms"] = json!({"p50": q(&s.ttfb, 0.5), "p99": q(&s.ttfb, 0.99)});
        }
        ops.insert(op.to_string(), v);
        for (sec, (n, b, h)) in s.timeline.iter().enumerate() {
            timeline.push(json!({
                "second": sec, "op": op, "ops": n, "bytes": b,
                "p99_ms": if h.is_empty() { 0.0 } else { ms(h.value_at_quantile(0.99)) },
            }));
        }
    }
    json!({
        "workload": info.workload,
        "endpoint": info.endpoint,
        "size": info.size,
        "concurrency": info.concurrency,
        "containers": info.containers,
        "duration_s": elapsed,
        "interrupted": info.interrupted,
        "ops": ops,
        "timeline": timeline,
    })
}

/// Prints a report as a table, then the errors of each operation type.
pub(super) fn print_table(r: &Value) {
    let mut rows = Vec::new();
    for (op, v) in r["ops"].as_object().into_iter().flatten() {
        let l = &v["latency_ms"];
        let f = |x: &Value| format!("{:.2}", x.as_f64().unwrap_or(0.0));
        rows.push(vec![
            op.clone(),
            v["count"].to_string(),
            format!("{:.1}", v["ops_per_s"].as_f64().unwrap_or(0.0)),
            format!("{:.2}", v["mb_per_s"].as_f64().unwrap_or(0.0)),
            f(&l["p50"]),
            f(&l["p90"]),
            f(&l["p99"]),
            f(&l["p999"]),
            f(&l["max"]),
            v.get("ttfb_ms").map_or("-".into(), |t| f(&t["p50"])),
            v["error_count"].to_string(),
        ]);
    }
    println!(
        "{} for {:.1}s, concurrency {}, size {}{}",
        r["workload"].as_str().unwrap_or(""),
        r["duration_s"].as_f64().unwrap_or(0.0),
        r["concurrency"],
        r["size"].as_str().unwrap_or(""),
        if r["interrupted"].as_bool() == Some(true) {
            " (interrupted)"
        } else {
            ""
        }
    );
    println!(
        "{}",
        crate::table::render(
            &[
                "OP", "COUNT", "OPS/S", "MB/S", "P50 MS", "P90 MS", "P99 MS", "P99.9 MS", "MAX MS",
                "TTFB P50", "ERRORS"
            ],
            &rows
        )
    );
    for (op, v) in r["ops"].as_object().into_iter().flatten() {
        if let Some(e) = v["errors"].as_object().filter(|e| !e.is_empty()) {
            let list: Vec<String> = e.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            println!("{op} errors: {}", list.join(", "));
        }
    }
}

/// Prints the live progress line, `secs` into the run: rewritten in place on a terminal,
/// one line per call otherwise.
pub(super) fn progress(stats: &Stats, secs: f64, tty: bool) {
    let mut parts = Vec::new();
    for (op, s) in stats.iter() {
        let p99 = if s.lat.is_empty() {
            0.0
        } else {
            ms(s.lat.value_at_quantile(0.99))
        };
        let errs: u64 = s.errors.values().sum();
        parts.push(format!(
            "{op} {:.0} ops/s {:.1} MB/s p99 {:.1} ms errors {errs}",
            s.lat.len() as f64 / secs,
            s.bytes as f64 / secs / 1e6,
            p99
        ));
    }
    let line = format!("[{secs:5.1}s] {}", parts.join(" | "));
    if tty {
        eprint!("\r{line}   ");
    } else {
        eprintln!("{line}");
    }
}

/// Prints run B against run A, from two saved JSON reports, as ratios per operation type.
pub(super) fn compare(a: &PathBuf, b: &PathBuf) -> Result<()> {
    let load = |p: &PathBuf| -> Result<Value> {
        let s = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_str(&s)
            .with_context(|| format!("{} is not a `stratus bench --json` report", p.display()))
    };
    let (ra, rb) = (load(a)?, load(b)?);
    println!(
        "B = {}, A = {}; ratio B/A (latency: lower is better)",
        b.display(),
        a.display()
    );
    let mut rows = Vec::new();
    for (op, va) in ra["ops"].as_object().into_iter().flatten() {
        let Some(vb) = rb["ops"].get(op) else {
            continue;
        };
        let ratio = |x: &Value, y: &Value| match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) if x > 0.0 => format!("{:.2}x", y / x),
            _ => "-".into(),
        };
        rows.push(vec![
            op.clone(),
            ratio(&va["ops_per_s"], &vb["ops_per_s"]),
            ratio(&va["mb_per_s"], &vb["mb_per_s"]),
            ratio(&va["latency_ms"]["p50"], &vb["latency_ms"]["p50"]),
            ratio(&va["latency_ms"]["p99"], &vb["latency_ms"]["p99"]),
        ]);
    }
    if rows.is_empty() {
        bail!("the two runs share no operation type");
    }
    println!(
        "{}",
        crate::table::render(&["OP", "OPS/S", "MB/S", "P50", "P99"], &rows)
    );
    Ok(())
}

/// Throughput (ops/s) and p99 latency over time, one series per operation type.
pub fn plot_svg(r: &Value) -> String {
    let colors = [
        ("put", "#d62728"),
        ("get", "#1f77b4"),
        ("delete", "#2ca02c"),
        ("list", "#9467bd"),
    ];
    let points = |op: &str, key: &str| -> Vec<(f64, f64)> {
        r["timeline"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["op"] == op)
            .map(|p| {
                (
                    p["second"].as_f64().unwrap_or(0.0) + 0.5,
                    p[key].as_f64().unwrap_or(0.0),
                )
            })
            .collect()
    };
    let secs = r["duration_s"].as_f64().unwrap_or(1.0).max(1.0);
    let (w, h, pad) = (800.0, 260.0, 50.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        2.0 * h + 40.0
    );
    svg.push_str(&format!(
        "<text x=\"{pad}\" y=\"16\" font-weight=\"bold\">stratus bench {} — {} concurrency {}, size {}</text>\n",
        r["workload"].as_str().unwrap_or(""),
        r["endpoint"].as_str().unwrap_or(""),
        r["concurrency"],
        r["size"].as_str().unwrap_or("")
    ));
    for (panel, (key, title)) in [
        ("ops", "throughput (ops/s)"),
        ("p99_ms", "p99 latency (ms)"),
    ]
    .into_iter()
    .enumerate()
    {
        let top = 30.0 + panel as f64 * (h + 10.0);
        let series: Vec<_> = colors
            .iter()
            .map(|(op, c)| (op, c, points(op, key)))
            .filter(|s| !s.2.is_empty())
            .collect();
        let ymax = series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.1))
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.1;
        let (x0, y0, pw, ph) = (pad, top + 20.0, w - 2.0 * pad, h - 50.0);
        svg.push_str(&format!(
            "<text x=\"{x0}\" y=\"{}\">{title}</text>\n",
            top + 12.0
        ));
        svg.push_str(&format!(
            "<rect x=\"{x0}\" y=\"{y0}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#888\"/>\n<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{ymax:.1}</text>\n<text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>\n<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{secs:.0} s</text>\n",
            x0 - 4.0, y0 + 10.0, x0 - 4.0, y0 + ph, x0 + pw, y0 + ph + 14.0
        ));
        for (i, (op, color, pts)) in series.iter().enumerate() {
            let path: Vec<String> = pts
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", x0 + x / secs * pw, y0 + ph - y / ymax * ph))
                .collect();
            svg.push_str(&format!(
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n<text x=\"{}\" y=\"{}\" fill=\"{color}\">{op}</text>\n",
                path.join(" "),
                x0 + pw - 60.0,
                y0 + 14.0 + 14.0 * i as f64
            ));
        }
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plot_has_a_series_per_operation() {
        let r = json!({
            "workload": "mixed", "duration_s": 2.0, "concurrency": 4, "size": "4KiB",
            "timeline": [
                {"second": 0, "op": "put", "ops": 10, "p99_ms": 3.0},
                {"second": 1, "op": "put", "ops": 12, "p99_ms": 2.0},
                {"second": 0, "op": "get", "ops": 40, "p99_ms": 1.0},
            ],
        });
        let svg = plot_svg(&r);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<polyline").count(),
            4,
            "put and get, in both panels"
        );
    }
}
