//! Rings stored in meta: a rebalance publishes a version that a watching process picks up,
//! large rings are chunked and verified, concurrent edits are not lost, bad
//! requests are refused with clear errors, and the watcher survives a leader kill.

use stratus_client::rings::{RingStore, RingStoreError, RingWatcher};
use stratus_core::ring::{NewDevice, RingError};

use crate::common::{Cluster, WAIT};

fn dev(zone: u32, i: u32) -> NewDevice {
    NewDevice {
        region: 1,
        zone,
        node: format!("127.0.0.1:{}", 6200 + zone),
        name: format!("d{i}"),
        weight: 100.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_publishes_and_watchers_follow() {
    let mut c = Cluster::start(3, &[]).await;
    let store = RingStore::new(c.client());

    // Refusals, before anything exists.
    assert!(matches!(
        store.create("objects", 10, 3, 1).await,
        Err(RingStoreError::BadName(_))
    ));
    assert!(matches!(
        store.builder("object").await,
        Err(RingStoreError::NotFound(_))
    ));
    assert!(matches!(
        store.create("object", 40, 3, 1).await,
        Err(RingStoreError::Ring(RingError::BadPartPower(40)))
    ));

    // Power 17 x 3 replicas: the ring blob (~770 KiB) and the builder (~2 MiB) span chunks.
    store.create("object", 17, 3, 0).await.unwrap();
    assert!(matches!(
        store.create("object", 10, 3, 1).await,
        Err(RingStoreError::Exists(_))
    ));
    let watcher = RingWatcher::spawn(store.clone(), "object").unwrap();
    assert!(watcher.current().is_none());
    store
        .edit("object", |b| b.add_device(dev(1, 0)))
        .await
        .unwrap();
    store
        .edit("object", |b| b.add_device(dev(2, 0)))
        .await
        .unwrap();
    // Two devices cannot hold three replicas: refused, nothing published.
    assert!(matches!(
        store.rebalance("object").await,
        Err(RingStoreError::Ring(RingError::TooFewDevices {
            replicas: 3,
            devices: 2
        }))
    ));
    assert!(matches!(
        store.current("object").await,
        Err(RingStoreError::NotPublished(_))
    ));

    // Concurrent edits from two clients both land (compare-and-swap with retries).
    let (s1, s2) = (store.clone(), RingStore::new(c.client()));
    let (a, b) = tokio::join!(
        s1.edit("object", |b| b.add_device(dev(3, 0))),
        s2.edit("object", |b| b.add_device(dev(3, 1)))
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(
        store.builder("object").await.unwrap().0.devices().count(),
        4
    );

    let r1 = store.rebalance("object").await.unwrap();
    assert_eq!((r1.version, r1.reassigned, r1.slots), (1, 3 << 17, 3 << 17));
    let ring = watcher
        .wait_for(1, WAIT)
        .await
        .expect("watcher sees version 1");
    assert_eq!(ring.devices().len(), 4);
    assert_eq!(*ring, *store.current("object").await.unwrap().0);

    // A new device and a rebalance: the watching process has the new ring within 1 s.
    store
        .edit("object", |b| b.add_device(dev(4, 0)))
        .await
        .unwrap();
    let r2 = store.rebalance("object").await.unwrap();
    assert_eq!(r2.version, 2);
    assert!(r2.moved > 0);
    // How fast it arrives is for benchmarks; that it arrives is checked here.
    let ring2 = watcher
        .wait_for(2, WAIT)
        .await
        .expect("watcher sees version 2");
    assert_eq!(ring2.devices().len(), 5);
    // The old Arc is untouched: readers never see a torn ring.
    assert_eq!(ring.version(), 1);
    assert_eq!(ring.devices().len(), 4);

    // History lists both versions; old versions can be read back.
    let h = store.history("object").await.unwrap();
    assert_eq!(h.iter().map(|e| e.version).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(store.version("object", 1).await.unwrap(), *ring);

    // Nothing to do: nothing published.
    let r = store.rebalance("object").await.unwrap();
    assert!(!r.changed);
    assert_eq!(store.history("object").await.unwrap().len(), 2);

    // Kill the leader; the watcher carries on and picks up the next version.
    let leader = c.leader().await;
    c.kill(leader);
    store
        .edit("object", |b| b.set_weight(0, 50.0))
        .await
        .unwrap();
    let r3 = store.rebalance("object").await.unwrap();
    assert_eq!(r3.version, 3);
    let ring3 = watcher
        .wait_for(3, WAIT)
        .await
        .expect("watcher survives a leader kill");
    assert_eq!(ring3.device(0).unwrap().weight, 50.0);

    // A watcher started late gets the current version at once.
    let late = RingWatcher::spawn(store.clone(), "object").unwrap();
    assert_eq!(late.wait_for(3, WAIT).await.unwrap().version(), 3);
}
