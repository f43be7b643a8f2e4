//! Watch: every revision under a prefix arrives in order, with no gap and no duplicate,
//! across a leader kill (the client library resumes from its last revision elsewhere).

use std::collections::BTreeSet;

use tokio_stream::StreamExt;

use crate::common::{Cluster, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_leader_kill_without_gaps_or_duplicates() {
    let mut c = Cluster::start(3, &[]).await;
    let client = c.client();
    let start = client.revision().await.unwrap() + 1;
    let mut watch = client.watch("w/", start, false);

    let collector = tokio::spawn(async move {
        let mut revs = Vec::new();
        while let Some(msg) = watch.next().await {
            let msg = msg.expect("watch error");
            let rev = msg.header.unwrap().revision;
            for ev in &msg.events {
                assert!(
                    ev.kv.as_ref().unwrap().key.starts_with(b"w/"),
                    "event outside the prefix"
                );
            }
            revs.push(rev);
            if msg
                .events
                .iter()
                .any(|e| e.kv.as_ref().unwrap().key == b"w/done")
            {
                return revs;
            }
        }
        panic!("watch stream ended");
    });

    let writer = c.client();
    let mut acked = Vec::new();
    for i in 0..400 {
        // Interleave keys outside the prefix: the watcher must skip those revisions.
        writer.put(format!("other/{i}"), "x").await.unwrap();
        if let Ok(r) = writer.put(format!("w/{i:03}"), format!("{i}")).await {
            acked.push(r.header.unwrap().revision);
        }
        if i == 150 {
            let leader = c.leader().await;
            c.kill(leader);
        }
    }
    let done = writer
        .put("w/done", "")
        .await
        .unwrap()
        .header
        .unwrap()
        .revision;
    acked.push(done);

    let revs = tokio::time::timeout(WAIT, collector)
        .await
        .expect("watch delivered everything")
        .unwrap();
    assert!(
        revs.windows(2).all(|w| w[0] < w[1]),
        "revisions strictly increase: no duplicate, in order"
    );
    let got: BTreeSet<i64> = revs.iter().copied().collect();
    for r in &acked {
        assert!(
            got.contains(r),
            "acknowledged revision {r} missing from the watch"
        );
    }
    assert_eq!(*revs.last().unwrap(), done);

    // A fresh watch replaying the same range from history agrees exactly.
    let mut replay = c.client().watch("w/", start, false);
    let mut again = Vec::new();
    while again.last() != Some(&done) {
        let msg = tokio::time::timeout(WAIT, replay.next())
            .await
            .expect("replayed event")
            .unwrap()
            .unwrap();
        again.push(msg.header.unwrap().revision);
    }
    assert_eq!(again, revs);
}
