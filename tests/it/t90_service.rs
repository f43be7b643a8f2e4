//! t90: the service skeleton every process shares.
//! - Each service's `/metrics` (meta, every storage node, the proxy) parses with the
//!   Prometheus text parser of the official Python client, and one object PUT moves the
//!   proxy's request counter by exactly 1 and the storage nodes' `Object/Put` counters by
//!   exactly 3 in all (one per replica, each node at most once); `/healthz` answers 200.
//! - That PUT's `X-Trans-Id` is in the proxy's log and in the log of every storage node that
//!   stored a replica.
//! - A service started with a config file and a conflicting flag uses the flag, and takes
//!   the file's other settings; an unknown key in the file stops it with a clear error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// One sample of a scrape: metric name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append({"name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;

/// Parses Prometheus text with the official client's parser (Debian's python3 has it).
fn parse_metrics(text: &str) -> Vec<Sample> {
    use std::io::Write;
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3 (scripts/deps.sh installs python3-prometheus-client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&String::from_utf8(out.stdout).unwrap());
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| Sample {
            name: s["name"].as_str().unwrap().to_string(),
            labels: s["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect(),
            value: s["value"].as_f64().unwrap(),
        })
        .collect()
}

fn admin_addr(service_dir: &Path) -> String {
    std::fs::read_to_string(service_dir.join("admin-addr"))
        .unwrap_or_else(|e| panic!("{}/admin-addr: {e}", service_dir.display()))
        .trim()
        .to_string()
}

async fn scrape(http: &reqwest::Client, service_dir: &Path) -> Vec<Sample> {
    let url = format!("http://{}/metrics", admin_addr(service_dir));
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    parse_metrics(&r.text().await.unwrap())
}

/// The sum of the samples named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

fn storage_dirs(c: &TestCluster, nodes: u32) -> Vec<PathBuf> {
    (1..=nodes)
        .map(|n| c.dir.join(format!("storage-{n}")))
        .collect()
}

async fn object_puts(http: &reqwest::Client, dirs: &[PathBuf]) -> Vec<f64> {
    let mut out = Vec::new();
    for d in dirs {
        let m = scrape(http, d).await;
        out.push(value(
            &m,
            "stratus_rpc_requests_total",
            &[("op", "Object/Put"), ("code", "0")],
        ));
    }
    out
}

fn log_has(service_dir: &Path, needle: &str) -> bool {
    std::fs::read_to_string(service_dir.join("log"))
        .map(|l| l.contains(needle))
        .unwrap_or(false)
}

#[tokio::test]
async fn metrics_count_a_put_exactly_and_its_trans_id_is_logged_on_every_hop() {
    let c = TestCluster::start(4, 1);
    let s = c.tester().await;
    let http = reqwest::Client::new();
    assert_eq!(s.put("t90", Vec::new()).await.status(), 201);

    // Every service serves parseable metrics and is healthy.
    let meta = scrape(&http, &c.dir.join("meta-1")).await;
    assert!(value(&meta, "stratus_raft_term", &[]) >= 1.0);
    assert_eq!(value(&meta, "stratus_raft_is_leader", &[]), 1.0);
    assert!(meta.iter().any(|s| s.name == "stratus_raft_apply_lag"));
    assert!(value(&meta, "stratus_rpc_requests_total", &[]) > 0.0);
    for d in [c.dir.join("meta-1"), c.dir.join("proxy")]
        .into_iter()
        .chain(storage_dirs(&c, 4))
    {
        let url = format!("http://{}/healthz", admin_addr(&d));
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}: {}", r.text().await.unwrap());
    }
    let storage = scrape(&http, &c.dir.join("storage-1")).await;
    assert!(
        storage
            .iter()
            .any(|s| s.name == "stratus_worker_passes_total" && s.labels["worker"] == "replicator"),
        "worker counters missing"
    );
    assert!(storage
        .iter()
        .any(|s| s.name == "stratus_fsync_duration_seconds_count"));

    let dirs = storage_dirs(&c, 4);
    let proxy_put = |m: &[Sample]| {
        value(
            m,
            "stratus_http_requests_total",
            &[("method", "PUT"), ("status", "201")],
        )
    };
    let proxy_before = proxy_put(&scrape(&http, &c.dir.join("proxy")).await);
    let nodes_before = object_puts(&http, &dirs).await;
    let bytes_before = value(
        &scrape(&http, &c.dir.join("proxy")).await,
        "stratus_http_bytes_in_total",
        &[],
    );

    let body = random_bytes(3000, 90);
    let r = s.put("t90/obj", body).await;
    assert_eq!(r.status(), 201);
    let trans_id = r.headers()["x-trans-id"].to_str().unwrap().to_string();

    // The third replica may answer just after the quorum: wait (bounded) for all three.
    let deadline = Instant::now() + WAIT;
    let deltas = loop {
        let now = object_puts(&http, &dirs).await;
        let deltas: Vec<f64> = now.iter().zip(&nodes_before).map(|(a, b)| a - b).collect();
        if deltas.iter().sum::<f64>() >= 3.0 || Instant::now() > deadline {
            break deltas;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        deltas.iter().sum::<f64>(),
        3.0,
        "Object/Put deltas {deltas:?}"
    );
    assert!(deltas.iter().all(|d| *d == 0.0 || *d == 1.0), "{deltas:?}");
    let proxy = scrape(&http, &c.dir.join("proxy")).await;
    assert_eq!(proxy_put(&proxy) - proxy_before, 1.0);
    assert_eq!(
        value(&proxy, "stratus_http_bytes_in_total", &[]) - bytes_before,
        3000.0
    );

    // The transaction id is on the proxy's log line and on each replica holder's.
    let proxy_dir = c.dir.join("proxy");
    let holders: Vec<&PathBuf> = dirs
        .iter()
        .zip(&deltas)
        .filter(|(_, d)| **d == 1.0)
        .map(|(p, _)| p)
        .collect();
    let deadline = Instant::now() + WAIT;
    loop {
        let missing: Vec<String> = std::iter::once(&proxy_dir)
            .chain(holders.iter().copied())
            .filter(|d| !log_has(d, &trans_id))
            .map(|d| d.display().to_string())
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{trans_id} not in the logs of {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let proxy_log = std::fs::read_to_string(proxy_dir.join("log")).unwrap();
    let lines: Vec<&str> = proxy_log
        .lines()
        .filter(|l| l.contains(&trans_id))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("method=PUT") && l.contains("status=201")),
        "{lines:#?}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child on drop.
struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_flag_overrides_the_config_file_and_unknown_keys_are_refused() {
    let c = TestCluster::start(1, 1);
    let endpoints = std::fs::read_to_string(c.dir.join("endpoints")).unwrap();
    let meta: Vec<String> = endpoints
        .trim()
        .split(',')
        .map(|e| format!("{e:?}"))
        .collect();
    let (file_port, flag_port, admin_port) = (free_port(), free_port(), free_port());
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("proxy.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{file_port}\"\nmeta = [{}]\nadmin_listen = \"127.0.0.1:{admin_port}\"\ntls = {:?}\n",
            meta.join(", "),
            c.dir.join("tls/proxy").display().to_string()
        ),
    )
    .unwrap();
    let proxy_bin = STRATUS.with_file_name("stratus-proxy");
    let log = std::fs::File::create(tmp.path().join("log")).unwrap();
    let child = Command::new(&proxy_bin)
        .arg("--config")
        .arg(&cfg)
        .arg(format!("--listen=127.0.0.1:{flag_port}"))
        .env_remove("STRATUS_META")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let _kill = Kill(child);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let r = http
            .get(format!("http://127.0.0.1:{flag_port}/info"))
            .send()
            .await;
        if matches!(&r, Ok(r) if r.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy never served on the flag's port: {}",
            std::fs::read_to_string(tmp.path().join("log")).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", file_port)).is_err(),
        "the file's listen address was used too"
    );
    // The file's other settings hold: its admin port serves.
    let r = http
        .get(format!("http://127.0.0.1:{admin_port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    std::fs::write(&cfg, "lisen = \"127.0.0.1:1\"\n").unwrap();
    let out = Command::new(&proxy_bin)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown setting \"lisen\"") && err.contains("listen"),
        "{err}"
    );
}
