//! The skeleton every Stratus service process shares: settings from flags and a config file
//! ([`config`]), logging, the shutdown signal, the address file a process leaves in its
//! data dir, the admin port with `/metrics` and `/healthz` ([`admin`], [`metrics`]), and
//! request ids that follow a request across every hop ([`trace`]).

pub mod admin;
pub mod config;
pub mod metrics;
pub mod trace;

use std::net::SocketAddr;
use std::path::Path;

/// Name of the file in a data dir that records the node's address.
pub const ADDR_FILE: &str = "addr";

/// The address to bind: `listen` as given, except that port 0 reuses the address this data
/// dir had before (a restarted node must keep the address its peers know).
pub fn resolve_listen(data_dir: &Path, listen: SocketAddr) -> SocketAddr {
    if listen.port() == 0 {
        if let Some(prev) = read_addr(data_dir) {
            return prev;
        }
    }
    listen
}

/// The address recorded in `data_dir`, if any.
pub fn read_addr(data_dir: &Path) -> Option<SocketAddr> {
    std::fs::read_to_string(data_dir.join(ADDR_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Record `addr` in `data_dir` atomically.
pub fn write_addr(data_dir: &Path, addr: SocketAddr) -> std::io::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let tmp = data_dir.join(format!("{ADDR_FILE}.tmp"));
    std::fs::write(&tmp, format!("{addr}\n"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, data_dir.join(ADDR_FILE))
}

/// Resolves on SIGTERM or Ctrl-C: the shutdown signal every Stratus service binary serves
/// until.
pub async fn shutdown_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Sets up logging for a service binary: `RUST_LOG` if set, else `default_filter`; colours
/// only on a terminal (dev clusters write logs to files).
pub fn init_tracing(default_filter: &str) {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_ansi(std::io::stdout().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .init();
}
