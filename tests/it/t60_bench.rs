//! `stratus bench` against a real cluster: its JSON adds up (counts match the timeline,
//! percentiles are ordered, the run stays within its duration), the plot is drawn, two runs
//! compare, and failures injected mid-run (two of three storage nodes killed) show up as
//! 503 errors that account for every failed operation.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::common::*;

fn check_report(r: &serde_json::Value) -> (u64, u64) {
    let mut ok = 0;
    let mut errors = 0;
    for (op, v) in r["ops"].as_object().unwrap() {
        let count = v["count"].as_u64().unwrap();
        let in_timeline: u64 = r["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["op"] == op.as_str())
            .map(|p| p["ops"].as_u64().unwrap())
            .sum();
        assert_eq!(count, in_timeline, "{op}: count vs timeline");
        let by_status: u64 = v["errors"]
            .as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .sum();
        assert_eq!(
            v["error_count"].as_u64().unwrap(),
            by_status,
            "{op}: error total"
        );
        let l = &v["latency_ms"];
        let q: Vec<f64> = ["p50", "p90", "p99", "p999", "max"]
            .iter()
            .map(|k| l[k].as_f64().unwrap())
            .collect();
        assert!(
            q.windows(2).all(|w| w[0] <= w[1]),
            "{op}: percentiles out of order {q:?}"
        );
        if count > 0 {
            assert!(q[0] > 0.0, "{op}: zero latency");
        }
        ok += count;
        errors += by_status;
    }
    (ok, errors)
}

#[test]
fn bench_reports_add_up_and_count_injected_failures() {
    let c = TestCluster::start(3, 1);
    let d = c.dir_str();
    let work = tempfile::tempdir().unwrap();
    let svg = work.path().join("put.svg");
    let put = json(&ok(&[
        "--dir",
        d,
        "bench",
        "put",
        "--size",
        "4KiB",
        "--concurrency",
        "2",
        "--duration",
        "2s",
        "--json",
        "--plot",
        svg.to_str().unwrap(),
    ]));
    let (n, errors) = check_report(&put);
    assert!(n > 0 && errors == 0, "{put}");
    let secs = put["duration_s"].as_f64().unwrap();
    // The run lasts at least as long as asked (how much longer is not a test's business).
    assert!(secs >= 2.0, "a 2 s run took {secs} s");
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(
        drawn.starts_with("<svg") && drawn.contains("<polyline"),
        "{drawn}"
    );

    let mixed = json(&ok(&[
        "--dir",
        d,
        "bench",
        "mixed",
        "--size",
        "1KiB..8KiB",
        "--concurrency",
        "3",
        "--count",
        "60",
        "--mix",
        "get=50,put=30,delete=10,list=10",
        "--json",
    ]));
    let (n, errors) = check_report(&mixed);
    assert_eq!(
        n + errors,
        60,
        "every counted operation is a success or an error: {mixed}"
    );
    assert!(mixed["ops"]["get"]["ttfb_ms"]["p50"].as_f64().unwrap() > 0.0);

    let a = work.path().join("a.json");
    let b = work.path().join("b.json");
    std::fs::write(&a, put.to_string()).unwrap();
    std::fs::write(&b, put.to_string()).unwrap();
    let cmp = ok(&[
        "bench",
        "--compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert!(cmp.contains("put") && cmp.contains("1.00x"), "{cmp}");
    // Cleanup removed the benchmark's containers.
    let s = ok(&["--dir", d, "list"]);
    assert!(!s.contains("bench-"), "{s}");

    // Two of three storage nodes die mid-run: PUTs get 503, and the report says so.
    let mut child = Command::new(&*STRATUS)
        .args([
            "--dir",
            d,
            "bench",
            "put",
            "--concurrency",
            "2",
            "--duration",
            "6s",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().expect("a progress line").unwrap();
    assert!(first.contains("put") && first.contains("ops/s"), "{first}");
    c.kill_storage(1);
    c.kill_storage(2);
    for _ in lines {}
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let failed = json(&String::from_utf8(out.stdout).unwrap());
    let (n, errors) = check_report(&failed);
    assert!(n > 0, "some PUTs succeeded before the kill: {failed}");
    let e503 = failed["ops"]["put"]["errors"]["503"].as_u64().unwrap_or(0);
    assert!(
        e503 > 0,
        "PUTs without a quorum are counted as 503: {failed}"
    );
    assert_eq!(errors, e503, "every failure is a 503: {failed}");
}
