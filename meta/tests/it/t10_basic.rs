//! A 3-node cluster has one leader; writes through any node succeed; a read after a write
//! sees it; status reports the Raft state; reads at an old revision see the old value.

use stratus_proto::meta as pb;

use crate::common::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_any_node_and_read_your_writes() {
    let c = Cluster::start(3, &[]).await;
    let leader = c.leader().await;
    let mut leaders = 0;
    for id in 1..=3 {
        let st = c.status(id).await.unwrap();
        assert_eq!(st.leader_id, Some(leader));
        assert_eq!(st.members.iter().filter(|m| m.voter).count(), 3);
        leaders += (st.role == "leader") as usize;
    }
    assert_eq!(leaders, 1, "exactly one leader");

    // Each node, as the only endpoint a client knows, accepts writes and serves the read.
    for id in 1..=3 {
        let client = c.client_of(id);
        let key = format!("via/{id}");
        let put = client
            .put(key.clone(), format!("value-{id}"))
            .await
            .unwrap();
        let got = client
            .get(key.clone())
            .await
            .unwrap()
            .expect("read after write");
        assert_eq!(got.value, format!("value-{id}").into_bytes());
        assert_eq!(got.mod_revision, put.header.unwrap().revision);
    }

    // Versions, old revisions and prefix ranges.
    let client = c.client();
    let r1 = client
        .put("k", "one")
        .await
        .unwrap()
        .header
        .unwrap()
        .revision;
    let r2 = client
        .put("k", "two")
        .await
        .unwrap()
        .header
        .unwrap()
        .revision;
    assert_eq!(r2, r1 + 1, "one revision per write");
    let now = client.get("k").await.unwrap().unwrap();
    assert_eq!((now.version, now.create_revision), (2, r1));
    let old = client
        .get_req(pb::GetRequest {
            key: b"k".to_vec(),
            revision: r1,
            serializable: false,
        })
        .await
        .unwrap();
    assert_eq!(old.kv.unwrap().value, b"one");
    let range = client.range_prefix("via/", 0).await.unwrap();
    assert_eq!(
        range
            .kvs
            .iter()
            .map(|kv| kv.key.clone())
            .collect::<Vec<_>>(),
        vec![b"via/1".to_vec(), b"via/2".to_vec(), b"via/3".to_vec()]
    );
    let limited = client.range_prefix("via/", 2).await.unwrap();
    assert!(limited.more && limited.kvs.len() == 2 && limited.count == 3);
    let del = client.delete("via/", true).await.unwrap();
    assert_eq!(del.deleted, 3);
    assert!(client.get("via/1").await.unwrap().is_none());

    // Every node converges on the same revision.
    let rev = client.revision().await.unwrap();
    for id in 1..=3 {
        c.caught_up(id).await;
        assert_eq!(c.status(id).await.unwrap().revision, rev);
    }
}

/// A range read answers at most DEFAULT_RANGE_LIMIT keys at a time (decoding only that
/// page); a client asking for every key of a prefix gets them all, in order, in pages read
/// at one revision, and deleted in one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_prefixes_are_read_in_pages() {
    let c = Cluster::start(1, &[]).await;
    let client = c.client();
    let n = stratus_core::limits::DEFAULT_RANGE_LIMIT + 100;
    let keys: Vec<String> = (0..n).map(|i| format!("many/{i:06}")).collect();
    let txns = keys.chunks(100).map(|chunk| {
        let client = client.clone();
        let success = chunk
            .iter()
            .map(|k| pb::RequestOp {
                request: Some(pb::request_op::Request::Put(pb::PutRequest {
                    key: k.clone().into_bytes(),
                    value: b"v".to_vec(),
                    ..Default::default()
                })),
            })
            .collect();
        async move {
            client
                .txn(pb::TxnRequest {
                    success,
                    ..Default::default()
                })
                .await
                .unwrap()
        }
    });
    futures::future::join_all(txns).await;
    let one_page = client
        .range(pb::RangeRequest {
            key: b"many/".to_vec(),
            prefix: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        one_page.kvs.len(),
        stratus_core::limits::DEFAULT_RANGE_LIMIT
    );
    assert!(one_page.more);
    assert_eq!(one_page.count, n as i64);
    let all = client.range_prefix("many/", 0).await.unwrap();
    assert!(!all.more);
    let got: Vec<String> = all
        .kvs
        .iter()
        .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
        .collect();
    assert_eq!(got, keys);
    // A prefix delete scans: it is applied on a blocking thread, off the node's one
    // runtime thread, and removes every key once.
    let deleted = client.delete("many/", true).await.unwrap();
    assert_eq!(deleted.deleted, n as i64);
    assert!(client
        .range_prefix("many/", 0)
        .await
        .unwrap()
        .kvs
        .is_empty());
}
