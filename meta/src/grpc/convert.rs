//! Protobuf ↔ model conversions, and model/openraft errors → gRPC status.

use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::BasicNode;
use stratus_proto::meta as pb;
use tonic::Status;

use super::LEADER_HEADER;
use crate::kv::{
    self, CompareOp, InvalidRequest, KeyRange, Op, OpResult, RangeEnd, RangeQuery, Target,
};
use crate::store::state_machine::ReadError;
use crate::NodeId;

impl From<kv::KeyValue> for pb::KeyValue {
    fn from(kv: kv::KeyValue) -> Self {
        pb::KeyValue {
            key: kv.key,
            value: kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
        }
    }
}

impl From<pb::KeyValue> for kv::KeyValue {
    fn from(kv: pb::KeyValue) -> Self {
        kv::KeyValue {
            key: kv.key,
            value: kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
        }
    }
}

/// The key range a pb range request names. An empty key with `prefix` means every key; a
/// `range_end` of `\0` means every key from `key` on (etcd's convention).
pub fn key_range(key: Vec<u8>, prefix: bool, range_end: Vec<u8>) -> KeyRange {
    if prefix {
        KeyRange::prefix(key)
    } else if range_end == [0] {
        KeyRange {
            start: key,
            end: RangeEnd::Unbounded,
        }
    } else if !range_end.is_empty() {
        KeyRange {
            start: key,
            end: RangeEnd::Before(range_end),
        }
    } else {
        KeyRange::single(key)
    }
}

/// A pb range request as a model query.
pub fn range_query(r: pb::RangeRequest) -> Result<RangeQuery, Status> {
    if r.limit < 0 {
        return Err(Status::invalid_argument("limit must not be negative"));
    }
    Ok(RangeQuery {
        range: key_range(r.key, r.prefix, r.range_end),
        limit: r.limit as usize,
        keys_only: r.keys_only,
        count_only: r.count_only,
    })
}

/// A pb put as a model op.
pub fn put_op(p: pb::PutRequest) -> Op {
    Op::Put {
        key: p.key,
        value: p.value,
        prev_kv: p.prev_kv,
    }
}

/// A pb delete as a model op.
pub fn delete_op(d: pb::DeleteRequest) -> Op {
    let range = if d.prefix {
        KeyRange::prefix(d.key)
    } else {
        KeyRange::single(d.key)
    };
    Op::Delete {
        range,
        prev_kv: d.prev_kv,
    }
}

fn request_op(op: pb::RequestOp) -> Result<Op, Status> {
    match op.request {
        Some(pb::request_op::Request::Range(r)) => Ok(Op::Range(range_query(r)?)),
        Some(pb::request_op::Request::Put(p)) => Ok(put_op(p)),
        Some(pb::request_op::Request::Delete(d)) => Ok(delete_op(d)),
        None => Err(Status::invalid_argument("txn op has no request")),
    }
}

fn compare(c: pb::Compare) -> Result<kv::Compare, Status> {
    let key_name = kv::lossy(&c.key);
    let op = match pb::compare::Result::try_from(c.result) {
        Ok(pb::compare::Result::Equal) => CompareOp::Equal,
        Ok(pb::compare::Result::NotEqual) => CompareOp::NotEqual,
        Ok(pb::compare::Result::Greater) => CompareOp::Greater,
        Ok(pb::compare::Result::Less) => CompareOp::Less,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "malformed compare on key {key_name:?}: unknown result {}",
                c.result
            )))
        }
    };
    use pb::compare::Target as T;
    let target = match c.target {
        Some(T::Version(v)) => Target::Version(v),
        Some(T::CreateRevision(v)) => Target::CreateRevision(v),
        Some(T::ModRevision(v)) => Target::ModRevision(v),
        Some(T::Value(v)) => Target::Value(v),
        Some(T::Exists(v)) => Target::Exists(v),
        None => {
            return Err(Status::invalid_argument(format!(
                "malformed compare on key {key_name:?}: no target"
            )))
        }
    };
    Ok(kv::Compare {
        key: c.key,
        op,
        target,
    })
}

/// A pb txn as a model txn (not yet validated).
pub fn txn(t: pb::TxnRequest) -> Result<kv::Txn, Status> {
    Ok(kv::Txn {
        compares: t
            .compare
            .into_iter()
            .map(compare)
            .collect::<Result<_, _>>()?,
        success: t
            .success
            .into_iter()
            .map(request_op)
            .collect::<Result<_, _>>()?,
        failure: t
            .failure
            .into_iter()
            .map(request_op)
            .collect::<Result<_, _>>()?,
    })
}

/// A model op result as a pb response op.
pub fn response_op(r: OpResult, header: &pb::Header) -> pb::ResponseOp {
    use pb::response_op::Response as R;
    let response = match r {
        OpResult::Range { kvs, more, count } => R::Range(pb::RangeResponse {
            header: Some(*header),
            kvs: kvs.into_iter().map(Into::into).collect(),
            more,
            count,
        }),
        OpResult::Put { prev } => R::Put(pb::PutResponse {
            header: Some(*header),
            prev_kv: prev.map(Into::into),
        }),
        OpResult::Delete { deleted, prev_kvs } => R::Delete(pb::DeleteResponse {
            header: Some(*header),
            deleted,
            prev_kvs: prev_kvs.into_iter().map(Into::into).collect(),
        }),
    };
    pb::ResponseOp {
        response: Some(response),
    }
}

/// A request rejected by validation.
pub fn invalid(e: InvalidRequest) -> Status {
    Status::invalid_argument(e.to_string())
}

/// A read the state machine refused.
pub fn read_error(e: ReadError) -> Status {
    match e {
        ReadError::Compacted { .. } | ReadError::Future { .. } => {
            Status::out_of_range(e.to_string())
        }
        ReadError::Storage(_) => Status::internal(e.to_string()),
    }
}

/// "Not the leader": UNAVAILABLE, with the leader's address in metadata when known.
pub fn forward(me: NodeId, f: &ForwardToLeader<NodeId, BasicNode>) -> Status {
    match (&f.leader_id, &f.leader_node) {
        (Some(id), Some(node)) => {
            let mut st = Status::unavailable(format!(
                "node {me} is not the leader; the leader is node {id} at {}",
                node.addr
            ));
            if let Ok(v) = node.addr.parse() {
                st.metadata_mut().insert(LEADER_HEADER, v);
            }
            st
        }
        _ => Status::unavailable(format!(
            "node {me} is not the leader and no leader is known yet; retry shortly"
        )),
    }
}

/// Errors of a client write or membership change.
pub fn write_error(
    me: NodeId,
    e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
) -> Status {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => forward(me, &f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            Status::failed_precondition(c.to_string())
        }
        RaftError::Fatal(f) => Status::unavailable(format!("node {me} is stopping: {f}")),
    }
}

/// Errors of a linearizable read check.
pub fn read_check_error(
    me: NodeId,
    e: RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>,
) -> Status {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => forward(me, &f),
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
            Status::unavailable(format!("leader {me} cannot reach a quorum: {q}"))
        }
        RaftError::Fatal(f) => Status::unavailable(format!("node {me} is stopping: {f}")),
    }
}
