//! `stratus bench`: a throughput and latency benchmark over the Swift API, usable against
//! any Swift endpoint (Stratus or another Swift), so results compare side by side.
//!
//! Workers run the chosen operations until the duration or the operation count is reached
//! (or Ctrl-C); every operation's latency goes into an HDR histogram per operation type and
//! per second of the run, which gives the table, the JSON, the plot and the live progress
//! line. Requests still in flight at the deadline are cut off and not counted, so a run
//! never outlasts its duration. Objects created by the run are deleted afterwards unless
//! `--keep`.
//!
//! This module turns the flags into a typed run and drives it; [`load`] holds the workers
//! and the operations they run, [`report`] the measurements and how they are shown.

mod load;
mod report;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use reqwest::Method;

use crate::swift_cmd::{Creds, Swift};
use load::Run;
use report::RunInfo;

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

/// The operations of `workload` with their weights (`--mix` for `mixed`).
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

/// Runs `stratus bench`.
pub async fn run(creds: &Creds, args: BenchArgs) -> Result<()> {
    if let Some(files) = &args.compare {
        return report::compare(&files[0], &files[1]);
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
    let mut run = Run::new(swift, containers, sizes, random_names);
    // Prefill (not measured) for workloads that read or delete.
    let prefill = args.prefill.unwrap_or(if workload == "put" {
        0
    } else {
        (args.concurrency * 8).max(64)
    });
    if prefill > 0 {
        run.prefill(args.concurrency, prefill).await?;
    }
    run.begin(duration, args.count);
    let run = Arc::new(run);
    let mix = Arc::new(mix);
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| tokio::spawn(load::worker(run.clone(), mix.clone())))
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
                run.interrupt();
                eprintln!("\ninterrupted: finishing operations in flight");
            }
            _ = tick.tick() => {
                let secs = run.elapsed_secs();
                report::progress(&run.stats(), secs, tty);
            }
        }
    }
    let elapsed = run.elapsed_secs();
    if tty {
        eprintln!();
    }
    let info = RunInfo {
        workload: &workload,
        endpoint: run.endpoint(),
        size: &args.size,
        concurrency: args.concurrency,
        containers: args.containers,
        elapsed,
        interrupted,
    };
    let rep = report::report(&run.stats(), &info);
    if let Some(path) = &args.save {
        std::fs::write(path, serde_json::to_string_pretty(&rep)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        std::fs::write(path, report::plot_svg(&rep))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        report::print_table(&rep);
    }
    if !args.keep {
        load::cleanup(&run).await;
    }
    Ok(())
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
}
