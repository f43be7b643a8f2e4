//! [`MetaClient`]: the library every Stratus process uses to talk to the meta cluster.
//!
//! - connects to any member and follows the leader: a follower's UNAVAILABLE answer names the
//!   leader (metadata [`LEADER_HEADER`]); with no leader known it tries the next endpoint;
//! - retries reads freely and writes safely: every write carries one random request id for
//!   all its attempts, and the state machine applies an id once;
//! - [`MetaClient::watch`] resumes after any failure from the revision after the last one it
//!   delivered, on whichever member answers, so a watcher misses nothing and sees nothing
//!   twice, even across a leader change.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stratus_core::id::RequestId;
use stratus_proto::meta as pb;
use stratus_proto::meta::meta_client::MetaClient as Grpc;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::service::trace::{Stamp, Traced};
use tonic::{Code, Status};

/// gRPC metadata key carrying the leader's address on an UNAVAILABLE "not leader" answer.
pub const LEADER_HEADER: &str = "x-stratus-leader";

/// Largest client message (a txn of 4 MiB plus framing).
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// Make a lazily connected channel to `addr` (`host:port`).
/// Speaks TLS as this process when an identity is installed ([`crate::tls`]).
pub fn channel(addr: &str) -> Result<Channel, tonic::transport::Error> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10));
    Ok(crate::tls::net::channel(endpoint, crate::tls::Role::Meta))
}

/// How long one attempt may take before the next endpoint is tried.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// A failed client call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The cluster answered with an error that retrying cannot fix.
    #[error("{}: {}", .0.code(), .0.message())]
    Status(Status),
    /// No member could serve the call before the deadline.
    #[error("meta cluster unavailable after {elapsed:?}: {last}")]
    Unavailable { elapsed: Duration, last: String },
    #[error("no meta endpoints given")]
    NoEndpoints,
    #[error("bad endpoint {0:?}")]
    BadEndpoint(String),
}

impl ClientError {
    /// The gRPC code of the failure.
    pub fn code(&self) -> Code {
        match self {
            ClientError::Status(s) => s.code(),
            _ => Code::Unavailable,
        }
    }
}

fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Unknown
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::Internal
    )
}

#[derive(Default)]
struct State {
    endpoints: Vec<String>,
    leader: Option<String>,
    channels: HashMap<String, Channel>,
}

/// A handle to the meta cluster; cheap to clone, safe to share.
#[derive(Clone)]
pub struct MetaClient {
    state: Arc<Mutex<State>>,
    next: Arc<AtomicUsize>,
    timeout: Duration,
    reveal: bool,
}

impl MetaClient {
    /// A client for the cluster with these member addresses (`host:port`); connects lazily.
    pub fn new<S: AsRef<str>>(endpoints: &[S]) -> Result<Self, ClientError> {
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        let endpoints: Vec<String> = endpoints
            .iter()
            .map(|e| e.as_ref().trim().trim_start_matches("http://").to_string())
            .collect();
        for e in &endpoints {
            if e.is_empty() || channel(e).is_err() {
                return Err(ClientError::BadEndpoint(e.clone()));
            }
        }
        Ok(MetaClient {
            state: Arc::new(Mutex::new(State {
                endpoints,
                ..Default::default()
            })),
            next: Arc::default(),
            timeout: Duration::from_secs(30),
            reveal: false,
        })
    }

    /// How long a call keeps retrying before it gives up (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A client whose calls ask to see identity secrets (the token secret, user records):
    /// meta shows them to an `admin` certificate that asks, and to `proxy` certificates.
    pub fn revealing(mut self) -> Self {
        self.reveal = true;
        self
    }

    /// The member addresses this client knows.
    pub fn endpoints(&self) -> Vec<String> {
        self.state.lock().expect("lock").endpoints.clone()
    }

    fn grpc(&self, addr: &str) -> Grpc<Traced> {
        let mut st = self.state.lock().expect("lock");
        let ch = match st.channels.get(addr) {
            Some(c) => c.clone(),
            None => {
                let c = channel(addr).expect("endpoints are validated");
                st.channels.insert(addr.to_string(), c.clone());
                c
            }
        };
        Grpc::with_interceptor(
            ch,
            Stamp {
                reveal: self.reveal,
            },
        )
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(MAX_CLIENT_MESSAGE_BYTES)
    }

    fn pick(&self) -> String {
        let st = self.state.lock().expect("lock");
        if let Some(l) = &st.leader {
            return l.clone();
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        st.endpoints[i % st.endpoints.len()].clone()
    }

    fn set_leader(&self, leader: Option<String>) {
        let mut st = self.state.lock().expect("lock");
        if let Some(l) = &leader {
            if !st.endpoints.contains(l) {
                st.endpoints.push(l.clone());
            }
        }
        st.leader = leader;
    }

    /// Run `f` against the leader (or any member), following redirects and retrying
    /// retryable failures until the client's timeout.
    async fn call<T, F, Fut>(&self, mut f: F) -> Result<T, ClientError>
    where
        F: FnMut(Grpc<Traced>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let start = Instant::now();
        let mut backoff = Duration::from_millis(10);
        loop {
            let target = self.pick();
            let last = match tokio::time::timeout(ATTEMPT_TIMEOUT, f(self.grpc(&target))).await {
                Ok(Ok(resp)) => return Ok(resp.into_inner()),
                Ok(Err(st)) => {
                    let hint = st
                        .metadata()
                        .get(LEADER_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    if let Some(leader) = hint.filter(|l| *l != target) {
                        self.set_leader(Some(leader));
                        continue_after(start, self.timeout, &st)?;
                        continue;
                    }
                    if !retryable(st.code()) {
                        return Err(ClientError::Status(st));
                    }
                    format!("{target}: {}", st.message())
                }
                Err(_) => format!("{target}: no answer in {ATTEMPT_TIMEOUT:?}"),
            };
            self.set_leader(None);
            if start.elapsed() + backoff > self.timeout {
                return Err(ClientError::Unavailable {
                    elapsed: start.elapsed(),
                    last,
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(400));
        }
    }

    /// Put `key` = `value`.
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<pb::PutResponse, ClientError> {
        self.put_req(pb::PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })
        .await
    }

    /// Put with every option; a request id is added when missing.
    pub async fn put_req(&self, mut req: pb::PutRequest) -> Result<pb::PutResponse, ClientError> {
        if req.request_id.is_empty() {
            req.request_id = RequestId::fresh().0.to_vec();
        }
        self.call(|mut c| {
            let req = req.clone();
            async move { c.put(req).await }
        })
        .await
    }

    /// Puts `key` = `value` unless the key exists, and returns the value stored under it
    /// afterwards (the existing one, or `value`): how cluster-wide secrets are created once.
    pub async fn get_or_create(
        &self,
        key: &str,
        value: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        self.put_if(key, value, pb::compare::Target::Version(0))
            .await?;
        Ok(self.get(key).await?.map(|kv| kv.value))
    }

    /// Puts `key` = `value` if the key's `target` (its version, mod revision, …) equals
    /// the one given; returns whether it did.
    pub async fn put_if(
        &self,
        key: &str,
        value: Vec<u8>,
        target: pb::compare::Target,
    ) -> Result<bool, ClientError> {
        let req = pb::TxnRequest {
            compare: vec![pb::Compare {
                result: pb::compare::Result::Equal as i32,
                key: key.as_bytes().to_vec(),
                target: Some(target),
            }],
            success: vec![pb::RequestOp {
                request: Some(pb::request_op::Request::Put(pb::PutRequest {
                    key: key.as_bytes().to_vec(),
                    value,
                    ..Default::default()
                })),
            }],
            ..Default::default()
        };
        Ok(self.txn(req).await?.succeeded)
    }

    /// The current value of `key` (linearizable).
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<pb::KeyValue>, ClientError> {
        let req = pb::GetRequest {
            key: key.into(),
            ..Default::default()
        };
        Ok(self.get_req(req).await?.kv)
    }

    /// Get with every option.
    pub async fn get_req(&self, req: pb::GetRequest) -> Result<pb::GetResponse, ClientError> {
        self.call(|mut c| {
            let req = req.clone();
            async move { c.get(req).await }
        })
        .await
    }

    /// Every key starting with `prefix` (linearizable), at most `limit`; with 0, every
    /// key: the server answers a page at a time (`DEFAULT_RANGE_LIMIT` keys), and the
    /// following pages are read at the first page's revision, so the whole is one
    /// consistent view.
    pub async fn range_prefix(
        &self,
        prefix: impl Into<Vec<u8>>,
        limit: i64,
    ) -> Result<pb::RangeResponse, ClientError> {
        let prefix = prefix.into();
        let mut all = self
            .range(pb::RangeRequest {
                key: prefix.clone(),
                prefix: true,
                limit,
                ..Default::default()
            })
            .await?;
        if limit != 0 {
            return Ok(all);
        }
        let revision = all.header.as_ref().map_or(0, |h| h.revision);
        let end = prefix_end(&prefix);
        while all.more {
            let Some(mut after) = all.kvs.last().map(|kv| kv.key.clone()) else {
                break;
            };
            after.push(0);
            let page = self
                .range(pb::RangeRequest {
                    key: after,
                    range_end: end.clone(),
                    revision,
                    ..Default::default()
                })
                .await?;
            all.more = page.more && !page.kvs.is_empty();
            all.kvs.extend(page.kvs);
        }
        Ok(all)
    }

    /// Range with every option.
    pub async fn range(&self, req: pb::RangeRequest) -> Result<pb::RangeResponse, ClientError> {
        self.call(|mut c| {
            let req = req.clone();
            async move { c.range(req).await }
        })
        .await
    }

    /// Delete `key` (or every key under it with `prefix`).
    pub async fn delete(
        &self,
        key: impl Into<Vec<u8>>,
        prefix: bool,
    ) -> Result<pb::DeleteResponse, ClientError> {
        let req = pb::DeleteRequest {
            key: key.into(),
            prefix,
            request_id: RequestId::fresh().0.to_vec(),
            ..Default::default()
        };
        self.call(|mut c| {
            let req = req.clone();
            async move { c.delete(req).await }
        })
        .await
    }

    /// Run a transaction; a request id is added when missing.
    pub async fn txn(&self, mut req: pb::TxnRequest) -> Result<pb::TxnResponse, ClientError> {
        if req.request_id.is_empty() {
            req.request_id = RequestId::fresh().0.to_vec();
        }
        self.call(|mut c| {
            let req = req.clone();
            async move { c.txn(req).await }
        })
        .await
    }

    /// The current cluster revision (linearizable).
    pub async fn revision(&self) -> Result<i64, ClientError> {
        let req = pb::RangeRequest {
            key: vec![0],
            count_only: true,
            ..Default::default()
        };
        Ok(self.range(req).await?.header.map_or(0, |h| h.revision))
    }

    /// Status of one member (no retries elsewhere).
    pub async fn status_of(&self, addr: &str) -> Result<pb::StatusResponse, ClientError> {
        let mut c = self.grpc(addr);
        match tokio::time::timeout(ATTEMPT_TIMEOUT, c.status(pb::StatusRequest {})).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(st)) => Err(ClientError::Status(st)),
            Err(_) => Err(ClientError::Unavailable {
                elapsed: ATTEMPT_TIMEOUT,
                last: format!("{addr}: no answer"),
            }),
        }
    }

    /// Initialize a new cluster through member `addr` with these voters.
    pub async fn initialize(
        &self,
        addr: &str,
        members: BTreeMap<u64, String>,
    ) -> Result<(), ClientError> {
        let mut c = self.grpc(addr);
        c.initialize(pb::InitializeRequest {
            members: members.into_iter().collect(),
        })
        .await
        .map_err(ClientError::Status)?;
        Ok(())
    }

    /// Add node `id` at `addr` as a learner; returns when it has caught up.
    pub async fn add_learner(
        &self,
        id: u64,
        addr: &str,
    ) -> Result<pb::MembershipResponse, ClientError> {
        let req = pb::AddLearnerRequest {
            id,
            addr: addr.to_string(),
        };
        self.call(|mut c| {
            let req = req.clone();
            async move { c.add_learner(req).await }
        })
        .await
    }

    /// Promote learners to voters and/or remove members.
    pub async fn change_membership(
        &self,
        add_voters: Vec<u64>,
        remove: Vec<u64>,
    ) -> Result<pb::MembershipResponse, ClientError> {
        let req = pb::ChangeMembershipRequest { add_voters, remove };
        self.call(|mut c| {
            let req = req.clone();
            async move { c.change_membership(req).await }
        })
        .await
    }

    /// Watch every key under `prefix` from revision `start` (0 = from now on). The stream
    /// survives member failures; it ends with an error only for a compacted start revision
    /// or a bad request, and when the receiver is dropped the watch stops.
    pub fn watch(
        &self,
        prefix: impl Into<Vec<u8>>,
        start: i64,
        prev_kv: bool,
    ) -> ReceiverStream<Result<pb::WatchResponse, ClientError>> {
        let (tx, rx) = mpsc::channel(256);
        let me = self.clone();
        let prefix = prefix.into();
        tokio::spawn(async move {
            let mut next = start;
            if next == 0 {
                match me.revision().await {
                    Ok(r) => next = r + 1,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
            let mut backoff = Duration::from_millis(20);
            loop {
                let addr = {
                    let st = me.state.lock().expect("lock");
                    let i = me.next.fetch_add(1, Ordering::Relaxed);
                    st.endpoints[i % st.endpoints.len()].clone()
                };
                let req = pb::WatchRequest {
                    prefix: prefix.clone(),
                    start_revision: next,
                    prev_kv,
                };
                let mut grpc = me.grpc(&addr);
                let opened = tokio::select! {
                    r = grpc.watch(req) => r,
                    _ = tx.closed() => return,
                };
                match opened {
                    Ok(resp) => {
                        let mut stream = resp.into_inner();
                        loop {
                            let item = tokio::select! {
                                item = stream.next() => item,
                                _ = tx.closed() => return,
                            };
                            match item {
                                Some(Ok(msg)) => {
                                    let rev = msg.header.as_ref().map_or(0, |h| h.revision);
                                    if rev < next {
                                        continue;
                                    }
                                    next = rev + 1;
                                    backoff = Duration::from_millis(20);
                                    if tx.send(Ok(msg)).await.is_err() {
                                        return;
                                    }
                                }
                                Some(Err(st)) if !retryable(st.code()) => {
                                    let _ = tx.send(Err(ClientError::Status(st))).await;
                                    return;
                                }
                                _ => break,
                            }
                        }
                    }
                    Err(st) if !retryable(st.code()) => {
                        let _ = tx.send(Err(ClientError::Status(st))).await;
                        return;
                    }
                    Err(_) => {}
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = tx.closed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        });
        ReceiverStream::new(rx)
    }
}

fn continue_after(start: Instant, timeout: Duration, st: &Status) -> Result<(), ClientError> {
    if start.elapsed() > timeout {
        return Err(ClientError::Unavailable {
            elapsed: start.elapsed(),
            last: st.message().to_string(),
        });
    }
    Ok(())
}

/// Ask the node at `addr` for its status (used to check a new member before adding it).
pub async fn probe(addr: &str) -> Result<pb::StatusResponse, Status> {
    let ch = channel(addr)
        .map_err(|e| Status::invalid_argument(format!("bad address {addr:?}: {e}")))?;
    let mut c = Grpc::new(ch);
    Ok(c.status(pb::StatusRequest {}).await?.into_inner())
}

/// The end of the range of keys starting with `prefix` (`[0]`: to the end of the keys).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
