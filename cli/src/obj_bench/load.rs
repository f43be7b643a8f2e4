//! The load a `stratus bench` run puts on an endpoint: the shared state of a run ([`Run`]),
//! the four operations (put, get, delete, list), the workers that pick operations by the
//! mix's weights, and the prefill and cleanup around the measured part.
//!
//! Invariants: every operation first claims one unit of the budget ([`Run::claim`]), and an
//! operation that finds nothing to read or delete gives it back, so `--count` counts
//! operations that ran; an operation still in flight at the deadline is cut off and not
//! recorded, so a run never outlasts `--duration`; the pool holds only objects whose PUT
//! was acknowledged (a failed DELETE puts its object back).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::Rng;
use reqwest::Method;

use super::report::{OpStats, Stats};
use crate::swift_cmd::Swift;

/// Shared state of a run.
pub(super) struct Run {
    swift: Swift,
    containers: Vec<String>,
    /// Objects that exist: (container index, name, size).
    pool: Mutex<Vec<(usize, String, u64)>>,
    stats: Mutex<Stats>,
    start: Instant,
    deadline: Option<Instant>,
    remaining: AtomicU64,
    stop: AtomicBool,
    seq: AtomicU64,
    sizes: (u64, u64),
    random_names: bool,
    body: bytes::Bytes,
}

enum Outcome {
    Ok { bytes: u64, ttfb: Option<u64> },
    Failed(String),
    Skipped,
}

impl Run {
    /// A run over `containers` (already created) with objects of `sizes` (an inclusive
    /// range); no budget or deadline until [`Run::begin`].
    pub(super) fn new(
        swift: Swift,
        containers: Vec<String>,
        sizes: (u64, u64),
        random_names: bool,
    ) -> Self {
        let body: bytes::Bytes = (0..sizes.1)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<u8>>()
            .into();
        Run {
            swift,
            containers,
            pool: Mutex::new(Vec::new()),
            stats: Mutex::new(Stats::new()),
            start: Instant::now(),
            deadline: None,
            remaining: AtomicU64::new(u64::MAX),
            stop: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            sizes,
            random_names,
            body,
        }
    }

    /// Uploads `count` objects with `concurrency` clients, not measured, so that reads and
    /// deletes have something to work on.
    pub(super) async fn prefill(&self, concurrency: usize, count: usize) -> Result<()> {
        let done = AtomicU64::new(0);
        let fill = (0..concurrency.min(count)).map(|_| async {
            while (done.fetch_add(1, Ordering::Relaxed) as usize) < count {
                if let Outcome::Failed(e) = self.put().await {
                    return Err(anyhow::anyhow!("prefill PUT failed: {e}"));
                }
            }
            Ok(())
        });
        for r in futures::future::join_all(fill).await {
            r?;
        }
        Ok(())
    }

    /// Starts the measured part: the clock, the deadline and the operation budget.
    pub(super) fn begin(&mut self, duration: Option<Duration>, count: Option<u64>) {
        self.start = Instant::now();
        self.deadline = duration.map(|d| self.start + d);
        self.remaining = AtomicU64::new(count.unwrap_or(u64::MAX));
    }

    /// Asks the workers to stop after the operations in flight (Ctrl-C).
    pub(super) fn interrupt(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Seconds since the measured part began.
    pub(super) fn elapsed_secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// The measurements so far.
    pub(super) fn stats(&self) -> MutexGuard<'_, Stats> {
        self.stats.lock().expect("lock")
    }

    /// The storage URL the run loads.
    pub(super) fn endpoint(&self) -> &str {
        self.swift.url()
    }

    fn size(&self) -> u64 {
        if self.sizes.0 == self.sizes.1 {
            self.sizes.0
        } else {
            rand::thread_rng().gen_range(self.sizes.0..=self.sizes.1)
        }
    }

    fn name(&self) -> String {
        if self.random_names {
            format!("{:016x}", rand::random::<u64>())
        } else {
            format!("o{:012}", self.seq.fetch_add(1, Ordering::Relaxed))
        }
    }

    fn path(&self, c: usize, name: &str) -> String {
        format!("{}/{name}", self.containers[c])
    }

    async fn put(&self) -> Outcome {
        let c = rand::thread_rng().gen_range(0..self.containers.len());
        let name = self.name();
        let size = self.size();
        let body = self.body.slice(..size as usize);
        match self
            .swift
            .req(Method::PUT, &self.path(c, &name))
            .body(body)
            .send()
            .await
        {
            Ok(r) if r.status().as_u16() == 201 => {
                self.pool.lock().expect("lock").push((c, name, size));
                Outcome::Ok {
                    bytes: size,
                    ttfb: None,
                }
            }
            Ok(r) => Outcome::Failed(r.status().as_u16().to_string()),
            Err(e) => Outcome::Failed(error_kind(&e)),
        }
    }

    fn pick(&self, remove: bool) -> Option<(usize, String, u64)> {
        let mut pool = self.pool.lock().expect("lock");
        if pool.is_empty() {
            return None;
        }
        let i = rand::thread_rng().gen_range(0..pool.len());
        Some(if remove {
            pool.swap_remove(i)
        } else {
            pool[i].clone()
        })
    }

    async fn get(&self) -> Outcome {
        let Some((c, name, _)) = self.pick(false) else {
            return Outcome::Skipped;
        };
        let t = Instant::now();
        let r = match self
            .swift
            .req(Method::GET, &self.path(c, &name))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(error_kind(&e)),
        };
        let ttfb = t.elapsed().as_micros() as u64;
        let status = r.status().as_u16();
        match r.bytes().await {
            Ok(b) if status == 200 => Outcome::Ok {
                bytes: b.len() as u64,
                ttfb: Some(ttfb),
            },
            Ok(_) => Outcome::Failed(status.to_string()),
            Err(e) => Outcome::Failed(error_kind(&e)),
        }
    }

    async fn delete(&self) -> Outcome {
        let Some((c, name, size)) = self.pick(true) else {
            return Outcome::Skipped;
        };
        match self
            .swift
            .req(Method::DELETE, &self.path(c, &name))
            .send()
            .await
        {
            Ok(r) if r.status().as_u16() == 204 => Outcome::Ok {
                bytes: 0,
                ttfb: None,
            },
            Ok(r) => {
                self.pool.lock().expect("lock").push((c, name, size));
                Outcome::Failed(r.status().as_u16().to_string())
            }
            Err(e) => {
                self.pool.lock().expect("lock").push((c, name, size));
                Outcome::Failed(error_kind(&e))
            }
        }
    }

    async fn list(&self) -> Outcome {
        let c = rand::thread_rng().gen_range(0..self.containers.len());
        let r = self
            .swift
            .req(Method::GET, &self.containers[c])
            .query(&[("format", "json"), ("limit", "1000")])
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => match r.bytes().await {
                Ok(b) => Outcome::Ok {
                    bytes: b.len() as u64,
                    ttfb: None,
                },
                Err(e) => Outcome::Failed(error_kind(&e)),
            },
            Ok(r) => Outcome::Failed(r.status().as_u16().to_string()),
            Err(e) => Outcome::Failed(error_kind(&e)),
        }
    }

    /// Claims one operation of the budget; false when the run is over.
    fn claim(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        self.remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

fn error_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else {
        "transport".into()
    }
}

/// One client: runs operations picked by the `mix`'s weights until the run is over,
/// recording each one's latency.
pub(super) async fn worker(run: Arc<Run>, mix: Arc<Vec<(&'static str, u32)>>) {
    let total: u32 = mix.iter().map(|m| m.1).sum();
    while run.claim() {
        let mut pick = rand::thread_rng().gen_range(0..total);
        let mut op = mix[0].0;
        for (o, w) in mix.iter() {
            if pick < *w {
                op = o;
                break;
            }
            pick -= w;
        }
        let t = Instant::now();
        let fut = async {
            match op {
                "put" => run.put().await,
                "get" => run.get().await,
                "delete" => run.delete().await,
                _ => run.list().await,
            }
        };
        // An operation still running at the deadline is cut off, not counted.
        let outcome = match run.deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), fut).await {
                Ok(o) => o,
                Err(_) => return,
            },
            None => fut.await,
        };
        let micros = t.elapsed().as_micros() as u64;
        let second = t.duration_since(run.start).as_secs() as usize;
        let skip = matches!(outcome, Outcome::Skipped);
        let skipped = {
            let mut stats = run.stats();
            let s = stats.entry(op).or_insert_with(OpStats::new);
            match outcome {
                Outcome::Ok { bytes, ttfb } => s.record(second, micros, bytes, ttfb),
                Outcome::Failed(kind) => s.record_error(kind),
                Outcome::Skipped => {}
            }
            skip
        };
        if skipped {
            // Nothing to read or delete yet: give the operation back.
            run.remaining.fetch_add(1, Ordering::Relaxed);
            tokio::task::yield_now().await;
        }
    }
}

/// Deletes what the run created: every object in its containers (listed, so objects whose
/// PUT was cut off at the deadline but landed go too), then the containers. Bounded: 16
/// deletes at a time, at most 2 minutes.
pub(super) async fn cleanup(run: &Run) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for c in &run.containers {
        let names = run.swift.object_names(c).await.unwrap_or_default();
        let next = AtomicU64::new(0);
        let tasks = (0..16).map(|_| async {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= names.len() || Instant::now() > deadline {
                    return;
                }
                let _ = run
                    .swift
                    .req(Method::DELETE, &format!("{c}/{}", names[i]))
                    .send()
                    .await;
            }
        });
        futures::future::join_all(tasks).await;
        let _ = run.swift.req(Method::DELETE, c).send().await;
    }
}
