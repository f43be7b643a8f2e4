//! The node-to-node Raft service: decodes openraft messages and hands them to the local Raft.

use serde::de::DeserializeOwned;
use serde::Serialize;
use stratus_proto::raft::raft_server::Raft as RaftRpc;
use stratus_proto::raft::{RaftReply, RaftRequest};
use tonic::{Request, Response, Status};

use crate::Raft;

/// Serves the `Raft` gRPC service for one node.
pub struct RaftService {
    raft: Raft,
}

impl RaftService {
    /// Serve `raft`.
    pub fn new(raft: Raft) -> Self {
        RaftService { raft }
    }
}

fn decode<T: DeserializeOwned>(req: Request<RaftRequest>) -> Result<T, Status> {
    bincode::deserialize(&req.into_inner().payload)
        .map_err(|e| Status::invalid_argument(format!("bad raft payload: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Response<RaftReply>, Status> {
    let payload =
        bincode::serialize(v).map_err(|e| Status::internal(format!("encoding raft reply: {e}")))?;
    Ok(Response::new(RaftReply { payload }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        req: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let res = self.raft.append_entries(decode(req)?).await;
        encode(&res)
    }

    async fn vote(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let res = self.raft.vote(decode(req)?).await;
        encode(&res)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let res = self.raft.install_snapshot(decode(req)?).await;
        encode(&res)
    }
}
