//! openraft's `RaftNetworkFactory` over the peer transport ([`crate::peer`]): one lazily
//! opened TCP connection per openraft client (a replication stream or a vote round),
//! openraft messages bincode-encoded in its frames.

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::peer::{self, CallError, PeerConn};
use crate::{NodeId, TypeConfig};

/// Hands openraft a connection per target.
#[derive(Clone, Copy, Debug)]
pub struct Network;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Conn;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        Conn {
            target,
            conn: PeerConn::new(node.addr.clone()),
        }
    }
}

/// A connection to one peer.
pub struct Conn {
    target: NodeId,
    conn: PeerConn,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

impl Conn {
    async fn call<Req, Resp, E>(
        &mut self,
        kind: u8,
        req: &Req,
        entries: u64,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload =
            bincode::serialize(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if payload.len() >= peer::MAX_FRAME_BYTES {
            // openraft retries at once with fewer entries instead of resending this forever.
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint((entries / 2).max(1)),
            ));
        }
        let reply = match self.conn.call(kind, &payload, option.hard_ttl()).await {
            Ok(r) => r,
            Err(CallError::Unreachable(m)) => {
                return Err(RPCError::Unreachable(Unreachable::new(&Msg(m))))
            }
            Err(CallError::Network(m)) => {
                return Err(RPCError::Network(NetworkError::new(&Msg(m))))
            }
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            bincode::deserialize(&reply).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Conn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(peer::APPEND, &rpc, rpc.entries.len() as u64, &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(peer::SNAPSHOT, &rpc, 1, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(peer::VOTE, &rpc, 1, &option).await
    }
}
