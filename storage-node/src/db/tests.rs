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
    put(&dev, &t, 1, &[]).await.unwrap();
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
    put(&a, &t, 10, &[meta("X-Container-Meta-Color", "red", 10)])
        .await
        .unwrap();
    put(&b, &t, 12, &[meta("X-Container-Meta-Color", "blue", 12)])
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
