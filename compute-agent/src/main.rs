//! `stratus-compute`: one compute host's agent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use std::future::pending;

use stratus_client::tls::Role;
use stratus_client::MetaClient;
use stratus_compute_agent::agent::{Agent, Settings};
use stratus_compute_agent::{http, kvm};

/// A Stratus compute agent: boots servers placed on this host from replicated volumes.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Meta endpoints, comma separated.
    #[arg(long, env = "STRATUS_META", value_delimiter = ',', required = true)]
    meta: Vec<String>,
    /// This host's name (unique in the cluster).
    #[arg(long)]
    name: String,
    /// Address of the agent's HTTP port (console logs, /metrics).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where console logs are kept.
    #[arg(long)]
    state_dir: PathBuf,
    /// Where the NBD sockets QEMU opens are made (its parents must be traversable by
    /// QEMU's user).
    #[arg(long)]
    run_dir: PathBuf,
    #[arg(long, default_value = "qemu:///system")]
    libvirt_uri: String,
    /// The QEMU binary the KVM probe runs.
    #[arg(long, default_value = "qemu-system-x86_64")]
    qemu: String,
    /// Offered vCPUs (default: this machine's CPUs).
    #[arg(long)]
    vcpus: Option<u64>,
    /// Offered RAM in MB (default: this machine's).
    #[arg(long)]
    ram_mb: Option<u64>,
    /// Offered disk in GB (volumes live on the storage nodes; this is the flavor budget).
    #[arg(long, default_value_t = 1000)]
    disk_gb: u64,
    #[arg(long, default_value = "nova")]
    availability_zone: String,
    /// Seconds a guest gets to power off after the ACPI button before it is destroyed.
    #[arg(long, default_value_t = 60.0)]
    shutdown_timeout: f64,
    /// Skip the KVM probe and use TCG.
    #[arg(long)]
    no_kvm: bool,
    #[command(flatten)]
    tls: stratus_client::tls::TlsArgs,
}

fn mem_total_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(1024, |kb| kb / 1024)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    stratus_client::service::init_tracing("info");
    let a: Args = stratus_client::service::config::parse();
    a.tls.install()?;
    let identity = stratus_client::tls::current();
    stratus_client::service::metrics::init();
    std::sync::LazyLock::force(&stratus_compute_agent::metrics::METRICS);
    std::fs::create_dir_all(&a.state_dir)
        .with_context(|| format!("creating {}", a.state_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("binding {}", a.listen))?;
    let addr = listener.local_addr()?;
    let (virt_type, kvm_note) = if a.no_kvm {
        (
            "qemu".to_string(),
            Some("KVM not tried (--no-kvm)".to_string()),
        )
    } else {
        kvm::probe(&a.qemu, &a.state_dir).await
    };
    match &kvm_note {
        None => tracing::info!("KVM works: guests run under KVM"),
        Some(why) => tracing::warn!("guests run under TCG (emulated): {why}"),
    }
    let settings = Settings {
        name: a.name,
        availability_zone: a.availability_zone,
        vcpus: a
            .vcpus
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u64)),
        ram_mb: a.ram_mb.unwrap_or_else(mem_total_mb),
        disk_gb: a.disk_gb,
        state_dir: a.state_dir,
        run_dir: a.run_dir,
        libvirt_uri: a.libvirt_uri,
        shutdown_timeout: Duration::from_secs_f64(a.shutdown_timeout.max(0.0)),
        virt_type,
        kvm_note,
        http: format!(
            "{}://{addr}",
            if identity.is_some() { "https" } else { "http" }
        ),
    };
    let meta = MetaClient::new(&a.meta)?;
    let agent = Agent::new(meta, settings)
        .await
        .context("starting the compute agent (is libvirtd running?)")?;
    agent.register().await.context("registering the host")?;
    agent.recover().await.context("adopting running guests")?;
    let app = http::router(agent.clone());
    tokio::spawn(async move {
        // With TLS, only the proxy (console logs) and operators may call the port.
        let served = match identity {
            Some(id) => {
                let cfg = stratus_client::tls::http::cluster_server_config(&id);
                let roles: &'static [Role] = &[Role::Proxy, Role::Admin];
                stratus_client::tls::http::serve(listener, app, cfg, Some(roles), pending()).await
            }
            None => axum::serve(listener, app).await,
        };
        if let Err(e) = served {
            tracing::error!("HTTP port stopped: {e}");
        }
    });
    println!("stratus-compute listening on {addr}");
    agent.run(stratus_client::service::shutdown_signal()).await;
    Ok(())
}
