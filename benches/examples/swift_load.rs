//! Swift API load: PUT then GET `count` objects of `size` bytes with `concurrency` clients
//! against an auth URL (TempAuth v1), and print ops/s, MB/s and latency percentiles.
//!
//! ```sh
//! cargo run --release -p stratus-benches --example swift_load -- \
//!     http://127.0.0.1:PORT/auth/v1.0 test:tester testing 4096 16 4000
//! ```
//! (`stratus bench` will grow out of this; it is the harness behind BENCHMARKS.md.)

#[path = "common/mod.rs"]
mod common;

use common::{args, bytes_of, drive};

#[tokio::main]
async fn main() {
    let a = args("swift_load AUTH_URL USER KEY SIZE CONCURRENCY COUNT", 6..=6);
    let (auth, user, key) = (&a[1], &a[2], &a[3]);
    let size: usize = a[4].parse().expect("size");
    let conc: usize = a[5].parse().expect("concurrency");
    let count: usize = a[6].parse().expect("count");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(conc)
        .build()
        .unwrap();
    let r = http
        .get(auth)
        .header("x-auth-user", user)
        .header("x-auth-key", key)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "auth: {}", r.status());
    let url = r.headers()["x-storage-url"].to_str().unwrap().to_string();
    let token = r.headers()["x-auth-token"].to_str().unwrap().to_string();
    let container = format!("bench-{}", std::process::id());
    let r = http
        .put(format!("{url}/{container}"))
        .header("x-auth-token", &token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let body = bytes_of(size);
    for op in ["PUT", "GET"] {
        let (http, url, token, container, body) = (
            http.clone(),
            url.clone(),
            token.clone(),
            container.clone(),
            body.clone(),
        );
        let t = drive(conc, count, move |i| {
            let (http, token, body) = (http.clone(), token.clone(), body.clone());
            let u = format!("{url}/{container}/o{i}");
            async move {
                if op == "PUT" {
                    let r = http
                        .put(&u)
                        .header("x-auth-token", &token)
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 201);
                } else {
                    let r = http
                        .get(&u)
                        .header("x-auth-token", &token)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    let b = r.bytes().await.unwrap();
                    assert_eq!(b.len(), body.len());
                }
            }
        })
        .await;
        println!(
            "{op} size={size} c={conc} n={count}: {:.0} ops/s, {:.1} MB/s, p50 {:.2} ms, p99 {:.2} ms",
            t.per_sec(),
            (count * size) as f64 / t.secs / 1e6,
            t.ms(0.5),
            t.ms(0.99)
        );
    }
}
