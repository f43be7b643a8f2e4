//! The client-facing `Meta` service: KV, txn and watch over the replicated state machine,
//! status and membership admin.
//!
//! Writes go through Raft on the leader; a follower answers UNAVAILABLE with the leader's
//! address (see [`super::LEADER_HEADER`]) and the client library follows it. Reads are
//! linearizable (openraft's `ensure_linearizable` on the leader) unless `serializable` is
//! set. Watches are served by any node from its own applied history.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use openraft::{BasicNode, ChangeMembers, ServerState};
use stratus_core::id::RequestId;
use stratus_proto::meta as pb;
use stratus_proto::meta::meta_server::Meta;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::access::Caller;
use super::convert::{self, invalid};
use super::propose::Proposer;
use crate::kv::{self, OpResult, RangeQuery, Txn};
use crate::store::SmReader;
use crate::{NodeId, Raft};
use stratus_client::meta as client;

/// How long a membership change may take before the caller is told to check status.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a new member has to answer before it is refused as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Serves the `Meta` gRPC service of one node.
pub struct MetaService {
    id: NodeId,
    addr: String,
    raft: Raft,
    reader: SmReader,
    proposer: Proposer,
}

impl MetaService {
    /// Serve node `id` at `addr`.
    pub fn new(id: NodeId, addr: String, raft: Raft, reader: SmReader) -> Self {
        MetaService {
            id,
            addr,
            proposer: Proposer::start(id, raft.clone()),
            raft,
            reader,
        }
    }

    fn header(&self, revision: i64) -> pb::Header {
        pb::Header {
            revision,
            member_id: self.id,
            raft_term: self.raft.metrics().borrow().current_term,
        }
    }

    async fn write(&self, request_id: &[u8], txn: Txn) -> Result<kv::Response, Status> {
        txn.validate().map_err(invalid)?;
        let id = RequestId::from_wire(request_id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.proposer.write(kv::Request { id, txn }).await
    }

    async fn read(
        &self,
        q: RangeQuery,
        revision: i64,
        serializable: bool,
    ) -> Result<(OpResult, i64), Status> {
        if revision < 0 {
            return Err(Status::invalid_argument("revision must not be negative"));
        }
        q.validate().map_err(invalid)?;
        if !serializable {
            self.raft
                .ensure_linearizable()
                .await
                .map_err(|e| convert::read_check_error(self.id, e))?;
        }
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || reader.range(&q, revision))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(convert::read_error)
    }

    fn members(&self) -> Vec<pb::Member> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<NodeId> = m.membership().voter_ids().collect();
        m.membership()
            .nodes()
            .map(|(id, node)| pb::Member {
                id: *id,
                addr: node.addr.clone(),
                voter: voters.contains(id),
            })
            .collect()
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Meta for MetaService {
    // The write paths' spans are at debug: an info span is built for every call, and was
    // 2.3% of the leader's CPU at 64 writes in flight.
    #[tracing::instrument(level = "debug", skip_all, fields(node = self.id))]
    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let caller = Caller::of(&req);
        let r = req.into_inner();
        caller.write(&kv::KeyRange::single(r.key.clone()))?;
        let request_id = r.request_id.clone();
        let txn = Txn {
            success: vec![convert::put_op(r)],
            ..Default::default()
        };
        let resp = self.write(&request_id, txn).await?;
        let prev_kv = match resp.results.into_iter().next() {
            Some(OpResult::Put { prev }) => prev.map(Into::into),
            _ => None,
        };
        Ok(Response::new(pb::PutResponse {
            header: Some(self.header(resp.revision)),
            prev_kv,
        }))
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let caller = Caller::of(&req);
        let r = req.into_inner();
        let q = RangeQuery {
            range: kv::KeyRange::single(r.key),
            limit: 0,
            keys_only: false,
            count_only: false,
        };
        caller.read(&q.range)?;
        let (res, rev) = self.read(q, r.revision, r.serializable).await?;
        let kv = match res {
            OpResult::Range { kvs, .. } => kvs.into_iter().next().map(Into::into),
            _ => None,
        };
        Ok(Response::new(pb::GetResponse {
            header: Some(self.header(rev)),
            kv,
        }))
    }

    async fn range(
        &self,
        req: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let caller = Caller::of(&req);
        let r = req.into_inner();
        let (revision, serializable) = (r.revision, r.serializable);
        let q = convert::range_query(r)?;
        // Keys the caller may not read are left out of a listing; a count over them, or a
        // read of one of them, is refused.
        let hidden = caller.hidden(&q.range);
        if !hidden.is_empty() && (q.count_only || matches!(q.range.end, kv::RangeEnd::Single)) {
            caller.read(&q.range)?;
        }
        let (mut res, rev) = self.read(q, revision, serializable).await?;
        if let OpResult::Range { kvs, count, .. } = &mut res {
            let before = kvs.len();
            kvs.retain(|kv| !hidden.iter().any(|p| kv.key.starts_with(p)));
            *count -= (before - kvs.len()) as i64;
        }
        match convert::response_op(res, &self.header(rev)).response {
            Some(pb::response_op::Response::Range(r)) => Ok(Response::new(r)),
            _ => Err(Status::internal("range produced a non-range result")),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(node = self.id))]
    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let caller = Caller::of(&req);
        let r = req.into_inner();
        let request_id = r.request_id.clone();
        let txn = Txn {
            success: vec![convert::delete_op(r)],
            ..Default::default()
        };
        caller.txn(&txn)?;
        let resp = self.write(&request_id, txn).await?;
        let (deleted, prev_kvs) = match resp.results.into_iter().next() {
            Some(OpResult::Delete { deleted, prev_kvs }) => {
                (deleted, prev_kvs.into_iter().map(Into::into).collect())
            }
            _ => (0, vec![]),
        };
        Ok(Response::new(pb::DeleteResponse {
            header: Some(self.header(resp.revision)),
            deleted,
            prev_kvs,
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(node = self.id))]
    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let caller = Caller::of(&req);
        let r = req.into_inner();
        let request_id = r.request_id.clone();
        let txn = convert::txn(r)?;
        caller.txn(&txn)?;
        // A read-only txn still goes through the log: it is linearizable by construction.
        let resp = self.write(&request_id, txn).await?;
        let header = self.header(resp.revision);
        let responses = resp
            .results
            .into_iter()
            .map(|r| convert::response_op(r, &header))
            .collect();
        Ok(Response::new(pb::TxnResponse {
            header: Some(header),
            succeeded: resp.succeeded,
            responses,
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let caller = Caller::of(&req);
        let r = req.into_inner();
        // Events of keys the caller may not read are left out.
        let hidden = caller.hidden(&kv::KeyRange::prefix(r.prefix.clone()));
        if r.start_revision < 0 {
            return Err(Status::invalid_argument(
                "start_revision must not be negative",
            ));
        }
        let reader = self.reader.clone();
        let mut revisions = reader.subscribe();
        let mut next = if r.start_revision > 0 {
            r.start_revision
        } else {
            reader.revision() + 1
        };
        let compact = reader.compact_revision();
        if next <= compact {
            return Err(Status::out_of_range(format!(
                "revision {next} has been compacted; the oldest available is {}",
                compact + 1
            )));
        }
        let (tx, rx) = mpsc::channel(64);
        let (id, prefix, want_prev) = (self.id, r.prefix, r.prev_kv);
        let term = self.raft.metrics().borrow().current_term;
        tokio::spawn(async move {
            loop {
                let current = *revisions.borrow_and_update();
                while next <= current {
                    // History is read from RocksDB on a blocking thread, never on the
                    // threads that serve every other call.
                    let (r2, p2) = (reader.clone(), prefix.clone());
                    let read = tokio::task::spawn_blocking(move || r2.events(next, &p2, 1024));
                    let (batch, scanned) = match read.await {
                        Ok(Ok(x)) => x,
                        Ok(Err(e)) => {
                            let _ = tx.send(Err(convert::read_error(e))).await;
                            return;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                            return;
                        }
                    };
                    for (rev, events) in batch {
                        let events: Vec<pb::Event> = events
                            .into_iter()
                            .filter(|e| !hidden.iter().any(|p| e.kv.key.starts_with(p)))
                            .map(|e| pb::Event {
                                r#type: match e.kind {
                                    kv::EventKind::Put => pb::event::EventType::Put as i32,
                                    kv::EventKind::Delete => pb::event::EventType::Delete as i32,
                                },
                                kv: Some(e.kv.into()),
                                prev_kv: if want_prev {
                                    e.prev_kv.map(Into::into)
                                } else {
                                    None
                                },
                            })
                            .collect();
                        if events.is_empty() {
                            continue;
                        }
                        let header = pb::Header {
                            revision: rev,
                            member_id: id,
                            raft_term: term,
                        };
                        if tx
                            .send(Ok(pb::WatchResponse {
                                header: Some(header),
                                events,
                            }))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    if scanned < next {
                        break; // history not there yet (snapshot being installed); wait
                    }
                    next = scanned + 1;
                }
                tokio::select! {
                    changed = revisions.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let m = self.raft.metrics().borrow().clone();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let leader_addr = m
            .current_leader
            .and_then(|l| {
                m.membership_config
                    .membership()
                    .get_node(&l)
                    .map(|n| n.addr.clone())
            })
            .unwrap_or_default();
        let committed = self
            .raft
            .with_raft_state(|s| s.committed.map(|l| l.index))
            .await
            .unwrap_or(None);
        let initialized = m.membership_config.membership().nodes().next().is_some();
        Ok(Response::new(pb::StatusResponse {
            id: self.id,
            addr: self.addr.clone(),
            role: role.into(),
            leader_id: m.current_leader,
            leader_addr,
            term: m.current_term,
            last_log_index: m.last_log_index,
            committed,
            applied: m.last_applied.map(|l| l.index),
            members: self.members(),
            last_snapshot_index: m.snapshot.map(|l| l.index),
            revision: self.reader.revision(),
            compact_revision: self.reader.compact_revision(),
            initialized,
        }))
    }

    async fn initialize(
        &self,
        req: Request<pb::InitializeRequest>,
    ) -> Result<Response<pb::InitializeResponse>, Status> {
        let members = req.into_inner().members;
        if !members.contains_key(&self.id) {
            return Err(Status::invalid_argument(format!(
                "the initial members must include this node ({})",
                self.id
            )));
        }
        let nodes: BTreeMap<NodeId, BasicNode> = members
            .into_iter()
            .map(|(id, addr)| (id, BasicNode::new(addr)))
            .collect();
        self.raft.initialize(nodes).await.map_err(|e| match e {
            openraft::error::RaftError::APIError(e) => Status::failed_precondition(e.to_string()),
            openraft::error::RaftError::Fatal(f) => Status::unavailable(f.to_string()),
        })?;
        Ok(Response::new(pb::InitializeResponse {}))
    }

    #[tracing::instrument(skip_all, fields(node = self.id))]
    async fn add_learner(
        &self,
        req: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let r = req.into_inner();
        if r.addr.is_empty() {
            return Err(Status::invalid_argument("address is empty"));
        }
        if self.raft.metrics().borrow().state != ServerState::Leader {
            let leader = self.raft.current_leader().await;
            let node = leader.and_then(|l| {
                self.raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .get_node(&l)
                    .cloned()
            });
            return Err(convert::forward(
                self.id,
                &openraft::error::ForwardToLeader {
                    leader_id: leader,
                    leader_node: node,
                },
            ));
        }
        // Refuse a node we cannot reach, or that is not who the caller says it is, before
        // anything is committed.
        match tokio::time::timeout(PROBE_TIMEOUT, client::probe(&r.addr)).await {
            Ok(Ok(st)) if st.id == r.id => {}
            Ok(Ok(st)) => {
                return Err(Status::failed_precondition(format!(
                    "the node at {} has id {}, not {}",
                    r.addr, st.id, r.id
                )))
            }
            Ok(Err(e)) => {
                return Err(Status::failed_precondition(format!(
                    "cannot reach node {} at {}: {e}",
                    r.id, r.addr
                )))
            }
            Err(_) => {
                return Err(Status::failed_precondition(format!(
                    "cannot reach node {} at {}: no answer in {PROBE_TIMEOUT:?}",
                    r.id, r.addr
                )))
            }
        }
        let fut = self.raft.add_learner(r.id, BasicNode::new(r.addr), true);
        match tokio::time::timeout(MEMBERSHIP_TIMEOUT, fut).await {
            Ok(res) => res.map_err(|e| convert::write_error(self.id, e))?,
            Err(_) => {
                return Err(Status::deadline_exceeded(
                    "learner added but not caught up yet; check `stratus meta status`",
                ))
            }
        };
        Ok(Response::new(pb::MembershipResponse {
            members: self.members(),
        }))
    }

    #[tracing::instrument(skip_all, fields(node = self.id))]
    async fn change_membership(
        &self,
        req: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let r = req.into_inner();
        let members = self.members();
        let known = |id: &NodeId| members.iter().find(|m| m.id == *id);
        for id in r.add_voters.iter().chain(&r.remove) {
            if known(id).is_none() {
                return Err(Status::not_found(format!(
                    "node {id} is not a member; add it as a learner first"
                )));
            }
        }
        let voters: BTreeSet<NodeId> = members.iter().filter(|m| m.voter).map(|m| m.id).collect();
        let remove_voters: BTreeSet<NodeId> = r
            .remove
            .iter()
            .copied()
            .filter(|id| voters.contains(id))
            .collect();
        let remove_learners: BTreeSet<NodeId> = r
            .remove
            .iter()
            .copied()
            .filter(|id| !voters.contains(id))
            .collect();
        if !remove_voters.is_empty() && remove_voters.len() >= voters.len() + r.add_voters.len() {
            return Err(Status::failed_precondition(
                "refusing to remove every voter",
            ));
        }
        let mut changes: Vec<ChangeMembers<NodeId, BasicNode>> = Vec::new();
        let promote: BTreeSet<NodeId> = r
            .add_voters
            .iter()
            .copied()
            .filter(|id| !voters.contains(id))
            .collect();
        if !promote.is_empty() {
            changes.push(ChangeMembers::AddVoterIds(promote));
        }
        if !remove_voters.is_empty() {
            changes.push(ChangeMembers::RemoveVoters(remove_voters));
        }
        if !remove_learners.is_empty() {
            changes.push(ChangeMembers::RemoveNodes(remove_learners));
        }
        for change in changes {
            let fut = self.raft.change_membership(change, false);
            match tokio::time::timeout(MEMBERSHIP_TIMEOUT, fut).await {
                Ok(res) => res.map_err(|e| convert::write_error(self.id, e))?,
                Err(_) => {
                    return Err(Status::deadline_exceeded(
                        "membership change still in progress; check `stratus meta status`",
                    ))
                }
            };
        }
        Ok(Response::new(pb::MembershipResponse {
            members: self.members(),
        }))
    }
}
