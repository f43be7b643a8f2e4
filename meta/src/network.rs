//! openraft's `RaftNetworkFactory` over tonic: one lazily connected channel per peer address,
//! openraft messages bincode-encoded in the `Raft` gRPC service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use stratus_proto::raft::raft_client::RaftClient;
use stratus_proto::raft::RaftRequest;
use tonic::transport::Channel;

use crate::{NodeId, TypeConfig};

/// Largest gRPC message between nodes (a batch of entries or a snapshot chunk).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

pub use stratus_client::meta::channel;

/// Hands openraft a connection per target, sharing channels by address.
#[derive(Clone, Default)]
pub struct Network {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Network {
    fn client(&self, addr: &str) -> Result<RaftClient<Channel>, tonic::transport::Error> {
        let mut map = self.channels.lock().expect("lock");
        let ch = match map.get(addr) {
            Some(ch) => ch.clone(),
            None => {
                let ch = channel(addr)?;
                map.insert(addr.to_string(), ch.clone());
                ch
            }
        };
        Ok(RaftClient::new(ch)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Conn;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        Conn {
            target,
            addr: node.addr.clone(),
            client: self.client(&node.addr).map_err(|e| e.to_string()),
        }
    }
}

/// A connection to one peer.
pub struct Conn {
    target: NodeId,
    addr: String,
    client: Result<RaftClient<Channel>, String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

impl Conn {
    async fn call<Req, Resp, E>(
        &mut self,
        kind: &'static str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => {
                return Err(RPCError::Unreachable(Unreachable::new(&Msg(format!(
                    "{}: {e}",
                    self.addr
                )))))
            }
        };
        let payload =
            bincode::serialize(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = client;
        let request = RaftRequest { payload };
        let fut = async move {
            match kind {
                "append" => client.append_entries(request).await,
                "vote" => client.vote(request).await,
                _ => client.install_snapshot(request).await,
            }
        };
        let reply = match tokio::time::timeout(option.hard_ttl(), fut).await {
            Err(_) => {
                return Err(RPCError::Network(NetworkError::new(&Msg(format!(
                    "{kind} to {} timed out",
                    self.addr
                )))))
            }
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                return Err(RPCError::Unreachable(Unreachable::new(&Msg(format!(
                    "{}: {}",
                    self.addr,
                    status.message()
                )))))
            }
            Ok(Err(status)) => {
                return Err(RPCError::Network(NetworkError::new(&Msg(format!(
                    "{}: {status}",
                    self.addr
                )))))
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        let result: Result<Resp, RaftError<NodeId, E>> = bincode::deserialize(&reply.payload)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Conn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call("snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("vote", &rpc, &option).await
    }
}
