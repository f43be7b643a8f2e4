//! `stratus-meta`: one node of the metadata cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use stratus_client::service::admin;
use stratus_client::service::metrics::Health;
use stratus_meta::server::{self, Config, MetaServer};

// mimalloc, not glibc's malloc: 1.085x the writes/s at 64 in flight (BENCHMARKS.md). Only
// Rust's allocations; RocksDB's C++ ones stay with glibc.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One node of the Stratus metadata cluster.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Node id, unique in the cluster.
    #[arg(long)]
    id: u64,
    /// Data directory (database, snapshots, address file).
    #[arg(long)]
    data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free port (or reuses this data dir's).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[arg(long, default_value_t = server::DEFAULT_HEARTBEAT_MS)]
    heartbeat_ms: u64,
    #[arg(long, default_value_t = server::DEFAULT_ELECTION_MS.0)]
    election_min_ms: u64,
    #[arg(long, default_value_t = server::DEFAULT_ELECTION_MS.1)]
    election_max_ms: u64,
    /// Build a snapshot every N log entries.
    #[arg(long, default_value_t = server::DEFAULT_SNAPSHOT_LOGS)]
    snapshot_logs: u64,
    /// Log entries kept behind a snapshot.
    #[arg(long, default_value_t = server::DEFAULT_KEEP_LOGS)]
    keep_logs: u64,
    /// Live write-ahead-log bytes past which the oldest WAL file's memtables are flushed and
    /// the file is kept for reuse (a reused file's syncs write its data and no metadata).
    #[arg(long, default_value_t = stratus_meta::store::DEFAULT_WAL_BYTES, value_parser = clap::value_parser!(u64).range(1..))]
    wal_bytes: u64,
    /// Address of the admin HTTP port (`/metrics`, `/healthz`); none if not given.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Threads that run requests and Raft (0: one per core). A node's Raft work is mostly
    /// one sequence of steps, so where several meta nodes share a machine's cores (`stratus
    /// dev up` runs its nodes with 1), fewer threads mean fewer hand-overs between them.
    /// With 1, every task runs in the order it was woken (tokio's current-thread
    /// scheduler): the answers of writes committed together are all queued before their
    /// connection is written, and leave in one write instead of one each.
    #[arg(long, default_value_t = 0)]
    worker_threads: usize,
    #[command(flatten)]
    tls: stratus_client::tls::TlsArgs,
}

fn main() -> anyhow::Result<()> {
    let a: Args = stratus_client::service::config::parse();
    let mut rt = match a.worker_threads {
        // The multi-thread scheduler with one worker runs a task that another woke before
        // anything queued earlier (its "LIFO slot"): each answer a commit released woke its
        // HTTP/2 connection, which was written at once, one syscall per answer (0.86
        // `writev` per write on the leader at 64 in flight, against 0.04 here).
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut rt = tokio::runtime::Builder::new_multi_thread();
            rt.worker_threads(n);
            rt
        }
    };
    rt.enable_all().build()?.block_on(run(a))
}

async fn run(a: Args) -> anyhow::Result<()> {
    stratus_client::service::init_tracing("info,openraft=warn");
    // Crash points named in FAILPOINTS (only in builds with the `failpoints` feature).
    let _crash_points = fail::FailScenario::setup();
    if cfg!(feature = "failpoints") {
        tracing::warn!(
            "built with crash points (FAILPOINTS={:?}): for tests only",
            std::env::var("FAILPOINTS").unwrap_or_default()
        );
    }
    a.tls.install()?;
    let listen = server::resolve_listen(&a.data_dir, a.listen);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    server::write_addr(&a.data_dir, addr).context("writing the address file")?;
    let cfg = Config {
        heartbeat_ms: a.heartbeat_ms,
        election_min_ms: a.election_min_ms,
        election_max_ms: a.election_max_ms,
        snapshot_logs: a.snapshot_logs,
        keep_logs: a.keep_logs,
        wal_bytes: a.wal_bytes,
        ..Config::new(a.id, &a.data_dir)
    };
    let node = MetaServer::new(cfg, addr.to_string())
        .await
        .context("starting the meta node")?;
    let raft = node.raft().clone();
    // Healthy while the node knows a leader (it can serve reads and forward writes).
    let health: Health = Arc::new(move || match raft.metrics().borrow().current_leader {
        Some(_) => Ok(()),
        None => Err("no Raft leader known".to_string()),
    });
    admin::start_if_asked("stratus-meta", a.admin_listen, health).await?;
    println!("stratus-meta node {} listening on {addr}", a.id);
    node.run(listener, stratus_client::service::shutdown_signal())
        .await?;
    Ok(())
}
