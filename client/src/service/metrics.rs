//! Process-wide metrics, served as Prometheus text on the admin port (`/metrics`).
//!
//! One registry per process. A service registers its metrics once ([`register`]); values it
//! already keeps elsewhere (Raft state, worker counters, replication progress) are copied in
//! by hooks run at each scrape ([`on_scrape`]), so the hot path pays nothing for them.
//!
//! Shared by every service:
//! - `stratus_rpc_requests_total{op,code}` and `stratus_rpc_duration_seconds{op}`: each gRPC
//!   call a server answered, by method (`Object/Put`) and gRPC status code, counted by
//!   [`RpcLayer`] (for streaming answers the duration is the time to the first message);
//! - `stratus_fsync_duration_seconds`: every fsync/fdatasync the process waited for
//!   ([`fsync_timer`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};
use tracing::Instrument;

use super::trace::{self, TRANS_ID_HEADER};

/// Label sets: `(name, value)` pairs.
pub type Labels = Vec<(String, String)>;
/// A histogram family whose histograms share [`latency_buckets`].
pub type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

type Hook = Box<dyn Fn() + Send + Sync>;

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Registry::default()));
static HOOKS: LazyLock<Mutex<Vec<Hook>>> = LazyLock::new(|| Mutex::new(Vec::new()));

/// Registers `metric` under `name` (Prometheus adds `_total` to counters) and returns it.
pub fn register<M: Metric + Clone>(name: &str, help: &str, metric: M) -> M {
    REGISTRY
        .lock()
        .expect("registry lock")
        .register(name, help, metric.clone());
    metric
}

/// Runs `hook` before every scrape (to copy values kept elsewhere into metrics).
pub fn on_scrape(hook: impl Fn() + Send + Sync + 'static) {
    HOOKS.lock().expect("hooks lock").push(Box::new(hook));
}

/// Every metric of the process in Prometheus text format (version 0.0.4).
pub fn render() -> String {
    for hook in HOOKS.lock().expect("hooks lock").iter() {
        hook();
    }
    let mut out = String::new();
    let reg = REGISTRY.lock().expect("registry lock");
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &reg);
    out
}

/// Latency buckets from 50 µs to about 26 s, doubling.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_05, 2.0, 20)
}

/// A histogram with [`latency_buckets`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// A histogram family with [`latency_buckets`].
pub fn histogram_family() -> HistogramFamily {
    Family::new_with_constructor(latency_histogram as fn() -> Histogram)
}

/// Labels from pairs.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

struct RpcMetrics {
    requests: Family<Labels, Counter>,
    duration: HistogramFamily,
}

static RPC: LazyLock<RpcMetrics> = LazyLock::new(|| RpcMetrics {
    requests: register(
        "stratus_rpc_requests",
        "gRPC calls answered, by method and status code",
        Family::default(),
    ),
    duration: register(
        "stratus_rpc_duration_seconds",
        "Time to answer a gRPC call (to the first message of a stream), by method",
        histogram_family(),
    ),
});

static FSYNC: LazyLock<Histogram> = LazyLock::new(|| {
    register(
        "stratus_fsync_duration_seconds",
        "Time of each fsync or fdatasync the process waited for",
        latency_histogram(),
    )
});

/// Makes sure the shared metrics exist (so they are listed before their first use).
pub fn init() {
    LazyLock::force(&RPC);
    LazyLock::force(&FSYNC);
}

/// Times one fsync: call `.done()` on the result when it returns (or let it drop).
pub fn fsync_timer() -> FsyncTimer {
    FsyncTimer(Instant::now())
}

/// A running fsync measurement; recorded when dropped.
pub struct FsyncTimer(Instant);

impl Drop for FsyncTimer {
    fn drop(&mut self) {
        FSYNC.observe(self.0.elapsed().as_secs_f64());
    }
}

/// Runs `f` (an fsync) and records how long it took.
pub fn timed_fsync<T>(f: impl FnOnce() -> T) -> T {
    let _t = fsync_timer();
    f()
}

/// A tower layer for tonic servers: counts and times each call, and runs it in a `rpc` span
/// carrying the caller's transaction id (and in that id's [`trace::scope`], so calls it
/// makes carry the id on). A call that arrived with a transaction id and changed something
/// (or failed) is logged at info level, the way Swift's servers log each request; reads
/// and background traffic (Raft, replication passes) at debug.
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcLayer;

impl<S> tower_layer::Layer<S> for RpcLayer {
    type Service = RpcService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcService { inner }
    }
}

/// The service [`RpcLayer`] wraps around a server's routes.
#[derive(Clone, Debug)]
pub struct RpcService<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, RB> tower_service::Service<http::Request<B>> for RpcService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    RB: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let op = op_metrics(req.uri().path());
        let id = req
            .headers()
            .get(TRANS_ID_HEADER)
            .and_then(|v| trace::accept(v.as_bytes()));
        // An info span formats its fields for every call: only calls logged at info get
        // one (a failed read logs its transaction id on the line itself).
        let span = match &id {
            Some(id) if !op.read => tracing::info_span!("rpc", trans_id = %id, op = %op.name),
            Some(id) => tracing::debug_span!("rpc", trans_id = %id, op = %op.name),
            None => tracing::debug_span!("rpc", op = %op.name),
        };
        let fut = self.inner.call(req);
        let timed = async move {
            let started = Instant::now();
            let res = fut.await;
            let elapsed = started.elapsed();
            let code = match &res {
                Ok(resp) => resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("0"),
                Err(_) => "transport",
            };
            if code == "0" {
                op.ok.inc();
            } else {
                RPC.requests
                    .get_or_create(&labels(&[("op", &op.name), ("code", code)]))
                    .inc();
            }
            op.duration.observe(elapsed.as_secs_f64());
            let ms = elapsed.as_secs_f64() * 1e3;
            // Changes and failures of a user's request are logged at info, one line each,
            // as Swift's servers log requests; reads (the hot path: a GET asks every
            // replica) and background traffic at debug.
            if let (Some(id), true) = (trace::current(), code != "0") {
                tracing::info!(trans_id = %id, op = %op.name, code = %code, ms = format_args!("{ms:.2}"), "rpc");
            } else if trace::current().is_some() && !op.read {
                tracing::info!(code = %code, ms = format_args!("{ms:.2}"), "rpc");
            } else {
                tracing::debug!(code = %code, ms = format_args!("{ms:.2}"), "rpc");
            }
            res
        }
        .instrument(span);
        match id {
            Some(id) => Box::pin(trace::scope(id, timed)),
            None => Box::pin(timed),
        }
    }
}

/// The metric handles of one gRPC method, made once so a call allocates nothing for them.
struct OpMetrics {
    /// `Object/Put`.
    name: String,
    /// Whether the method only reads (its successes are logged at debug).
    read: bool,
    ok: Counter,
    duration: Histogram,
}

static OPS: LazyLock<std::sync::RwLock<std::collections::HashMap<String, Arc<OpMetrics>>>> =
    LazyLock::new(Default::default);

/// Methods given their own metrics; any beyond (made-up names) share one entry.
const MAX_OPS: usize = 256;

/// The handles of the method at `path` (`/stratus.storage.Object/Put`).
fn op_metrics(path: &str) -> Arc<OpMetrics> {
    if let Some(m) = OPS.read().expect("ops lock").get(path) {
        return Arc::clone(m);
    }
    // "/stratus.storage.Object/Put" → "Object/Put".
    let name = path
        .trim_start_matches('/')
        .rsplit_once('/')
        .map(|(svc, m)| format!("{}/{m}", svc.rsplit('.').next().unwrap_or(svc)))
        .unwrap_or_else(|| path.to_string());
    let method = name.rsplit('/').next().unwrap_or("");
    let read = [
        "Get", "Head", "Info", "List", "Range", "Status", "Watch", "Hashes",
    ]
    .iter()
    .any(|p| method.starts_with(p));
    let m = Arc::new(OpMetrics {
        ok: RPC
            .requests
            .get_or_create(&labels(&[("op", &name), ("code", "0")]))
            .clone(),
        duration: RPC
            .duration
            .get_or_create(&labels(&[("op", &name)]))
            .clone(),
        read,
        name,
    });
    let mut ops = OPS.write().expect("ops lock");
    if ops.len() >= MAX_OPS {
        // Only a peer sending made-up method names gets here: count those as one.
        return Arc::clone(ops.entry("/other".to_string()).or_insert(m));
    }
    Arc::clone(ops.entry(path.to_string()).or_insert(m))
}

/// Shared handle to a service's health check: `Ok` when it can serve, or why not.
pub type Health = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_lists_registered_metrics_in_prometheus_text() {
        init();
        let c = register(
            "stratus_test_things",
            "Things counted by a test",
            Family::<Labels, Counter>::default(),
        );
        c.get_or_create(&labels(&[("kind", "a")])).inc_by(3);
        timed_fsync(|| ());
        let text = render();
        assert!(
            text.contains("# TYPE stratus_test_things_total counter"),
            "{text}"
        );
        assert!(
            text.contains("stratus_test_things_total{kind=\"a\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("stratus_fsync_duration_seconds_count 1"),
            "{text}"
        );
    }
}
