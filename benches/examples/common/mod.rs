//! What the load examples share: arguments, the Keystone login, the bytes they send, and
//! running and timing concurrent calls. Each example includes it with
//! `#[path = "common/mod.rs"] mod common;` (a subdirectory is not built as an example).

#![allow(dead_code)]

use std::future::Future;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

/// The command line (the program first); exits 2 with `usage` unless the number of
/// arguments after the program is in `count`.
pub fn args(usage: &str, count: impl RangeBounds<usize>) -> Vec<String> {
    let a: Vec<String> = std::env::args().collect();
    if !count.contains(&(a.len() - 1)) {
        eprintln!("usage: {usage}");
        std::process::exit(2);
    }
    a
}

/// `POST /identity/v3/auth/tokens` body: user `admin` by password, scoped to project
/// `admin`, both in domain `default`.
pub fn admin_auth(password: &str) -> serde_json::Value {
    json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
}

/// Logs in as `admin` at the proxy `base` (Keystone): the token and its project's id.
pub async fn admin_login(http: &reqwest::Client, base: &str, password: &str) -> (String, String) {
    let r = http
        .post(format!("{base}/identity/v3/auth/tokens"))
        .json(&admin_auth(password))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "token issue");
    let token = r.headers()["x-subject-token"].to_str().unwrap().to_string();
    let body: serde_json::Value = r.json().await.unwrap();
    let project = body["token"]["project"]["id"].as_str().unwrap().to_string();
    (token, project)
}

/// `n` pseudo-random bytes (xorshift64, the same every run).
pub fn bytes_of(n: usize) -> bytes::Bytes {
    let mut x = 0x2545F4914F6CDD1Du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// How long a [`drive`] took, and each call's latency.
pub struct Timing {
    /// How many calls.
    pub count: usize,
    /// Wall time, in seconds.
    pub secs: f64,
    /// Sorted.
    lat: Vec<Duration>,
}

impl Timing {
    /// Calls per second.
    pub fn per_sec(&self) -> f64 {
        self.count as f64 / self.secs
    }

    /// (calls per second, median ms, 99th percentile ms)
    pub fn summary(&self) -> (f64, f64, f64) {
        (self.per_sec(), self.ms(0.5), self.ms(0.99))
    }

    /// The `q` quantile of the latencies (0.5: median), in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        let lat = &self.lat;
        lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3
    }
}

/// Calls `op(i)` for every `i` in `0..count`, with `conc` workers taking the next `i` as
/// they finish one.
pub async fn drive<F, Fut>(conc: usize, count: usize, op: F) -> Timing
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..conc)
        .map(|_| {
            let (next, op) = (next.clone(), op.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return lat;
                    }
                    let t = Instant::now();
                    op(i).await;
                    lat.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut lat: Vec<Duration> = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    Timing { count, secs, lat }
}
