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

#[path = "common/mod.rs"]
mod common;

use common::{admin_auth, admin_login, args, drive};

#[tokio::main]
async fn main() {
    let a = args("identity_load PROXY_URL ADMIN_PASSWORD [CONCURRENCY]", 2..);
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
    let (ks_token, project) = admin_login(&http, &base, &password).await;

    let issue = {
        let (http, url, body) = (http.clone(), tokens_url.clone(), admin_auth(&password));
        move |_| {
            let (http, url, body) = (http.clone(), url.clone(), body.clone());
            async move {
                let r = http.post(&url).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 201);
                r.bytes().await.unwrap();
            }
        }
    };
    let (ops, p50, p99) = drive(conc, 400, issue).await.summary();
    println!("token issue    c={conc} n=400:   {ops:>8.0}/s  p50 {p50:.2} ms  p99 {p99:.2} ms");

    let validate = {
        let (http, url, t) = (http.clone(), tokens_url.clone(), ks_token.clone());
        move |_| {
            let (http, url, t) = (http.clone(), url.clone(), t.clone());
            async move {
                let r = http
                    .get(&url)
                    .header("x-auth-token", &t)
                    .header("x-subject-token", &t)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            }
        }
    };
    let (ops, p50, p99) = drive(conc, 20_000, validate).await.summary();
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
    let get = |(url, token): (String, String)| {
        let http = http.clone();
        move |_| {
            let (http, url, token) = (http.clone(), url.clone(), token.clone());
            async move {
                let r = http
                    .get(&url)
                    .header("x-auth-token", &token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                assert_eq!(r.bytes().await.unwrap().len(), 4096);
            }
        }
    };
    let mut ratio = Vec::new();
    for round in 1..=5 {
        let (t_ops, t50, _) = drive(conc, 4000, get(targets[0].clone())).await.summary();
        let (k_ops, k50, _) = drive(conc, 4000, get(targets[1].clone())).await.summary();
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
