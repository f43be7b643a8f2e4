//! Durability: the storage nodes' background workers heal the cluster by themselves.
//!
//! One cluster goes through, in order: a node killed with kill -9 while 8 clients upload
//! 1,000 objects (every acknowledged object survives, and once the node is back every
//! object is on all three primaries with no handoff copy left); objects deleted while a
//! node is down (they stay deleted: tombstones win; listings and account stats converge);
//! 20 objects with a flipped byte (the auditor quarantines exactly those, replicas restore
//! them, and no GET ever returns a corrupt byte); a wiped device (refilled from peers).
//! Then the expirer removes an object past its X-Delete-At, and the reclaimer drops
//! tombstones once they are older than the reclaim age.
//! A second cluster gets a new node with two devices and is rebalanced: data moves while
//! every object stays readable, the rebalance gate holds until it has, and the share of
//! objects that moved matches the rebalance's report. Every wait is bounded.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;

/// Far above what healing needs here (seconds, on a debug build with 2 shared cores).
const HEAL: Duration = Duration::from_secs(240);

fn body_for(i: u64) -> Vec<u8> {
    // Mostly small objects (inline in the record), every 50th a body file.
    let len = match i % 50 {
        0 => 150_000,
        _ => 1_000 + (i as usize % 7) * 300,
    };
    random_bytes(len, i)
}

/// The account part of the storage URL (`AUTH_test`).
fn account(s: &Session) -> String {
    s.url.rsplit('/').next().unwrap().to_string()
}

/// Uploads objects `{container}/o{i}` for i in `0..count` with `clients` concurrent
/// clients; runs `kill_after.1` once `kill_after.0` objects were acknowledged. Returns the
/// acknowledged indexes.
async fn upload_many(
    s: &Session,
    container: &str,
    count: u64,
    clients: usize,
    kill_after: Option<(usize, Box<dyn FnOnce() + Send>)>,
) -> Vec<u64> {
    let next = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (s, next, acked) = (s.clone(), next.clone(), acked.clone());
        let container = container.to_string();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let r = s
                    .req(reqwest::Method::PUT, &format!("{container}/o{i}"))
                    .body(body_for(i))
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status() == 201) {
                    acked.lock().unwrap().push(i);
                }
            }
        }));
    }
    if let Some((n, kill)) = kill_after {
        let deadline = std::time::Instant::now() + HEAL;
        while acked.lock().unwrap().len() < n {
            assert!(std::time::Instant::now() < deadline, "uploads stalled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::task::block_in_place(kill);
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut v = acked.lock().unwrap().clone();
    v.sort_unstable();
    v
}

async fn assert_intact(s: &Session, container: &str, objects: &[u64]) {
    for &i in objects {
        let r = s.get(&format!("{container}/o{i}")).await;
        assert_eq!(r.status(), 200, "{container}/o{i}");
        assert!(
            r.bytes().await.unwrap()[..] == body_for(i)[..],
            "{container}/o{i} comes back intact"
        );
    }
}

fn heal(c: &TestCluster, what: &str) {
    tokio::task::block_in_place(|| c.wait_healthy(HEAL, what));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_heals_itself() {
    let c = TestCluster::start(4, 2);
    let s = c.tester().await;
    let acct = account(&s);
    assert_eq!(s.put("c", "").await.status(), 201);

    // 1. kill -9 node 2 while 8 clients upload 1,000 objects.
    let dir = c.dir.clone();
    let kill: Box<dyn FnOnce() + Send> = Box::new(move || kill_pid_file(&dir.join("storage-2")));
    let acked = upload_many(&s, "c", 1000, 8, Some((150, kill))).await;
    // Every upload succeeds: a write whose primary dies goes to a handoff, and one that
    // loses a replica mid-body still has a quorum.
    assert_eq!(
        acked.len(),
        1000,
        "only {} of 1000 uploads were acknowledged with one node down",
        acked.len()
    );
    assert_intact(&s, "c", &acked).await;
    let h = c.health();
    assert!(
        !fully_healthy(&h),
        "with node 2 down the cluster cannot be fully healthy: {h:#}"
    );
    c.up_again();
    heal(&c, "after node 2 came back");
    for &i in acked.iter().step_by(40) {
        let states = c.primaries_state(&format!("/{acct}/c/o{i}"));
        assert_eq!(states.len(), 3);
        for st in &states {
            assert!(st.contains("bytes"), "o{i}: a primary holds {st:?}");
        }
    }

    // 2. Deletes while node 3 is down, and a container it misses entirely.
    c.kill_storage(3);
    let deleted: Vec<u64> = acked.iter().copied().filter(|i| i % 10 == 1).collect();
    for &i in &deleted {
        let r = s
            .req(reqwest::Method::DELETE, &format!("c/o{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "DELETE o{i} with node 3 down");
    }
    assert_eq!(s.put("late", "").await.status(), 201);
    let late = upload_many(&s, "late", 20, 4, None).await;
    assert_eq!(late.len(), 20);
    c.up_again();
    heal(&c, "after node 3 came back");
    for &i in &deleted {
        assert_eq!(
            s.get(&format!("c/o{i}")).await.status(),
            404,
            "deleted o{i} came back"
        );
    }
    for &i in deleted.iter().step_by(10) {
        for st in c.primaries_state(&format!("/{acct}/c/o{i}")) {
            assert!(st.starts_with("tombstone"), "o{i}: a primary holds {st:?}");
        }
    }
    let live: BTreeSet<String> = acked
        .iter()
        .filter(|i| *i % 10 != 1)
        .map(|i| format!("o{i}"))
        .collect();
    let listed: BTreeSet<String> = s.names("c", "limit=10000").await.into_iter().collect();
    assert_eq!(listed, live, "the listing is exactly the live objects");
    assert_eq!(s.names("late", "").await.len(), 20);
    // Every replica of each container holds the same rows: the node that missed the
    // updates caught up (this is each replica on its own, not the proxy's merge).
    for (container, count) in [("c", live.len()), ("late", 20)] {
        for st in c.primaries_state(&format!("/{acct}/{container}")) {
            assert!(
                st.starts_with(&format!("{count} objects,")),
                "{container}: a replica holds {st:?}, want {count} objects"
            );
        }
    }
    // Account stats converge on every account replica (each container reports them
    // asynchronously).
    let want = (live.len() + 20).to_string();
    let deadline = std::time::Instant::now() + HEAL;
    loop {
        let r = s.req(reqwest::Method::HEAD, "").send().await.unwrap();
        let got = r.headers()["x-account-object-count"]
            .to_str()
            .unwrap()
            .to_string();
        let replicas = c.primaries_state(&format!("/{acct}"));
        if got == want
            && replicas
                .iter()
                .all(|st| st.starts_with(&format!("{want} objects,")))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "account object count {got}, replicas {replicas:?}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // 3. Flip a byte in one copy of each of 20 objects with body files.
    assert_eq!(s.put("big", "").await.status(), 201);
    let mut bigs = Vec::new();
    for i in 0..24u64 {
        let body = random_bytes(120_000 + i as usize, 1_000 + i);
        assert_eq!(
            s.put(&format!("big/b{i}"), body.clone()).await.status(),
            201
        );
        bigs.push(body);
    }
    heal(&c, "before the rot");
    let mut by_object: std::collections::BTreeMap<String, std::path::PathBuf> = Default::default();
    for p in files_under(&c.dir) {
        if p.extension().is_some_and(|e| e == "data")
            && !p.to_string_lossy().contains("quarantined")
        {
            let obj = p
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string();
            by_object.entry(obj).or_insert(p);
        }
    }
    assert!(
        by_object.len() >= 20,
        "{} objects with body files",
        by_object.len()
    );
    let flipped: Vec<(std::path::PathBuf, u8)> = by_object
        .values()
        .take(20)
        .map(|p| {
            let mut b = std::fs::read(p).unwrap();
            let orig = b[777];
            b[777] ^= 0x5a;
            std::fs::write(p, &b).unwrap();
            (p.clone(), orig)
        })
        .collect();
    let quarantined = |c: &TestCluster| {
        files_under(&c.dir)
            .into_iter()
            .filter(|p| {
                p.to_string_lossy().contains("quarantined")
                    && p.extension().is_some_and(|e| e == "data")
            })
            .count()
    };
    // Meanwhile every GET returns the right bytes (a rotten copy is never served).
    let deadline = std::time::Instant::now() + HEAL;
    loop {
        for (i, body) in bigs.iter().enumerate() {
            let r = s.get(&format!("big/b{i}")).await;
            assert_eq!(r.status(), 200);
            assert!(
                r.bytes().await.unwrap()[..] == body[..],
                "b{i} served intact"
            );
        }
        for &i in acked.iter().filter(|i| *i % 50 == 0 && *i % 10 != 1) {
            let r = s.get(&format!("c/o{i}")).await;
            assert!(
                r.bytes().await.unwrap()[..] == body_for(i)[..],
                "o{i} served intact"
            );
        }
        if quarantined(&c) >= 20 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of 20 rotten copies quarantined",
            quarantined(&c)
        );
    }
    heal(&c, "after the rot");
    assert_eq!(
        quarantined(&c),
        20,
        "exactly the 20 rotten copies were quarantined"
    );
    for (p, orig) in &flipped {
        let b = std::fs::read(p).unwrap_or_else(|e| panic!("{p:?} not restored: {e}"));
        assert_eq!(b[777], *orig, "{p:?} restored from a good replica");
    }
    assert!(c.worker_total("auditor", "quarantined") <= 20);

    // 4. A device's data directory is wiped (disk replaced): it is refilled from peers.
    let addr4 = std::fs::read_to_string(c.dir.join("storage-4/addr")).unwrap();
    let items_on = |h: &serde_json::Value, ring: &str| -> u64 {
        h["devices"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["ring"] == ring && d["node"] == addr4.trim() && d["device"] == "d1")
            .map(|d| d["items"].as_u64().unwrap())
            .sum()
    };
    let before = items_on(&c.health(), "object");
    assert!(before > 0);
    c.kill_storage(4);
    pull_device(&c.dir.join("storage-4/d1"));
    c.up_again();
    heal(&c, "after wiping storage-4/d1");
    assert_eq!(
        items_on(&c.health(), "object"),
        before,
        "the wiped device holds every object it held before"
    );
    assert_intact(&s, "c", &live_indexes(&acked)).await;

    // 5. The expirer deletes an object past its X-Delete-At from disk and listings.
    let r = s
        .req(reqwest::Method::PUT, "c/ephemeral")
        .header("x-delete-after", "2")
        .body("gone soon")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let deadline = std::time::Instant::now() + HEAL;
    loop {
        let listed = s.names("c", "prefix=eph").await;
        let states = c.primaries_state(&format!("/{acct}/c/ephemeral"));
        if listed.is_empty() && states.iter().all(|st| st.starts_with("tombstone")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expired object still listed {listed:?} or stored {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(s.get("c/ephemeral").await.status(), 404);

    // 6. With a reclaim age of 0 the reclaimer drops every tombstone (all replicas have
    // them by now); deleted objects stay deleted.
    c.set_workers("reclaimer", "interval", "1");
    c.set_workers("reclaimer", "reclaim_age", "0");
    let probe = deleted[0];
    let deadline = std::time::Instant::now() + HEAL;
    loop {
        let states = c.primaries_state(&format!("/{acct}/c/o{probe}"));
        if states.iter().all(|st| st == "nothing") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tombstones of o{probe} not reclaimed: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(s.get(&format!("c/o{probe}")).await.status(), 404);
    assert!(c.worker_total("reclaimer", "repaired") > 0);
}

fn live_indexes(acked: &[u64]) -> Vec<u64> {
    acked.iter().copied().filter(|i| i % 10 != 1).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_moves_data_to_a_new_node() {
    let c = TestCluster::start(4, 1);
    let s = c.tester().await;
    assert_eq!(s.put("c", "").await.status(), 201);
    let acked = upload_many(&s, "c", 300, 8, None).await;
    assert_eq!(acked.len(), 300);
    heal(&c, "before adding a node");
    let d = c.dir_str().to_string();
    // Nothing is moving: the rebalance gate is open (nothing to reassign either).
    wait_rebalance_allowed(&d, "object");

    // Node 5, with two devices, joins every ring.
    c.start_nodes(5, 2);
    let addr5 = std::fs::read_to_string(c.dir.join("storage-5/addr")).unwrap();
    let addr5 = addr5.trim();
    for ring in ["object", "container", "account"] {
        for dev in ["d1", "d2"] {
            ok(&[
                "ring", "--dir", &d, "add", ring, "--zone", "5", "--node", addr5, "--device", dev,
                "--weight", "100",
            ]);
        }
    }
    // Slow every replicator right down, so the data cannot all have moved by the time the
    // second rebalance is tried.
    c.set_workers("replicator", "parts_per_sec", "0.2");
    let report = json(&ok(&["ring", "--dir", &d, "--json", "rebalance", "object"]));
    let (moved, slots) = (
        report["moved"].as_u64().unwrap(),
        report["slots"].as_u64().unwrap(),
    );
    assert!(moved > 0, "{report}");
    for ring in ["container", "account"] {
        ok(&["ring", "--dir", &d, "rebalance", ring]);
    }
    let refused = stratus(&["ring", "--dir", &d, "rebalance", "object"]);
    assert!(
        !refused.status.success(),
        "a rebalance while data moves must wait"
    );
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("not rebalancing object"), "{why}");

    // Let it move, reading every object meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (s, stop, reads, acked) = (s.clone(), stop.clone(), reads.clone(), acked.clone());
        tokio::spawn(async move {
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                let i = acked[k % acked.len()];
                k += 7;
                let r = s.get(&format!("c/o{i}")).await;
                assert_eq!(r.status(), 200, "o{i} unreadable during the rebalance");
                assert!(
                    r.bytes().await.unwrap()[..] == body_for(i)[..],
                    "o{i} intact"
                );
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    c.set_workers("replicator", "parts_per_sec", "0");
    heal(&c, "after the rebalance");
    tokio::task::block_in_place(|| wait_rebalance_allowed(&d, "object"));
    stop.store(true, Ordering::Relaxed);
    reader
        .await
        .expect("every object stayed readable during the move");
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert_intact(&s, "c", &acked).await;

    // The share of object copies now on node 5 is the share of slots the rebalance moved.
    let h = c.health();
    let on5: u64 = h["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["ring"] == "object" && d["node"] == addr5)
        .map(|d| d["items"].as_u64().unwrap())
        .sum();
    let expected = (3 * acked.len()) as f64 * moved as f64 / slots as f64;
    assert!(
        (on5 as f64) > 0.6 * expected && (on5 as f64) < 1.4 * expected,
        "{on5} object copies on the new node, expected about {expected:.0} ({moved}/{slots} slots moved)"
    );
}
