//! Identity load: Keystone token issue and validation per second through the proxy, and
//! what a Keystone token costs a 4 KiB Swift GET next to a TempAuth one.
//!
//! ```sh
//! cargo run --release -p stratus-benches --example identity_load -- \
//!     http://127.0.0.1:PORT ADMIN_PASSWORD 16
//! ```
//! `PORT` and the password are in the `openrc` file `stratus dev up` writes. Phases:
//! 1. `issue`: concurrent `POST /identity/v3/auth/tokens` (password, project `admin`);
//! 2. `validate`: concurrent `GET /identity/v3/auth/tokens` of one token;
//! 3. 4 KiB GETs of one object, in alternating rounds with a TempAuth token (`test:tester`)
//!    and a Keystone token on the same kind of account, so the two are compared within one
//!    run on a noisy machine.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

type Op = Arc<dyn Fn(reqwest::Client) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// Runs `count` calls of `op` with `conc` workers; returns (ops/s, p50 ms, p99 ms).
async fn run(http: &reqwest::Client, conc: usize, count: usize, op: Op) -> (f64, f64, f64) {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..conc)
        .map(|_| {
            let (http, next, op) = (http.clone(), next.clone(), op.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let t = Instant::now();
                    op(http.clone()).await;
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    (count as f64 / secs, p(0.5), p(0.99))
}

fn password_body(password: &str) -> serde_json::Value {
    json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
}

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 3 {
        eprintln!("usage: identity_load PROXY_URL ADMIN_PASSWORD [CONCURRENCY]");
        std::process::exit(2);
    }
    let base = a[1].trim_end_matches('/').to_string();
    let password = a[2].clone();
    let conc: usize = a
        .get(3)
        .map(|c| c.parse().expect("concurrency"))
        .unwrap_or(16);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(conc)
        .build()
        .unwrap();
    let tokens_url = format!("{base}/identity/v3/auth/tokens");

    // One token to start with: its project is the Swift account to read.
    let r = http
        .post(&tokens_url)
        .json(&password_body(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "token issue");
    let ks_token = r.headers()["x-subject-token"].to_str().unwrap().to_string();
    let body: serde_json::Value = r.json().await.unwrap();
    let project = body["token"]["project"]["id"].as_str().unwrap().to_string();

    let issue: Op = {
        let (url, body) = (tokens_url.clone(), password_body(&password));
        Arc::new(move |http| {
            let (url, body) = (url.clone(), body.clone());
            Box::pin(async move {
                let r = http.post(&url).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 201);
                r.bytes().await.unwrap();
            })
        })
    };
    let (ops, p50, p99) = run(&http, conc, 400, issue).await;
    println!("token issue    c={conc} n=400:   {ops:>8.0}/s  p50 {p50:.2} ms  p99 {p99:.2} ms");

    let validate: Op = {
        let (url, t) = (tokens_url.clone(), ks_token.clone());
        Arc::new(move |http| {
            let (url, t) = (url.clone(), t.clone());
            Box::pin(async move {
                let r = http
                    .get(&url)
                    .header("x-auth-token", &t)
                    .header("x-subject-token", &t)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            })
        })
    };
    let (ops, p50, p99) = run(&http, conc, 20_000, validate).await;
    println!("token validate c={conc} n=20000: {ops:>8.0}/s  p50 {p50:.2} ms  p99 {p99:.2} ms");

    // A 4 KiB object in each account.
    let r = http
        .get(format!("{base}/auth/v1.0"))
        .header("x-auth-user", "test:tester")
        .header("x-auth-key", "testing")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "TempAuth: {}", r.status());
    let temp_url = r.headers()["x-storage-url"].to_str().unwrap().to_string();
    let temp_token = r.headers()["x-auth-token"].to_str().unwrap().to_string();
    let ks_url = format!("{base}/v1/AUTH_{project}");
    let obj = vec![7u8; 4096];
    let mut targets = Vec::new();
    for (url, token) in [(temp_url, temp_token), (ks_url, ks_token)] {
        for (path, body) in [("/bench-id", vec![]), ("/bench-id/o", obj.clone())] {
            let r = http
                .put(format!("{url}{path}"))
                .header("x-auth-token", &token)
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "PUT {url}{path}: {}", r.status());
        }
        targets.push((format!("{url}/bench-id/o"), token));
    }
    let get = |(url, token): (String, String)| -> Op {
        Arc::new(move |http| {
            let (url, token) = (url.clone(), token.clone());
            Box::pin(async move {
                let r = http
                    .get(&url)
                    .header("x-auth-token", &token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                assert_eq!(r.bytes().await.unwrap().len(), 4096);
            })
        })
    };
    let mut ratio = Vec::new();
    for round in 1..=5 {
        let (t_ops, t50, _) = run(&http, conc, 4000, get(targets[0].clone())).await;
        let (k_ops, k50, _) = run(&http, conc, 4000, get(targets[1].clone())).await;
        println!(
            "4 KiB GET round {round}: TempAuth {t_ops:>6.0}/s p50 {t50:.2} ms | Keystone {k_ops:>6.0}/s p50 {k50:.2} ms | Keystone/TempAuth {:.3}",
            k_ops / t_ops
        );
        ratio.push(k_ops / t_ops);
    }
    ratio.sort_by(f64::total_cmp);
    println!(
        "Keystone/TempAuth GET/s over 5 rounds: min {:.3} median {:.3} max {:.3}",
        ratio[0], ratio[2], ratio[4]
    );
}
