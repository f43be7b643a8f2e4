//! The replicator's decisions against the in-memory engine: what a push sends
//! ([`push::plan`]) and what the receiving side takes ([`service::apply_record`],
//! [`service::apply_meta`]), over replicas that missed different writes.

use super::push::{plan, Theirs};
use super::service::{apply_meta, apply_record};
use crate::diskfile::{ObjectRecord, INLINE_MAX};
use crate::engine::mem::Mem;
use crate::engine::{self, record_for, Engine, Key};
use crate::hashes::Summary;

const PART: u32 = 3;

fn summary(k: &Key, r: &ObjectRecord) -> Summary {
    (k.hash, r.ts, r.meta_ts, r.deleted, r.digest())
}

async fn summaries(e: &Mem) -> Vec<Summary> {
    e.scan(PART)
        .await
        .unwrap()
        .iter()
        .map(|(k, r)| summary(k, r))
        .collect()
}

async fn theirs(e: &Mem) -> Theirs {
    summaries(e)
        .await
        .into_iter()
        .map(|(nh, ts, mt, _, d)| (nh.to_vec(), (ts, d.to_vec(), mt)))
        .collect()
}

/// One push from `src` to `dst`, as the replicator makes it: the plan, then each record
/// (its body read back verified) applied by the receiving side's rules. Returns how many
/// records `dst` took.
async fn push(src: &Mem, dst: &Mem) -> u64 {
    let send = plan(summaries(src).await, &theirs(dst).await);
    let mut applied = 0;
    for (nh, meta_only) in send {
        let key = Key {
            part: PART,
            hash: nh,
        };
        let Some(mut rec) = src.get(key).await.unwrap() else {
            continue;
        };
        let took = if meta_only {
            rec.inline = None;
            apply_meta(dst, PART, rec).await.unwrap()
        } else {
            let body = if rec.has_file() {
                let bytes = src.read(key, &rec, 0, rec.size).await.unwrap();
                Some(dst.stage(&bytes).await.unwrap())
            } else {
                None
            };
            apply_record(dst, PART, rec, body).await.unwrap()
        };
        applied += took as u64;
    }
    applied
}

fn bytes(seed: u8, big: bool) -> Vec<u8> {
    let len = if big { INLINE_MAX as usize + 100 } else { 50 };
    (0..len).map(|i| (i as u8) ^ seed).collect()
}

async fn write(e: &Mem, name: &str, ts: u64, seed: u8, big: bool) -> ObjectRecord {
    let b = bytes(seed, big);
    let rec = record_for(name, ts, &b);
    let staged = rec.has_file().then_some(b);
    engine::put(e, Key::of(PART, name), rec.clone(), staged, None)
        .await
        .unwrap();
    rec
}

async fn remove(e: &Mem, name: &str, ts: u64) {
    engine::delete(e, Key::of(PART, name), name.into(), ts, |_| None)
        .await
        .unwrap();
}

/// Every replica's (name hash, version, metadata time), and each body read back.
async fn state(e: &Mem) -> Vec<(Summary, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for (k, r) in e.scan(PART).await.unwrap() {
        let body = if r.deleted {
            None
        } else {
            Some(e.read(k, &r, 0, r.size).await.unwrap())
        };
        out.push((summary(&k, &r), body));
    }
    out
}

/// Replicas that each missed different writes (a newer version, a deletion, an object
/// they never saw, two bodies at one timestamp) agree after one round of pushes between
/// every pair, on the newest of everything, and a second round has nothing to send.
#[tokio::test]
async fn three_replicas_that_missed_different_writes_converge() {
    let (a, b, c) = (Mem::new(), Mem::new(), Mem::new());
    write(&a, "/a/c/old", 10, 1, true).await;
    write(&b, "/a/c/old", 20, 2, true).await; // b has the newer version
    write(&a, "/a/c/gone", 10, 3, false).await;
    write(&c, "/a/c/gone", 10, 3, false).await;
    remove(&c, "/a/c/gone", 30).await; // only c saw the DELETE
    write(&b, "/a/c/only-b", 5, 4, true).await;
    write(&a, "/a/c/tie", 40, 5, true).await; // same timestamp, different bodies
    write(&c, "/a/c/tie", 40, 6, true).await;
    let all = [&a, &b, &c];
    for src in all {
        for dst in all {
            if !std::ptr::eq(src, dst) {
                push(src, dst).await;
            }
        }
    }
    let sa = state(&a).await;
    assert_eq!(sa, state(&b).await, "a and b differ");
    assert_eq!(sa, state(&c).await, "a and c differ");
    assert_eq!(sa.len(), 4);
    let old = a.get(Key::of(PART, "/a/c/old")).await.unwrap().unwrap();
    assert_eq!(old.ts, 20, "the newer version won");
    assert!(
        a.get(Key::of(PART, "/a/c/gone"))
            .await
            .unwrap()
            .unwrap()
            .deleted
    );
    // Replaced and deleted versions left no bodies behind: old, only-b and tie remain.
    for e in all {
        assert_eq!(e.bodies().await, 3);
    }
    for src in all {
        for dst in all {
            assert!(plan(summaries(src).await, &theirs(dst).await).is_empty());
        }
    }
}

/// A push never replaces a newer version: the plan sends nothing, and a record that
/// arrives anyway (a stale push racing a PUT) is refused.
#[tokio::test]
async fn a_push_never_replaces_a_newer_version() {
    let (a, b) = (Mem::new(), Mem::new());
    let stale = write(&a, "/a/c/o", 10, 1, true).await;
    write(&b, "/a/c/o", 20, 2, true).await;
    assert!(plan(summaries(&a).await, &theirs(&b).await).is_empty());
    let body = b.stage(&bytes(1, true)).await.unwrap();
    assert!(!apply_record(&b, PART, stale, Some(body)).await.unwrap());
    let cur = b.get(Key::of(PART, "/a/c/o")).await.unwrap().unwrap();
    assert_eq!(cur.ts, 20);
    assert_eq!(
        b.read(Key::of(PART, "/a/c/o"), &cur, 0, cur.size)
            .await
            .unwrap(),
        bytes(2, true)
    );
    assert_eq!(push(&b, &a).await, 1);
    assert_eq!(state(&a).await, state(&b).await);
}

/// Newer metadata of the same version travels alone and leaves the body as it is; a
/// tombstone is never given metadata.
#[tokio::test]
async fn newer_metadata_travels_alone() {
    let (a, b) = (Mem::new(), Mem::new());
    let rec = write(&a, "/a/c/o", 10, 1, true).await;
    write(&b, "/a/c/o", 10, 1, true).await;
    let mut posted = rec.clone();
    posted.meta_ts = 15;
    posted.meta = vec![("x-object-meta-color".into(), "red".into())];
    a.commit(Key::of(PART, "/a/c/o"), None, engine::newer_meta(posted))
        .await
        .unwrap();
    let send = plan(summaries(&a).await, &theirs(&b).await);
    assert_eq!(send, vec![(Key::of(PART, "/a/c/o").hash, true)]);
    assert_eq!(push(&a, &b).await, 1);
    let got = b.get(Key::of(PART, "/a/c/o")).await.unwrap().unwrap();
    assert_eq!((got.meta_ts, got.meta.len()), (15, 1));
    assert_eq!(state(&a).await, state(&b).await);
    assert_eq!(b.bodies().await, 1);
}

/// A tombstone pushed to a replica that holds the live version removes its body.
#[tokio::test]
async fn a_pushed_tombstone_removes_the_body() {
    let (a, b) = (Mem::new(), Mem::new());
    write(&a, "/a/c/o", 10, 1, true).await;
    write(&b, "/a/c/o", 10, 1, true).await;
    remove(&a, "/a/c/o", 20).await;
    assert_eq!(push(&a, &b).await, 1);
    assert!(
        b.get(Key::of(PART, "/a/c/o"))
            .await
            .unwrap()
            .unwrap()
            .deleted
    );
    assert_eq!(b.bodies().await, 0);
    // The older live copy is never pushed back over the tombstone.
    assert_eq!(push(&b, &a).await, 0);
}
