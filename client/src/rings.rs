//! Rings in meta: each ring's builder state and its published versions, stored through
//! Raft, and [`RingWatcher`], which keeps an always-current `Arc<Ring>` in any process.
//!
//! # Keys
//! ```text
//! /cluster/hash-key                      16 random bytes, the path-hashing secret (once)
//! /rings/<name>/builder                  BlobHead (JSON) of the builder state
//! /rings/<name>/current                  RingHead (JSON) of the published ring
//! /rings/<name>/history/<version:020>    HistoryEntry (JSON), one per published version
//! /rings/<name>/blobs/<blob-id>/<i:04>   512 KiB chunks of a builder or ring blob
//! ```
//!
//! # Invariants
//! - Blobs are immutable and written *before* the head that names them, under a fresh
//!   random id, so a head never points at a partial blob and two writers never collide.
//! - Every change is one transaction that compares the builder head's `mod_revision` with
//!   the one the change was computed from (optimistic concurrency): a rebalance publishes
//!   the new ring head, its history entry and the new builder head atomically, or nothing.
//! - Heads carry the blob's length and CRC32, and rings and builders carry their own
//!   checksums, so a reader verifies everything before it swaps a ring in.
//! - Blobs of the last [`KEEP_VERSIONS`] ring versions are kept; older ones are deleted
//!   after the publish that retires them (their history entries stay).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stratus_core::ring::{RebalanceReport, Ring, RingBuilder, RingError};
use stratus_proto::meta as pb;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;

use stratus_core::time::now_secs;

use crate::meta::{ClientError, MetaClient};

/// The rings a cluster has.
pub const RING_NAMES: &[&str] = &["account", "container", "object", "volume"];
/// Largest chunk of a blob stored under one key (values are limited to 1 MiB).
pub const CHUNK_BYTES: usize = 512 * 1024;
/// Published ring versions whose blobs are kept (for `history` and for slow watchers).
pub const KEEP_VERSIONS: u64 = 5;
const HASH_KEY: &str = "/cluster/hash-key";
const CAS_ATTEMPTS: usize = 5;

/// Why a ring operation in meta failed.
#[derive(Debug, thiserror::Error)]
pub enum RingStoreError {
    #[error(transparent)]
    Meta(#[from] ClientError),
    #[error(transparent)]
    Ring(#[from] RingError),
    #[error("unknown ring {0:?}: rings are {names}, and object-1 to object-3 for storage policies", names = RING_NAMES.join(", "))]
    BadName(String),
    #[error("ring {0:?} does not exist; create it with `stratus ring create {0}`")]
    NotFound(String),
    #[error("ring {0:?} already exists")]
    Exists(String),
    #[error("ring {0:?} has not been published yet; run `stratus ring rebalance {0}`")]
    NotPublished(String),
    #[error("ring {0:?} version {1} is not stored (only the last {KEEP_VERSIONS} are kept)")]
    NoSuchVersion(String, u64),
    #[error("ring {0:?} kept changing under us; try again")]
    Conflict(String),
    #[error("stored ring data is damaged: {0}")]
    Damaged(String),
}

/// Where a blob's chunks are, and how to check them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlobHead {
    pub blob: String,
    pub len: u64,
    pub chunks: u32,
    pub crc32: u32,
}

/// The head of a published ring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RingHead {
    pub version: u64,
    #[serde(flatten)]
    pub blob: BlobHead,
}

/// One published version, as `stratus ring history` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub version: u64,
    /// Unix seconds.
    pub at: u64,
    pub devices: u64,
    pub reassigned: u64,
    pub moved: u64,
    pub slots: u64,
    pub balance: f64,
    pub dispersion: f64,
    pub blob: String,
}

/// Where a loaded builder came from: its head's revision and blob.
struct Stored {
    rev: i64,
    blob: String,
}

/// Typed access to rings in meta.
#[derive(Clone)]
pub struct RingStore {
    client: MetaClient,
}

fn check_name(name: &str) -> Result<(), RingStoreError> {
    let policy_ring =
        (1..crate::policies::MAX_POLICIES).any(|i| crate::policies::ring_name(i) == name);
    if RING_NAMES.contains(&name) || policy_ring {
        Ok(())
    } else {
        Err(RingStoreError::BadName(name.to_string()))
    }
}

fn builder_key(name: &str) -> String {
    format!("/rings/{name}/builder")
}

/// The key whose changes announce a new published version of ring `name`.
pub fn current_key(name: &str) -> String {
    format!("/rings/{name}/current")
}

fn history_key(name: &str, version: u64) -> String {
    format!("/rings/{name}/history/{version:020}")
}

fn chunk_key(name: &str, blob: &str, i: u32) -> String {
    format!("/rings/{name}/blobs/{blob}/{i:04}")
}

fn put_op(key: String, value: Vec<u8>) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::Put(pb::PutRequest {
            key: key.into_bytes(),
            value,
            ..Default::default()
        })),
    }
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("plain structs serialize")
}

fn parse<'a, T: Deserialize<'a>>(what: &str, b: &'a [u8]) -> Result<T, RingStoreError> {
    serde_json::from_slice(b).map_err(|e| RingStoreError::Damaged(format!("{what}: {e}")))
}

impl RingStore {
    /// Ring access over a meta client.
    pub fn new(client: MetaClient) -> Self {
        Self { client }
    }

    /// The meta client underneath.
    pub fn client(&self) -> &MetaClient {
        &self.client
    }

    /// The cluster's path-hashing secret, created on first use.
    pub async fn hash_key(&self) -> Result<[u8; 16], RingStoreError> {
        let fresh: [u8; 16] = rand::random();
        self.client
            .get_or_create(HASH_KEY, fresh.to_vec())
            .await?
            .ok_or_else(|| RingStoreError::Damaged("cluster hash key vanished".into()))?
            .as_slice()
            .try_into()
            .map_err(|_| RingStoreError::Damaged("cluster hash key is not 16 bytes".into()))
    }

    /// Creates ring `name` with no devices. Refuses if it exists.
    pub async fn create(
        &self,
        name: &str,
        part_power: u32,
        replicas: u32,
        min_part_hours: u32,
    ) -> Result<RingBuilder, RingStoreError> {
        check_name(name)?;
        let key = self.hash_key().await?;
        let b = RingBuilder::new(part_power, replicas, min_part_hours, key, rand::random())?;
        let head = self.write_blob(name, &b.to_bytes()).await?;
        let req = pb::TxnRequest {
            compare: vec![pb::Compare {
                result: pb::compare::Result::Equal as i32,
                key: builder_key(name).into_bytes(),
                target: Some(pb::compare::Target::Version(0)),
            }],
            success: vec![put_op(builder_key(name), json(&head))],
            ..Default::default()
        };
        if !self.client.txn(req).await?.succeeded {
            self.delete_blob(name, &head.blob).await;
            return Err(RingStoreError::Exists(name.to_string()));
        }
        Ok(b)
    }

    /// The builder state of ring `name` and the `mod_revision` of its head.
    pub async fn builder(&self, name: &str) -> Result<(RingBuilder, i64), RingStoreError> {
        let (b, stored) = self.load(name).await?;
        Ok((b, stored.rev))
    }

    /// The builder and where it is stored: what a later [`RingStore::commit`] compares
    /// against and, once replaced, deletes.
    ///
    /// The head and its chunks are separate reads: a writer that replaces the builder in
    /// between deletes the chunks this read was about to fetch. A missing chunk under a
    /// head that has since moved is that race, and the read starts again from the new head.
    async fn load(&self, name: &str) -> Result<(RingBuilder, Stored), RingStoreError> {
        check_name(name)?;
        let mut attempt = 0;
        loop {
            let kv = self
                .client
                .get(builder_key(name))
                .await?
                .ok_or_else(|| RingStoreError::NotFound(name.to_string()))?;
            let head: BlobHead = parse("builder head", &kv.value)?;
            match self.read_blob(name, &head).await {
                Ok(bytes) => {
                    let stored = Stored {
                        rev: kv.mod_revision,
                        blob: head.blob,
                    };
                    return Ok((RingBuilder::from_bytes(&bytes)?, stored));
                }
                Err(e) => {
                    attempt += 1;
                    if attempt >= CAS_ATTEMPTS
                        || !self.moved(&builder_key(name), kv.mod_revision).await?
                    {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Whether `key` was rewritten (or removed) since `mod_revision`.
    async fn moved(&self, key: &str, mod_revision: i64) -> Result<bool, RingStoreError> {
        let now = self.client.get(key.to_string()).await?;
        Ok(now.is_none_or(|kv| kv.mod_revision != mod_revision))
    }

    /// Applies `edit` to the builder and stores the result, retrying on a concurrent change.
    pub async fn edit<T>(
        &self,
        name: &str,
        mut edit: impl FnMut(&mut RingBuilder) -> Result<T, RingError>,
    ) -> Result<(RingBuilder, T), RingStoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let (mut b, stored) = self.load(name).await?;
            let out = edit(&mut b)?;
            if self.commit(name, &b, &stored, None).await? {
                return Ok((b, out));
            }
        }
        Err(RingStoreError::Conflict(name.to_string()))
    }

    /// Rebalances ring `name` now and, if anything changed, publishes the new version
    /// atomically with the builder state.
    pub async fn rebalance(&self, name: &str) -> Result<RebalanceReport, RingStoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let (mut b, stored) = self.load(name).await?;
            let report = b.rebalance(now_secs())?;
            if !report.changed {
                return Ok(report);
            }
            let ring = b.ring()?;
            if self
                .commit(name, &b, &stored, Some((&ring, &report)))
                .await?
            {
                return Ok(report);
            }
        }
        Err(RingStoreError::Conflict(name.to_string()))
    }

    /// Writes the builder (and a ring to publish) if the builder head is still the one
    /// `old` was loaded from.
    async fn commit(
        &self,
        name: &str,
        b: &RingBuilder,
        old: &Stored,
        publish: Option<(&Ring, &RebalanceReport)>,
    ) -> Result<bool, RingStoreError> {
        let head = self.write_blob(name, &b.to_bytes()).await?;
        let mut success = vec![put_op(builder_key(name), json(&head))];
        let mut blobs = vec![head.blob.clone()];
        let mut retire = None;
        if let Some((ring, report)) = publish {
            let rh = self.write_blob(name, &ring.to_bytes()).await?;
            blobs.push(rh.blob.clone());
            let entry = HistoryEntry {
                version: ring.version(),
                at: ring.created_at(),
                devices: ring.devices().len() as u64,
                reassigned: report.reassigned,
                moved: report.moved,
                slots: report.slots,
                balance: report.balance,
                dispersion: report.dispersion,
                blob: rh.blob.clone(),
            };
            success.push(put_op(history_key(name, ring.version()), json(&entry)));
            success.push(put_op(
                current_key(name),
                json(&RingHead {
                    version: ring.version(),
                    blob: rh,
                }),
            ));
            retire = ring.version().checked_sub(KEEP_VERSIONS);
        }
        let req = pb::TxnRequest {
            compare: vec![pb::Compare {
                result: pb::compare::Result::Equal as i32,
                key: builder_key(name).into_bytes(),
                target: Some(pb::compare::Target::ModRevision(old.rev)),
            }],
            success,
            ..Default::default()
        };
        if !self.client.txn(req).await?.succeeded {
            for blob in blobs {
                self.delete_blob(name, &blob).await;
            }
            return Ok(false);
        }
        // Garbage of the replaced state; failures only leave unreferenced chunks behind.
        self.delete_blob(name, &old.blob).await;
        if let Some(v) = retire.filter(|v| *v > 0) {
            if let Ok(Some(kv)) = self.client.get(history_key(name, v)).await {
                if let Ok(e) = serde_json::from_slice::<HistoryEntry>(&kv.value) {
                    self.delete_blob(name, &e.blob).await;
                }
            }
        }
        Ok(true)
    }

    /// The published ring `name` and the revision it was read at.
    pub async fn current(&self, name: &str) -> Result<(Arc<Ring>, i64), RingStoreError> {
        match self.published(name).await? {
            (Some(ring), rev) => Ok((ring, rev)),
            (None, _) => Err(RingStoreError::NotPublished(name.to_string())),
        }
    }

    /// The published ring `name`, if any, and the revision of that one read — so a
    /// watcher can follow changes from exactly there, published or not.
    async fn published(&self, name: &str) -> Result<(Option<Arc<Ring>>, i64), RingStoreError> {
        check_name(name)?;
        self.published_try(name, 0).await
    }

    async fn published_try(
        &self,
        name: &str,
        attempt: usize,
    ) -> Result<(Option<Arc<Ring>>, i64), RingStoreError> {
        let key = current_key(name);
        let resp = self
            .client
            .get_req(pb::GetRequest {
                key: key.clone().into_bytes(),
                ..Default::default()
            })
            .await?;
        let rev = resp.header.map_or(0, |h| h.revision);
        let Some(kv) = resp.kv else {
            return Ok((None, rev));
        };
        let head: RingHead = parse("ring head", &kv.value)?;
        match self.load_ring(name, &head).await {
            Ok(ring) => Ok((Some(Arc::new(ring)), rev)),
            // Republished (and the old blob retired) between the two reads: read the new one.
            Err(_) if attempt + 1 < CAS_ATTEMPTS && self.moved(&key, kv.mod_revision).await? => {
                Box::pin(self.published_try(name, attempt + 1)).await
            }
            Err(e) => Err(e),
        }
    }

    /// A published version of ring `name`, if its blob is still kept.
    pub async fn version(&self, name: &str, version: u64) -> Result<Ring, RingStoreError> {
        check_name(name)?;
        let missing = || RingStoreError::NoSuchVersion(name.to_string(), version);
        let kv = self
            .client
            .get(history_key(name, version))
            .await?
            .ok_or_else(missing)?;
        let e: HistoryEntry = parse("history entry", &kv.value)?;
        let range = self
            .client
            .range_prefix(format!("/rings/{name}/blobs/{}/", e.blob), 0)
            .await?;
        if range.kvs.is_empty() {
            return Err(missing());
        }
        let bytes: Vec<u8> = range.kvs.into_iter().flat_map(|kv| kv.value).collect();
        Ok(Ring::from_bytes(&bytes)?)
    }

    /// Every published version, oldest first.
    pub async fn history(&self, name: &str) -> Result<Vec<HistoryEntry>, RingStoreError> {
        check_name(name)?;
        let range = self
            .client
            .range_prefix(format!("/rings/{name}/history/"), 0)
            .await?;
        range
            .kvs
            .iter()
            .map(|kv| parse("history entry", &kv.value))
            .collect()
    }

    async fn load_ring(&self, name: &str, head: &RingHead) -> Result<Ring, RingStoreError> {
        let bytes = self.read_blob(name, &head.blob).await?;
        let ring = Ring::from_bytes(&bytes)?;
        if ring.version() != head.version {
            return Err(RingStoreError::Damaged(format!(
                "head names version {} but the blob holds {}",
                head.version,
                ring.version()
            )));
        }
        Ok(ring)
    }

    async fn write_blob(&self, name: &str, data: &[u8]) -> Result<BlobHead, RingStoreError> {
        let blob: String = format!("{:032x}", rand::random::<u128>());
        let mut chunks = 0u32;
        for (i, c) in data.chunks(CHUNK_BYTES).enumerate() {
            self.client
                .put(chunk_key(name, &blob, i as u32), c.to_vec())
                .await?;
            chunks += 1;
        }
        Ok(BlobHead {
            blob,
            len: data.len() as u64,
            chunks,
            crc32: crc32fast::hash(data),
        })
    }

    async fn read_blob(&self, name: &str, head: &BlobHead) -> Result<Vec<u8>, RingStoreError> {
        let mut out = Vec::with_capacity(head.len as usize);
        for i in 0..head.chunks {
            let kv = self
                .client
                .get(chunk_key(name, &head.blob, i))
                .await?
                .ok_or_else(|| {
                    RingStoreError::Damaged(format!("chunk {i} of blob {} is missing", head.blob))
                })?;
            out.extend_from_slice(&kv.value);
        }
        if out.len() as u64 != head.len || crc32fast::hash(&out) != head.crc32 {
            return Err(RingStoreError::Damaged(format!(
                "blob {} does not match its length or checksum",
                head.blob
            )));
        }
        Ok(out)
    }

    async fn delete_blob(&self, name: &str, blob: &str) {
        let prefix = format!("/rings/{name}/blobs/{blob}/");
        if let Err(e) = self.client.delete(prefix, true).await {
            tracing::warn!(ring = name, blob, error = %e, "could not delete an old ring blob");
        }
    }
}

/// Keeps the newest published version of one ring, swapping it in as soon as meta
/// announces it. Readers get an `Arc<Ring>` that never changes under them.
pub struct RingWatcher {
    rx: watch::Receiver<Option<Arc<Ring>>>,
    task: JoinHandle<()>,
}

impl Drop for RingWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RingWatcher {
    /// Starts watching ring `name` (in the background, surviving meta failures).
    pub fn spawn(store: RingStore, name: &str) -> Result<Self, RingStoreError> {
        check_name(name)?;
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(watch_ring(store, name.to_string(), tx));
        Ok(Self { rx, task })
    }

    /// The newest ring seen so far, if any has been published.
    pub fn current(&self) -> Option<Arc<Ring>> {
        self.rx.borrow().clone()
    }

    /// A receiver that is notified on every new version.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Ring>>> {
        self.rx.clone()
    }

    /// Waits until a ring of at least `version` is in place, up to `timeout`.
    pub async fn wait_for(&self, version: u64, timeout: Duration) -> Option<Arc<Ring>> {
        let mut rx = self.rx.clone();
        let ok = tokio::time::timeout(
            timeout,
            rx.wait_for(|r| r.as_ref().is_some_and(|r| r.version() >= version)),
        )
        .await;
        match ok {
            Ok(Ok(r)) => r.clone(),
            _ => None,
        }
    }
}

async fn watch_ring(store: RingStore, name: String, tx: watch::Sender<Option<Arc<Ring>>>) {
    let mut have = 0u64;
    let mut backoff = Duration::from_millis(50);
    let offer = |ring: Arc<Ring>, have: &mut u64| {
        if ring.version() > *have {
            *have = ring.version();
            tracing::info!(ring = %name, version = ring.version(), "new ring version");
            tx.send_replace(Some(ring));
        }
    };
    loop {
        // Read the current head, then follow changes from just after that revision.
        let start = match store.published(&name).await {
            Ok((ring, rev)) => {
                if let Some(ring) = ring {
                    offer(ring, &mut have);
                }
                rev + 1
            }
            Err(e) => {
                tracing::warn!(ring = %name, error = %e, "ring watcher: cannot read the ring");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        let mut events = store.client.watch(current_key(&name), start, false);
        while let Some(item) = events.next().await {
            let resp = match item {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(ring = %name, error = %e, "ring watch ended; re-reading");
                    break;
                }
            };
            for ev in resp.events {
                let Some(kv) = ev
                    .kv
                    .filter(|_| ev.r#type == pb::event::EventType::Put as i32)
                else {
                    continue;
                };
                let loaded = match parse::<RingHead>("ring head", &kv.value) {
                    Ok(head) if head.version <= have => continue,
                    Ok(head) => store.load_ring(&name, &head).await,
                    Err(e) => Err(e),
                };
                match loaded {
                    Ok(ring) => offer(Arc::new(ring), &mut have),
                    Err(e) => tracing::warn!(ring = %name, error = %e, "cannot load a new ring"),
                }
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
    }
}
