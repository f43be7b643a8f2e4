//! Txn: 8 clients increment one counter with compare-and-swap 100 times each → exactly 800.

use stratus_proto::meta as pb;
use stratus_proto::meta::compare::{Result as Cmp, Target};

use crate::common::Cluster;

fn put(key: &str, value: Vec<u8>) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::Put(pb::PutRequest {
            key: key.into(),
            value,
            ..Default::default()
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_swap_counter_is_exact() {
    let c = Cluster::start(3, &[]).await;
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let client = c.client_of(w % 3 + 1);
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..100 {
                loop {
                    let cur = client.get("counter").await.unwrap();
                    let (value, guard) = match &cur {
                        Some(kv) => (
                            String::from_utf8(kv.value.clone())
                                .unwrap()
                                .parse::<u64>()
                                .unwrap(),
                            Target::ModRevision(kv.mod_revision),
                        ),
                        None => (0, Target::Exists(false)),
                    };
                    let txn = pb::TxnRequest {
                        compare: vec![pb::Compare {
                            result: Cmp::Equal as i32,
                            key: b"counter".to_vec(),
                            target: Some(guard),
                        }],
                        success: vec![put("counter", (value + 1).to_string().into_bytes())],
                        ..Default::default()
                    };
                    if client.txn(txn).await.unwrap().succeeded {
                        break;
                    }
                    conflicts += 1;
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let kv = c.client().get("counter").await.unwrap().unwrap();
    assert_eq!(kv.value, b"800");
    assert_eq!(kv.version, 800, "every increment is one write");
    // Contention is real: with 8 writers some CAS attempts must have lost.
    assert!(conflicts > 0, "expected conflicting CAS attempts");

    // The else branch runs and reports the current value when the compare fails.
    let txn = pb::TxnRequest {
        compare: vec![pb::Compare {
            result: Cmp::Equal as i32,
            key: b"counter".to_vec(),
            target: Some(Target::Value(b"0".to_vec())),
        }],
        success: vec![put("counter", b"0".to_vec())],
        failure: vec![pb::RequestOp {
            request: Some(pb::request_op::Request::Range(pb::RangeRequest {
                key: b"counter".to_vec(),
                ..Default::default()
            })),
        }],
        ..Default::default()
    };
    let r = c.client().txn(txn).await.unwrap();
    assert!(!r.succeeded);
    match &r.responses[0].response {
        Some(pb::response_op::Response::Range(rr)) => assert_eq!(rr.kvs[0].value, b"800"),
        other => panic!("unexpected {other:?}"),
    }
}
