//! The admin HTTP port every service serves (`--admin-listen`): `GET /metrics` (Prometheus
//! text, see [`super::metrics`]) and `GET /healthz` (`200 ok`, or `503` and the reason).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use super::metrics::{self, Health};

/// Binds `addr` and serves the admin endpoints in the background; returns the bound address.
pub async fn start(addr: SocketAddr, health: Health) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    metrics::init();
    let app = Router::new().route("/metrics", get(serve_metrics)).route(
        "/healthz",
        get(move || {
            let health = Arc::clone(&health);
            async move {
                match health() {
                    Ok(()) => (StatusCode::OK, "ok\n".to_string()),
                    Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
                }
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin port stopped");
        }
    });
    tracing::info!(%bound, "admin port (/metrics, /healthz)");
    Ok(bound)
}

/// Starts the admin port if the service was given `--admin-listen`, and prints where it
/// serves, as the service prints its own address.
pub async fn start_if_asked(
    service: &str,
    addr: Option<SocketAddr>,
    health: Health,
) -> std::io::Result<()> {
    let Some(addr) = addr else {
        return Ok(());
    };
    let bound = start(addr, health).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("binding the admin port {addr}: {e}"))
    })?;
    println!("{service} admin on http://{bound}");
    Ok(())
}

async fn serve_metrics() -> impl IntoResponse {
    let body = tokio::task::spawn_blocking(metrics::render)
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

/// A health check that always passes (the process answers, so it is up).
pub fn always_healthy() -> Health {
    Arc::new(|| Ok(()))
}
