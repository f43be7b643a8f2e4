//! Swift API load: PUT then GET `count` objects of `size` bytes with `concurrency` clients
//! against an auth URL (TempAuth v1), and print ops/s, MB/s and latency percentiles.
//!
//! ```sh
//! cargo run --release -p stratus-benches --example swift_load -- \
//!     http://127.0.0.1:PORT/auth/v1.0 test:tester testing 4096 16 4000
//! ```
//! (`stratus bench` will grow out of this; it is the harness behind BENCHMARKS.md.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 7 {
        eprintln!("usage: swift_load AUTH_URL USER KEY SIZE CONCURRENCY COUNT");
        std::process::exit(2);
    }
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
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let tasks: Vec<_> = (0..conc)
            .map(|_| {
                let (http, url, token, container, body, next) = (
                    http.clone(),
                    url.clone(),
                    token.clone(),
                    container.clone(),
                    body.clone(),
                    next.clone(),
                );
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            return lat;
                        }
                        let u = format!("{url}/{container}/o{i}");
                        let t = Instant::now();
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
        let p =
            |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
        println!(
            "{op} size={size} c={conc} n={count}: {:.0} ops/s, {:.1} MB/s, p50 {:.2} ms, p99 {:.2} ms",
            count as f64 / secs,
            (count * size) as f64 / secs / 1e6,
            p(0.5),
            p(0.99)
        );
    }
}

fn bytes_of(n: usize) -> bytes::Bytes {
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
