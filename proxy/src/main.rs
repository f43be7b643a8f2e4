//! `stratus-proxy`: the Swift API front door.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use stratus_client::service::admin;
use stratus_proxy::auth::DEFAULT_TOKEN_TTL;
use stratus_proxy::{Config, Proxy};

/// The Stratus proxy: OpenStack Swift API v1 with TempAuth.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to serve HTTP on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Meta endpoints, comma separated.
    #[arg(long, env = "STRATUS_META", value_delimiter = ',', required = true)]
    meta: Vec<String>,
    /// TempAuth token lifetime, seconds (at most 7 days: a token expiring further ahead is
    /// refused by every proxy).
    #[arg(long, default_value_t = DEFAULT_TOKEN_TTL,
          value_parser = clap::value_parser!(u64).range(1..=stratus_client::identity::revoke::MAX_TOKEN_TTL))]
    token_ttl: u64,
    /// Keystone token lifetime, seconds (Keystone's `[token] expiration`; at most 7 days).
    #[arg(long, default_value_t = stratus_proxy::identity::DEFAULT_TOKEN_TTL,
          value_parser = clap::value_parser!(u64).range(1..=stratus_client::identity::revoke::MAX_TOKEN_TTL))]
    identity_token_ttl: u64,
    /// Address of the admin HTTP port (`/metrics`, `/healthz`); none if not given.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Serve the public port over TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key", value_name = "PEM")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "PEM")]
    tls_key: Option<std::path::PathBuf>,
    /// Seconds one storage-node call may take (a connection, a message of a body, a
    /// commit); a node slower than that is left out while a quorum answers.
    #[arg(long, env = "STRATUS_NODE_TIMEOUT", default_value_t = 10.0)]
    node_timeout: f64,
    /// Seconds a client may take to send its headers or the next piece of its body.
    #[arg(long, env = "STRATUS_CLIENT_TIMEOUT", default_value_t = 60.0)]
    client_timeout: f64,
    /// Requests handled at once; more get 503 with Retry-After.
    #[arg(long, env = "STRATUS_MAX_REQUESTS", default_value_t = Config::MAX_REQUESTS)]
    max_requests: usize,
    /// Storage domains (comma-separated) for domain remap: `Host: c.AUTH_a.<domain>` means
    /// `/v1/AUTH_a/c`, as Swift's `domain_remap` does. None by default.
    #[arg(long, env = "STRATUS_STORAGE_DOMAIN", default_value = "")]
    storage_domain: String,
    #[command(flatten)]
    tls: stratus_client::tls::TlsArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Password hashing (argon2, 19 MiB a hash) allocates large blocks on short-lived blocking
    // threads; with glibc's adaptive threshold those came from per-thread arenas that kept
    // them (2 GB RSS after 200 logins). Blocks of 4 MiB and more are mapped and unmapped
    // instead; the object path's 1 MiB buffers stay on the heap.
    // SAFETY: mallopt only sets an allocator parameter; called before any allocation of ours
    // that it could affect, and glibc serializes it internally.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
    stratus_client::service::init_tracing("info");
    let a: Args = stratus_client::service::config::parse();
    a.tls.install()?;
    let public_tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Some(stratus_client::tls::http::public_server_config(c, k)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("binding {}", a.listen))?;
    let proxy = Proxy::new(Config {
        meta: a.meta,
        token_ttl: a.token_ttl,
        identity_token_ttl: a.identity_token_ttl,
        node_timeout: seconds(a.node_timeout, "--node-timeout")?,
        client_timeout: seconds(a.client_timeout, "--client-timeout")?,
        max_requests: a.max_requests,
        storage_domain: a.storage_domain,
    })
    .await
    .context("starting the proxy")?;
    stratus_proxy::metrics::init();
    admin::start_if_asked("stratus-proxy", a.admin_listen, admin::always_healthy()).await?;
    println!(
        "stratus-proxy listening on {}://{}",
        if public_tls.is_some() {
            "https"
        } else {
            "http"
        },
        listener.local_addr()?
    );
    proxy
        .run(
            listener,
            public_tls,
            stratus_client::service::shutdown_signal(),
        )
        .await?;
    Ok(())
}

/// A positive, finite number of seconds.
fn seconds(v: f64, flag: &str) -> anyhow::Result<std::time::Duration> {
    if !(v.is_finite() && v > 0.0 && v < 1e9) {
        anyhow::bail!("{flag} must be a positive number of seconds, not {v}");
    }
    Ok(std::time::Duration::from_secs_f64(v))
}
