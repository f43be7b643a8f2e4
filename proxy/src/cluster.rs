//! Placement: which storage nodes hold an account, container or object, and how a request
//! reaches a quorum of them.
//!
//! - Writes go to every primary in parallel; a primary that is down or refuses for a node
//!   reason (unreachable, 507, timeout) is replaced by the next handoff from the ring, and
//!   the write succeeds on a quorum (`replicas / 2 + 1`).
//! - An *answer* (404, 409, 400) is not a node failure: it counts and is not retried.
//! - No node can hold a request up: every call to one is bounded by the node timeout
//!   ([`node_timeout`], Swift's `node_timeout`), and once a quorum has answered the others
//!   get [`POST_QUORUM`] more before the request goes on without them ([`gather`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{Future, StreamExt};
use stratus_client::meta::MetaClient;
use stratus_client::peers::Peers;
use stratus_client::policies;
use stratus_client::rings::{RingStore, RingWatcher};
use stratus_core::ring::{object_path, Device, Ring};
use tonic::{Code, Status};

use crate::error::{unavailable, SwiftError};

/// Default of [`node_timeout`] (Swift's `node_timeout` default).
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the remaining replicas may take once a quorum has answered (Swift's
/// `post_quorum_timeout`).
pub const POST_QUORUM: Duration = Duration::from_millis(500);

static NODE_TIMEOUT: OnceLock<Duration> = OnceLock::new();

/// Sets the node timeout of this process (once, at start).
pub fn set_node_timeout(d: Duration) {
    let _ = NODE_TIMEOUT.set(d);
}

/// How long one storage RPC may take: a unary call, opening a stream, one message of a
/// body going either way, a commit's acknowledgement.
pub fn node_timeout() -> Duration {
    NODE_TIMEOUT.get().copied().unwrap_or(DEFAULT_NODE_TIMEOUT)
}

/// Runs `calls` together and returns their results in call order once all finished, or
/// once `quorum` of them finished with a result that `counts` and the rest had
/// [`POST_QUORUM`] more. A call still running then is abandoned (`None`): a stalled node
/// costs a request half a second, not its whole timeout.
pub async fn gather<T, Fut>(
    calls: impl IntoIterator<Item = Fut>,
    quorum: usize,
    counts: impl Fn(&T) -> bool,
) -> Vec<Option<T>>
where
    Fut: Future<Output = T>,
{
    let mut pending: FuturesUnordered<_> = calls
        .into_iter()
        .enumerate()
        .map(|(i, f)| async move { (i, f.await) })
        .collect();
    let mut out: Vec<Option<T>> = (0..pending.len()).map(|_| None).collect();
    let mut good = 0;
    let mut deadline = None;
    loop {
        let next = match deadline {
            None => pending.next().await,
            Some(d) => match tokio::time::timeout_at(d, pending.next()).await {
                Ok(n) => n,
                Err(_) => break,
            },
        };
        let Some((i, r)) = next else { break };
        if counts(&r) {
            good += 1;
        }
        out[i] = Some(r);
        if good >= quorum && deadline.is_none() {
            deadline = Some(tokio::time::Instant::now() + POST_QUORUM);
        }
    }
    out
}

/// The error a call abandoned by [`gather`] stands for.
pub fn abandoned() -> Status {
    Status::deadline_exceeded("storage node too slow: the request went on with a quorum")
}

/// The rings the proxy places by: accounts, containers, and each storage policy's objects
/// (by the policy's index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingKind {
    Account,
    Container,
    Object(u32),
}

/// The proxy's view of the cluster.
pub struct Cluster {
    account: RingWatcher,
    container: RingWatcher,
    /// Each storage policy's object ring, by index.
    objects: Vec<RingWatcher>,
    /// Channels to storage nodes.
    pub peers: Peers,
}

/// The nodes of one partition: primaries in ring order, then handoffs (worked out only
/// when a request needs one, which a healthy cluster's requests never do).
pub struct Placement {
    /// The storage policy of an object's placement (0 for databases).
    pub policy: u32,
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

/// Runs `rpc` with [`node_timeout`].
pub async fn timed<T>(rpc: impl Future<Output = Result<T, Status>>) -> Result<T, Status> {
    tokio::time::timeout(node_timeout(), rpc)
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
            objects: (0..policies::MAX_POLICIES)
                .map(|i| RingWatcher::spawn(store.clone(), &policies::ring_name(i)))
                .collect::<Result<_, _>>()?,
            peers: Peers::default(),
        })
    }

    /// Waits until every ring is published (or `timeout`).
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        for w in [&self.account, &self.container, &self.objects[0]] {
            if w.wait_for(1, timeout).await.is_none() {
                return false;
            }
        }
        true
    }

    /// The current ring of `kind`.
    pub fn ring(&self, kind: RingKind) -> Result<Arc<Ring>, SwiftError> {
        let w = match kind {
            RingKind::Account => Some(&self.account),
            RingKind::Container => Some(&self.container),
            RingKind::Object(i) => self.objects.get(i as usize),
        };
        w.and_then(RingWatcher::current).ok_or_else(|| match kind {
            RingKind::Object(i) => unavailable(format!(
                "the ring of storage policy {i} ({}) is not published yet",
                policies::ring_name(i)
            )),
            _ => unavailable(format!("the {kind:?} ring is not published yet")),
        })
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
            policy: match kind {
                RingKind::Object(i) => i,
                _ => 0,
            },
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
        gather(calls, p.quorum(), Result::is_ok)
            .await
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(abandoned())))
            .collect()
    }

    /// Runs a unary read on every primary in parallel; node failures come back as errors
    /// (a replica still silent after a quorum answered is one too).
    pub async fn read_all<T, F, Fut>(&self, p: &Placement, rpc: F) -> Vec<Result<T, Status>>
    where
        F: Fn(Device) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let calls = p.primaries.iter().map(|d| timed(rpc(d.clone())));
        let answered =
            |r: &Result<T, Status>| r.as_ref().map_or_else(|s| !node_failure(s), |_| true);
        gather(calls, p.quorum(), answered)
            .await
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(abandoned())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(
        ms: u64,
        v: Result<u32, u32>,
    ) -> futures::future::BoxFuture<'static, Result<u32, u32>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            v
        })
    }

    /// A quorum answers: the straggler gets POST_QUORUM more, then is abandoned.
    #[tokio::test]
    async fn a_stalled_replica_is_left_behind_once_a_quorum_answered() {
        let calls = vec![after(10, Ok(1)), after(3_600_000, Ok(2)), after(20, Ok(3))];
        let got = gather(calls, 2, Result::is_ok).await;
        assert_eq!(got, vec![Some(Ok(1)), None, Some(Ok(3))]);
    }

    /// A replica that answers within the grace is still counted.
    #[tokio::test]
    async fn a_late_replica_within_the_grace_is_kept() {
        let calls = vec![after(10, Ok(1)), after(20, Ok(2)), after(100, Ok(3))];
        let got = gather(calls, 2, Result::is_ok).await;
        assert_eq!(got, vec![Some(Ok(1)), Some(Ok(2)), Some(Ok(3))]);
    }

    /// Failures do not make a quorum: every call is waited for.
    #[tokio::test]
    async fn without_a_quorum_every_call_is_awaited() {
        let calls = vec![after(10, Err(1)), after(800, Ok(2)), after(20, Err(3))];
        let got = gather(calls, 2, Result::is_ok).await;
        assert_eq!(got, vec![Some(Err(1)), Some(Ok(2)), Some(Err(3))]);
    }
}
