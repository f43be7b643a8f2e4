//! Node failures: with one storage node killed, uploads still succeed (handoffs take the
//! dead node's copies) and every object downloads intact; a rotten copy is never served; a
//! node whose disks are pulled answers "insufficient storage" and handoffs take its copies;
//! with two of three primaries down and no handoff left, a PUT is refused with 503 and
//! never acknowledged.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_down_uploads_still_succeed() {
    let c = TestCluster::start(4, 2);
    let s = c.tester().await;
    assert_eq!(s.put("c", "").await.status(), 201);
    c.kill_storage(1);
    let mut bodies = Vec::new();
    for i in 0..40u64 {
        let body = random_bytes(if i % 4 == 0 { 200_000 } else { 3_000 }, i);
        let r = s.put(&format!("c/obj-{i}"), body.clone()).await;
        assert_eq!(r.status(), 201, "PUT obj-{i} with a node down");
        bodies.push(body);
    }
    // Some of those objects had a primary on the dead node: their copy went to a handoff.
    let ring = json(&ok(&[
        "ring",
        "--dir",
        c.dir_str(),
        "show",
        "object",
        "--json",
    ]));
    let dead = std::fs::read_to_string(c.dir.join("storage-1/addr")).unwrap();
    assert!(
        ring.to_string().contains(dead.trim()),
        "node 1 is in the ring"
    );
    for (i, body) in bodies.iter().enumerate() {
        let r = s.get(&format!("c/obj-{i}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(&r.bytes().await.unwrap()[..], &body[..], "obj-{i} intact");
    }
    assert_eq!(
        s.names("c", "").await.len(),
        40,
        "listing complete with a node down"
    );
    // The node comes back; everything is still readable.
    c.up_again();
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(
            &s.get(&format!("c/obj-{i}")).await.bytes().await.unwrap()[..],
            &body[..]
        );
    }
    // Every body file on node 3 rots: GETs notice (each block is checked before it is sent)
    // and read another replica, so no corrupt byte reaches a client.
    let mut rotten = 0;
    for path in files_under(&c.dir.join("storage-3")) {
        if path.extension().is_some_and(|e| e == "data") {
            let mut b = std::fs::read(&path).unwrap();
            b[100] ^= 0xff;
            std::fs::write(&path, b).unwrap();
            rotten += 1;
        }
    }
    assert!(rotten > 0, "node 3 holds some large objects");
    for (i, body) in bodies.iter().enumerate() {
        let got = s.get(&format!("c/obj-{i}")).await.bytes().await.unwrap();
        assert_eq!(
            &got[..],
            &body[..],
            "obj-{i} served intact despite a rotten copy"
        );
    }
    // Two of the three copies of a body rot, each in a different block (first, second).
    // Whichever copy a GET starts on, it resumes on another at the failed block (each bad
    // copy is quarantined as it is found), so the client gets every byte and no corrupt
    // one. (With every copy rotten, quarantine would leave none: as in Swift, the object
    // would be lost even though its good blocks together could rebuild it.)
    let big = random_bytes(3_200_000, 99);
    assert_eq!(s.put("c/big3", big.clone()).await.status(), 201);
    let copies: Vec<_> = files_under(&c.dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "data"))
        .filter(|p| !p.to_string_lossy().contains("quarantined"))
        .filter(|p| std::fs::metadata(p).unwrap().len() == big.len() as u64)
        .collect();
    assert_eq!(copies.len(), 3, "{copies:?}");
    for (copy, at) in copies.iter().zip([10, (1 << 20) + 10]) {
        let mut b = std::fs::read(copy).unwrap();
        b[at] ^= 0xff;
        std::fs::write(copy, b).unwrap();
    }
    for _ in 0..3 {
        let got = s.get("c/big3").await.bytes().await.unwrap();
        assert!(got[..] == big[..], "a body with rotten blocks was served");
    }
    let r = s
        .req(reqwest::Method::GET, "c/big3")
        .header("range", "bytes=1048000-2200000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert!(r.bytes().await.unwrap()[..] == big[1_048_000..2_200_001]);
    // Node 2's disks are pulled while it runs: it answers 507 and handoffs take over.
    for d in ["d1", "d2"] {
        pull_device(&c.dir.join("storage-2").join(d));
    }
    for i in 0..20u64 {
        let body = random_bytes(5_000, 100 + i);
        let r = s.put(&format!("c/late-{i}"), body.clone()).await;
        assert_eq!(r.status(), 201, "late-{i}");
        let got = s.get(&format!("c/late-{i}")).await.bytes().await.unwrap();
        assert_eq!(&got[..], &body[..]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_primaries_down_is_503_not_201() {
    // Three nodes of one device each: every object's primaries are all three, and there is
    // no handoff to fall back on.
    let c = TestCluster::start(3, 1);
    let s = c.tester().await;
    assert_eq!(s.put("c", "").await.status(), 201);
    assert_eq!(s.put("c/before", "x").await.status(), 201);
    c.kill_storage(1);
    c.kill_storage(2);
    let r = s.put("c/after", "data").await;
    assert_eq!(r.status(), 503);
    c.up_again();
    assert_eq!(
        s.get("c/after").await.status(),
        404,
        "a refused PUT left nothing readable"
    );
    assert_eq!(s.get("c/before").await.text().await.unwrap(), "x");
}
