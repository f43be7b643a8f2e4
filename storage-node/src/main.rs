//! `stratus-storage`: one storage node.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use stratus_client::service::admin;
use stratus_storage_node::{Config, StorageServer, DEFAULT_RESERVE, DEFAULT_WORKER_INTERVAL};

/// A Stratus storage node: objects, container and account databases on local devices.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to serve on (the one the rings name for this node).
    #[arg(long)]
    listen: SocketAddr,
    /// A device directory (repeat for each); its name in the rings is the directory's name.
    #[arg(long = "device", required = true)]
    devices: Vec<PathBuf>,
    /// Meta endpoints, comma separated.
    #[arg(long, env = "STRATUS_META", value_delimiter = ',', required = true)]
    meta: Vec<String>,
    /// Free bytes each device keeps back (bodies that would use them get 507; deletions
    /// still pass).
    #[arg(long, env = "STRATUS_RESERVE", default_value_t = DEFAULT_RESERVE)]
    reserve: u64,
    /// Seconds the background workers (replicator, auditor, …) idle between passes.
    #[arg(long, default_value_t = DEFAULT_WORKER_INTERVAL)]
    worker_interval: f64,
    /// The address the rings name this node by, if not --listen (needed when listening
    /// on 0.0.0.0 or [::]).
    #[arg(long)]
    advertise: Option<String>,
    /// Address of the admin HTTP port (`/metrics`, `/healthz`); none if not given.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    #[command(flatten)]
    tls: stratus_client::tls::TlsArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    stratus_client::service::init_tracing("info");
    let a: Args = stratus_client::service::config::parse();
    a.tls.install()?;
    // Crash points named in FAILPOINTS (only in builds with the `failpoints` feature).
    let _crash_points = fail::FailScenario::setup();
    if cfg!(feature = "failpoints") {
        tracing::warn!(
            "built with crash points (FAILPOINTS={:?}): for tests only",
            std::env::var("FAILPOINTS").unwrap_or_default()
        );
    }
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("binding {}", a.listen))?;
    let cfg = Config {
        devices: a.devices,
        meta: a.meta,
        reserve: a.reserve,
        worker_interval: a.worker_interval,
        advertise: a.advertise,
    };
    let server = StorageServer::new(cfg)
        .await
        .context("starting the storage node")?;
    admin::start_if_asked("stratus-storage", a.admin_listen, admin::always_healthy()).await?;
    println!("stratus-storage listening on {}", listener.local_addr()?);
    server
        .run(listener, stratus_client::service::shutdown_signal())
        .await?;
    Ok(())
}
