//! `stratus meta bench`: committed, synced writes per second and their latency.
//!
//! Each worker puts fixed-size values under its own keys through one shared client (one
//! HTTP/2 connection per member); every acknowledged put is committed on a quorum with the
//! log fsynced. Figures go to BENCHMARKS.md; timed assertions do not belong in tests.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use serde_json::json;
use stratus_client::meta::MetaClient;

use crate::table;

/// Options of `stratus meta bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Concurrency levels to run, one after another.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    concurrency: Vec<usize>,
    /// Seconds per level.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Distinct keys per worker (keys are overwritten round-robin).
    #[arg(long, default_value_t = 1000)]
    keys: usize,
}

struct Level {
    concurrency: usize,
    ops: usize,
    errors: usize,
    secs: f64,
    lat_us: Vec<u64>,
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn level(client: &MetaClient, c: usize, dur: Duration, value: &[u8], keys: usize) -> Level {
    let start = Instant::now();
    let stop = start + dur;
    let mut tasks = Vec::new();
    for w in 0..c {
        let client = client.clone();
        let value = value.to_vec();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut i) = (Vec::new(), 0usize, 0usize);
            while Instant::now() < stop {
                let key = format!("bench/{w:03}/{:06}", i % keys);
                let t = Instant::now();
                match client.put(key, value.clone()).await {
                    Ok(_) => lat.push(t.elapsed().as_micros() as u64),
                    Err(_) => errors += 1,
                }
                i += 1;
            }
            (lat, errors)
        }));
    }
    let mut lat_us = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            lat_us.extend(l);
            errors += e;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    lat_us.sort_unstable();
    Level {
        concurrency: c,
        ops: lat_us.len(),
        errors,
        secs,
        lat_us,
    }
}

/// Run the benchmark and print one row per concurrency level.
pub async fn run(client: MetaClient, args: BenchArgs, json_out: bool) -> Result<()> {
    if args.concurrency.contains(&0) || args.keys == 0 || args.seconds == 0 {
        bail!("--concurrency, --keys and --seconds must be positive");
    }
    let value = vec![b'v'; args.value_size];
    client.put("bench/warmup", value.clone()).await?;
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for &c in &args.concurrency {
        let l = level(
            &client,
            c,
            Duration::from_secs(args.seconds),
            &value,
            args.keys,
        )
        .await;
        let rate = l.ops as f64 / l.secs;
        let (p50, p99, max) = (
            pct(&l.lat_us, 0.5),
            pct(&l.lat_us, 0.99),
            l.lat_us.last().copied().unwrap_or(0),
        );
        if !json_out {
            eprintln!("concurrency {c}: {rate:.0} writes/s");
        }
        out.push(json!({"concurrency": l.concurrency, "writes": l.ops, "errors": l.errors, "seconds": l.secs,
            "writes_per_sec": rate, "p50_us": p50, "p99_us": p99, "max_us": max, "value_size": args.value_size}));
        rows.push(vec![
            c.to_string(),
            l.ops.to_string(),
            l.errors.to_string(),
            format!("{rate:.0}"),
            format!("{:.2}", p50 as f64 / 1000.0),
            format!("{:.2}", p99 as f64 / 1000.0),
            format!("{:.2}", max as f64 / 1000.0),
        ]);
    }
    let _ = client.delete("bench/", true).await;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{}",
            table::render(
                &[
                    "CONCURRENCY",
                    "WRITES",
                    "ERRORS",
                    "WRITES/S",
                    "P50_MS",
                    "P99_MS",
                    "MAX_MS"
                ],
                &rows
            )
        );
    }
    Ok(())
}
