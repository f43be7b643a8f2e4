//! `stratus bench`: a throughput and latency benchmark over the Swift API, usable against
//! any Swift endpoint (Stratus or another Swift), so results compare side by side.
//!
//! Workers run the chosen operations until the duration or the operation count is reached
//! (or Ctrl-C); every operation's latency goes into an HDR histogram per operation type and
//! per second of the run, which gives the table, the JSON, the plot and the live progress
//! line. Requests still in flight at the deadline are cut off and not counted, so a run
//! never outlasts its duration. Objects created by the run are deleted afterwards unless
//! `--keep`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use hdrhistogram::Histogram;
use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value};

use crate::swift_cmd::{Creds, Swift};

/// `stratus bench …`
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// put, get, delete, mixed or list.
    workload: Option<String>,
    /// Object size (`4KiB`) or a uniform range (`1KiB..1MiB`).
    #[arg(long, default_value = "4KiB")]
    size: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long to run (`30s`, `2m`, `500ms`).
    #[arg(long)]
    duration: Option<String>,
    /// Stop after this many operations.
    #[arg(long)]
    count: Option<u64>,
    /// Spread objects over this many containers.
    #[arg(long, default_value_t = 1)]
    containers: usize,
    /// Objects uploaded before a get, delete, mixed or list run (not measured).
    #[arg(long)]
    prefill: Option<usize>,
    /// Operation mix for `mixed`, e.g. `get=70,put=20,delete=10`.
    #[arg(long, default_value = "get=70,put=20,delete=10")]
    mix: String,
    /// Object names: `random` or `sequential`.
    #[arg(long, default_value = "random")]
    names: String,
    /// Leave the containers and objects in place.
    #[arg(long)]
    keep: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also save the JSON report to this file (for `--compare`), whatever is printed.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Write throughput and p99 latency over time as an SVG.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Compare two saved `--json` runs (B against A) instead of running.
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    compare: Option<Vec<PathBuf>>,
}

/// The operation types.
const OPS: [&str; 4] = ["put", "get", "delete", "list"];

/// Parses `4KiB`, `1MiB`, `512`, `2GB`.
pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().with_context(|| format!("bad size {s:?}"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        u => bail!("unknown size unit {u:?} in {s:?}"),
    };
    Ok(n * mult)
}

/// Parses `30s`, `2m`, `500ms`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().with_context(|| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        u => bail!("unknown duration unit {u:?} in {s:?}"),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        bail!("duration must be positive: {s:?}");
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_mix(workload: &str, mix: &str) -> Result<Vec<(&'static str, u32)>> {
    let single = |op: &'static str| Ok(vec![(op, 1)]);
    match workload {
        "put" => single("put"),
        "get" => single("get"),
        "delete" => single("delete"),
        "list" => single("list"),
        "mixed" => {
            let mut out = Vec::new();
            for part in mix.split(',').filter(|p| !p.is_empty()) {
                let (op, w) = part
                    .split_once('=')
                    .with_context(|| format!("bad mix entry {part:?}"))?;
                let op = OPS
                    .into_iter()
                    .find(|o| *o == op.trim())
                    .with_context(|| format!("unknown operation {op:?} in --mix"))?;
                let w: u32 = w
                    .trim()
                    .parse()
                    .with_context(|| format!("bad weight in {part:?}"))?;
                out.push((op, w));
            }
            if out.iter().map(|x| x.1).sum::<u32>() == 0 {
                bail!("--mix has no weight");
            }
            Ok(out)
        }
        w => bail!("unknown workload {w:?}: put, get, delete, mixed or list"),
    }
}

/// Measurements of one operation type.
struct OpStats {
    lat: Histogram<u64>,
    ttfb: Histogram<u64>,
    bytes: u64,
    errors: BTreeMap<String, u64>,
    /// Per second of the run: (ops, bytes, latency histogram).
    timeline: Vec<(u64, u64, Histogram<u64>)>,
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

impl OpStats {
    fn new() -> Self {
        Self {
            lat: hist(),
            ttfb: hist(),
            bytes: 0,
            errors: BTreeMap::new(),
            timeline: Vec::new(),
        }
    }

    fn record(&mut self, second: usize, micros: u64, bytes: u64, ttfb: Option<u64>) {
        let us = micros.max(1);
        let _ = self.lat.record(us);
        if let Some(t) = ttfb {
            let _ = self.ttfb.record(t.max(1));
        }
        self.bytes += bytes;
        while self.timeline.len() <= second {
            self.timeline.push((0, 0, hist()));
        }
        let slot = &mut self.timeline[second];
        slot.0 += 1;
        slot.1 += bytes;
        let _ = slot.2.record(us);
    }
}

/// Shared state of a run.
struct Run {
    swift: Swift,
    containers: Vec<String>,
    /// Objects that exist: (container index, name, size).
    pool: Mutex<Vec<(usize, String, u64)>>,
    stats: Mutex<BTreeMap<&'static str, OpStats>>,
    start: Instant,
    deadline: Option<Instant>,
    remaining: AtomicU64,
    stop: AtomicBool,
    seq: AtomicU64,
    sizes: (u64, u64),
    random_names: bool,
    body: bytes::Bytes,
}

enum Outcome {
    Ok { bytes: u64, ttfb: Option<u64> },
    Failed(String),
    Skipped,
}

impl Run {
    fn size(&self) -> u64 {
        if self.sizes.0 == self.sizes.1 {
            self.sizes.0
        } else {
            rand::thread_rng().gen_range(self.sizes.0..=self.sizes.1)
        }
    }

    fn name(&self) -> String {
        if self.random_names {
            format!("{:016x}", rand::random::<u64>())
        } else {
            format!("o{:012}", self.seq.fetch_add(1, Ordering::Relaxed))
        }
    }

    fn path(&self, c: usize, name: &str) -> String {
        format!("{}/{name}", self.containers[c])
    }

    async fn put(&self) -> Outcome {
        let c = rand::thread_rng().gen_range(0..self.containers.len());
        let name = self.name();
        let size = self.size();
        let body = self.body.slice(..size as usize);
        match self
            .swift
            .req(Method::PUT, &self.path(c, &name))
            .body(body)
            .send()
            .await
        {
            Ok(r) if r.status().as_u16() == 201 => {
                self.pool.lock().expect("lock").push((c, name, size));
                Outcome::Ok {
                    bytes: size,
                    ttfb: None,
                }
            }
            Ok(r) => Outcome::Failed(r.status().as_u16().to_string()),
            Err(e) => Outcome::Failed(error_kind(&e)),
        }
    }

    fn pick(&self, remove: bool) -> Option<(usize, String, u64)> {
        let mut pool = self.pool.lock().expect("lock");
        if pool.is_empty() {
            return None;
        }
        let i = rand::thread_rng().gen_range(0..pool.len());
        Some(if remove {
            pool.swap_remove(i)
        } else {
            pool[i].clone()
        })
    }

    async fn get(&self) -> Outcome {
        let Some((c, name, _)) = self.pick(false) else {
            return Outcome::Skipped;
        };
        let t = Instant::now();
        let r = match self
            .swift
            .req(Method::GET, &self.path(c, &name))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(error_kind(&e)),
        };
        let ttfb = t.elapsed().as_micros() as u64;
        let status = r.status().as_u16();
        match r.bytes().await {
            Ok(b) if status == 200 => Outcome::Ok {
                bytes: b.len() as u64,
                ttfb: Some(ttfb),
            },
            Ok(_) => Outcome::Failed(status.to_string()),
            Err(e) => Outcome::Failed(error_kind(&e)),
        }
    }

    async fn delete(&self) -> Outcome {
        let Some((c, name, size)) = self.pick(true) else {
            return Outcome::Skipped;
        };
        match self
            .swift
            .req(Method::DELETE, &self.path(c, &name))
            .send()
            .await
        {
            Ok(r) if r.status().as_u16() == 204 => Outcome::Ok {
                bytes: 0,
                ttfb: None,
            },
            Ok(r) => {
                self.pool.lock().expect("lock").push((c, name, size));
                Outcome::Failed(r.status().as_u16().to_string())
            }
            Err(e) => {
                self.pool.lock().expect("lock").push((c, name, size));
                Outcome::Failed(error_kind(&e))
            }
        }
    }

    async fn list(&self) -> Outcome {
        let c = rand::thread_rng().gen_range(0..self.containers.len());
        let r = self
            .swift
            .req(Method::GET, &self.containers[c])
            .query(&[("format", "json"), ("limit", "1000")])
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => match r.bytes().await {
                Ok(b) => Outcome::Ok {
                    bytes: b.len() as u64,
                    ttfb: None,
                },
                Err(e) => Outcome::Failed(error_kind(&e)),
            },
            Ok(r) => Outcome::Failed(r.status().as_u16().to_string()),
            Err(e) => Outcome::Failed(error_kind(&e)),
        }
    }

    /// Claims one operation of the budget; false when the run is over.
    fn claim(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        self.remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

fn error_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else {
        "transport".into()
    }
}

async fn worker(run: Arc<Run>, mix: Arc<Vec<(&'static str, u32)>>) {
    let total: u32 = mix.iter().map(|m| m.1).sum();
    while run.claim() {
        let mut pick = rand::thread_rng().gen_range(0..total);
        let mut op = mix[0].0;
        for (o, w) in mix.iter() {
            if pick < *w {
                op = o;
                break;
            }
            pick -= w;
        }
        let t = Instant::now();
        let fut = async {
            match op {
                "put" => run.put().await,
                "get" => run.get().await,
                "delete" => run.delete().await,
                _ => run.list().await,
            }
        };
        // An operation still running at the deadline is cut off, not counted.
        let outcome = match run.deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), fut).await {
                Ok(o) => o,
                Err(_) => return,
            },
            None => fut.await,
        };
        let micros = t.elapsed().as_micros() as u64;
        let second = t.duration_since(run.start).as_secs() as usize;
        let skip = matches!(outcome, Outcome::Skipped);
        let skipped = {
            let mut stats = run.stats.lock().expect("lock");
            let s = stats.entry(op).or_insert_with(OpStats::new);
            match outcome {
                Outcome::Ok { bytes, ttfb } => s.record(second, micros, bytes, ttfb),
                Outcome::Failed(kind) => *s.errors.entry(kind).or_default() += 1,
                Outcome::Skipped => {}
            }
            skip
        };
        if skipped {
            // Nothing to read or delete yet: give the operation back.
            run.remaining.fetch_add(1, Ordering::Relaxed);
            tokio::task::yield_now().await;
        }
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The JSON report of a run.
fn report(run: &Run, args: &BenchArgs, workload: &str, elapsed: f64, interrupted: bool) -> Value {
    let stats = run.stats.lock().expect("lock");
    let mut ops = serde_json::Map::new();
    let mut timeline = Vec::new();
    for (op, s) in stats.iter() {
        let n = s.lat.len();
        let q = |h: &Histogram<u64>, p: f64| {
            if h.is_empty() {
                0.0
            } else {
                ms(h.value_at_quantile(p))
            }
        };
        let mut v = json!({
            "count": n,
            "errors": s.errors,
            "error_count": s.errors.values().sum::<u64>(),
            "bytes": s.bytes,
            "ops_per_s": n as f64 / elapsed,
            "mb_per_s": s.bytes as f64 / elapsed / 1e6,
            "latency_ms": {
                "p50": q(&s.lat, 0.5), "p90": q(&s.lat, 0.9), "p99": q(&s.lat, 0.99),
                "p999": q(&s.lat, 0.999), "max": if n == 0 { 0.0 } else { ms(s.lat.max()) },
            },
        });
        if !s.ttfb.is_empty() {
            v["ttfb_ms"] = json!({"p50": q(&s.ttfb, 0.5), "p99": q(&s.ttfb, 0.99)});
        }
        ops.insert(op.to_string(), v);
        for (sec, (n, b, h)) in s.timeline.iter().enumerate() {
            timeline.push(json!({
                "second": sec, "op": op, "ops": n, "bytes": b,
                "p99_ms": if h.is_empty() { 0.0 } else { ms(h.value_at_quantile(0.99)) },
            }));
        }
    }
    json!({
        "workload": workload,
        "endpoint": run.swift.url(),
        "size": args.size,
        "concurrency": args.concurrency,
        "containers": args.containers,
        "duration_s": elapsed,
        "interrupted": interrupted,
        "ops": ops,
        "timeline": timeline,
    })
}

fn print_table(r: &Value) {
    let mut rows = Vec::new();
    for (op, v) in r["ops"].as_object().into_iter().flatten() {
        let l = &v["latency_ms"];
        let f = |x: &Value| format!("{:.2}", x.as_f64().unwrap_or(0.0));
        rows.push(vec![
            op.clone(),
            v["count"].to_string(),
            format!("{:.1}", v["ops_per_s"].as_f64().unwrap_or(0.0)),
            format!("{:.2}", v["mb_per_s"].as_f64().unwrap_or(0.0)),
            f(&l["p50"]),
            f(&l["p90"]),
            f(&l["p99"]),
            f(&l["p999"]),
            f(&l["max"]),
            v.get("ttfb_ms").map_or("-".into(), |t| f(&t["p50"])),
            v["error_count"].to_string(),
        ]);
    }
    println!(
        "{} for {:.1}s, concurrency {}, size {}{}",
        r["workload"].as_str().unwrap_or(""),
        r["duration_s"].as_f64().unwrap_or(0.0),
        r["concurrency"],
        r["size"].as_str().unwrap_or(""),
        if r["interrupted"].as_bool() == Some(true) {
            " (interrupted)"
        } else {
            ""
        }
    );
    println!(
        "{}",
        crate::table::render(
            &[
                "OP", "COUNT", "OPS/S", "MB/S", "P50 MS", "P90 MS", "P99 MS", "P99.9 MS", "MAX MS",
                "TTFB P50", "ERRORS"
            ],
            &rows
        )
    );
    for (op, v) in r["ops"].as_object().into_iter().flatten() {
        if let Some(e) = v["errors"].as_object().filter(|e| !e.is_empty()) {
            let list: Vec<String> = e.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            println!("{op} errors: {}", list.join(", "));
        }
    }
}

/// Runs `stratus bench`.
pub async fn run(creds: &Creds, args: BenchArgs) -> Result<()> {
    if let Some(files) = &args.compare {
        return compare(&files[0], &files[1]);
    }
    let workload = args.workload.clone().context(
        "name a workload (put, get, delete, mixed, list) or use --compare A.json B.json",
    )?;
    let mix = parse_mix(&workload, &args.mix)?;
    let sizes = match args.size.split_once("..") {
        Some((a, b)) => (parse_size(a)?, parse_size(b)?),
        None => {
            let s = parse_size(&args.size)?;
            (s, s)
        }
    };
    if sizes.0 > sizes.1 {
        bail!("size range {} is backwards", args.size);
    }
    if sizes.1 > 1 << 30 {
        bail!("objects over 1 GiB are not supported by the benchmark");
    }
    if args.concurrency == 0 || args.containers == 0 {
        bail!("--concurrency and --containers must be at least 1");
    }
    let duration = args.duration.as_deref().map(parse_duration).transpose()?;
    if duration.is_none() && args.count.is_none() {
        bail!("give --duration or --count (or both)");
    }
    let random_names = match args.names.as_str() {
        "random" => true,
        "sequential" => false,
        n => bail!("--names is random or sequential, got {n:?}"),
    };
    let swift = Swift::connect(creds).await?;
    let tag = format!("{:08x}", rand::random::<u32>());
    let containers: Vec<String> = (0..args.containers)
        .map(|i| format!("bench-{tag}-{i}"))
        .collect();
    for c in &containers {
        let r = swift.req(Method::PUT, c).send().await?;
        if !r.status().is_success() {
            bail!("creating container {c}: {}", r.status());
        }
    }
    let body: bytes::Bytes = (0..sizes.1)
        .map(|i| (i * 31 % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let mut run = Run {
        swift,
        containers,
        pool: Mutex::new(Vec::new()),
        stats: Mutex::new(BTreeMap::new()),
        start: Instant::now(),
        deadline: None,
        remaining: AtomicU64::new(u64::MAX),
        stop: AtomicBool::new(false),
        seq: AtomicU64::new(0),
        sizes,
        random_names,
        body,
    };
    // Prefill (not measured) for workloads that read or delete.
    let prefill = args.prefill.unwrap_or(if workload == "put" {
        0
    } else {
        (args.concurrency * 8).max(64)
    });
    if prefill > 0 {
        let run_ref = &run;
        let done = AtomicU64::new(0);
        let fill = (0..args.concurrency.min(prefill)).map(|_| async {
            while (done.fetch_add(1, Ordering::Relaxed) as usize) < prefill {
                if let Outcome::Failed(e) = run_ref.put().await {
                    return Err(anyhow::anyhow!("prefill PUT failed: {e}"));
                }
            }
            Ok(())
        });
        for r in futures::future::join_all(fill).await {
            r?;
        }
    }
    run.start = Instant::now();
    run.deadline = duration.map(|d| run.start + d);
    run.remaining = AtomicU64::new(args.count.unwrap_or(u64::MAX));
    let run = Arc::new(run);
    let mix = Arc::new(mix);
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| tokio::spawn(worker(run.clone(), mix.clone())))
        .collect();
    let all = futures::future::join_all(workers);
    tokio::pin!(all);
    let tty = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut interrupted = false;
    loop {
        tokio::select! {
            _ = &mut all => break,
            _ = tokio::signal::ctrl_c(), if !interrupted => {
                interrupted = true;
                run.stop.store(true, Ordering::Relaxed);
                eprintln!("\ninterrupted: finishing operations in flight");
            }
            _ = tick.tick() => progress(&run, tty),
        }
    }
    let elapsed = run.start.elapsed().as_secs_f64();
    if tty {
        eprintln!();
    }
    let rep = report(&run, &args, &workload, elapsed, interrupted);
    if let Some(path) = &args.save {
        std::fs::write(path, serde_json::to_string_pretty(&rep)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        std::fs::write(path, plot_svg(&rep))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        print_table(&rep);
    }
    if !args.keep {
        cleanup(&run).await;
    }
    Ok(())
}

fn progress(run: &Run, tty: bool) {
    let secs = run.start.elapsed().as_secs_f64();
    let stats = run.stats.lock().expect("lock");
    let mut parts = Vec::new();
    for (op, s) in stats.iter() {
        let p99 = if s.lat.is_empty() {
            0.0
        } else {
            ms(s.lat.value_at_quantile(0.99))
        };
        let errs: u64 = s.errors.values().sum();
        parts.push(format!(
            "{op} {:.0} ops/s {:.1} MB/s p99 {:.1} ms errors {errs}",
            s.lat.len() as f64 / secs,
            s.bytes as f64 / secs / 1e6,
            p99
        ));
    }
    let line = format!("[{secs:5.1}s] {}", parts.join(" | "));
    if tty {
        eprint!("\r{line}   ");
    } else {
        eprintln!("{line}");
    }
}

/// Deletes what the run created: every object in its containers (listed, so objects whose
/// PUT was cut off at the deadline but landed go too), then the containers. Bounded: 16
/// deletes at a time, at most 2 minutes.
async fn cleanup(run: &Run) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for c in &run.containers {
        let names = run.swift.object_names(c).await.unwrap_or_default();
        let next = AtomicU64::new(0);
        let tasks = (0..16).map(|_| async {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= names.len() || Instant::now() > deadline {
                    return;
                }
                let _ = run
                    .swift
                    .req(Method::DELETE, &format!("{c}/{}", names[i]))
                    .send()
                    .await;
            }
        });
        futures::future::join_all(tasks).await;
        let _ = run.swift.req(Method::DELETE, c).send().await;
    }
}

fn compare(a: &PathBuf, b: &PathBuf) -> Result<()> {
    let load = |p: &PathBuf| -> Result<Value> {
        let s = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_str(&s)
            .with_context(|| format!("{} is not a `stratus bench --json` report", p.display()))
    };
    let (ra, rb) = (load(a)?, load(b)?);
    println!(
        "B = {}, A = {}; ratio B/A (latency: lower is better)",
        b.display(),
        a.display()
    );
    let mut rows = Vec::new();
    for (op, va) in ra["ops"].as_object().into_iter().flatten() {
        let Some(vb) = rb["ops"].get(op) else {
            continue;
        };
        let ratio = |x: &Value, y: &Value| match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) if x > 0.0 => format!("{:.2}x", y / x),
            _ => "-".into(),
        };
        rows.push(vec![
            op.clone(),
            ratio(&va["ops_per_s"], &vb["ops_per_s"]),
            ratio(&va["mb_per_s"], &vb["mb_per_s"]),
            ratio(&va["latency_ms"]["p50"], &vb["latency_ms"]["p50"]),
            ratio(&va["latency_ms"]["p99"], &vb["latency_ms"]["p99"]),
        ]);
    }
    if rows.is_empty() {
        bail!("the two runs share no operation type");
    }
    println!(
        "{}",
        crate::table::render(&["OP", "OPS/S", "MB/S", "P50", "P99"], &rows)
    );
    Ok(())
}

/// Throughput (ops/s) and p99 latency over time, one series per operation type.
pub fn plot_svg(r: &Value) -> String {
    let colors = [
        ("put", "#d62728"),
        ("get", "#1f77b4"),
        ("delete", "#2ca02c"),
        ("list", "#9467bd"),
    ];
    let points = |op: &str, key: &str| -> Vec<(f64, f64)> {
        r["timeline"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["op"] == op)
            .map(|p| {
                (
                    p["second"].as_f64().unwrap_or(0.0) + 0.5,
                    p[key].as_f64().unwrap_or(0.0),
                )
            })
            .collect()
    };
    let secs = r["duration_s"].as_f64().unwrap_or(1.0).max(1.0);
    let (w, h, pad) = (800.0, 260.0, 50.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        2.0 * h + 40.0
    );
    svg.push_str(&format!(
        "<text x=\"{pad}\" y=\"16\" font-weight=\"bold\">stratus bench {} — {} concurrency {}, size {}</text>\n",
        r["workload"].as_str().unwrap_or(""),
        r["endpoint"].as_str().unwrap_or(""),
        r["concurrency"],
        r["size"].as_str().unwrap_or("")
    ));
    for (panel, (key, title)) in [
        ("ops", "throughput (ops/s)"),
        ("p99_ms", "p99 latency (ms)"),
    ]
    .into_iter()
    .enumerate()
    {
        let top = 30.0 + panel as f64 * (h + 10.0);
        let series: Vec<_> = colors
            .iter()
            .map(|(op, c)| (op, c, points(op, key)))
            .filter(|s| !s.2.is_empty())
            .collect();
        let ymax = series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.1))
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.1;
        let (x0, y0, pw, ph) = (pad, top + 20.0, w - 2.0 * pad, h - 50.0);
        svg.push_str(&format!(
            "<text x=\"{x0}\" y=\"{}\">{title}</text>\n",
            top + 12.0
        ));
        svg.push_str(&format!(
            "<rect x=\"{x0}\" y=\"{y0}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#888\"/>\n<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{ymax:.1}</text>\n<text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>\n<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{secs:.0} s</text>\n",
            x0 - 4.0, y0 + 10.0, x0 - 4.0, y0 + ph, x0 + pw, y0 + ph + 14.0
        ));
        for (i, (op, color, pts)) in series.iter().enumerate() {
            let path: Vec<String> = pts
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", x0 + x / secs * pw, y0 + ph - y / ymax * ph))
                .collect();
            svg.push_str(&format!(
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n<text x=\"{}\" y=\"{}\" fill=\"{color}\">{op}</text>\n",
                path.join(" "),
                x0 + pw - 60.0,
                y0 + 14.0 + 14.0 * i as f64
            ));
        }
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_durations_and_mixes() {
        assert_eq!(parse_size("4KiB").unwrap(), 4096);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size("2kb").unwrap(), 2000);
        assert!(parse_size("4XB").is_err());
        assert!(parse_size("KiB").is_err());
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("3x").is_err());
        assert_eq!(
            parse_mix("mixed", "get=70,put=30").unwrap(),
            vec![("get", 70), ("put", 30)]
        );
        assert!(parse_mix("mixed", "fly=1").is_err());
        assert!(parse_mix("mixed", "get=0").is_err());
        assert!(parse_mix("nope", "").is_err());
    }

    #[test]
    fn plot_has_a_series_per_operation() {
        let r = json!({
            "workload": "mixed", "duration_s": 2.0, "concurrency": 4, "size": "4KiB",
            "timeline": [
                {"second": 0, "op": "put", "ops": 10, "p99_ms": 3.0},
                {"second": 1, "op": "put", "ops": 12, "p99_ms": 2.0},
                {"second": 0, "op": "get", "ops": 40, "p99_ms": 1.0},
            ],
        });
        let svg = plot_svg(&r);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<polyline").count(),
            4,
            "put and get, in both panels"
        );
    }
}
