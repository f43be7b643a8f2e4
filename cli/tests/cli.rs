//! The `stratus` binary as an operator uses it: `dev up` starts a real 3-node meta cluster in
//! a temp dir, `meta` commands read and write it, `dev down` stops it, and a second `up`
//! reuses the data and the addresses.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const STRATUS: &str = env!("CARGO_BIN_EXE_stratus");

fn stratus(args: &[&str]) -> Output {
    let out = Command::new(STRATUS)
        .args(args)
        .env_remove("STRATUS_META")
        .env_remove("STRATUS_DEV_DIR")
        .output()
        .expect("run stratus");
    out
}

fn ok(args: &[&str]) -> String {
    let out = stratus(args);
    assert!(
        out.status.success(),
        "stratus {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Stops the dev cluster however the test ends.
struct Down(PathBuf);
impl Drop for Down {
    fn drop(&mut self) {
        let _ = stratus(&["dev", "down", "--dir", self.0.to_str().unwrap()]);
    }
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("bad JSON {s:?}: {e}"))
}

#[test]
fn dev_cluster_up_use_down_and_up_again() {
    let meta_bin = Path::new(STRATUS).with_file_name("stratus-meta");
    assert!(
        meta_bin.exists(),
        "build stratus-meta first (cargo test --workspace does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let d = dir.to_str().unwrap();
    let _down = Down(dir.clone());

    let up = ok(&["dev", "up", "--dir", d]);
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
    let watch = ok(&[
        "meta", "--dir", d, "watch", "", "--from", "1", "--count", "1",
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

    assert!(ok(&["dev", "down", "--dir", d]).contains("Stopped 3"));
    let dev = json(&ok(&["dev", "status", "--dir", d, "--json"]));
    assert!(
        dev.as_array()
            .unwrap()
            .iter()
            .all(|n| n["role"] == "stopped"),
        "{dev}"
    );

    // A second `up` reuses the data and the addresses.
    ok(&["dev", "up", "--dir", d]);
    assert_eq!(
        std::fs::read_to_string(dir.join("endpoints")).unwrap(),
        endpoints
    );
    assert_eq!(
        json(&ok(&["meta", "--dir", d, "get", "greeting", "--json"]))["value"],
        "hello"
    );
}
