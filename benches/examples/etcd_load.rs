//! etcd's side of the metadata benchmark: the loop of `stratus meta bench`, against etcd.
//!
//! ```sh
//! cargo run --release -p stratus-benches --example etcd_load -- \
//!     http://127.0.0.1:2379,http://127.0.0.1:2479,http://127.0.0.1:2579 1,16,64 10 256
//! ```
//! Arguments: the members' client URLs, the concurrency levels, seconds per level, value
//! size. Like `stratus meta bench`, it writes to the leader (found through each member's
//! status), one shared client, each worker putting values under its own keys
//! `bench/<worker>/<n>` (1,000 per worker, overwritten round-robin); every acknowledged put is
//! committed on a quorum with the WAL fsynced. Prints the same JSON rows as
//! `stratus meta --json bench`. `benches/meta-vs-etcd.sh` runs both, interleaved.

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use serde_json::json;
use tonic::transport::Channel;

mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
use etcdserverpb::kv_client::KvClient;
use etcdserverpb::maintenance_client::MaintenanceClient;
use etcdserverpb::{DeleteRangeRequest, PutRequest, StatusRequest};

const KEYS: usize = 1000;

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// A channel (one HTTP/2 connection) to the member that leads now.
async fn leader(endpoints: &[String]) -> Channel {
    for ep in endpoints {
        let Ok(ch) = Channel::from_shared(ep.clone())
            .expect("endpoint URL")
            .connect()
            .await
        else {
            continue;
        };
        let Ok(st) = MaintenanceClient::new(ch.clone())
            .status(StatusRequest {})
            .await
        else {
            continue;
        };
        let st = st.into_inner();
        if st.header.map(|h| h.member_id) == Some(st.leader) {
            return ch;
        }
    }
    panic!("no etcd member among {endpoints:?} says it leads");
}

fn put(key: impl Into<Vec<u8>>, value: &[u8]) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.to_vec(),
        ..Default::default()
    }
}

#[tokio::main]
async fn main() {
    let a = common::args(
        "etcd_load ENDPOINTS [CONCURRENCY,...] [SECONDS] [VALUE_SIZE]",
        1..,
    );
    let endpoints: Vec<String> = a[1].split(',').map(str::to_string).collect();
    let levels: Vec<usize> = a
        .get(2)
        .map_or("1,16,64", String::as_str)
        .split(',')
        .map(|c| c.parse().expect("concurrency"))
        .collect();
    let secs: u64 = a.get(3).map_or(10, |s| s.parse().expect("seconds"));
    let size: usize = a.get(4).map_or(256, |s| s.parse().expect("value size"));
    let client = KvClient::new(leader(&endpoints).await);
    let value = vec![b'v'; size];
    client
        .clone()
        .put(put("bench/warmup", &value))
        .await
        .expect("warm-up put");
    let mut out = Vec::new();
    for &c in &levels {
        let start = Instant::now();
        let stop = start + Duration::from_secs(secs);
        let tasks: Vec<_> = (0..c)
            .map(|w| {
                let (mut kv, value) = (client.clone(), value.clone());
                tokio::spawn(async move {
                    let (mut lat, mut errors, mut i) = (Vec::new(), 0usize, 0usize);
                    while Instant::now() < stop {
                        let key = format!("bench/{w:03}/{:06}", i % KEYS);
                        let t = Instant::now();
                        match kv.put(put(key, &value)).await {
                            Ok(_) => lat.push(t.elapsed().as_micros() as u64),
                            Err(_) => errors += 1,
                        }
                        i += 1;
                    }
                    (lat, errors)
                })
            })
            .collect();
        let (mut lat, mut errors) = (Vec::new(), 0);
        for t in tasks {
            let (l, e) = t.await.expect("worker");
            lat.extend(l);
            errors += e;
        }
        let elapsed = start.elapsed().as_secs_f64();
        lat.sort_unstable();
        out.push(
            json!({"concurrency": c, "writes": lat.len(), "errors": errors,
            "seconds": elapsed, "writes_per_sec": lat.len() as f64 / elapsed,
            "p50_us": pct(&lat, 0.5), "p99_us": pct(&lat, 0.99),
            "max_us": lat.last().copied().unwrap_or(0), "value_size": size}),
        );
    }
    let _ = client
        .clone()
        .delete_range(DeleteRangeRequest {
            key: b"bench/".to_vec(),
            range_end: b"bench0".to_vec(),
            ..Default::default()
        })
        .await;
    println!("{}", serde_json::to_string_pretty(&out).expect("json"));
}
