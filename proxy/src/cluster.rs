//! Placement: which storage nodes hold an account, container or object, and how a request
//! reaches a quorum of them.
//!
//! - Writes go to every primary in parallel; a primary that is down or refuses for a node
//!   reason (unreachable, 507, timeout) is replaced by the next handoff from the ring, and
//!   the write succeeds on a quorum (`replicas / 2 + 1`).
//! - An *answer* (404, 409, 400) is not a node failure: it counts and is not retried.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::Future;
use stratus_client::meta::MetaClient;
use stratus_client::peers::Peers;
use stratus_client::rings::{RingStore, RingWatcher};
use stratus_core::ring::{object_path, Device, Ring};
use tonic::{Code, Status};

use crate::error::{unavailable, SwiftError};

/// How long one storage RPC may take (unary calls, and opening a stream).
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// The three rings the proxy places by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingKind {
    Account,
    Container,
    Object,
}

/// The proxy's view of the cluster.
pub struct Cluster {
    account: RingWatcher,
    container: RingWatcher,
    object: RingWatcher,
    /// Channels to storage nodes.
    pub peers: Peers,
}

/// The nodes of one partition: primaries in ring order, then handoffs (worked out only
/// when a request needs one, which a healthy cluster's requests never do).
pub struct Placement {
    pub part: u32,
    pub primaries: Vec<Device>,
    ring: Arc<Ring>,
    handoffs: OnceLock<Vec<Device>>,
    next_handoff: AtomicUsize,
}

impl Placement {
    /// The first handoffs of the partition (twice as many as there are replicas).
    pub fn handoffs(&self) -> &[Device] {
        self.handoffs.get_or_init(|| {
            self.ring
                .handoffs(self.part)
                .take(2 * self.primaries.len())
                .cloned()
                .collect()
        })
    }

    /// Claims the next unused handoff, if any is left.
    pub fn next_handoff(&self) -> Option<&Device> {
        self.handoffs()
            .get(self.next_handoff.fetch_add(1, Ordering::Relaxed))
    }

    /// Writes needed for success.
    pub fn quorum(&self) -> usize {
        self.primaries.len() / 2 + 1
    }
}

/// Whether a failure is the node's (try elsewhere) rather than an answer about the data.
pub fn node_failure(s: &Status) -> bool {
    !matches!(
        s.code(),
        Code::NotFound | Code::FailedPrecondition | Code::InvalidArgument | Code::AlreadyExists
    )
}

/// Runs `rpc` with [`RPC_TIMEOUT`].
pub async fn timed<T>(rpc: impl Future<Output = Result<T, Status>>) -> Result<T, Status> {
    tokio::time::timeout(RPC_TIMEOUT, rpc)
        .await
        .unwrap_or_else(|_| Err(Status::deadline_exceeded("storage node timed out")))
}

impl Cluster {
    /// Starts watching the rings.
    pub fn new(meta: MetaClient) -> Result<Self, stratus_client::rings::RingStoreError> {
        let store = RingStore::new(meta);
        Ok(Self {
            account: RingWatcher::spawn(store.clone(), "account")?,
            container: RingWatcher::spawn(store.clone(), "container")?,
            object: RingWatcher::spawn(store, "object")?,
            peers: Peers::default(),
        })
    }

    /// Waits until every ring is published (or `timeout`).
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        for w in [&self.account, &self.container, &self.object] {
            if w.wait_for(1, timeout).await.is_none() {
                return false;
            }
        }
        true
    }

    /// The current ring of `kind`.
    pub fn ring(&self, kind: RingKind) -> Result<Arc<Ring>, SwiftError> {
        let w = match kind {
            RingKind::Account => &self.account,
            RingKind::Container => &self.container,
            RingKind::Object => &self.object,
        };
        w.current()
            .ok_or_else(|| unavailable(format!("the {kind:?} ring is not published yet")))
    }

    /// Where `account[/container[/object]]` lives.
    pub fn place(
        &self,
        kind: RingKind,
        account: &str,
        container: Option<&str>,
        object: Option<&str>,
    ) -> Result<Placement, SwiftError> {
        let ring = self.ring(kind)?;
        let part = ring.partition(&object_path(account, container, object));
        let primaries: Vec<Device> = ring.primaries(part).cloned().collect();
        Ok(Placement {
            part,
            primaries,
            ring,
            handoffs: OnceLock::new(),
            next_handoff: AtomicUsize::new(0),
        })
    }

    /// Runs a unary write on every primary in parallel, replacing a failed node by the next
    /// handoff. Returns each replica's final result (answers and node failures).
    pub async fn write_all<T, F, Fut>(&self, p: &Placement, rpc: F) -> Vec<Result<T, Status>>
    where
        F: Fn(Device, u32) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let calls = p.primaries.iter().enumerate().map(|(i, primary)| {
            let rpc = &rpc;
            async move {
                let mut dev = primary.clone();
                loop {
                    match timed(rpc(dev.clone(), i as u32)).await {
                        Err(s) if node_failure(&s) => {
                            tracing::info!(node = %dev.node, device = %dev.name, error = %s.message(), "replica failed; trying a handoff");
                            match p.next_handoff() {
                                Some(h) => dev = h.clone(),
                                None => return Err(s),
                            }
                        }
                        r => return r,
                    }
                }
            }
        });
        futures::future::join_all(calls).await
    }

    /// Runs a unary read on every primary in parallel; node failures come back as errors.
    pub async fn read_all<T, F, Fut>(&self, p: &Placement, rpc: F) -> Vec<Result<T, Status>>
    where
        F: Fn(Device) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let calls = p.primaries.iter().map(|d| timed(rpc(d.clone())));
        futures::future::join_all(calls).await
    }
}
