//! The agent's HTTP port: console logs for the compute API, `/metrics` and `/healthz`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use crate::agent::Agent;

/// The most console bytes one answer carries (the tail of the log).
const MAX_CONSOLE: u64 = 1 << 20;

#[derive(Deserialize)]
struct ConsoleQuery {
    length: Option<i64>,
}

pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/console/:id", get(console))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(|| async {
                let body = tokio::task::spawn_blocking(stratus_client::service::metrics::render)
                    .await
                    .unwrap_or_default();
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    body,
                )
            }),
        )
        .with_state(agent)
}

/// `GET /console/{server}?length=N`: the last `N` lines of the server's serial console
/// (all of it, up to 1 MiB, without `length`).
async fn console(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
    Query(q): Query<ConsoleQuery>,
) -> Response {
    if !stratus_core::id::is_uuid(&id) {
        return (StatusCode::NOT_FOUND, "no such server\n").into_response();
    }
    let path = agent.console_log(&id);
    let read = tokio::task::spawn_blocking(move || tail(&path, MAX_CONSOLE)).await;
    let Ok(Ok(bytes)) = read else {
        return (StatusCode::NOT_FOUND, "no console log for this server\n").into_response();
    };
    let text = String::from_utf8_lossy(&bytes).replace('\r', "");
    let text = match q.length {
        Some(n) if n >= 0 => last_lines(&text, n as usize),
        _ => text,
    };
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

fn tail(path: &std::path::Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The last `n` lines of `text` (a final line without a newline counts).
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    lines[lines.len().saturating_sub(n)..].concat()
}

#[cfg(test)]
mod tests {
    use super::last_lines;

    #[test]
    fn last_lines_counts_a_final_partial_line() {
        assert_eq!(last_lines("a\nb\nc", 2), "b\nc");
        assert_eq!(last_lines("a\nb\n", 1), "b\n");
        assert_eq!(last_lines("a\n", 0), "");
        assert_eq!(last_lines("a\n", 9), "a\n");
    }
}
