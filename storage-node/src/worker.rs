//! Background workers: one [`Worker`] trait, one runner.
//!
//! Every worker (replicator, auditor, updater, account reporter, reclaimer, expirer) is a
//! *pass* over the node's devices, run again after an idle interval. The runner keeps what
//! an operator wants to see — state, last pass duration, items scanned, repaired and
//! quarantined, errors and the last one — and each worker's settings (rate limits, its
//! interval), which `stratus worker set` changes at run time through the Admin service.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stratus_proto::storage as pb;

use crate::Node;

/// Setting every worker has: seconds to idle between passes.
pub const INTERVAL: &str = "interval";

/// A background task that works in passes.
#[tonic::async_trait]
pub trait Worker: Send + Sync + 'static {
    /// Its name in `stratus worker list`.
    fn name(&self) -> &'static str;

    /// Its settings and their defaults (besides [`INTERVAL`], given to the runner).
    fn settings(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }

    /// Its idle time between passes by default, given the node's (`--worker-interval`).
    fn interval(&self, node_default: f64) -> f64 {
        node_default
    }

    /// One pass over the node's devices. Counts what it does in `cx.stats`.
    async fn pass(&self, cx: &Ctx);

    /// Waits before the next pass (by default, the interval).
    async fn idle(&self, _node: &Node, interval: Duration) {
        tokio::time::sleep(interval).await;
    }
}

/// Counters of one worker, since the node started.
#[derive(Default)]
pub struct Stats {
    pub passes: AtomicU64,
    pub scanned: AtomicU64,
    pub repaired: AtomicU64,
    pub quarantined: AtomicU64,
    pub errors: AtomicU64,
    /// Bytes read (auditor) or pushed (replicator).
    pub bytes: AtomicU64,
    /// Items done and known in the current (or last) pass.
    pub progress_done: AtomicU64,
    pub progress_total: AtomicU64,
    last_error: Mutex<String>,
    /// (running, last pass duration, end of last pass in Unix seconds)
    state: Mutex<(bool, f64, u64)>,
}

impl Stats {
    /// Counts one item looked at.
    pub fn scanned(&self, n: u64) {
        self.scanned.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts items repaired (copies pushed, rows merged, tombstones written, …).
    pub fn repaired(&self, n: u64) {
        self.repaired.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts bytes read or sent.
    pub fn bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a copy moved to quarantine.
    pub fn quarantined(&self) {
        self.quarantined.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an error and keeps it as the last one.
    pub fn error(&self, e: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().expect("stats lock") = e.to_string();
    }
}

/// A worker's settings: name → value.
#[derive(Default)]
pub struct Settings(Mutex<BTreeMap<String, f64>>);

impl Settings {
    /// The value of `name` (0 if unknown).
    pub fn get(&self, name: &str) -> f64 {
        self.0
            .lock()
            .expect("settings lock")
            .get(name)
            .copied()
            .unwrap_or(0.0)
    }

    /// Changes an existing setting; refuses unknown names and negative or non-finite values.
    pub fn set(&self, name: &str, value: f64) -> Result<(), String> {
        let mut m = self.0.lock().expect("settings lock");
        if !value.is_finite() || value < 0.0 {
            return Err(format!("{name} must be a number ≥ 0, not {value}"));
        }
        match m.get_mut(name) {
            Some(v) => {
                *v = value;
                Ok(())
            }
            None => Err(format!(
                "no setting {name:?} (settings: {})",
                m.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        }
    }

    fn all(&self) -> std::collections::HashMap<String, f64> {
        self.0
            .lock()
            .expect("settings lock")
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

/// What a pass gets: the node, its counters and its settings.
pub struct Ctx {
    pub node: Arc<Node>,
    pub stats: Arc<Stats>,
    pub settings: Arc<Settings>,
}

/// Paces work to a rate (per second) read from a setting at every step, so a change
/// applies mid-pass. A rate of 0 means unlimited.
pub struct Limiter {
    started: Instant,
    used: f64,
    last_rate: f64,
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new()
    }
}

impl Limiter {
    /// A limiter starting now.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            used: 0.0,
            last_rate: 0.0,
        }
    }

    /// Accounts for `amount` units and sleeps as long as needed to stay under `rate`/s.
    pub async fn take(&mut self, amount: f64, rate: f64) {
        if rate <= 0.0 {
            return;
        }
        if rate != self.last_rate {
            // A new rate paces from now on, not retroactively.
            self.started = Instant::now();
            self.used = 0.0;
            self.last_rate = rate;
        }
        self.used += amount;
        let due = Duration::from_secs_f64(self.used / rate);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
}

/// A running worker, as the Admin service sees it.
pub struct Running {
    pub name: &'static str,
    pub stats: Arc<Stats>,
    pub settings: Arc<Settings>,
    /// Ends the idle wait early (a setting changed).
    pub wake: Arc<tokio::sync::Notify>,
}

impl Running {
    /// The wire form for `stratus worker list`.
    pub fn status(&self) -> pb::WorkerStatus {
        let s = &self.stats;
        let (running, last, end) = *s.state.lock().expect("stats lock");
        pb::WorkerStatus {
            name: self.name.to_string(),
            state: if running { "running" } else { "idle" }.to_string(),
            passes: s.passes.load(Ordering::Relaxed),
            last_pass_secs: last,
            last_pass_end: end,
            scanned: s.scanned.load(Ordering::Relaxed),
            repaired: s.repaired.load(Ordering::Relaxed),
            quarantined: s.quarantined.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
            last_error: s.last_error.lock().expect("stats lock").clone(),
            settings: self.settings.all(),
            progress_done: s.progress_done.load(Ordering::Relaxed),
            progress_total: s.progress_total.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
        }
    }
}

/// Starts every worker on `node`, each in its own task; `interval` is the default idle
/// time between passes (seconds).
pub fn spawn_all(
    node: &Arc<Node>,
    workers: Vec<Box<dyn Worker>>,
    interval: f64,
) -> (Vec<Arc<Running>>, Vec<tokio::task::JoinHandle<()>>) {
    let mut running = Vec::new();
    let mut tasks = Vec::new();
    for w in workers {
        let mut defaults: BTreeMap<String, f64> = w
            .settings()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        defaults
            .entry(INTERVAL.to_string())
            .or_insert(w.interval(interval));
        let r = Arc::new(Running {
            name: w.name(),
            stats: Arc::default(),
            settings: Arc::new(Settings(Mutex::new(defaults))),
            wake: Arc::default(),
        });
        let cx = Ctx {
            node: node.clone(),
            stats: r.stats.clone(),
            settings: r.settings.clone(),
        };
        let wake = r.wake.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let started = Instant::now();
                cx.stats.state.lock().expect("stats lock").0 = true;
                cx.stats.progress_done.store(0, Ordering::Relaxed);
                w.pass(&cx).await;
                cx.stats.passes.fetch_add(1, Ordering::Relaxed);
                *cx.stats.state.lock().expect("stats lock") = (
                    false,
                    started.elapsed().as_secs_f64(),
                    stratus_core::time::now_secs(),
                );
                let idle = Duration::from_secs_f64(cx.settings.get(INTERVAL).min(86_400.0));
                tokio::select! {
                    _ = w.idle(&cx.node, idle) => {}
                    _ = wake.notified() => {}
                }
            }
        }));
        running.push(r);
    }
    (running, tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_refuse_unknown_names_and_bad_values() {
        let s = Settings(Mutex::new(BTreeMap::from([("bytes_per_sec".into(), 5.0)])));
        assert!(s.set("bytes_per_sec", 10.0).is_ok());
        assert_eq!(s.get("bytes_per_sec"), 10.0);
        assert!(s.set("nope", 1.0).unwrap_err().contains("bytes_per_sec"));
        assert!(s.set("bytes_per_sec", -1.0).is_err());
        assert!(s.set("bytes_per_sec", f64::NAN).is_err());
    }

    #[tokio::test]
    async fn limiter_paces_to_the_rate() {
        let mut l = Limiter::new();
        let t = Instant::now();
        for _ in 0..5 {
            l.take(100.0, 1000.0).await;
        }
        // 500 units at 1000/s: at least half a second.
        let e = t.elapsed();
        assert!(e >= Duration::from_millis(490), "{e:?}");
        // Unlimited never waits, however much is taken.
        let t = Instant::now();
        l.take(1e12, 0.0).await;
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
