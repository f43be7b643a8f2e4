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

/// Connects to `addr` as a meta node (TLS, the Raft protocol by ALPN), sends `bytes`,
/// closes its sending side and returns everything the node sends back before it closes
/// (bounded).
async fn exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    use stratus_client::tls::{self, Identity, Role};
    let me = Identity::load(crate::common::pki()).unwrap();
    let s = tls::net::connect(&me, addr, Role::Meta, tls::ALPN_RAFT)
        .await
        .unwrap();
    send_and_read(s, bytes).await
}

/// The same bytes without TLS: the node answers nothing a Raft peer would read (the TLS
/// handshake fails first).
async fn exchange_plain(addr: &str, bytes: &[u8]) -> Vec<u8> {
    send_and_read(tokio::net::TcpStream::connect(addr).await.unwrap(), bytes).await
}

/// Sends `bytes`, closes the sending side, and returns what comes back before the node
/// closes (it closes without a TLS close_notify: what came before is the answer).
async fn send_and_read<S>(mut s: S, bytes: &[u8]) -> Vec<u8>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(bytes).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out))
        .await
        .expect("the node answers or closes");
    out
}

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut f = stratus_meta::peer::MAGIC.to_vec();
    f.extend_from_slice(&(body.len() as u32 + 1).to_be_bytes());
    f.push(kind);
    f.extend_from_slice(body);
    f
}

/// Garbage on the Raft peer transport (which shares the node's port with gRPC) gets an error
/// answer or a closed connection, never a crash; Raft and clients carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_peer_port_is_refused_and_raft_carries_on() {
    let c = Cluster::start(3, &[]).await;
    let client = c.client();
    client.put("before", "1").await.unwrap();
    for node in c.nodes.values() {
        let addr = node.addr.as_str();
        // An unknown request kind and an undecodable AppendEntries: an error answer
        // (status 1) that says what was wrong, then the node closes.
        for (kind, why) in [(9u8, "unknown request kind"), (1, "bad raft payload")] {
            let answer = exchange(addr, &frame(kind, b"not bincode")).await;
            assert!(answer.len() > 5, "an answer to kind {kind}: {answer:?}");
            assert_eq!(answer[4], 1, "status byte says error");
            let msg = String::from_utf8_lossy(&answer[5..]);
            assert!(msg.contains(why), "{msg}");
        }
        // A frame longer than the limit, a truncated frame, a bare magic, plain HTTP/1
        // garbage: closed without an answer frame (gRPC may answer HTTP/1 with an error).
        let mut huge = stratus_meta::peer::MAGIC.to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(exchange(addr, &huge).await.is_empty());
        let mut cut = frame(1, b"0123456789");
        cut.truncate(cut.len() - 4);
        assert!(exchange(addr, &cut).await.is_empty());
        assert!(exchange(addr, stratus_meta::peer::MAGIC).await.is_empty());
        exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        // Without TLS, even a well-formed request gets nothing but a TLS alert (0x15).
        let plain = exchange_plain(addr, &frame(1, b"not bincode")).await;
        assert!(
            plain.is_empty() || plain[0] == 0x15,
            "a plain peer was answered: {plain:?}"
        );
    }
    client.put("after", "2").await.expect("writes still commit");
    for id in c.nodes.keys() {
        c.caught_up(*id).await;
    }
    assert_eq!(
        client.get("after").await.unwrap().unwrap().value,
        b"2".to_vec()
    );
}
