//! The replicator worker and one pass of it over every partition the node's devices hold.
//!
//! A pass visits each device's partitions of each ring. For one device and ring it reads
//! its partition hashes (from the cache), asks every peer device once for theirs, and
//! repairs only the partitions that differ — with [`super::push`] — against each *other*
//! primary. A partition held as a handoff is removed once every primary has it, and
//! only what was compared goes: a record written since stays for the next pass. The pass
//! ends with a progress report to meta (ring versions and handoffs left), rewritten only
//! when it changes or grows old.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocksdb::WriteBatch;
use stratus_client::records::{progress_key, Progress, RingProgress};
use stratus_core::ring::{Device as RingDevice, Ring};
use tonic::Status;

use super::peer;
use super::push::Pusher;
use crate::db::{self, Kind};
use crate::device::{blocking, Device, DeviceError, Space};
use crate::diskfile::{batch_record, body_file, object_key, ObjectRecord};
use crate::hashes::{self, suffix_of, Hashes};
use crate::worker::{Ctx, Limiter, Worker};

/// Default pacing of pushes: unlimited bytes, unlimited partitions.
pub const DEFAULT_BYTES_PER_SEC: f64 = 0.0;

/// The replicator worker.
#[derive(Default)]
pub struct Replicator {
    /// The last progress report written to meta (rewritten only when it changes).
    reported: Mutex<Option<(Progress, tokio::time::Instant)>>,
}

/// How often an unchanged progress report is rewritten anyway.
const PROGRESS_REFRESH: Duration = Duration::from_secs(300);

/// Every peer device's partition hashes (or why it could not be asked): (node, device) →
/// partition → its hash (empty: the peer holds nothing of it).
type PeerHashes = HashMap<(String, String), Result<HashMap<u32, Vec<u8>>, Status>>;

/// One pass of the replicator.
struct Pass<'a> {
    cx: &'a Ctx,
    me: String,
    pusher: Pusher<'a>,
}

impl Pass<'_> {
    /// Whether the ring device `d` is `dev` on this node (by disk id, or address and
    /// name: see [`crate::identity::is_mine`]).
    fn is_me(&self, d: &RingDevice, dev: &Device) -> bool {
        crate::identity::is_mine(d, &self.me, dev)
    }

    /// Replicates the partitions `parts` of `space` on `dev`. Asks every peer device once
    /// for its hash of each partition they share, and looks closer (suffix by suffix) only
    /// at the partitions whose hashes differ. Returns how many are still held as handoffs.
    async fn device_space(
        &self,
        dev: &Arc<Device>,
        space: Space,
        ring: &Ring,
        parts: Vec<u32>,
        parts_limiter: &mut Limiter,
    ) -> u64 {
        let parts: Vec<u32> = parts
            .into_iter()
            .filter(|&p| (p as usize) < ring.partitions())
            .collect();
        let digests = blocking(dev, move |d| {
            parts
                .into_iter()
                .map(|p| Ok((p, hashes::digest(d, space, p)?)))
                .collect::<Result<Vec<_>, DeviceError>>()
        });
        let local = match digests.await {
            Ok(l) => l,
            Err(e) => {
                self.cx.stats.error(e);
                return 0;
            }
        };
        // Which partitions each peer device shares with us.
        let mut by_peer: BTreeMap<(String, String), Vec<u32>> = BTreeMap::new();
        for (part, digest) in &local {
            if digest.is_none() {
                continue;
            }
            for p in ring.primaries(*part).filter(|p| !self.is_me(p, dev)) {
                by_peer
                    .entry((p.node.clone(), p.name.clone()))
                    .or_default()
                    .push(*part);
            }
        }
        let mut remote = PeerHashes::new();
        for ((node, name), parts) in by_peer {
            let r = peer::batch_digests(&self.cx.node, &node, &name, space, &parts).await;
            remote.insert((node, name), r);
        }
        let mut handoffs = 0;
        for (part, digest) in local {
            parts_limiter
                .take(1.0, self.cx.settings.get("parts_per_sec"))
                .await;
            self.cx.stats.scanned(1);
            if let Some(digest) = digest {
                match self
                    .partition(dev, space, ring, part, &digest.hash, &remote)
                    .await
                {
                    Ok(true) => handoffs += 1,
                    Ok(false) => {}
                    Err(e) => {
                        handoffs += 1;
                        self.cx.stats.error(e);
                    }
                }
            }
            self.cx
                .stats
                .progress_done
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        handoffs
    }

    /// Repairs one partition of `dev` against every other primary, given their partition
    /// hashes; returns whether the device still holds it as a handoff afterwards.
    async fn partition(
        &self,
        dev: &Arc<Device>,
        space: Space,
        ring: &Ring,
        part: u32,
        digest: &[u8; 16],
        remote: &PeerHashes,
    ) -> Result<bool, String> {
        let primaries: Vec<RingDevice> = ring.primaries(part).cloned().collect();
        let handoff = !primaries.iter().any(|p| self.is_me(p, dev));
        let mut all_ok = true;
        // This device's suffix hashes, read only if some peer differs.
        let mut local: Option<Hashes> = None;
        for p in primaries.iter().filter(|p| !self.is_me(p, dev)) {
            let theirs = match remote.get(&(p.node.clone(), p.name.clone())) {
                Some(Ok(m)) => Ok(m.get(&part).map(Vec::as_slice).unwrap_or_default()),
                Some(Err(e)) => Err(e.clone()),
                None => Err(Status::internal("peer not asked")),
            };
            let r = match theirs {
                Ok(theirs) if theirs == &digest[..] => Ok(0),
                Ok(_) => {
                    if local.is_none() {
                        let h = blocking(dev, move |d| hashes::hashes(d, space, part));
                        local = Some(h.await.map_err(|e| e.to_string())?);
                    }
                    let ours = local.as_ref().expect("just read");
                    match Kind::of(space) {
                        None => match peer::suffix_hashes(&self.cx.node, p, space, part).await {
                            Ok(theirs) => {
                                self.pusher
                                    .push_objects(dev, space, part, ours, &theirs, p)
                                    .await
                            }
                            Err(e) => Err(e),
                        },
                        Some(kind) => self.pusher.push_dbs(dev, kind, part, p).await,
                    }
                }
                Err(e) => Err(e),
            };
            match r {
                Ok(n) => self.cx.stats.repaired(n),
                Err(e) => {
                    all_ok = false;
                    self.cx.stats.error(format!(
                        "{} partition {part} of {} → {}/{}: {}",
                        space.ring(),
                        dev.name,
                        p.node,
                        p.name,
                        e.message()
                    ));
                }
            }
        }
        if handoff && all_ok {
            let compared = match local {
                Some(h) => h,
                None => blocking(dev, move |d| hashes::hashes(d, space, part))
                    .await
                    .map_err(|e| e.to_string())?,
            };
            self.remove_handoff(dev, space, part, compared).await?;
            return Ok(false);
        }
        Ok(handoff)
    }

    /// Removes a handoff partition every primary now has. Only what was compared is
    /// removed: a record written since (or changed) stays for the next pass.
    async fn remove_handoff(
        &self,
        dev: &Arc<Device>,
        space: Space,
        part: u32,
        compared: Hashes,
    ) -> Result<(), String> {
        if let Some(kind) = Kind::of(space) {
            let n = blocking(dev, move |d| {
                // Unchanged since it was pushed (else the next pass pushes the change first).
                if hashes::hashes(d, space, part)? != compared {
                    return Ok(0);
                }
                db::remove_partition(d, kind, part)
            })
            .await
            .map_err(|e| e.to_string())?;
            tracing::info!(device = %dev.name, ring = space.ring(), part, rows = n, "handoff partition moved to its primaries");
            return Ok(());
        }
        let suffixes: Vec<u16> = compared.keys().copied().collect();
        let list = blocking(dev, move |d| hashes::summaries(d, space, part, &suffixes))
            .await
            .map_err(|e| e.to_string())?;
        let mut removed = 0;
        for (nh, ts, meta_ts, deleted, digest) in list {
            let key = object_key(part, &nh);
            let _g = dev.lock_for(&key).lock().await;
            let Some(old) = dev
                .get(space.cf(), &key)
                .map_err(|e| e.to_string())?
                .and_then(|b| ObjectRecord::decode(&b).ok())
            else {
                continue;
            };
            if (old.ts, old.meta_ts, old.deleted, old.digest()) != (ts, meta_ts, deleted, digest) {
                continue;
            }
            let mut batch = WriteBatch::default();
            batch_record(dev, &mut batch, space, &key, None, Some(&old));
            // Unsynced: if lost in a crash, the copy is pushed (a no-op) and removed again.
            dev.write(batch, false).map_err(|e| e.to_string())?;
            dev.hashes.invalidate(space, part, suffix_of(&nh));
            if old.has_file() {
                let _ = std::fs::remove_file(body_file(dev, space, part, &nh, &old));
            }
            removed += 1;
        }
        // Empty directories of the partition go too (non-empty ones fail harmlessly).
        let pdir = dev.root.join(space.cf()).join(part.to_string());
        if let Ok(rd) = std::fs::read_dir(&pdir) {
            for s in rd.flatten() {
                if let Ok(hs) = std::fs::read_dir(s.path()) {
                    for h in hs.flatten() {
                        let _ = std::fs::remove_dir(h.path());
                    }
                }
                let _ = std::fs::remove_dir(s.path());
            }
        }
        let _ = std::fs::remove_dir(&pdir);
        tracing::info!(device = %dev.name, part, objects = removed, "handoff partition moved to its primaries");
        Ok(())
    }
}

#[tonic::async_trait]
impl Worker for Replicator {
    fn name(&self) -> &'static str {
        "replicator"
    }

    fn settings(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("bytes_per_sec", DEFAULT_BYTES_PER_SEC),
            ("parts_per_sec", 0.0),
        ]
    }

    async fn pass(&self, cx: &Ctx) {
        let Some(me) = cx.node.addr.get().cloned() else {
            return;
        };
        let pass = Pass {
            cx,
            me,
            pusher: Pusher::new(cx),
        };
        let devices = cx.node.present_devices();
        let mut work = Vec::new();
        let mut progress = Progress::default();
        for space in Space::all() {
            let Some(ring) = cx.node.ring(space).current() else {
                continue;
            };
            progress.rings.insert(
                space.ring().to_string(),
                RingProgress {
                    version: ring.version(),
                    ..Default::default()
                },
            );
            for dev in &devices {
                match blocking(dev, move |d| hashes::local_partitions(d, space)).await {
                    Ok(parts) => work.push((dev.clone(), space, ring.clone(), parts)),
                    Err(e) => cx.stats.error(e),
                }
            }
        }
        let total: usize = work.iter().map(|w| w.3.len()).sum();
        cx.stats
            .progress_total
            .store(total as u64, std::sync::atomic::Ordering::Relaxed);
        let mut parts_limiter = Limiter::new();
        for (dev, space, ring, parts) in work {
            let p = progress
                .rings
                .get_mut(space.ring())
                .expect("inserted above");
            p.parts += parts.len() as u64;
            p.handoff_parts += pass
                .device_space(&dev, space, &ring, parts, &mut parts_limiter)
                .await;
        }
        crate::metrics::replication(&progress);
        self.report(cx, &pass.me, progress).await;
    }
}

impl Replicator {
    async fn report(&self, cx: &Ctx, me: &str, progress: Progress) {
        let due = match &*self.reported.lock().expect("report lock") {
            Some((last, at)) => *last != progress || at.elapsed() >= PROGRESS_REFRESH,
            None => true,
        };
        if !due {
            return;
        }
        let body = serde_json::to_vec(&progress).expect("plain struct serializes");
        match cx.node.meta.put(progress_key(me), body).await {
            Ok(_) => {
                *self.reported.lock().expect("report lock") =
                    Some((progress, tokio::time::Instant::now()))
            }
            Err(e) => cx.stats.error(format!("reporting progress to meta: {e}")),
        }
    }
}
