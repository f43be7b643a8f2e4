//! What a replicator asks of a peer device: its partition hashes, many partitions per
//! request, and its suffix hashes of one partition.
//!
//! Each of these calls is bounded by [`RPC_TIMEOUT`], so one stuck peer delays a pass by seconds,
//! not forever; a failed call is reported for the partitions it concerned and retried
//! by the next pass. Pushing copies is [`super::push`]'s.

use std::collections::HashMap;
use std::time::Duration;

use stratus_client::peers::MAX_MESSAGE_BYTES;
use stratus_core::ring::Device as RingDevice;
use stratus_proto::storage as pb;
use stratus_proto::storage::replication_client::ReplicationClient;
use tonic::transport::Channel;
use tonic::{Response, Status};

use super::service::MAX_BATCH_PARTS;
use crate::device::Space;
use crate::Node;

/// How long a hashes or summaries RPC may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// A peer's suffix hashes of one partition: suffix → hash.
pub(super) type Remote = HashMap<u32, Vec<u8>>;

/// The suffix hashes of a reply, by suffix.
fn from_pb(s: Vec<pb::SuffixHash>) -> Remote {
    s.into_iter().map(|s| (s.suffix, s.hash.to_vec())).collect()
}

/// A replication client of the node at `addr`, taking messages as large as peers send.
pub(super) fn client(node: &Node, addr: &str) -> Result<ReplicationClient<Channel>, Status> {
    Ok(ReplicationClient::new(node.peers.channel(addr)?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// Awaits an RPC for at most [`RPC_TIMEOUT`].
pub(super) async fn timed<T>(
    f: impl std::future::Future<Output = Result<Response<T>, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(RPC_TIMEOUT, f).await {
        Ok(r) => r.map(Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded("timed out")),
    }
}

/// A peer device's partition hashes of `parts` (empty: it holds nothing of one), in
/// requests of at most [`MAX_BATCH_PARTS`].
pub(super) async fn batch_digests(
    node: &Node,
    addr: &str,
    device: &str,
    space: Space,
    parts: &[u32],
) -> Result<HashMap<u32, Vec<u8>>, Status> {
    let mut c = client(node, addr)?;
    let mut out = HashMap::new();
    for chunk in parts.chunks(MAX_BATCH_PARTS) {
        let r = timed(c.batch_hashes(pb::BatchHashesRequest {
            device: device.to_string(),
            ring: space.ring().into(),
            parts: chunk.to_vec(),
            suffixes: false,
        }))
        .await?;
        for p in r.parts {
            out.insert(p.part, p.hash.to_vec());
        }
    }
    Ok(out)
}

/// A peer device's suffix hashes of one partition.
pub(super) async fn suffix_hashes(
    node: &Node,
    peer: &RingDevice,
    space: Space,
    part: u32,
) -> Result<Remote, Status> {
    let mut c = client(node, &peer.node)?;
    let r = timed(c.batch_hashes(pb::BatchHashesRequest {
        device: peer.name.clone(),
        ring: space.ring().into(),
        parts: vec![part],
        suffixes: true,
    }))
    .await?;
    Ok(r.parts
        .into_iter()
        .next()
        .map(|p| from_pb(p.suffixes))
        .unwrap_or_default())
}
