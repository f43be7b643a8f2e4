//! The `stratus` binary as an operator uses it: `dev up` starts a real 3-node meta cluster in
//! a temp dir, `meta` commands read and write it, `dev down` stops it, and a second `up`
//! reuses the data and the addresses. The rings `dev up` creates are edited with `stratus
//! ring`, and a `stratus ring watch` process picks each new version up by itself.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use crate::common::*;

#[test]
fn dev_cluster_up_use_down_and_up_again() {
    let meta_bin = STRATUS.with_file_name("stratus-meta");
    assert!(
        meta_bin.exists(),
        "build stratus-meta first (cargo test --workspace does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let d = dir.to_str().unwrap();
    let _down = Down(dir.clone());

    let up = ok(&["dev", "up", "--dir", d, "--storage-nodes", "3"]);
    assert!(
        up.contains("Stratus dev cluster is up (3 meta nodes"),
        "{up}"
    );
    let endpoints = std::fs::read_to_string(dir.join("endpoints")).unwrap();
    assert_eq!(endpoints.split(',').count(), 3);

    assert!(ok(&["meta", "--dir", d, "put", "greeting", "hello"]).starts_with("OK (revision"));
    let got = json(&ok(&["meta", "--dir", d, "get", "greeting", "--json"]));
    assert_eq!(got["value"], "hello");
    assert_eq!(got["version"], 1);

    let status = json(&ok(&["meta", "--dir", d, "status", "--json"]));
    let roles: Vec<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "leader").count(),
        1,
        "{roles:?}"
    );
    assert_eq!(roles.len(), 3);
    let table = ok(&["meta", "--dir", d, "status"]);
    assert!(
        table.starts_with("ID") && table.contains("leader"),
        "{table}"
    );

    let range = json(&ok(&["meta", "--dir", d, "range", "greet", "--json"]));
    assert_eq!(range["count"], 1);
    let rev = got["mod_revision"].to_string();
    let watch = ok(&[
        "meta", "--dir", d, "watch", "", "--from", &rev, "--count", "1",
    ]);
    assert!(watch.contains("PUT\tgreeting\thello"), "{watch}");

    let missing = stratus(&["meta", "--dir", d, "get", "nope"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
    let bad = stratus(&["meta", "--dir", d, "put", &"k".repeat(5000), "v"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("InvalidArgument")
            || String::from_utf8_lossy(&bad.stderr).contains("invalid")
    );

    let dev = json(&ok(&["dev", "status", "--dir", d, "--json"]));
    assert!(dev.as_array().unwrap().iter().all(|n| n["pid"].is_number()));

    rings(d);

    // 3 meta nodes, 3 storage nodes, the proxy.
    assert!(ok(&["dev", "down", "--dir", d]).contains("Stopped 7"));
    let dev = json(&ok(&["dev", "status", "--dir", d, "--json"]));
    assert!(
        dev.as_array()
            .unwrap()
            .iter()
            .all(|n| n["role"] == "stopped"),
        "{dev}"
    );

    // A second `up` reuses the data and the addresses.
    ok(&["dev", "up", "--dir", d, "--storage-nodes", "3"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("endpoints")).unwrap(),
        endpoints
    );
    assert_eq!(
        json(&ok(&["meta", "--dir", d, "get", "greeting", "--json"]))["value"],
        "hello"
    );
    // ...and keeps the rings as they were (not recreated).
    let show = json(&ok(&["ring", "--dir", d, "show", "object", "--json"]));
    assert_eq!(show["version"], 2);
}

/// `dev up` made the three rings; an operator adds a device and rebalances, and a process
/// watching the ring picks the new version up by itself within a second.
fn rings(d: &str) {
    for name in ["account", "container", "object"] {
        let show = json(&ok(&["ring", "--dir", d, "show", name, "--json"]));
        assert_eq!(show["version"], 1, "{name}: {show}");
        assert_eq!(show["devices"], 6);
        assert_eq!(show["zones"], 3);
        assert_eq!(show["balance"], 0.0);
        assert_eq!(show["dispersion"], 0.0);
    }

    let mut watcher = Command::new(&*STRATUS)
        .args([
            "ring", "--dir", d, "watch", "object", "--json", "--count", "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send((Instant::now(), line));
        }
    });
    let (_, first) = rx
        .recv_timeout(WAIT)
        .expect("watcher prints the current ring");
    assert_eq!(json(&first)["version"], 1);

    let added = ok(&[
        "ring",
        "--dir",
        d,
        "add",
        "object",
        "--zone",
        "4",
        "--node",
        "127.0.0.1:6999",
        "--device",
        "d1",
        "--weight",
        "100",
    ]);
    assert!(added.contains("Device d6"), "{added}");
    // The rebalance waits until the fresh storage nodes have each finished a replication
    // pass on the current ring (nothing is moving, so that is their first pass).
    let out = wait_rebalance_allowed(d, "object");
    // Swift's wording, with our figures: 1/7 of 3 x 1024 slots move to the new device.
    let line = out.lines().next().unwrap();
    assert!(
        line.starts_with("Reassigned 438 (14.26%) partition-replicas. Balance is now 0.")
            && line.ends_with("Dispersion is now 0.00."),
        "{out}"
    );
    // (How fast it arrives is measured by benchmarks, not asserted here.)
    let (_seen, second) = rx.recv_timeout(WAIT).expect("watcher sees the new version");
    assert_eq!(json(&second)["version"], 2);
    assert_eq!(json(&second)["devices"], 7);
    assert!(watcher.wait().unwrap().success());

    let look = json(&ok(&[
        "ring",
        "--dir",
        d,
        "lookup",
        "object",
        "/AUTH_test/c/o",
        "--json",
    ]));
    let prim: Vec<u64> = look["primaries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    let mut distinct = prim.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{look}");
    assert_eq!(look["handoffs"].as_array().unwrap().len(), 3);
    let history = json(&ok(&["ring", "--dir", d, "history", "object", "--json"]));
    assert_eq!(history.as_array().unwrap().len(), 2);
    let disp = ok(&["ring", "--dir", d, "dispersion", "object"]);
    assert!(disp.starts_with("Dispersion is 0.00%"), "{disp}");

    // What cannot be honoured is refused with a clear message.
    let refused = |args: &[&str], msg: &str| {
        let out = stratus(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(msg),
            "{args:?}: {err}"
        );
    };
    refused(
        &[
            "ring",
            "--dir",
            d,
            "add",
            "object",
            "--zone",
            "1",
            "--node",
            "h:1",
            "--device",
            "x",
            "--weight=-1",
        ],
        "weight must be a finite number",
    );
    refused(
        &["ring", "--dir", d, "set-weight", "object", "d42", "1"],
        "no device d42",
    );
    refused(&["ring", "--dir", d, "show", "objects"], "unknown ring");
    refused(
        &["ring", "--dir", d, "lookup", "object", "no-slash"],
        "path must look like",
    );
    // `dev up` made all four rings (the volume ring too).
    refused(
        &[
            "ring",
            "--dir",
            d,
            "create",
            "volume",
            "--part-power",
            "6",
            "--replicas",
            "3",
        ],
        "already exists",
    );
}
