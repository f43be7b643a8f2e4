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
