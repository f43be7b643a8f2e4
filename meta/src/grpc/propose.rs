//! Group commit on the leader: client writes that arrive while earlier ones are on their way
//! through Raft are proposed together, as one log entry with one append and one fsync on
//! each member.
//!
//! openraft 0.9's core appends an entry and waits for its fsync before it takes the next
//! request, so one entry per client write meant one fsync per write, one after another, on
//! the leader. The proposer keeps at most [`IN_FLIGHT`] proposals inside Raft; writes that
//! arrive meanwhile queue here and go together in the next one (at most
//! [`MAX_BATCH_WRITES`] writes or [`MAX_BATCH_BYTES`]). A lone write is proposed at once:
//! nothing waits for company, so a single writer sees no added latency.
//!
//! Each write keeps its own request id, revision and answer (see [`kv::Proposal`]); an
//! error of the proposal (not the leader, shutting down) is every write's error.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};
use tonic::Status;

use super::convert;
use crate::kv::{self, Proposal};
use crate::{NodeId, Raft};

/// Proposals inside Raft at once: one being appended and synced, one being replicated.
pub const IN_FLIGHT: usize = 2;
/// Most client writes in one proposal.
pub const MAX_BATCH_WRITES: usize = 512;
/// A proposal takes no further write once it holds this many bytes (a first write larger
/// than this goes alone).
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

struct Queued {
    req: kv::Request,
    size: usize,
    reply: oneshot::Sender<Result<kv::Response, Status>>,
}

/// The queue in front of this node's Raft. A proposal holds writes in arrival order; with
/// two proposals in flight, they may reach Raft in either order (they come from different
/// clients, which did not wait for each other).
pub struct Proposer {
    tx: mpsc::UnboundedSender<Queued>,
}

impl Proposer {
    /// Start the proposer task of node `id`; it ends when the proposer is dropped.
    pub fn start(id: NodeId, raft: Raft) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(id, raft, rx));
        Proposer { tx }
    }

    /// Propose `req` (with whatever else is waiting) and wait for its answer.
    pub async fn write(&self, req: kv::Request) -> Result<kv::Response, Status> {
        let stopping = || Status::unavailable("the meta node is stopping");
        let size = bincode::serialized_size(&req).unwrap_or(0) as usize;
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Queued { req, size, reply })
            .map_err(|_| stopping())?;
        answer.await.map_err(|_| stopping())?
    }
}

async fn run(id: NodeId, raft: Raft, mut rx: mpsc::UnboundedReceiver<Queued>) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut carried: Option<Queued> = None;
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(q) => q,
            None => match rx.recv().await {
                Some(q) => q,
                None => return,
            },
        };
        let mut bytes = first.size;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_WRITES {
            let Ok(q) = rx.try_recv() else { break };
            if bytes + q.size > MAX_BATCH_BYTES {
                carried = Some(q);
                break;
            }
            bytes += q.size;
            batch.push(q);
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (reqs, replies): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|q| (q.req, q.reply)).unzip();
            match raft.client_write(Proposal(reqs)).await {
                Ok(resp) => {
                    for (reply, answer) in replies.into_iter().zip(resp.data) {
                        let _ = reply.send(Ok(answer));
                    }
                }
                Err(e) => {
                    let status = convert::write_error(id, e);
                    for reply in replies {
                        let _ = reply.send(Err(status.clone()));
                    }
                }
            }
        });
    }
}
