//! One suite, run against every engine: what the object service and the replicator rely
//! on. Each case names the promise it checks.

use std::future::Future;

use super::disk::Disk;
use super::mem::Mem;
use super::{delete, newer_meta, put, record_for, Engine, Key, Outcome, Put, ReadError};
use crate::diskfile::{ObjectRecord, BLOCK, INLINE_MAX};
use crate::updater::Pending;

/// Damages a stored copy in place (a flipped byte), as rot on a disk would.
pub(super) trait Damage {
    fn damage(&self, key: Key, rec: &ObjectRecord) -> impl Future<Output = ()> + Send;
}

const NAME: &str = "/a/c/o";

fn key() -> Key {
    Key::of(7, NAME)
}

/// A body of `len` bytes that differs per `seed`.
fn body(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

const BIG: usize = (2 * BLOCK + 1000) as usize;

async fn put_bytes<E: Engine>(e: &E, ts: u64, bytes: &[u8]) -> (ObjectRecord, Put) {
    let rec = record_for(NAME, ts, bytes);
    let staged = if rec.inline.is_some() {
        None
    } else {
        Some(e.stage(bytes).await.unwrap())
    };
    let out = put(e, key(), rec.clone(), staged, None).await.unwrap();
    (rec, out)
}

fn pending_for(rec: &ObjectRecord) -> Pending {
    Pending {
        account: "a".into(),
        container: "c".into(),
        replica_index: 0,
        name: "o".into(),
        ts: rec.ts,
        size: rec.size,
        content_type: String::new(),
        etag: rec.etag.clone(),
        deleted: rec.deleted,
        queued: 1,
        ct_ts: rec.ts,
    }
}

pub(super) async fn absent_reads_as_none<E: Engine>(e: &E) {
    assert!(e.get(key()).await.unwrap().is_none());
    assert!(e.scan(7).await.unwrap().is_empty());
}

pub(super) async fn a_put_reads_back_whole_and_by_range<E: Engine>(e: &E) {
    for len in [0, 100, INLINE_MAX as usize, INLINE_MAX as usize + 1, BIG] {
        let bytes = body(len as u8, len);
        let (rec, out) = put_bytes(e, 10 + len as u64, &bytes).await;
        assert!(matches!(out, Put::Stored { .. }), "{len}: {out:?}");
        let got = e.get(key()).await.unwrap().unwrap();
        assert_eq!(got.version(), rec.version());
        assert_eq!(e.read(key(), &got, 0, got.size).await.unwrap(), bytes);
        if len > 10 {
            // A range across a block boundary (for the big body) and one inside a block.
            let (s, t) = if len == BIG {
                (BLOCK - 5, BLOCK + 5)
            } else {
                (3, 9)
            };
            let piece = e.read(key(), &got, s, t).await.unwrap();
            assert_eq!(piece, bytes[s as usize..t as usize]);
        }
    }
}

pub(super) async fn a_newer_version_replaces_and_drops_the_old_body<E: Engine>(e: &E) {
    let (v1, _) = put_bytes(e, 10, &body(1, BIG)).await;
    let (v2, out) = put_bytes(e, 20, &body(2, BIG)).await;
    let Put::Stored { old: Some(old), .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(old.version(), v1.version());
    assert!(matches!(
        e.read(key(), &v1, 0, 10).await,
        Err(ReadError::Missing)
    ));
    assert_eq!(e.read(key(), &v2, 0, v2.size).await.unwrap(), body(2, BIG));
}

pub(super) async fn an_older_version_never_touches_the_committed_body<E: Engine>(e: &E) {
    let (v2, _) = put_bytes(e, 20, &body(2, BIG)).await;
    let (v1, out) = put_bytes(e, 10, &body(1, BIG)).await;
    let Put::Superseded(Some(cur)) = out else {
        panic!("{out:?}")
    };
    assert_eq!(cur.version(), v2.version());
    assert_eq!(e.get(key()).await.unwrap().unwrap().version(), v2.version());
    assert_eq!(e.read(key(), &v2, 0, v2.size).await.unwrap(), body(2, BIG));
    assert!(e.read(key(), &v1, 0, 10).await.is_err());
}

pub(super) async fn the_same_version_twice_changes_nothing<E: Engine>(e: &E) {
    for len in [100, BIG] {
        let bytes = body(3, len);
        let (rec, first) = put_bytes(e, 30 + len as u64, &bytes).await;
        assert!(matches!(first, Put::Stored { .. }));
        let (_, again) = put_bytes(e, 30 + len as u64, &bytes).await;
        assert!(matches!(again, Put::Same), "{again:?}");
        assert_eq!(e.read(key(), &rec, 0, rec.size).await.unwrap(), bytes);
    }
}

/// Two versions with one timestamp and different bytes: whatever order they arrive in,
/// every engine keeps the same one, the other is refused, and the kept body is intact.
pub(super) async fn one_timestamp_two_bodies_converge<E: Engine>(a: &E, b: &E) {
    let (x, y) = (body(4, BIG), body(5, BIG));
    let (rx, _) = put_bytes(a, 50, &x).await;
    let (_, late_a) = put_bytes(a, 50, &y).await;
    let (ry, _) = put_bytes(b, 50, &y).await;
    let (_, late_b) = put_bytes(b, 50, &x).await;
    let (ka, kb) = (
        a.get(key()).await.unwrap().unwrap(),
        b.get(key()).await.unwrap().unwrap(),
    );
    assert_eq!(ka.version(), kb.version(), "replicas diverged");
    let (winner, bytes) = if rx.digest() > ry.digest() {
        (&rx, &x)
    } else {
        (&ry, &y)
    };
    assert_eq!(ka.version(), winner.version());
    // Exactly one of the late arrivals was the winner; the other was refused.
    let stored = [&late_a, &late_b]
        .iter()
        .filter(|p| matches!(p, Put::Stored { .. }))
        .count();
    let refused = [&late_a, &late_b]
        .iter()
        .filter(|p| matches!(p, Put::Superseded(_)))
        .count();
    assert_eq!((stored, refused), (1, 1), "{late_a:?} {late_b:?}");
    assert_eq!(&a.read(key(), &ka, 0, ka.size).await.unwrap(), bytes);
    assert_eq!(&b.read(key(), &kb, 0, kb.size).await.unwrap(), bytes);
}

pub(super) async fn a_tombstone_wins_over_older_versions_only<E: Engine>(e: &E) {
    let (v1, _) = put_bytes(e, 10, &body(1, BIG)).await;
    let (out, existed) = delete(e, key(), NAME.into(), 20, |_| None).await.unwrap();
    assert!(existed);
    assert!(matches!(out, Outcome::Committed { .. }));
    let cur = e.get(key()).await.unwrap().unwrap();
    assert!(cur.deleted && cur.ts == 20);
    assert!(
        e.read(key(), &v1, 0, 1).await.is_err(),
        "deleted body still served"
    );
    // An older PUT after the tombstone is refused; an older DELETE changes nothing.
    let (_, older) = put_bytes(e, 15, &body(2, 100)).await;
    assert!(matches!(older, Put::Superseded(_)), "{older:?}");
    let (out, existed) = delete(e, key(), NAME.into(), 5, |_| None).await.unwrap();
    assert!(!existed);
    assert!(matches!(out, Outcome::Declined { .. }));
    let (_, newer) = put_bytes(e, 30, &body(3, 100)).await;
    assert!(matches!(newer, Put::Stored { .. }));
}

pub(super) async fn data_at_the_same_instant_wins_over_a_deletion<E: Engine>(e: &E) {
    delete(e, key(), NAME.into(), 10, |_| None).await.unwrap();
    let (_, out) = put_bytes(e, 10, &body(1, 100)).await;
    assert!(matches!(out, Put::Stored { .. }), "{out:?}");
    let (out, _) = delete(e, key(), NAME.into(), 10, |_| None).await.unwrap();
    assert!(matches!(out, Outcome::Declined { .. }));
    assert!(!e.get(key()).await.unwrap().unwrap().deleted);
}

pub(super) async fn the_container_update_commits_with_its_record<E: Engine>(e: &E) {
    let bytes = body(1, 100);
    let rec = record_for(NAME, 10, &bytes);
    let p = pending_for(&rec);
    let Put::Stored {
        pending: Some((k, _)),
        ..
    } = put(e, key(), rec, None, Some(p.clone())).await.unwrap()
    else {
        panic!("not stored with its pending")
    };
    let got = e.pending(&k).await.unwrap().expect("pending queued");
    assert_eq!((got.ts, got.name), (10, "o".to_string()));
    // A refused version queues nothing.
    let old = record_for(NAME, 5, &bytes);
    let out = put(e, key(), old.clone(), None, Some(pending_for(&old)))
        .await
        .unwrap();
    assert!(matches!(out, Put::Superseded(_)));
    // A tombstone's update is built from the tombstone itself.
    let (out, _) = delete(e, key(), NAME.into(), 20, |t| Some(pending_for(t)))
        .await
        .unwrap();
    let Outcome::Committed {
        pending: Some((k, _)),
        ..
    } = out
    else {
        panic!("{out:?}")
    };
    assert!(e.pending(&k).await.unwrap().unwrap().deleted);
}

pub(super) async fn damaged_bytes_are_never_returned<E: Engine + Damage>(e: &E) {
    for len in [100, BIG] {
        let (rec, _) = put_bytes(e, 10 + len as u64, &body(9, len)).await;
        e.damage(key(), &rec).await;
        let cur = e.get(key()).await.unwrap().unwrap();
        match e.read(key(), &cur, 0, cur.size).await {
            Err(ReadError::Checksum(0)) => {}
            other => panic!("{len}: damaged body read as {other:?}"),
        }
        // The untouched later blocks still read.
        if len == BIG {
            let tail = e.read(key(), &cur, BLOCK, cur.size).await.unwrap();
            assert_eq!(tail, body(9, len)[BLOCK as usize..]);
        }
    }
}

pub(super) async fn a_scan_lists_one_partition_in_key_order<E: Engine>(e: &E) {
    for part in [1, 2, 3] {
        for i in 0..5 {
            let name = format!("/a/c/o{i}");
            let rec = record_for(&name, 10, b"x");
            put(e, Key::of(part, &name), rec, None, None).await.unwrap();
        }
    }
    let got = e.scan(2).await.unwrap();
    assert_eq!(got.len(), 5);
    assert!(got
        .iter()
        .all(|(k, r)| k.part == 2 && Key::of(2, &r.name) == *k));
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
}

pub(super) async fn racing_writers_leave_the_newest<E: Engine>(e: &E) {
    let len = INLINE_MAX as usize + 10;
    let writes = (1..=16u64).rev().map(|ts| async move {
        put_bytes(e, ts, &body(ts as u8, len)).await;
    });
    futures::future::join_all(writes).await;
    let cur = e.get(key()).await.unwrap().unwrap();
    assert_eq!(cur.ts, 16);
    assert_eq!(
        e.read(key(), &cur, 0, cur.size).await.unwrap(),
        body(16, len)
    );
}

pub(super) async fn newer_metadata_keeps_the_body<E: Engine>(e: &E) {
    let bytes = body(1, BIG);
    let (rec, _) = put_bytes(e, 10, &bytes).await;
    let mut m = rec.clone();
    m.inline = None;
    m.meta_ts = 15;
    m.meta = vec![("x-object-meta-color".into(), "blue".into())];
    let out = e.commit(key(), None, newer_meta(m.clone())).await.unwrap();
    assert!(matches!(out, Outcome::Committed { .. }), "{out:?}");
    let cur = e.get(key()).await.unwrap().unwrap();
    assert_eq!((cur.meta_ts, cur.meta.len()), (15, 1));
    assert_eq!(e.read(key(), &cur, 0, cur.size).await.unwrap(), bytes);
    // Stale metadata, or metadata of another version, changes nothing.
    m.meta_ts = 12;
    let out = e.commit(key(), None, newer_meta(m.clone())).await.unwrap();
    assert!(matches!(out, Outcome::Declined { .. }));
    m.meta_ts = 99;
    m.ts = 11;
    let out = e.commit(key(), None, newer_meta(m)).await.unwrap();
    assert!(matches!(out, Outcome::Declined { .. }));
}

pub(super) async fn a_file_record_without_its_body_is_refused<E: Engine>(e: &E) {
    let rec = record_for(NAME, 10, &body(1, BIG));
    assert!(put(e, key(), rec, None, None).await.is_err());
    assert!(e.get(key()).await.unwrap().is_none());
}

macro_rules! suite {
    ($engine:ident, $make:path) => {
        mod $engine {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn absent_reads_as_none() {
                let (_g, e) = $make();
                super::absent_reads_as_none(&e).await
            }
            #[tokio::test]
            async fn a_put_reads_back_whole_and_by_range() {
                let (_g, e) = $make();
                super::a_put_reads_back_whole_and_by_range(&e).await
            }
            #[tokio::test]
            async fn a_newer_version_replaces_and_drops_the_old_body() {
                let (_g, e) = $make();
                super::a_newer_version_replaces_and_drops_the_old_body(&e).await
            }
            #[tokio::test]
            async fn an_older_version_never_touches_the_committed_body() {
                let (_g, e) = $make();
                super::an_older_version_never_touches_the_committed_body(&e).await
            }
            #[tokio::test]
            async fn the_same_version_twice_changes_nothing() {
                let (_g, e) = $make();
                super::the_same_version_twice_changes_nothing(&e).await
            }
            #[tokio::test]
            async fn one_timestamp_two_bodies_converge() {
                let (_g, a) = $make();
                let (_h, b) = $make();
                super::one_timestamp_two_bodies_converge(&a, &b).await
            }
            #[tokio::test]
            async fn a_tombstone_wins_over_older_versions_only() {
                let (_g, e) = $make();
                super::a_tombstone_wins_over_older_versions_only(&e).await
            }
            #[tokio::test]
            async fn data_at_the_same_instant_wins_over_a_deletion() {
                let (_g, e) = $make();
                super::data_at_the_same_instant_wins_over_a_deletion(&e).await
            }
            #[tokio::test]
            async fn the_container_update_commits_with_its_record() {
                let (_g, e) = $make();
                super::the_container_update_commits_with_its_record(&e).await
            }
            #[tokio::test]
            async fn damaged_bytes_are_never_returned() {
                let (_g, e) = $make();
                super::damaged_bytes_are_never_returned(&e).await
            }
            #[tokio::test]
            async fn a_scan_lists_one_partition_in_key_order() {
                let (_g, e) = $make();
                super::a_scan_lists_one_partition_in_key_order(&e).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn racing_writers_leave_the_newest() {
                let (_g, e) = $make();
                super::racing_writers_leave_the_newest(&e).await
            }
            #[tokio::test]
            async fn newer_metadata_keeps_the_body() {
                let (_g, e) = $make();
                super::newer_metadata_keeps_the_body(&e).await
            }
            #[tokio::test]
            async fn a_file_record_without_its_body_is_refused() {
                let (_g, e) = $make();
                super::a_file_record_without_its_body_is_refused(&e).await
            }
        }
    };
}

/// A disk engine on a fresh device in a temporary directory (kept while the guard lives).
pub(super) fn disk() -> (tempfile::TempDir, Disk) {
    let dir = tempfile::tempdir().unwrap();
    let dev = crate::device::Device::open("d1", dir.path(), 0).unwrap();
    // Policy 1, so the engine is proven off the default keyspace too.
    (dir, Disk::new(dev, crate::device::Space::Object(1)))
}

fn mem() -> ((), Mem) {
    ((), Mem::new())
}

suite!(on_disk, disk);
suite!(in_memory, mem);
