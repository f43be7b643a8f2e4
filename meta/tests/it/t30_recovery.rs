//! A killed follower restarts and catches up from the log; a follower whose data directory
//! is wiped is removed, re-added as a learner, receives a snapshot (the leader's log has been
//! purged past it) and is promoted back to voter. The first time, it crashes half-way
//! through loading that snapshot; restarted, it finishes loading it from its file.

use crate::common::{eventually, Cluster};

// Snapshot every 100 entries and keep 10 behind it, so the log is purged early.
const SNAPSHOT_ARGS: [&str; 4] = ["--snapshot-logs", "100", "--keep-logs", "10"];

async fn write_keys(c: &Cluster, prefix: &str, n: usize) {
    let client = c.client();
    for i in 0..n {
        client
            .put(format!("{prefix}/{i:04}"), format!("v{i}"))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_follower_catches_up_and_wiped_follower_gets_a_snapshot() {
    let mut c = Cluster::start(3, &SNAPSHOT_ARGS).await;
    let leader = c.leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();

    // 1. Kill a follower, write while it is down, restart it: it catches up.
    c.kill(follower);
    write_keys(&c, "down", 150).await;
    c.spawn(follower).await;
    c.caught_up(follower).await;
    let st = c.status(follower).await.unwrap();
    assert_eq!(st.revision, c.client().revision().await.unwrap());

    // 2. Wipe a follower's data dir; remove it from the cluster.
    let leader = c.leader().await;
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    c.wipe(victim);
    let members = c
        .client()
        .change_membership(vec![], vec![victim])
        .await
        .unwrap();
    assert!(members.members.iter().all(|m| m.id != victim));
    // Enough writes for the leader to snapshot and purge its log.
    write_keys(&c, "gone", 250).await;
    let leader = c.leader().await;
    let purged = eventually("leader snapshot", || async {
        c.status(leader).await?.last_snapshot_index
    })
    .await;
    assert!(purged > 100);

    // 3. Bring the node back empty, add it as a learner: only a snapshot can bring it up to
    //    date. It aborts half-way through loading it (its state cleared, part of the
    //    snapshot written); restarted, it finishes the load from the file it kept.
    c.spawn_env(victim, &[("FAILPOINTS", "snapshot-mid-install=return")])
        .await;
    let addr = c.nodes[&victim].addr.clone();
    c.client()
        .add_learner(victim, &addr)
        .await
        .expect("add learner");
    assert!(
        c.exited(victim).await,
        "the learner crashed at its crash point"
    );
    let log_path = c.nodes[&victim].dir.with_extension("log");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("crash point snapshot-mid-install"), "{log}");
    c.spawn(victim).await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("finished an interrupted snapshot install"),
        "the restarted learner loaded the snapshot it had kept"
    );
    let st = eventually("learner installs snapshot", || async {
        c.status(victim)
            .await
            .filter(|s| s.last_snapshot_index.is_some())
    })
    .await;
    assert_eq!(st.role, "learner");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("installed snapshot"),
        "the learner was brought up by a streamed snapshot"
    );
    c.client()
        .change_membership(vec![victim], vec![])
        .await
        .expect("promote");
    c.caught_up(victim).await;
    let st = c.status(victim).await.unwrap();
    assert!(st.members.iter().any(|m| m.id == victim && m.voter));
    // Its state machine holds keys written before and after the wipe.
    let local = stratus_client::meta::MetaClient::new(&[&addr]).unwrap();
    for key in ["down/0000", "down/0149", "gone/0000", "gone/0249"] {
        let r = local
            .get_req(stratus_proto::meta::GetRequest {
                key: key.into(),
                revision: 0,
                serializable: true,
            })
            .await
            .unwrap();
        assert!(r.kv.is_some(), "{key} missing on the re-added node");
    }
}
