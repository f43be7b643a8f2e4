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
    let local = c.local_prefix(old_leader, "gc/").await;
    assert_eq!(local, kvs, "the old leader's own copy matches");
}

/// Every member's WAL files are recycled (`--wal-bytes` small enough that they roll every
/// few hundred writes): a reused file holds the previous use's records after the new ones.
/// kill -9 the whole cluster at once while 16 clients write; on restart each member replays
/// its reused WAL. Every acknowledged write is there with its value, applied once, on every
/// member's own copy, and nothing is there that no client sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_killed_over_recycled_wals_keeps_every_ack_once() {
    const WRITERS: usize = 16;
    let mut c = Cluster::start(3, &["--wal-bytes", "262144"]).await;
    let client = c.client();
    // key -> (value, acknowledged), recorded before each put is sent.
    let sent = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let acks = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (client, sent, acks) = (client.clone(), sent.clone(), acks.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let k = format!("rw/{w:02}/{i:06}");
                let v = format!("value-{w}-{i}-{}", "x".repeat(200));
                sent.lock().unwrap().insert(k.clone(), (v.clone(), false));
                if client.put(k.clone(), v).await.is_ok() {
                    sent.lock().unwrap().get_mut(&k).unwrap().1 = true;
                    acks.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    // Write until every member has reused a WAL file, and then some more into it.
    let logs: Vec<_> = c
        .nodes
        .values()
        .map(|n| n.dir.join("db").join("LOG"))
        .collect();
    eventually("every member reusing a recycled WAL file", || async {
        logs.iter()
            .all(|l| std::fs::read_to_string(l).is_ok_and(|t| t.contains("from recycle list")))
            .then_some(())
    })
    .await;
    let seen = acks.load(Ordering::SeqCst);
    eventually("200 more acknowledged writes", || async {
        (acks.load(Ordering::SeqCst) >= seen + 200).then_some(())
    })
    .await;
    for id in [1, 2, 3] {
        c.kill(id);
    }
    for w in &writers {
        w.abort();
    }
    for w in writers {
        let _ = w.await;
    }
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let acked = sent.values().filter(|(_, ok)| *ok).count();
    assert!(acked > 200, "only {acked} writes acknowledged");

    for id in [1, 2, 3] {
        c.spawn(id).await;
    }
    c.leader().await;
    let client = c.client();
    client
        .put("after/restart", "ok")
        .await
        .expect("writes continue");
    let mut copies = Vec::new();
    for id in [1, 2, 3] {
        c.caught_up(id).await;
        let kvs = c.local_prefix(id, "rw/").await;
        let present: std::collections::HashSet<_> = kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key).to_string())
            .collect();
        for kv in &kvs {
            let key = String::from_utf8_lossy(&kv.key).to_string();
            let (v, _) = sent
                .get(&key)
                .unwrap_or_else(|| panic!("node {id} holds {key}, which no client sent"));
            assert_eq!(&kv.value, v.as_bytes(), "node {id}: {key}");
            assert_eq!(kv.version, 1, "node {id}: {key} was applied more than once");
        }
        for (k, (_, ok)) in &sent {
            assert!(
                !ok || present.contains(k),
                "node {id} lost acknowledged {k}"
            );
        }
        copies.push(kvs);
    }
    assert_eq!(copies[0], copies[1], "members 1 and 2 hold the same keys");
    assert_eq!(copies[0], copies[2], "members 1 and 3 hold the same keys");
}
