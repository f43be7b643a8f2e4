//! kill -9 the leader while 8 clients write 1,000 keys: every acknowledged write is present
//! afterwards with its value, a new leader is elected and writes continue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::common::{eventually, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_loses_no_acknowledged_write() {
    let mut c = Cluster::start(3, &[]).await;
    let old_leader = c.leader().await;
    let client = c.client();
    let acks = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, acks) = (client.clone(), acks.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..125 {
                let (k, v) = (format!("lk/{w}/{i:03}"), format!("value-{w}-{i}"));
                if client.put(k.clone(), v.clone()).await.is_ok() {
                    acks.fetch_add(1, Ordering::SeqCst);
                    acked.push((k, v));
                }
            }
            acked
        }));
    }
    // Kill the leader once a fifth of the writes are in: mid-stream, whatever the speed.
    eventually("200 acknowledged writes", || async {
        (acks.load(Ordering::SeqCst) >= 200).then_some(())
    })
    .await;
    c.kill(old_leader);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(
        acked.len() >= 990,
        "the client retries through the election; only {} of 1000 acknowledged",
        acked.len()
    );

    let new_leader = c.leader().await;
    assert_ne!(new_leader, old_leader, "a new leader is elected");
    let client = c.client();
    for (k, v) in &acked {
        let kv = client
            .get(k.clone())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {k} lost"));
        assert_eq!(&kv.value, v.as_bytes());
    }
    client
        .put("after/kill", "ok")
        .await
        .expect("writes continue");

    // The old leader comes back as a follower and catches up.
    c.spawn(old_leader).await;
    c.caught_up(old_leader).await;
    assert_eq!(
        c.status(old_leader).await.unwrap().revision,
        client.revision().await.unwrap()
    );
}

/// 64 writers, each retrying every put with its own request id until it is acknowledged,
/// while the leader is killed: group commit puts many writes in one entry, so a lost or
/// doubled entry would lose or double many. Every write ends acknowledged, every value is
/// there, and each key was applied exactly once (version 1), retries included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_under_64_writers_keeps_every_ack_once() {
    const WRITERS: usize = 64;
    const EACH: usize = 40;
    let mut c = Cluster::start(3, &[]).await;
    let old_leader = c.leader().await;
    let client = c.client();
    let acks = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (client, acks) = (client.clone(), acks.clone());
        writers.push(tokio::spawn(async move {
            let mut retried = 0usize;
            for i in 0..EACH {
                let req = stratus_proto::meta::PutRequest {
                    key: format!("gc/{w:02}/{i:03}").into_bytes(),
                    value: format!("value-{w}-{i}").into_bytes(),
                    request_id: stratus_core::id::RequestId::fresh().0.to_vec(),
                    ..Default::default()
                };
                let deadline = tokio::time::Instant::now() + crate::common::WAIT;
                while let Err(e) = client.put_req(req.clone()).await {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "put {w}/{i} never acknowledged: {e}"
                    );
                    retried += 1;
                }
                acks.fetch_add(1, Ordering::SeqCst);
            }
            retried
        }));
    }
    eventually("a quarter of the writes acknowledged", || async {
        (acks.load(Ordering::SeqCst) >= WRITERS * EACH / 4).then_some(())
    })
    .await;
    c.kill(old_leader);
    let mut retried = 0;
    for w in writers {
        retried += w.await.unwrap();
    }
    assert_eq!(acks.load(Ordering::SeqCst), WRITERS * EACH);

    let new_leader = c.leader().await;
    assert_ne!(new_leader, old_leader, "a new leader is elected");
    let client = c.client();
    let kvs = client.range_prefix("gc/", 0).await.unwrap().kvs;
    assert_eq!(
        kvs.len(),
        WRITERS * EACH,
        "every acknowledged key is there ({retried} puts were retried)"
    );
    for kv in &kvs {
        let key = String::from_utf8_lossy(&kv.key).to_string();
        let mut parts = key.trim_start_matches("gc/").split('/');
        let (w, i): (usize, usize) = (
            parts.next().unwrap().parse().unwrap(),
            parts.next().unwrap().parse().unwrap(),
        );
        assert_eq!(kv.value, format!("value-{w}-{i}").into_bytes(), "{key}");
        assert_eq!(kv.version, 1, "{key} was applied more than once");
    }

    // The old leader comes back, catches up, and holds the same keys.
    c.spawn(old_leader).await;
    c.caught_up(old_leader).await;
    let revision = client.revision().await.unwrap();
    assert_eq!(c.status(old_leader).await.unwrap().revision, revision);
    let local = c
        .client_of(old_leader)
        .range(stratus_proto::meta::RangeRequest {
            key: b"gc/".to_vec(),
            prefix: true,
            serializable: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .kvs;
    assert_eq!(local, kvs, "the old leader's own copy matches");
}
