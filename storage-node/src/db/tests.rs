//! The databases through their public operations: listings and totals, account
//! roll-ups, and replicas converging by pushing dumps both ways.

use stratus_proto::storage as pb;

use super::*;
use crate::device::{Device, Space, CF_DIRTY};

fn dev() -> (tempfile::TempDir, std::sync::Arc<Device>) {
    let d = tempfile::tempdir().unwrap();
    let dev = Device::open("d1", d.path(), 0).unwrap();
    (d, dev)
}

fn row(name: &str, ts: u64, deleted: bool) -> pb::ObjectRow {
    pb::ObjectRow {
        name: name.into(),
        ts,
        size: 10,
        deleted,
        ..Default::default()
    }
}

fn names(e: &[pb::ListEntry]) -> Vec<String> {
    e.iter()
        .filter(|e| !e.deleted)
        .map(|e| e.name.clone())
        .collect()
}

#[tokio::test]
async fn listing_params_totals_and_tombstones() {
    let (_d, dev) = dev();
    let t = Target {
        kind: Kind::Container,
        part: 3,
        account: "a".into(),
        container: "c".into(),
    };
    put(&dev, &t, 1, &[], None, 0).await.unwrap();
    for (i, n) in ["a/1", "a/2", "b", "c/x/1", "d"].iter().enumerate() {
        object_update(&dev, &t, &row(n, 10 + i as u64, false))
            .await
            .unwrap();
    }
    // An older update loses; a newer delete wins and adjusts totals.
    object_update(&dev, &t, &row("b", 1, true)).await.unwrap();
    let i = object_update(&dev, &t, &row("d", 100, true)).await.unwrap();
    assert_eq!((i.object_count, i.bytes), (4, 40));
    let q = |f: &dyn Fn(&mut pb::ListRequest)| {
        let mut r = pb::ListRequest {
            limit: 100,
            ..Default::default()
        };
        f(&mut r);
        names(&list(&dev, &t, &r).unwrap())
    };
    assert_eq!(q(&|_| {}), ["a/1", "a/2", "b", "c/x/1"]);
    assert_eq!(q(&|r| r.delimiter = "/".into()), ["a/", "b", "c/"]);
    // A delimiter of several characters, as Swift takes it.
    assert_eq!(
        q(&|r| r.delimiter = "/x".into()),
        ["a/1", "a/2", "b", "c/x"]
    );
    assert_eq!(
        q(&|r| {
            r.delimiter = "/".into();
            r.reverse = true
        }),
        ["c/", "b", "a/"]
    );
    assert_eq!(q(&|r| r.prefix = "a/".into()), ["a/1", "a/2"]);
    assert_eq!(q(&|r| r.marker = "a/2".into()), ["b", "c/x/1"]);
    assert_eq!(q(&|r| r.end_marker = "b".into()), ["a/1", "a/2"]);
    assert_eq!(q(&|r| r.limit = 2), ["a/1", "a/2"]);
    assert_eq!(
        q(&|r| {
            r.reverse = true;
            r.marker = "c".into()
        }),
        ["b", "a/2", "a/1"]
    );
    assert_eq!(
        q(&|r| {
            r.prefix = "c/".into();
            r.delimiter = "/".into()
        }),
        ["c/x/"]
    );
    // Swift's `path`: one level, directory markers as objects, the path's own marker left
    // out, nothing deeper and no subdirs.
    for n in ["c/", "c/x/", "c/y", "c/x/2"] {
        object_update(&dev, &t, &row(n, 50, false)).await.unwrap();
    }
    let path = |p: &str, reverse: bool| {
        q(&|r| {
            r.prefix = p.into();
            r.delimiter = "/".into();
            r.path = true;
            r.reverse = reverse;
        })
    };
    assert_eq!(path("c/", false), ["c/x/", "c/y"]);
    assert_eq!(path("c/", true), ["c/y", "c/x/"]);
    assert_eq!(path("", false), ["b", "c/"]);
    assert_eq!(path("c/x/", false), ["c/x/1", "c/x/2"]);
    for n in ["c/", "c/x/", "c/y", "c/x/2"] {
        object_update(&dev, &t, &row(n, 60, true)).await.unwrap();
    }
    // The deleted row comes back flagged, for merging.
    let all = list(
        &dev,
        &t,
        &pb::ListRequest {
            limit: 100,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(all.iter().any(|e| e.name == "d" && e.deleted));
    // Not empty → refused; emptied → deleted.
    assert!(matches!(
        delete(&dev, &t, 200).await.unwrap(),
        DeleteOutcome::NotEmpty(_)
    ));
    for n in ["a/1", "a/2", "b", "c/x/1"] {
        object_update(&dev, &t, &row(n, 300, true)).await.unwrap();
    }
    assert!(matches!(
        delete(&dev, &t, 400).await.unwrap(),
        DeleteOutcome::Deleted(_)
    ));
    assert!(!info(&dev, &t).unwrap().exists());
}

#[tokio::test]
async fn account_rows_roll_up() {
    let (_d, dev) = dev();
    let t = Target {
        kind: Kind::Account,
        part: 0,
        account: "a".into(),
        container: String::new(),
    };
    let mut r = pb::ContainerRow {
        name: "c1".into(),
        put_ts: 5,
        object_count: 2,
        bytes: 20,
        stats_ts: 1,
        ..Default::default()
    };
    account_update(&dev, &t, &r).await.unwrap();
    r.object_count = 3;
    r.bytes = 30;
    r.stats_ts = 2;
    let i = account_update(&dev, &t, &r).await.unwrap();
    assert_eq!((i.container_count, i.object_count, i.bytes), (1, 3, 30));
    // Stale stats lose.
    r.object_count = 1;
    r.stats_ts = 1;
    let i = account_update(&dev, &t, &r).await.unwrap();
    assert_eq!(i.object_count, 3);
    r.delete_ts = 9;
    r.stats_ts = 3;
    r.object_count = 0;
    r.bytes = 0;
    let i = account_update(&dev, &t, &r).await.unwrap();
    assert_eq!((i.container_count, i.object_count, i.bytes), (0, 0, 0));
}

#[tokio::test]
async fn replicas_converge_by_pushing_dumps_both_ways() {
    let (_a, a) = dev();
    let (_b, b) = dev();
    let t = Target {
        kind: Kind::Container,
        part: 9,
        account: "acct".into(),
        container: "c".into(),
    };
    let meta = |k: &str, v: &str, ts| pb::MetaItem {
        key: k.into(),
        value: v.into(),
        ts,
    };
    put(
        &a,
        &t,
        10,
        &[meta("X-Container-Meta-Color", "red", 10)],
        None,
        0,
    )
    .await
    .unwrap();
    put(
        &b,
        &t,
        12,
        &[meta("X-Container-Meta-Color", "blue", 12)],
        None,
        0,
    )
    .await
    .unwrap();
    // Each replica missed some updates; one row is deleted on b after a had it live.
    for i in 0..5 {
        object_update(&a, &t, &row(&format!("o{i}"), 20 + i, false))
            .await
            .unwrap();
    }
    object_update(&b, &t, &row("o2", 40, true)).await.unwrap();
    object_update(&b, &t, &row("o9", 41, false)).await.unwrap();
    let hash = |d: &Device| crate::hashes::db_hashes(d, Space::Container, 9).unwrap();
    let dump = |d: &Device| {
        let mut out = Vec::new();
        assert!(dump_partition(d, Kind::Container, 9, |p| {
            out.push(p);
            true
        })
        .unwrap());
        out
    };
    assert_ne!(hash(&a), hash(&b));
    for (from, to) in [(&a, &b), (&b, &a)] {
        for d in dump(from) {
            merge_dump(to, Kind::Container, 9, &d).await.unwrap();
        }
    }
    assert_eq!(hash(&a), hash(&b), "replicas agree after pushing both ways");
    for d in [&a, &b] {
        let i = info(d, &t).unwrap();
        // o0, o1, o3, o4 and o9 are live; o2's deletion won.
        assert_eq!((i.object_count, i.bytes), (5, 50));
        assert_eq!((i.put_ts, i.meta[0].value.as_str()), (12, "blue"));
    }
    // Pushing again changes nothing.
    for d in dump(&a) {
        assert_eq!(merge_dump(&b, Kind::Container, 9, &d).await.unwrap(), 0);
    }
    // A handoff copy removed: nothing of the partition is left, dirty marks included.
    assert!(remove_partition(&a, Kind::Container, 9).unwrap() > 0);
    assert!(crate::hashes::db_hashes(&a, Space::Container, 9)
        .unwrap()
        .is_empty());
    assert!(a.scan(CF_DIRTY, &[], false).next().is_none());
}

/// A dump is handed over piece by piece as the scan makes it, and stops when the
/// receiver goes away: a large partition is never held whole.
#[tokio::test]
async fn dumps_stream_in_pieces_and_stop_when_the_receiver_goes() {
    let (_d, dev) = dev();
    let t = Target {
        kind: Kind::Container,
        part: 9,
        account: "a".into(),
        container: "c".into(),
    };
    for i in 0..DUMP_ROWS * 2 + 7 {
        object_update(&dev, &t, &row(&format!("o{i:06}"), 20, false))
            .await
            .unwrap();
    }
    let mut sizes = Vec::new();
    assert!(dump_partition(&dev, Kind::Container, 9, |p| {
        sizes.push(p.len());
        true
    })
    .unwrap());
    assert_eq!(
        sizes.len(),
        3,
        "2 full pieces of {DUMP_ROWS} rows and the rest"
    );
    // The receiver leaves after the first piece: the scan stops there.
    let mut seen = 0;
    assert!(!dump_partition(&dev, Kind::Container, 9, |_| {
        seen += 1;
        false
    })
    .unwrap());
    assert_eq!(seen, 1);
}

fn ct_row(name: &str, ts: u64, ct_ts: u64, size: u64, ct: &str, etag: &str) -> pb::ObjectRow {
    pb::ObjectRow {
        name: name.into(),
        ts,
        size,
        content_type: ct.into(),
        etag: etag.into(),
        deleted: false,
        ct_ts,
    }
}

/// Every order of `items` (Heap's algorithm).
fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    fn go<T: Clone>(k: usize, a: &mut Vec<T>, out: &mut Vec<Vec<T>>) {
        if k <= 1 {
            out.push(a.clone());
            return;
        }
        for i in 0..k {
            go(k - 1, a, out);
            let j = if k.is_multiple_of(2) { i } else { 0 };
            a.swap(j, k - 1);
        }
    }
    let mut out = Vec::new();
    go(items.len(), &mut items.to_vec(), &mut out);
    out
}

fn the_row(dev: &Device, t: &Target, name: &str) -> pb::ListEntry {
    list(
        dev,
        t,
        &pb::ListRequest {
            prefix: name.into(),
            limit: 10,
            ..Default::default()
        },
    )
    .unwrap()
    .into_iter()
    .find(|e| e.name == name)
    .expect("row listed")
}

/// A POSTed Content-Type reaches the row with its own timestamp: the data (timestamp,
/// size, etag) stays the stored version's, the listing's last_modified is the POST's; a
/// later PUT resets both; older updates never win over newer fields.
#[tokio::test]
async fn a_posted_content_type_keeps_the_data_of_its_version() {
    let (_d, dev) = dev();
    let t = Target {
        kind: Kind::Container,
        part: 1,
        account: "a".into(),
        container: "c".into(),
    };
    put(&dev, &t, 1, &[], None, 0).await.unwrap();
    object_update(&dev, &t, &ct_row("o", 10, 0, 5, "text/a", "e1"))
        .await
        .unwrap();
    let i = object_update(&dev, &t, &ct_row("o", 10, 20, 5, "image/b", "e1"))
        .await
        .unwrap();
    assert_eq!((i.object_count, i.bytes), (1, 5));
    let e = the_row(&dev, &t, "o");
    assert_eq!(
        (e.content_type.as_str(), e.bytes, e.etag.as_str()),
        ("image/b", 5, "e1")
    );
    assert_eq!((e.data_ts, e.ct_ts, e.ts), (10, 20, 20));
    // A delayed PUT of an older version, or an older POST, changes nothing.
    let before = i.clone();
    for r in [
        ct_row("o", 5, 0, 9, "text/old", "e0"),
        ct_row("o", 10, 15, 5, "image/older", "e1"),
    ] {
        let i = object_update(&dev, &t, &r).await.unwrap();
        assert_eq!(
            (i.object_count, i.bytes),
            (before.object_count, before.bytes)
        );
    }
    assert_eq!(the_row(&dev, &t, "o").content_type, "image/b");
    // A PUT newer than the data but older than the POST takes the data only (as Swift).
    object_update(&dev, &t, &ct_row("o", 15, 0, 7, "text/x", "e15"))
        .await
        .unwrap();
    let e = the_row(&dev, &t, "o");
    assert_eq!(
        (e.content_type.as_str(), e.bytes, e.etag.as_str(), e.ts),
        ("image/b", 7, "e15", 20)
    );
    // A later PUT resets the type and its timestamp.
    let i = object_update(&dev, &t, &ct_row("o", 30, 0, 3, "text/c", "e2"))
        .await
        .unwrap();
    assert_eq!((i.object_count, i.bytes), (1, 3));
    let e = the_row(&dev, &t, "o");
    assert_eq!(
        (e.content_type.as_str(), e.bytes, e.etag.as_str()),
        ("text/c", 3, "e2")
    );
    assert_eq!((e.data_ts, e.ct_ts, e.ts), (30, 30, 30));
    // A POST to a deleted object's older version (a diverged object replica) keeps the
    // deletion.
    let mut del = row("o", 40, true);
    del.size = 0;
    let i = object_update(&dev, &t, &del).await.unwrap();
    assert_eq!((i.object_count, i.bytes), (0, 0));
    object_update(&dev, &t, &ct_row("o", 30, 50, 3, "image/late", "e2"))
        .await
        .unwrap();
    let i = info(&dev, &t).unwrap();
    assert_eq!((i.object_count, i.bytes), (0, 0));
    assert!(the_row(&dev, &t, "o").deleted);
}

/// Object rows merge to the same row, and the same totals, whatever order their updates
/// arrive in: each permutation of a set of PUTs, POSTs and a DELETE lands on one row.
#[tokio::test]
async fn object_rows_merge_the_same_in_any_order() {
    let (_d, dev) = dev();
    let mut del = row("o", 35, true);
    del.size = 0;
    let mut same_instant_delete = row("o", 12, true);
    same_instant_delete.size = 0;
    // Rows, and the (deleted, bytes, type, etag, last_modified) they merge to.
    type Want = (bool, u64, &'static str, &'static str, u64);
    let sets: Vec<(Vec<pb::ObjectRow>, Want)> = vec![
        (
            vec![
                ct_row("o", 10, 0, 5, "text/a", "e1"),
                ct_row("o", 10, 20, 5, "image/b", "e1"),
                ct_row("o", 10, 15, 5, "image/older", "e1"),
                ct_row("o", 12, 0, 7, "text/x", "e12"),
                ct_row("o", 5, 0, 9, "text/old", "e0"),
            ],
            (false, 7, "image/b", "e12", 20),
        ),
        (
            vec![
                ct_row("o", 10, 0, 5, "text/a", "e1"),
                ct_row("o", 10, 20, 5, "image/b", "e1"),
                ct_row("o", 30, 0, 3, "text/c", "e2"),
                del,
                ct_row("o", 30, 40, 3, "image/late", "e2"),
            ],
            (true, 0, "image/late", "", 40),
        ),
        // A deletion and a PUT at the same instant: the data wins, as in the object
        // store; of two versions at one instant, one is picked by value.
        (
            vec![
                ct_row("o", 10, 0, 5, "text/a", "e1"),
                ct_row("o", 10, 0, 6, "text/b", "e2"),
                ct_row("o", 12, 0, 6, "text/a", "e3"),
                same_instant_delete,
                ct_row("o", 10, 11, 5, "image/p", "e1"),
            ],
            (false, 6, "text/a", "e3", 12),
        ),
    ];
    for (n, (rows, want)) in sets.into_iter().enumerate() {
        let mut stored: Option<Vec<u8>> = None;
        for (i, order) in permutations(&rows).into_iter().enumerate() {
            let t = Target {
                kind: Kind::Container,
                part: 2,
                account: "a".into(),
                container: format!("c{n}-{i}"),
            };
            put(&dev, &t, 1, &[], None, 0).await.unwrap();
            for r in &order {
                object_update(&dev, &t, r).await.unwrap();
            }
            let e = the_row(&dev, &t, "o");
            assert_eq!(
                (
                    e.deleted,
                    e.bytes,
                    e.content_type.as_str(),
                    e.etag.as_str(),
                    e.ts
                ),
                want,
                "order {order:?}"
            );
            let i = info(&dev, &t).unwrap();
            let live = !want.0 as u64;
            assert_eq!((i.object_count, i.bytes), (live, want.1));
            let mut rk = t.row_prefix();
            rk.extend_from_slice(b"o");
            let bytes = dev.get(t.cf(), &rk).unwrap().unwrap().to_vec();
            assert_eq!(stored.get_or_insert(bytes.clone()), &bytes, "one encoding");
        }
    }
}

/// Rows stored before content-type timestamps (format 1) still decode, list and merge;
/// a row keeps format 1 while its type came with its data, so replicas that never saw a
/// POST hash the same bytes as before.
#[tokio::test]
async fn format_1_rows_still_decode() {
    #[derive(serde::Serialize)]
    struct V1 {
        ts: u64,
        size: u64,
        content_type: String,
        etag: String,
        deleted: bool,
    }
    let (_d, dev) = dev();
    let t = Target {
        kind: Kind::Container,
        part: 4,
        account: "a".into(),
        container: "c".into(),
    };
    put(&dev, &t, 1, &[], None, 0).await.unwrap();
    // What the code before wrote for this PUT (the object's row, and the totals).
    object_update(&dev, &t, &ct_row("o", 10, 0, 5, "text/a", "e1"))
        .await
        .unwrap();
    let mut rk = t.row_prefix();
    rk.extend_from_slice(b"o");
    let old = records::enc(&V1 {
        ts: 10,
        size: 5,
        content_type: "text/a".into(),
        etag: "e1".into(),
        deleted: false,
    });
    assert_eq!(dev.get(t.cf(), &rk).unwrap().unwrap().to_vec(), old);
    let mut b = rocksdb::WriteBatch::default();
    dev.batch_put(&mut b, t.cf(), &rk, &old);
    dev.write(b, true).unwrap();
    let e = the_row(&dev, &t, "o");
    assert_eq!(
        (e.ts, e.data_ts, e.ct_ts, e.content_type.as_str(), e.bytes),
        (10, 10, 10, "text/a", 5)
    );
    // A POSTed type makes it format 2; a newer PUT makes it format 1 again.
    object_update(&dev, &t, &ct_row("o", 10, 20, 5, "image/b", "e1"))
        .await
        .unwrap();
    assert_eq!(dev.get(t.cf(), &rk).unwrap().unwrap()[0], 2);
    assert_eq!(the_row(&dev, &t, "o").content_type, "image/b");
    object_update(&dev, &t, &ct_row("o", 30, 0, 3, "text/c", "e2"))
        .await
        .unwrap();
    assert_eq!(dev.get(t.cf(), &rk).unwrap().unwrap()[0], 1);
    let i = info(&dev, &t).unwrap();
    assert_eq!((i.object_count, i.bytes), (1, 3));
}

/// Replicas, one of which got a POSTed type and the other a newer PUT's data (or only the
/// PUT), converge to the same row by pushing dumps both ways.
#[tokio::test]
async fn replicas_converge_on_posted_content_types() {
    let (_a, a) = dev();
    let (_b, b) = dev();
    let t = Target {
        kind: Kind::Container,
        part: 5,
        account: "acct".into(),
        container: "c".into(),
    };
    for d in [&a, &b] {
        put(d, &t, 1, &[], None, 0).await.unwrap();
        object_update(d, &t, &ct_row("o", 10, 0, 5, "text/a", "e1"))
            .await
            .unwrap();
        object_update(d, &t, &ct_row("p", 10, 0, 5, "text/a", "e1"))
            .await
            .unwrap();
    }
    object_update(&a, &t, &ct_row("o", 10, 20, 5, "image/b", "e1"))
        .await
        .unwrap();
    object_update(&b, &t, &ct_row("o", 15, 0, 8, "text/x", "e15"))
        .await
        .unwrap();
    object_update(&b, &t, &ct_row("p", 10, 30, 5, "image/p", "e1"))
        .await
        .unwrap();
    let hash = |d: &Device| crate::hashes::db_hashes(d, Space::Container, 5).unwrap();
    let dump = |d: &Device| {
        let mut out = Vec::new();
        assert!(dump_partition(d, Kind::Container, 5, |p| {
            out.push(p);
            true
        })
        .unwrap());
        out
    };
    for (from, to) in [(&a, &b), (&b, &a)] {
        for d in dump(from) {
            merge_dump(to, Kind::Container, 5, &d).await.unwrap();
        }
    }
    assert_eq!(hash(&a), hash(&b), "replicas agree after pushing both ways");
    for d in [&a, &b] {
        let o = the_row(d, &t, "o");
        assert_eq!(
            (o.content_type.as_str(), o.bytes, o.etag.as_str(), o.ts),
            ("image/b", 8, "e15", 20)
        );
        assert_eq!(the_row(d, &t, "p").content_type, "image/p");
        let i = info(d, &t).unwrap();
        assert_eq!((i.object_count, i.bytes), (2, 13));
    }
}

#[tokio::test]
async fn a_container_keeps_the_policy_it_was_created_with() {
    let (_d, dev) = dev();
    let t = Target {
        kind: Kind::Container,
        part: 1,
        account: "a".into(),
        container: "c".into(),
    };
    let created = |o: PutOutcome| match o {
        PutOutcome::Done(info, created) => (policy_of(&info), created),
        PutOutcome::PolicyConflict(p) => panic!("conflict with {p}"),
    };
    // Named at creation; the default applies only when none is named.
    assert_eq!(
        created(put(&dev, &t, 10, &[], Some(2), 1).await.unwrap()),
        (2, true)
    );
    // A PUT naming none, or the same one, keeps it; another one is refused.
    assert_eq!(
        created(put(&dev, &t, 11, &[], None, 1).await.unwrap()),
        (2, false)
    );
    assert_eq!(
        created(put(&dev, &t, 12, &[], Some(2), 0).await.unwrap()),
        (2, false)
    );
    assert!(matches!(
        put(&dev, &t, 13, &[], Some(0), 0).await.unwrap(),
        PutOutcome::PolicyConflict(2)
    ));
    assert_eq!(policy_of(&info(&dev, &t).unwrap()), 2);
    // Deleted and created again, it takes the new one.
    assert!(matches!(
        delete(&dev, &t, 20).await.unwrap(),
        DeleteOutcome::Deleted(_)
    ));
    assert_eq!(
        created(put(&dev, &t, 21, &[], None, 3).await.unwrap()),
        (3, true)
    );
}
