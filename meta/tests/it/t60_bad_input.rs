//! Bad input gets clear errors and changes nothing: oversized key/value/txn, malformed
//! compares, future revisions, membership changes to an unreachable address, and requests to
//! a stopped node.

use std::time::Duration;

use stratus_proto::meta as pb;
use stratus_proto::meta::compare::{Result as Cmp, Target};
use tonic::Code;

use crate::common::Cluster;

fn put_op(key: Vec<u8>, value: Vec<u8>) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::Put(pb::PutRequest {
            key,
            value,
            ..Default::default()
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_nothing_is_half_applied() {
    let mut c = Cluster::start(3, &[]).await;
    let client = c.client();
    let before = client.revision().await.unwrap();

    let err = client.put(vec![b'k'; 4097], "v").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.to_string().contains("4096"), "{err}");
    let err = client
        .put("k", vec![0u8; 1024 * 1024 + 1])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.to_string().contains("value"), "{err}");
    let err = client.put("", "v").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let many = pb::TxnRequest {
        success: (0..129)
            .map(|i| put_op(format!("t/{i}").into_bytes(), b"v".to_vec()))
            .collect(),
        ..Default::default()
    };
    let err = client.txn(many).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.to_string().contains("128"), "{err}");

    // One bad op in an otherwise fine txn: nothing of it is applied.
    let mut ops: Vec<_> = (0..10)
        .map(|i| put_op(format!("t/{i}").into_bytes(), b"v".to_vec()))
        .collect();
    ops.push(put_op(b"t/big".to_vec(), vec![0u8; 1024 * 1024 + 1]));
    let err = client
        .txn(pb::TxnRequest {
            success: ops,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    for compare in [
        pb::Compare {
            result: Cmp::Greater as i32,
            key: b"k".to_vec(),
            target: Some(Target::Exists(true)),
        },
        pb::Compare {
            result: Cmp::Equal as i32,
            key: b"k".to_vec(),
            target: None,
        },
        pb::Compare {
            result: 42,
            key: b"k".to_vec(),
            target: Some(Target::Version(1)),
        },
    ] {
        let txn = pb::TxnRequest {
            compare: vec![compare],
            success: vec![put_op(b"t/x".to_vec(), b"v".to_vec())],
            ..Default::default()
        };
        let err = client.txn(txn).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.to_string().contains("malformed compare"), "{err}");
    }

    let err = client
        .get_req(pb::GetRequest {
            key: b"k".to_vec(),
            revision: before + 1000,
            serializable: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange);

    assert_eq!(
        client.revision().await.unwrap(),
        before,
        "no bad request changed anything"
    );
    assert_eq!(client.range_prefix("t/", 0).await.unwrap().count, 0);

    // Membership: an unreachable address is refused before anything is committed.
    let err = client.add_learner(9, "127.0.0.1:1").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.to_string().contains("cannot reach"), "{err}");
    let err = client.change_membership(vec![9], vec![]).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let st = c.status(c.leader().await).await.unwrap();
    assert_eq!(st.members.len(), 3, "membership unchanged");

    // A stopped node: a client that knows only it gives up with UNAVAILABLE, not a hang.
    let leader = c.leader().await;
    let stopped = (1..=3).find(|id| *id != leader).unwrap();
    let lonely = c.client_of(stopped).with_timeout(Duration::from_secs(2));
    c.kill(stopped);
    let t = tokio::time::Instant::now();
    let err = lonely.put("x", "y").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(t.elapsed() < Duration::from_secs(30));

    // The cluster is still fine.
    client.put("still", "fine").await.unwrap();
}
